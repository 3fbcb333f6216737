"""One registry for every video classifier: torchvision's, HF transformers' (``hf:`` names, :mod:`albar.models.hf`)
and albar's own small CPU model. Weights load from albar checkpoints, exported folders and ``hf://`` models."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn
from torchvision.models import get_model_weights
from torchvision.models import video as tvv

from albar.models import hf
from albar.models.small import Small3DCNN
from albar.registry import PLUGIN_HINT
from albar.utils import torch_load

_TORCHVISION = {
    "swin3d_t": tvv.swin3d_t, "swin3d_s": tvv.swin3d_s, "swin3d_b": tvv.swin3d_b,
    "r3d_18": tvv.r3d_18, "mc3_18": tvv.mc3_18, "r2plus1d_18": tvv.r2plus1d_18,
    "s3d": tvv.s3d, "mvit_v1_b": tvv.mvit_v1_b, "mvit_v2_s": tvv.mvit_v2_s,
}
_LOCAL: dict[str, Callable[..., nn.Module]] = {"small3d": Small3DCNN}


def list_models() -> list[str]:
    """Every name ``build_model`` takes; ``hf:<model id>`` (any HF video classifier) is accepted too."""
    return sorted([*_TORCHVISION, *_LOCAL, *hf.hf_names()])


def _head_path(model: nn.Module) -> tuple[nn.Module, str]:
    """(parent module, attribute) of the final classification layer."""
    if callable(getattr(model, "classification_head", None)):  # wrappers (HF models) say where theirs is
        return model.classification_head()
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


def _constructor(name: str) -> Callable[..., nn.Module]:
    """The class whose ``__init__`` receives ``model.kwargs`` (torchvision builders pass theirs on to it)."""
    if name in _LOCAL:
        return _LOCAL[name]
    return typing.get_type_hints(_TORCHVISION[name]).get("return", _TORCHVISION[name])


def check_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """ValueError naming ``model.kwargs.<key>`` and the accepted keys when ``name``'s constructor has no such
    argument (the constructor would raise a bare TypeError deep inside torchvision), or naming ``name`` when
    the registry does not know it. Cheap: callers run it before any data are read."""
    if hf.is_hf(name):
        hf.check_kwargs(name, kwargs)
        return
    if name not in _TORCHVISION and name not in _LOCAL:
        raise ValueError(f"model.name: unknown model {name!r}; known: {', '.join(list_models())} ({PLUGIN_HINT})")
    params = inspect.signature(_constructor(name)).parameters
    accepted = sorted(p for p, v in params.items() if p not in ("self", "num_classes", "weights", "progress")
                      and v.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    if any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values()):
        return  # takes anything
    for key in kwargs:
        if key not in accepted:
            raise ValueError(f"model.kwargs.{key}: {name} has no such argument; accepted: "
                             f"{', '.join(accepted) or 'none'}")


def _construct(name: str, build: Callable[..., nn.Module], kwargs: Mapping[str, Any], **fixed: Any) -> nn.Module:
    """``build(**fixed, **kwargs)``; a TypeError caused by ``kwargs`` (an argument the architecture fixes
    itself, or a value of the wrong type) becomes a ValueError naming the key. Without kwargs nothing is
    caught: a failure is then a bug and keeps its traceback."""
    if not kwargs:
        return build(**fixed)
    try:
        return build(**fixed, **kwargs)
    except TypeError as err:
        named = [k for k in kwargs if re.search(rf"\b{re.escape(k)}\b", str(err))] or (
            list(kwargs) if len(kwargs) == 1 else [])
        key = f"model.kwargs.{named[0]}" if named else f"model.kwargs ({', '.join(kwargs)})"
        fixed_by_builder = "multiple values" in str(err)
        reason = f"set by the {name} architecture itself" if fixed_by_builder else f"rejected by {name}: {err}"
        raise ValueError(f"{key}: {reason}") from err


def build_model(name: str, num_classes: int, weights: str | None = None, **kwargs) -> nn.Module:
    """A video classifier with ``num_classes`` outputs, input (B, C, T, H, W).

    ``weights``: a torchvision weights name (``KINETICS400_V1`` or ``Swin3D_T_Weights.KINETICS400_V1``,
    downloaded where the internet is) whose head is then resized, or albar weights for this architecture and
    ``num_classes``: a local checkpoint (loaded with ``weights_only=True``), a folder written by ``albar
    export``, or ``hf://user/repo``. ``kwargs`` go to the architecture's constructor (for ``hf:`` models: the
    transformers config); an unknown key is a ValueError naming ``model.kwargs.<key>``. ``hf:<model id>``
    without ``weights`` starts from that model's pretrained weights, with a new head.
    """
    check_model_kwargs(name, kwargs)
    if weights and not hf.is_hf(name) and name not in _LOCAL and not looks_like_path(weights):
        enum = get_model_weights(name)
        member = weights.split(".")[-1]
        if member not in enum.__members__:
            raise ValueError(
                f"unknown weights {weights!r} for {name}; known: {', '.join(enum.__members__)} or a file path"
            )
        model = _construct(name, _TORCHVISION[name], kwargs, weights=enum[member])
        return replace_head(model, num_classes)
    model = _architecture(name, num_classes, kwargs, hf_pretrained=not weights and "/" in name)
    if weights:
        load_checkpoint_weights(model, weights)
    return model


def _architecture(name: str, num_classes: int, kwargs: Mapping[str, Any], hf_pretrained: bool = False) -> nn.Module:
    """``name`` with ``num_classes`` outputs and fresh weights (``hf_pretrained``: an ``hf:<model id>``'s own
    weights under a new head), the one constructor behind :func:`build_model` and :func:`model_from_state`."""
    if hf.is_hf(name):
        return hf.build_hf(name, num_classes, pretrained=hf_pretrained, **kwargs)
    if name in _LOCAL:
        return _construct(name, _LOCAL[name], kwargs, num_classes=num_classes)
    return replace_head(_construct(name, _TORCHVISION[name], kwargs, weights=None), num_classes)


def looks_like_path(weights: str) -> bool:
    """Albar weights (a local file or folder, or ``hf://``) rather than a torchvision weights name."""
    return ("/" in weights or "\\" in weights
            or Path(weights).suffix in {".pt", ".pth", ".bin", ".ckpt", ".safetensors"})


def check_weights_source(weights: str | None) -> None:
    """Fail before any work when ``model.weights`` names local weights that are not there: a missing file, or
    a folder without ``model.safetensors``. ``hf://`` is checked for its form only (it is fetched later)."""
    from albar import sharing

    if not weights or not looks_like_path(weights):
        return
    if sharing.is_hub(weights):
        sharing.parse_hub(weights)
        return
    path = Path(weights).expanduser()
    if path.is_dir() and not sharing.is_exported(path):
        raise FileNotFoundError(f"model.weights: {weights} is a folder without {sharing.WEIGHTS_FILE} (write one "
                                "with `albar export`)")
    if not path.exists():
        raise FileNotFoundError(f"model.weights: file not found: {weights}")


def _read_weights(source: str | Path) -> tuple[Any, str]:
    """(loaded checkpoint or state dict, its name): albar/torch files, exported folders, ``hf://``."""
    from albar import sharing

    if sharing.is_hub(source) or sharing.is_exported(source) or Path(source).expanduser().is_dir():
        info = sharing.read_source(source)
        return info.state, str(info.path)
    return torch_load(Path(source), "weights file"), str(source)


def model_from_state(name: str, num_classes: int, state: Mapping[str, Any], source: str = "checkpoint",
                     **kwargs: Any) -> nn.Module:
    """The architecture ``name`` (never its pretrained weights: ``hf:<model id>`` reads only its config) with
    the weights of an already loaded checkpoint ``state``; ``source`` names it in errors."""
    check_model_kwargs(name, kwargs)
    model = _architecture(name, num_classes, kwargs)
    load_checkpoint_weights(model, state, name=source)
    return model


def load_checkpoint_weights(model: nn.Module, path: str | Path | Mapping[str, Any], name: str | None = None) -> None:
    """Load a state dict from ``path`` (a bare state dict or a checkpoint with a ``model`` entry; an exported
    folder or ``.safetensors`` file; ``hf://user/repo``), or from an already loaded checkpoint dict (``name``:
    what messages call it)."""
    if isinstance(path, Mapping):
        state: Any = path
        path = name or "checkpoint"
    else:
        state, path = _read_weights(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path} is not a weights file: neither a state dict nor a checkpoint with 'model'")
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
