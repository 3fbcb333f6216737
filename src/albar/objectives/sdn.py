"""SDN (Choi et al., NeurIPS 2019, "Why Can't I Dance in the Mall?"): scene debiasing by two extra terms.

    L = CE(F(x), y)
        + w_scene * CE_scene(H(R(f(x))), s)          # scene-adversarial head behind a gradient reversal R
        + w_mask * sum_c p_c log p_c,  p = softmax(F(x with the actor masked out))   # human-mask confusion

- f(x) is the pooled feature that F's classification layer reads; H an MLP predicting the video's scene
  pseudo-label s (hard class or soft distribution, read from a file: the paper uses a Places365 classifier;
  ``albar scene-labels`` runs any torchvision image classifier). R is the identity forward and multiplies the
  gradient by -``reversal`` backward: H learns to name the scene, the backbone learns features it cannot.
- The confusion term maximises the entropy of F's prediction on the clip whose actor pixels are replaced by
  the frame's mean colour: with the actor gone, the scene alone must not give the action away. Clips
  without an actor (empty mask) are left out of it.

Read against the release (vt-vl-lab/SDN, PyTorch 0.4; read, not copied). Differences, and why:

- One optimiser step per batch with all terms; the release takes a second optimiser step for the mask term
  on a second loader's batch. One step keeps the step function, the schedule and resume what they are for
  every objective here.
- The confusion term acts on the action classifier F itself, as the paper writes it; the release's default
  (``is_mask_adv``) routes it through a second MLP head behind its own gradient reversal.
- The head's hidden layers use LayerNorm instead of BatchNorm1d (batch-size independent; no cross-rank
  statistics), and the masked clip is filled with each frame's mean colour per channel in the normalised
  space (the release fills boxes with the frame's mean pixel before normalising: the same colour).
- The scene term is a weighted loss (``w_scene``) behind a reversal of strength ``reversal``; the release
  fixes the loss weight to 1 and tunes the reversal (``alpha``). w_scene * reversal is what reaches the
  backbone; w_scene alone sets how fast the head learns.
- Warm-up: the release first trains its new layers alone (backbone frozen) for ``warm_up_epochs``; a backbone
  trained from scratch cannot wait frozen, so here the reversal ramps in from 0 over ``warmup_epochs`` while the
  head learns at full weight from the start.

On the synthetic benchmark the scene (background style) names the class in 95% of the clips, so a head that
reads motion features predicts the scene almost as well as the class: at full reversal (1, the release's
alpha) the backbone is pushed to forget the motion too, and training degrades (seed 0, 6 epochs, scene term
alone: IID 68 without warm-up, 94.5 with 2 warm-up epochs but from its first epoch only; 96.3 at reversal 0.1).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from albar.data.lists import read_text_lines
from albar.objectives.albar import negative_entropy
from albar.objectives.base import Objective, StepInput
from albar.objectives.registry import register_objective

# ------------------------------------------------------------------------------------- gradient reversal


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    """Identity forward; backward multiplies the gradient by ``-scale`` (Ganin & Lempitsky's reversal layer)."""
    return _Reverse.apply(x, scale)


class SceneHead(nn.Module):
    """Scene classifier on the pooled feature, behind a gradient reversal: ``hidden`` blocks of Linear, LayerNorm,
    ReLU (width = the feature's), then Linear to ``num_scenes`` (SDN: one hidden block)."""

    def __init__(self, in_features: int, num_scenes: int, hidden: int = 1, reversal: float = 1.0) -> None:
        super().__init__()
        if num_scenes < 2:
            raise ValueError(f"the scene head needs at least 2 scene classes, got {num_scenes}")
        layers: list[nn.Module] = []
        for _ in range(hidden):
            layers += [nn.Linear(in_features, in_features), nn.LayerNorm(in_features), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(in_features, num_scenes))
        self.mlp = nn.Sequential(*layers)
        self.reversal = reversal

    def forward(self, features: Tensor, reversal: float | None = None) -> Tensor:
        """Scene logits; ``reversal`` (default: the head's) scales the gradient the features get back."""
        return self.mlp(grad_reverse(features, self.reversal if reversal is None else reversal))


# ------------------------------------------------------------------------------------------ features


def classifier_layer(model: nn.Module) -> nn.Module:
    """The final classification layer of a registry model (unwrapped from DDP/compile wrappers)."""
    from albar.models.registry import _head_path

    inner = model
    while hasattr(inner, "module") and isinstance(inner.module, nn.Module):
        inner = inner.module
    inner = getattr(inner, "_orig_mod", inner)
    parent, attr = _head_path(inner)
    return getattr(parent, attr)


def feature_dim(model: nn.Module) -> int:
    """Width of the pooled feature the classification layer reads."""
    layer = classifier_layer(model)
    for name in ("in_features", "in_channels"):
        if isinstance(getattr(layer, name, None), int):
            return getattr(layer, name)
    raise ValueError(f"cannot tell the feature width of {type(layer).__name__}")


def logits_and_features(model: Callable[[Tensor], Tensor], clip: Tensor, layer: nn.Module) -> tuple[Tensor, Tensor]:
    """``model(clip)`` and the (B, D) input of its classification ``layer`` (spatio-temporally averaged when the
    layer is a convolution), caught by a forward pre-hook: one forward, any registry model."""
    seen: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        logits = model(clip)
    finally:
        handle.remove()
    if len(seen) != 1:
        raise RuntimeError(f"the classification layer ran {len(seen)} times in one forward; SDN needs it once")
    feats = seen[0]
    return logits, feats.flatten(2).mean(-1) if feats.dim() > 2 else feats


# ------------------------------------------------------------------------------------------ terms


def scene_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Batch-mean CE against hard scene classes (B,) or soft scene distributions (B, S)."""
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(f"soft scene targets must be (B, S) = {tuple(logits.shape)}, got {tuple(target.shape)}")
        logp = F.log_softmax(logits.float(), dim=-1)
        return -(target.to(logp) * logp).sum(-1).mean()
    return F.cross_entropy(logits.float(), target.to(logits.device))


def mask_actor(clip: Tensor, actor_mask: Tensor, union: bool = False) -> Tensor:
    """``clip`` (B, C, T, H, W) with the actor pixels (``actor_mask`` (B, T, H, W) > 0.5) replaced by their frame's
    mean colour (per channel): the scene without the person, as SDN's masked clips. ``union``: mask, in every
    frame, every pixel the actor covers in ANY frame (a hole that does not move: no motion left to see)."""
    if actor_mask.shape != (clip.shape[0], *clip.shape[2:]):
        raise ValueError(f"actor masks must be (B, T, H, W) = {(clip.shape[0], *clip.shape[2:])}, "
                         f"got {tuple(actor_mask.shape)}")
    m = (actor_mask.to(clip.device) > 0.5)[:, None]
    if union:
        m = m.any(dim=2, keepdim=True).expand_as(m)
    fill = clip.mean(dim=(-2, -1), keepdim=True).expand_as(clip)
    return torch.where(m, fill, clip)


@dataclass
class SDNTerms:
    """The total loss and its terms (before weighting), as :class:`~albar.objectives.ALBARTerms` for ALBAR."""

    total: Tensor
    ce: Tensor
    logits: Tensor
    scene_ce: Tensor | None = None
    scene_top1: Tensor | None = None
    mask_neg_entropy: Tensor | None = None

    def scalars(self) -> dict[str, float]:
        out = {"loss": self.total, "ce": self.ce, "scene_ce": self.scene_ce, "scene_top1": self.scene_top1,
               "mask_neg_entropy": self.mask_neg_entropy}
        return {k: float(v.detach()) for k, v in out.items() if v is not None}


def sdn_loss(
    model: Callable[[Tensor], Tensor],
    clip: Tensor,
    target: Tensor,
    head: SceneHead | None = None,
    scene_target: Tensor | None = None,
    actor_mask: Tensor | None = None,
    w_scene: float = 1.0,
    w_mask: float = 1.0,
    layer: nn.Module | None = None,
    motion_loss: Callable[[Tensor], Tensor] | None = None,
    mask_union: bool = False,
    reversal: float | None = None,
) -> SDNTerms:
    """SDN's loss for one batch; call ``.total.backward()``.

    ``head``/``scene_target`` are needed when ``w_scene`` != 0, ``actor_mask`` (B, T, H, W) when ``w_mask`` != 0.
    ``layer``: the model's classification layer (found with :func:`classifier_layer` if not given).
    ``motion_loss`` replaces CE(F(x), y) (a label-mixing batch method's loss); receives the logits.
    ``mask_union``: the confusion term masks the actor's union over the clip's frames (see :func:`mask_actor`).
    ``reversal``: the gradient reversal's strength for this step (default: the head's own).
    """
    use_scene, use_mask = w_scene != 0, w_mask != 0
    if use_scene:
        if head is None or scene_target is None:
            raise ValueError("SDN's scene term (w_scene != 0) needs the scene head and the batch's scene labels")
        logits, feats = logits_and_features(model, clip, layer if layer is not None else classifier_layer(model))
    else:
        logits = model(clip)
    ce = motion_loss(logits) if motion_loss is not None else F.cross_entropy(logits, target)
    total = ce
    terms = SDNTerms(total=ce, ce=ce, logits=logits)
    if use_scene:
        assert head is not None and scene_target is not None
        scene_logits = head(feats, reversal)
        terms.scene_ce = scene_cross_entropy(scene_logits, scene_target)
        hard = scene_target.argmax(-1) if scene_target.is_floating_point() else scene_target
        terms.scene_top1 = 100.0 * (scene_logits.argmax(-1) == hard.to(scene_logits.device)).float().mean()
        total = total + w_scene * terms.scene_ce
    if use_mask:
        if actor_mask is None:
            raise ValueError("SDN's mask-confusion term (w_mask != 0) needs the batch's actor masks")
        valid = (actor_mask.flatten(1).amax(1) > 0.5).to(clip.device)
        if bool(valid.any()):  # clips without an actor would only repeat the unmasked clip: left out
            terms.mask_neg_entropy = negative_entropy(model(mask_actor(clip[valid], actor_mask.to(clip.device)[valid],
                                                                               mask_union)))
        else:
            terms.mask_neg_entropy = logits.sum() * 0.0
        total = total + w_mask * terms.mask_neg_entropy
    terms.total = total
    return terms


# ------------------------------------------------------------------------------------------ scene labels


@dataclass
class SceneLabels:
    """Per-video scene pseudo-labels: ``hard`` (key -> class index) or soft (key -> distribution over
    ``names``)."""

    path: Path
    names: list[str]
    hard: dict[str, int]
    soft: dict[str, list[float]]

    @property
    def num_scenes(self) -> int:
        return len(self.names)

    @property
    def is_soft(self) -> bool:
        return bool(self.soft)

    def keys(self) -> set[str]:
        return set(self.soft or self.hard)

    def targets(self, keys: Sequence[str]) -> Tensor:
        """(B,) long or (B, S) float targets of a batch's keys; KeyError naming the key and the file."""
        table = self.soft if self.soft else self.hard
        missing = [k for k in keys if k not in table]
        if missing:
            raise KeyError(f"{self.path}: no scene label for {missing[0]!r}"
                           + (f" (and {len(missing) - 1} more keys of this batch)" if len(missing) > 1 else ""))
        if self.soft:
            return torch.tensor([self.soft[k] for k in keys], dtype=torch.float32)
        return torch.tensor([self.hard[k] for k in keys], dtype=torch.long)


SOFT_TOLERANCE = 0.01  # a soft row must sum to 1 within this: logits or percentages would train on nonsense


def read_scene_labels(path: str | Path, num_scenes: int | None = None) -> SceneLabels:
    """Scene labels from a CSV with a header: ``key,scene`` (hard: a 0-based class index per video), or
    ``key,<scene 0>,<scene 1>,...`` (soft: one probability per scene, each row summing to 1), as
    ``albar scene-labels`` writes it. ``num_scenes`` (hard labels): the number of scene classes (default: the
    largest index + 1). Every problem is a ValueError naming the file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"scene labels not found: {path}")
    rows = list(csv.reader(io.StringIO("\n".join(read_text_lines(path)))))
    if not rows or not rows[0] or rows[0][0].strip() != "key" or len(rows[0]) < 2:
        raise ValueError(f"{path}:1: the header must be `key,scene` (hard labels) or `key,<scene names...>` (soft), "
                         f"got {rows[0] if rows else 'an empty file'}")
    header = [h.strip() for h in rows[0]]
    hard_form = header == ["key", "scene"]
    hard: dict[str, int] = {}
    soft: dict[str, list[float]] = {}
    for lineno, row in enumerate(rows[1:], 2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}:{lineno}: {len(row)} columns, the header has {len(header)}")
        key = row[0].strip()
        if key in hard or key in soft:
            raise ValueError(f"{path}:{lineno}: key {key!r} appears twice")
        try:
            values = [float(v) for v in row[1:]]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: values must be numbers, got {row[1:]}") from None
        if hard_form:
            v = values[0]
            if not v.is_integer() or v < 0:
                raise ValueError(f"{path}:{lineno}: scene must be a 0-based class index, got {row[1]!r}")
            hard[key] = int(v)
        else:
            total = sum(values)
            if any(not math.isfinite(v) or v < 0 for v in values) or abs(total - 1) > SOFT_TOLERANCE:
                raise ValueError(f"{path}:{lineno}: soft scene labels must be probabilities summing to 1, got sum "
                                 f"{total:.4g} (logits or percentages?)")
            soft[key] = [v / total for v in values]
    if not hard and not soft:
        raise ValueError(f"{path}: no scene labels (only a header)")
    if hard_form:
        top = max(hard.values())
        count = num_scenes if num_scenes is not None else top + 1
        if top >= count:
            raise ValueError(f"{path}: scene index {top} but num_scenes is {count}")
        names = [str(i) for i in range(count)]
    else:
        names = header[1:]
        if num_scenes is not None and num_scenes != len(names):
            raise ValueError(f"{path}: {len(names)} scene columns but num_scenes is {num_scenes}")
    if len(names) < 2:
        raise ValueError(f"{path}: scene labels need at least 2 scene classes, got {len(names)}")
    return SceneLabels(path=path, names=names, hard=hard, soft=soft)


def check_scene_coverage(labels: SceneLabels, keys: Sequence[str], limit: int = 3) -> None:
    """Every training key must have a scene label: a ValueError naming the file and the first missing keys."""
    have = labels.keys()
    missing = [k for k in keys if k not in have]
    if missing:
        shown = ", ".join(repr(k) for k in missing[:limit])
        raise ValueError(f"{labels.path}: no scene label for {len(missing)} of {len(keys)} training items ({shown}"
                         f"{' ...' if len(missing) > limit else ''}); labels are looked up by the item key")


class SDNLoss(nn.Module):
    """SDN's objective with its weights, scene head and scene labels fixed; see :func:`sdn_loss`.

    A module with parameters (the scene head): whoever trains it must optimise and checkpoint them with the
    model's.
    """

    def __init__(self, in_features: int, scene_labels: SceneLabels, w_scene: float = 1.0, w_mask: float = 1.0,
                 reversal: float = 1.0, hidden: int = 1, mask_union: bool = False) -> None:
        super().__init__()
        self.labels = scene_labels
        self.head = SceneHead(in_features, scene_labels.num_scenes, hidden, reversal)
        self.w_scene, self.w_mask, self.mask_union = w_scene, w_mask, mask_union

    def forward(self, model: Callable[[Tensor], Tensor], clip: Tensor, target: Tensor, keys: Sequence[str],
                actor_mask: Tensor | None = None, motion_loss: Callable[[Tensor], Tensor] | None = None,
                weight_scale: float = 1.0, layer: nn.Module | None = None, reversal_scale: float = 1.0) -> SDNTerms:
        """``keys``: the batch's item keys (their scene labels); ``weight_scale`` multiplies both weights,
        ``reversal_scale`` the gradient reversal (the head itself learns at full weight)."""
        scene = self.labels.targets(keys).to(clip.device) if self.w_scene else None
        return sdn_loss(model, clip, target, self.head, scene, actor_mask, weight_scale * self.w_scene,
                        weight_scale * self.w_mask, layer, motion_loss, self.mask_union,
                        reversal_scale * self.head.reversal)

    def extra_repr(self) -> str:
        return (f"w_scene={self.w_scene}, w_mask={self.w_mask}, reversal={self.head.reversal}, "
                f"scenes={self.labels.num_scenes} ({'soft' if self.labels.is_soft else 'hard'}, {self.labels.path})")


# ------------------------------------------------------------------------------------------ registration


class SDNParams(BaseModel):
    """``objective: {name: sdn, w_scene: 1, w_mask: 1, scene_labels: <csv>, masks: <folder or boxes CSV>}``.

    ``scene_labels``/``masks`` unset on the synthetic benchmark: its background style per clip and its exact
    actor masks. ``w_mask: 0`` needs no masks (scene-adversarial SDN only); ``w_scene: 0`` no scene labels.
    """

    model_config = ConfigDict(extra="forbid")
    w_scene: float = Field(default=1.0, ge=0)  # weight of the scene CE (head and, reversed, backbone)
    w_mask: float = Field(default=1.0, ge=0)  # weight of the human-mask confusion (negative entropy)
    reversal: float = Field(default=1.0, gt=0)  # gradient-reversal strength (SDN's alpha)
    # the reversal ramps in linearly over these epochs while the head learns at full weight: SDN trains its new
    # layers alone first (warm-up), which a backbone trained from scratch cannot afford; 0: full from the start
    warmup_epochs: float = Field(default=2.0, ge=0)
    hidden: int = Field(default=1, ge=0)  # hidden layers of the scene MLP (SDN: 1)
    scene_labels: Path | None = None
    num_scenes: int | None = Field(default=None, ge=2)  # hard labels: number of scene classes (default max + 1)
    masks: Path | None = None
    first_index: int = Field(default=1, ge=0)  # number of a video's first frame in mask names / box rows
    # true: the confusion term masks the actor's union over the clip (a hole that stays still) instead of each
    # frame's actor (SDN: a hole that moves with the actor, and so still shows its motion)
    mask_union: bool = False


def resolve_scene_labels(path: Path | None, cfg: Any) -> Path:
    """``path``, or the synthetic benchmark's scene labels (written beside the clips on first use)."""
    if path is not None:
        return Path(path).expanduser()
    data = getattr(cfg, "data", None)
    if data is not None and data.source == "synthetic" and data.root is not None:
        from albar.synthetic.annotations import ensure_annotations

        return ensure_annotations(data.root, progress=False)[1]
    raise ValueError("objective.scene_labels: SDN needs per-video scene labels (CSV key,scene or key,<scene "
                     "names...>; `albar scene-labels` writes them); only the synthetic benchmark supplies its own")


@register_objective("sdn", params=SDNParams)
class SDN(Objective):
    """SDN as a registered objective (see the module docstring). Built with the run's ``model`` (the feature
    width of the scene head), ``config`` (the TrainConfig: synthetic defaults) and ``train_items`` (every key
    must have a scene label). :meth:`prepare_train_set` (the run's hook) adds the actor masks to the training
    samples when ``w_mask`` > 0; the step reads them, and the item keys, from the batch's ``extras``."""

    per_sample_inputs = True  # the actor-masked clips go through the model beside the clips

    def __init__(self, p: SDNParams, model: nn.Module | None = None, config: Any = None,
                 train_items: Sequence[Any] | None = None) -> None:
        super().__init__()
        if model is None:
            raise ValueError("objective sdn: its scene head is sized on the model's feature; build it with model=")
        self.p = p
        self.layer = [classifier_layer(model)]  # a list: not a submodule of the objective
        self.loss: SDNLoss | None = None
        if p.w_scene:
            labels = read_scene_labels(resolve_scene_labels(p.scene_labels, config), p.num_scenes)
            if train_items is not None:
                check_scene_coverage(labels, [it.key for it in train_items])
            self.loss = SDNLoss(feature_dim(model), labels, p.w_scene, p.w_mask, p.reversal, p.hidden, p.mask_union)

    @staticmethod
    def prepare_train_set(p: SDNParams, config: Any, dataset: Any) -> Any:
        """The training set with actor masks in its samples (nothing to add when ``w_mask`` is 0)."""
        if not p.w_mask:
            return dataset
        from albar.methods.actorcutmix import masks_for_training

        return masks_for_training(p.masks, p.first_index, config, "objective", dataset)

    def step_loss(self, model: Callable[[Tensor], Tensor], batch: StepInput) -> SDNTerms:
        extras = getattr(batch, "extras", None) or {}
        mask = None
        if self.p.w_mask:
            from albar.methods.actorcutmix import batch_masks

            mask = batch_masks(extras, batch.clip, "objective sdn")
        if self.loss is None:
            return sdn_loss(model, batch.clip, batch.labels, None, None, mask, 0.0, self.p.w_mask, self.layer[0],
                            batch.motion_loss, self.p.mask_union)
        keys = extras.get("key")
        if keys is None:
            raise ValueError("objective sdn needs the batch's item keys (batch['key']) to look up scene labels")
        return self.loss(model, batch.clip, batch.labels, keys, mask, batch.motion_loss, layer=self.layer[0],
                         reversal_scale=self.reversal_scale(batch.step, batch.steps_per_epoch))

    def reversal_scale(self, step: int | None, steps_per_epoch: int | None) -> float:
        """0 -> 1 over ``warmup_epochs`` of optimiser steps (1 with no schedule, ``step`` None)."""
        if step is None or not steps_per_epoch or not self.p.warmup_epochs:
            return 1.0
        return min(1.0, step / (self.p.warmup_epochs * steps_per_epoch))
