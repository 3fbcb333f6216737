"""The one inference loop: a model over a clip dataset, sharded across processes and gathered in dataset order.

Validation, the bias suite, multi-view testing, ``albar predict`` and ``albar extract-features`` all run through
:func:`run_model`. One bad-file policy: an item that cannot be read (``ClipReadError``) becomes a placeholder
that is predicted as nothing (a NaN row, wrong for every metric) and named with its reason; the denominators and
the SCUBA/SCUFO pairs stay. A dataset item is ``{"clip": (C, T, H, W) or (V, C, T, H, W), ...}``: with V views
(multi-view testing) the per-view outputs are averaged per item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from albar.data.dataset import ClipDataset
from albar.data.io import ClipReadError
from albar.data.views import ViewDataset
from albar.evaluation.metrics import Predictions

EvalDataset = ClipDataset | ViewDataset


class NothingReadable(ClipReadError):
    """No item of a set can be read; ``reasons`` maps each item's index to why."""

    def __init__(self, source: object, reasons: dict[int, str]) -> None:
        super().__init__(source, "no item of this set can be read")
        self.reasons = reasons


class Tolerant(Dataset):
    """The bad-file policy of evaluation: an unreadable item becomes a zero clip flagged as failed, with its
    reason (the first readable item gives the shape; a set with none raises :class:`NothingReadable`)."""

    def __init__(self, dataset: EvalDataset) -> None:
        self.dataset = dataset
        self._shape: torch.Size | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def _placeholder(self) -> Tensor:
        if self._shape is None:
            reasons: dict[int, str] = {}
            for i in range(len(self.dataset)):
                try:
                    self._shape = self.dataset[i]["clip"].shape
                    break
                except ClipReadError as err:
                    reasons[i] = err.reason
            else:
                raise NothingReadable(self.dataset.items[0].source, reasons)
        return torch.zeros(self._shape)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset.items[index]
        try:
            clip, failed, error = self.dataset[index]["clip"], False, ""
        except ClipReadError as err:
            clip, failed, error = self._placeholder(), True, err.reason
        return {"clip": clip, "label": item.label, "key": item.key, "index": index, "failed": failed, "error": error}


@dataclass
class Outputs:
    """One row per dataset item, in dataset order (NaN rows for the failed ones), and the failures' reasons."""

    rows: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block, then back to the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def probabilities(logits: Tensor) -> Tensor:
    """Per-view class probabilities (averaged over views: mmaction2's ``average_clips='prob'``)."""
    return logits.float().softmax(dim=-1)


@torch.no_grad()
def run_model(
    fn: Callable[[Tensor], Tensor], dataset: EvalDataset, accelerator: Accelerator | None = None,
    batch_size: int = 32, num_workers: int = 0, device: torch.device | str | None = None, progress: bool = False,
    desc: str = "eval", then: Callable[[Tensor], Tensor] | None = None,
) -> Outputs:
    """``fn`` (clips (N, C, T, H, W) -> (N, K), under the accelerator's autocast), then ``then`` (in full
    precision), over every item of ``dataset``; an item's views averaged. With ``accelerator`` the items are
    sharded across its processes and every process gets all rows; without, it runs here on ``device``.
    ``batch_size`` counts clips: a batch holds batch_size // V items of V views."""
    views = dataset.num_views
    loader = DataLoader(Tolerant(dataset), batch_size=max(1, batch_size // views), shuffle=False,
                        num_workers=num_workers)
    if accelerator is not None:
        loader, device = accelerator.prepare_data_loader(loader), accelerator.device
    main = accelerator is None or accelerator.is_main_process
    outputs, indices, failed = [], [], []
    errors: dict[str, str] = {}
    for batch in tqdm(loader, desc=desc, leave=False, disable=not (progress and main)):
        clips = batch["clip"].to(device)
        if views > 1:
            clips = clips.flatten(0, 1)  # (B, V, C, T, H, W) -> (B * V, C, T, H, W), item-major
        with accelerator.autocast() if accelerator is not None else nullcontext():
            out = fn(clips)
        out = then(out) if then is not None else out.float()
        if views > 1:
            out = out.view(-1, views, out.shape[-1]).mean(dim=1)
        flags = batch["failed"].to(out.device)
        errors.update({k: e for k, e, f in zip(batch["key"], batch["error"], batch["failed"].tolist()) if f})
        idx = batch["index"].to(out.device)
        if accelerator is not None:
            out, idx, flags = accelerator.gather_for_metrics((out, idx, flags))
        outputs.append(out.cpu())
        indices.append(idx.cpu())
        failed.append(flags.cpu())
    order = torch.cat(indices).numpy()
    rows = np.full((len(dataset), torch.cat(outputs).shape[1]), np.nan)
    rows[order] = torch.cat(outputs).double().numpy()
    rows[order[torch.cat(failed).numpy().astype(bool)]] = np.nan
    if accelerator is not None and accelerator.num_processes > 1:
        errors = {k: v for part in gather_object([errors]) for k, v in part.items()}
    return Outputs(rows, errors)


def predict(
    model: nn.Module, dataset: EvalDataset, accelerator: Accelerator | None = None, batch_size: int = 32,
    num_workers: int = 0, progress: bool = False, desc: str = "eval", device: torch.device | str = "cpu",
) -> Predictions:
    """Softmax scores for every item of ``dataset`` (one clip, or the mean of its views' softmaxes), in dataset
    order, on every process. Items that cannot be read get a NaN row (counted wrong by every metric) and their
    reason in ``Predictions.errors``. ``device`` is used without ``accelerator`` only."""
    with evaluating(model):
        out = run_model(model, dataset, accelerator, batch_size, num_workers, device, progress, desc,
                        then=probabilities)
    return Predictions.for_items(dataset.items, out.rows, out.errors)
