"""HF transformers video classifiers (VideoMAE, TimeSformer, ViViT) in albar's registry, by name.

``hf:videomae``, ``hf:timesformer``, ``hf:vivit``: the architecture from a transformers config, randomly
initialised; ``model.kwargs`` are that config's fields (``hidden_size``, ``num_hidden_layers``, ``image_size``,
``num_frames``...; tiny values make a model that trains on a CPU). ``hf:<model id>`` (``hf:MCG-NJU/videomae-base``,
or a local folder that ``from_pretrained`` reads): that model's config and pretrained weights (downloaded where
the internet is; HF's cache otherwise), ``model.kwargs`` overriding config fields.

Every one gets a new classification layer sized to the dataset, takes albar's (B, C, T, H, W) clips (HF video
models take ``pixel_values`` as (B, T, C, H, W)) and returns logits. Attention is transformers' default (``sdpa``
where the family has it, ``eager`` otherwise) unless ``model.kwargs.attn_implementation`` says otherwise. ALBAR's
exact gradient penalty differentiates the input gradient once more, which PyTorch's fused SDPA kernels cannot: its
pass runs SDPA on the math kernel (the other passes keep the fused ones); ``flash_attention_2`` and the like
have no such fallback and are refused with the exact penalty.

transformers is an optional extra (``pip install 'albar[hf]'``): imported only when an ``hf:`` model is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

PREFIX = "hf:"
# family name -> (transformers config class, classification model class)
FAMILIES = {
    "videomae": ("VideoMAEConfig", "VideoMAEForVideoClassification"),
    "timesformer": ("TimesformerConfig", "TimesformerForVideoClassification"),
    "vivit": ("VivitConfig", "VivitForVideoClassification"),
}
# config fields whose value the input must match: (field, data key); TimeSformer interpolates its time embedding
FIXED_INPUT = {
    "videomae": (("image_size", "crop_size"), ("num_frames", "num_frames")),
    "vivit": (("image_size", "crop_size"), ("num_frames", "num_frames")),
    "timesformer": (("image_size", "crop_size"),),
}
# attention implementations whose every kernel has a double backward (sdpa: on the math kernel, which the exact
# gradient penalty's pass selects); None: transformers' default, one of these
DOUBLE_BACKWARD_ATTENTIONS = ("eager", "sdpa")
_NOT_KWARGS = {"self", "id2label", "label2id", "num_labels", "problem_type", "architectures", "transformers_version",
               "return_dict", "output_hidden_states", "output_attentions", "dtype", "is_encoder_decoder",
               "chunk_size_feed_forward"}


def is_hf(name: str) -> bool:
    return name.startswith(PREFIX)


def hf_names() -> list[str]:
    """The families ``list_models`` shows (``hf:<model id>`` works too)."""
    return [PREFIX + f for f in FAMILIES]


def _transformers(name: str) -> Any:
    try:
        import transformers
    except ImportError:
        raise ValueError(f"model.name {name}: HF models need the transformers package: "
                         "pip install 'albar[hf]'") from None
    return transformers


class HFVideoClassifier(nn.Module):
    """A transformers ``*ForVideoClassification`` behind albar's input convention: clips (B, C, T, H, W) in,
    logits (B, num_classes) out. Its weights are under ``hf.`` in the state dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.hf = model

    @property
    def config(self) -> Any:
        return self.hf.config

    def classification_head(self) -> tuple[nn.Module, str]:
        """(parent, attribute) of the final layer, for albar's head resizer and feature extractor."""
        return self.hf, "classifier"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected clips (B, C, T, H, W), got shape {tuple(x.shape)}")
        return self.hf(pixel_values=x.transpose(1, 2)).logits


def accepted_kwargs(name: str) -> list[str]:
    """The ``model.kwargs`` keys an ``hf:`` family takes: its config's fields, and ``attn_implementation``."""
    family = name.removeprefix(PREFIX)
    config_cls = getattr(_transformers(name), FAMILIES[family][0])
    params = inspect.signature(config_cls.__init__).parameters
    return sorted({p for p, v in params.items() if p not in _NOT_KWARGS
                   and v.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
                  | {"attn_implementation"})


def _split(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    rest = dict(kwargs)
    attn = rest.pop("attn_implementation", None)
    if attn is not None and not isinstance(attn, str):
        raise ValueError(f"model.kwargs.attn_implementation: a name such as eager or sdpa, got {attn!r}")
    return rest, attn


def check_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """ValueError naming ``model.kwargs.<key>`` when a family's config has no such field (transformers' configs
    keep unknown keys silently, so a typo would otherwise change nothing). For ``hf:<model id>`` the keys are
    checked when the config is read (:func:`hf_config`)."""
    family = name.removeprefix(PREFIX)
    if "/" in family or family not in FAMILIES:
        if "/" not in family:
            raise ValueError(f"model.name: unknown HF model family {family!r}; known: "
                             f"{', '.join(hf_names())}, or hf:<model id> such as hf:MCG-NJU/videomae-base")
        return
    accepted = accepted_kwargs(name)
    for key in kwargs:
        if key not in accepted:
            raise ValueError(f"model.kwargs.{key}: {name}'s config has no such field; accepted: {', '.join(accepted)}")


def hf_config(name: str, num_classes: int, kwargs: Mapping[str, Any]) -> tuple[Any, str | None]:
    """(transformers config with ``num_labels = num_classes``, attention implementation). For ``hf:<model id>``
    the id's config is read (downloaded once, HF's cache after)."""
    tf = _transformers(name)
    check_kwargs(name, kwargs)
    fields, attn = _split(kwargs)
    spec = name.removeprefix(PREFIX)
    try:
        if spec in FAMILIES:
            config, unused = getattr(tf, FAMILIES[spec][0])(**fields), {}
        else:
            config, unused = tf.AutoConfig.from_pretrained(spec, return_unused_kwargs=True, **fields)
    except OSError as err:  # not on the Hub, offline and not cached, a folder without config.json
        raise ValueError(f"model.name {name}: cannot read the config of {spec!r}: {err}") from err
    except Exception as err:  # a value the config refuses (type, range): only model.kwargs reach it
        if not fields:
            raise
        raise ValueError(f"model.kwargs ({', '.join(fields)}): rejected by {name}: {type(err).__name__}: "
                         f"{err}") from err
    if unused:
        raise ValueError(f"model.kwargs.{sorted(unused)[0]}: the config of {spec} has no such field")
    config.num_labels = num_classes
    return config, attn


def build_hf(name: str, num_classes: int, pretrained: bool, **kwargs: Any) -> HFVideoClassifier:
    """An ``hf:`` model with ``num_classes`` outputs. ``pretrained``: for ``hf:<model id>``, load its weights
    (the classification layer is then replaced by a new one for ``num_classes``); otherwise random init."""
    from albar.models.registry import replace_head

    auto = _transformers(name).AutoModelForVideoClassification
    config, attn = hf_config(name, num_classes, kwargs)
    spec = name.removeprefix(PREFIX)
    pretrained = pretrained and spec not in FAMILIES
    try:
        if pretrained:
            net = auto.from_pretrained(spec, config=config, attn_implementation=attn, ignore_mismatched_sizes=True)
        else:
            net = auto.from_config(config, attn_implementation=attn)
    except OSError as err:
        raise ValueError(f"model.name {name}: cannot load the pretrained weights of {spec!r}: {err}") from err
    except ValueError as err:
        if "attn_implementation" in kwargs and "attn_implementation" in str(err):
            raise ValueError(f"model.kwargs.attn_implementation={attn!r}: rejected by {name}: {err}") from err
        raise
    model = HFVideoClassifier(net)
    return replace_head(model, num_classes) if pretrained else model  # a new layer even when the sizes agree


def check_input(name: str, kwargs: Mapping[str, Any], num_frames: int, crop_size: int) -> None:
    """ValueError naming the model's config field and the data key when clips of ``num_frames`` x
    ``crop_size``^2 cannot go through the model (VideoMAE and ViViT fix both, TimeSformer the size): said
    before any data are read, not as a shape error inside transformers at the first step."""
    config, _ = hf_config(name, 2, kwargs)
    rules = FIXED_INPUT.get(getattr(config, "model_type", ""), ())
    data = {"num_frames": num_frames, "crop_size": crop_size}
    for field, key in rules:
        value = getattr(config, field, None)
        if value is not None and value != data[key]:
            where = f"model.kwargs.{field}" if field in kwargs else f"{name}'s {field}"
            raise ValueError(f"{where}={value} but data.{key}={data[key]}: {name} takes clips of exactly "
                             f"{field.replace('_', ' ')} {value}; set data.{key}={value} or model.kwargs.{field}="
                             f"{data[key]}")


def attention_of(name: str, kwargs: Mapping[str, Any]) -> str | None:
    """The attention implementation asked for in ``model.kwargs`` (None: transformers' default)."""
    return _split(kwargs)[1]
