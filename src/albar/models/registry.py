"""One registry for every video classifier: torchvision's and albar's own small CPU model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn
from torchvision.models import get_model_weights
from torchvision.models import video as tvv

from albar.models.small import Small3DCNN
from albar.utils import torch_load

_TORCHVISION = {
    "swin3d_t": tvv.swin3d_t, "swin3d_s": tvv.swin3d_s, "swin3d_b": tvv.swin3d_b,
    "r3d_18": tvv.r3d_18, "mc3_18": tvv.mc3_18, "r2plus1d_18": tvv.r2plus1d_18,
    "s3d": tvv.s3d, "mvit_v1_b": tvv.mvit_v1_b, "mvit_v2_s": tvv.mvit_v2_s,
}
_LOCAL: dict[str, Callable[..., nn.Module]] = {"small3d": Small3DCNN}


def list_models() -> list[str]:
    return sorted([*_TORCHVISION, *_LOCAL])


def _head_path(model: nn.Module) -> tuple[nn.Module, str]:
    """(parent module, attribute) of the final classification layer."""
    # swin3d: head; resnets, r3d: fc; torchvision ViTs (2D reference networks): heads.head
    for parent, attr in ((model, "head"), (model, "fc"), (getattr(model, "heads", None), "head")):
        layer = getattr(parent, attr, None)
        if isinstance(layer, nn.Linear):
            return parent, attr
    if hasattr(model, "head") and isinstance(model.head, nn.Sequential):  # mvit: Dropout, Linear
        return model.head, str(len(model.head) - 1)
    if isinstance(getattr(model, "classifier", None), nn.Sequential):  # s3d: Conv3d last; mobilenets: Linear
        return model.classifier, str(len(model.classifier) - 1)
    raise ValueError(f"cannot find the classification head of {type(model).__name__}")


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Resize the last layer to ``num_classes`` (a new, randomly initialised layer)."""
    parent, attr = _head_path(model)
    old = getattr(parent, attr)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes)
    elif isinstance(old, (nn.Conv2d, nn.Conv3d)):
        new = type(old)(old.in_channels, num_classes, kernel_size=old.kernel_size, stride=old.stride)
    else:
        raise ValueError(f"cannot resize the classification layer {type(old).__name__} of {type(model).__name__}")
    setattr(parent, attr, new)
    return model


def build_model(name: str, num_classes: int, weights: str | None = None, **kwargs) -> nn.Module:
    """A video classifier with ``num_classes`` outputs, input (B, C, T, H, W).

    ``weights``: a torchvision weights name (``KINETICS400_V1`` or ``Swin3D_T_Weights.KINETICS400_V1``,
    downloaded where the internet is) whose head is then resized, or the path of a local checkpoint for
    this architecture and ``num_classes`` (loaded with ``weights_only=True``).
    """
    if name not in _TORCHVISION and name not in _LOCAL:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    if name in _LOCAL:
        model = _LOCAL[name](num_classes=num_classes, **kwargs)
        if weights:
            load_checkpoint_weights(model, weights)
        return model
    if weights and not looks_like_path(weights):
        enum = get_model_weights(name)
        member = weights.split(".")[-1]
        if member not in enum.__members__:
            raise ValueError(
                f"unknown weights {weights!r} for {name}; known: {', '.join(enum.__members__)} or a file path"
            )
        model = _TORCHVISION[name](weights=enum[member], **kwargs)
        return replace_head(model, num_classes)
    model = replace_head(_TORCHVISION[name](weights=None, **kwargs), num_classes)
    if weights:
        load_checkpoint_weights(model, weights)
    return model


def looks_like_path(weights: str) -> bool:
    """A local weights file rather than a torchvision weights name."""
    return "/" in weights or "\\" in weights or Path(weights).suffix in {".pt", ".pth", ".bin", ".ckpt"}


def load_checkpoint_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict from ``path`` (a bare state dict or a checkpoint with a ``model`` entry)."""
    path = Path(path)
    state = torch_load(path, "weights file")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shape:
            parts.append(
                "shape mismatch " + ", ".join(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                                              for k in shape[:5])
            )
        raise ValueError(f"weights in {path} do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state)
