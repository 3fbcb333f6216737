"""Running a model over a clip dataset, gathered across processes without the sampler's padding."""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from albar.data.dataset import ClipDataset
from albar.evaluation.metrics import Predictions


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
    """Softmax scores for every item of ``dataset`` (on every process, in dataset order)."""
    from tqdm import tqdm

    loader = accelerator.prepare_data_loader(
        DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    )
    was_training = model.training
    model.eval()
    scores, indices = [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_main_process)):
        with accelerator.autocast():
            logits = model(batch["clip"])
        probs = logits.float().softmax(dim=-1)
        probs, idx = accelerator.gather_for_metrics((probs, batch["index"]))
        scores.append(probs.cpu())
        indices.append(idx.cpu())
    model.train(was_training)
    order = torch.cat(indices).numpy()
    all_scores = np.full((len(dataset), torch.cat(scores).shape[1]), np.nan)
    all_scores[order] = torch.cat(scores).numpy()
    items = dataset.items
    conflict = [it.extra.get("conflict_label") for it in items]
    return Predictions(
        keys=[it.key for it in items],
        labels=np.array([it.label for it in items]),
        scores=all_scores,
        conflict_labels=np.array(conflict) if all(c is not None for c in conflict) else None,
    )
