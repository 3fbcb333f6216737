"""Running a model over a clip dataset, gathered across processes without the sampler's padding."""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader, Dataset

from albar.data.dataset import ClipDataset
from albar.data.io import ClipReadError
from albar.evaluation.metrics import Predictions


class _Tolerant(Dataset):
    """Evaluation view of a dataset: an unreadable item becomes a zero clip flagged as failed, so it is
    predicted as nothing (a NaN row: wrong) and listed, and the denominators and SCUBA/SCUFO pairs stay."""

    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset
        self._shape: torch.Size | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def _placeholder(self) -> torch.Tensor:
        if self._shape is None:
            for i in range(len(self.dataset)):
                try:
                    self._shape = self.dataset[i]["clip"].shape
                    break
                except ClipReadError:
                    continue
            else:
                raise ClipReadError(self.dataset.items[0].source, "no item of this set can be read")
        return torch.zeros(self._shape)

    def __getitem__(self, index: int) -> dict:
        try:
            return {**self.dataset[index], "failed": False, "error": ""}
        except ClipReadError as err:
            item = self.dataset.items[index]
            return {"clip": self._placeholder(), "label": item.label, "key": item.key, "index": index,
                    "failed": True, "error": err.reason}


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: ClipDataset,
    accelerator: Accelerator,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "eval",
) -> Predictions:
    """Softmax scores for every item of ``dataset`` (on every process, in dataset order).

    Items that cannot be read get a NaN row (counted wrong by every metric) and their reason in
    ``Predictions.errors``.
    """
    from tqdm import tqdm

    loader = accelerator.prepare_data_loader(
        DataLoader(_Tolerant(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    )
    was_training = model.training
    model.eval()
    scores, indices, failed = [], [], []
    errors: dict[str, str] = {}
    for batch in tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_main_process)):
        with accelerator.autocast():
            logits = model(batch["clip"])
        probs = logits.float().softmax(dim=-1)
        flags = batch["failed"].to(probs.device)
        errors.update({k: e for k, e, f in zip(batch["key"], batch["error"], batch["failed"].tolist()) if f})
        probs, idx, flags = accelerator.gather_for_metrics((probs, batch["index"].to(probs.device), flags))
        scores.append(probs.cpu())
        indices.append(idx.cpu())
        failed.append(flags.cpu())
    model.train(was_training)
    order = torch.cat(indices).numpy()
    all_scores = np.full((len(dataset), torch.cat(scores).shape[1]), np.nan)
    all_scores[order] = torch.cat(scores).numpy()
    all_scores[order[torch.cat(failed).numpy().astype(bool)]] = np.nan
    if accelerator.num_processes > 1:
        errors = {k: v for part in gather_object([errors]) for k, v in part.items()}
    return Predictions.for_items(dataset.items, all_scores, errors)
