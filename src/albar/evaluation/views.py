"""Multi-view testing: softmax averaged over the views of each video, failed videos kept as NaN rows."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from albar.data.views import ViewDataset
from albar.evaluation.metrics import Predictions


def average_view_scores(logits: torch.Tensor, num_views: int) -> torch.Tensor:
    """(B * V, K) logits of V views per item -> (B, K) mean of the per-view softmax (mmaction2's
    ``average_clips='prob'``)."""
    return logits.float().softmax(dim=-1).view(-1, num_views, logits.shape[-1]).mean(dim=1)


@torch.no_grad()
def predict_views(
    model: nn.Module,
    dataset: ViewDataset,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    progress: bool = False,
) -> Predictions:
    """Scores of every item of ``dataset`` under its view (``dataset.view.name``), in dataset order.

    An item whose file could not be read gets a NaN row (counted wrong by the metrics) and its reason in
    ``errors[key]``: the denominator and the SCUBA/SCUFO pairs stay intact. ``num_classes`` is needed
    only if every item fails.
    """
    from tqdm import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    v = dataset.view.num_views
    rows: dict[int, np.ndarray] = {}
    errors: dict[str, str] = {}
    try:
        for batch in tqdm(loader, desc=f"eval {dataset.view.name}", leave=False, disable=not progress):
            ok = torch.tensor([e == "" for e in batch["error"]])
            for key, err in zip(batch["key"], batch["error"]):
                if err:
                    errors[key] = err
            if ok.any():
                clips = batch["clips"][ok].flatten(0, 1).to(device)
                probs = average_view_scores(model(clips), v).cpu().numpy()
                for i, p in zip(batch["index"][ok].tolist(), probs):
                    rows[i] = p
    finally:
        model.train(was_training)
    k = num_classes or (len(next(iter(rows.values()))) if rows else None)
    if k is None:
        raise ValueError(f"every one of {len(dataset)} items failed; pass num_classes to get NaN rows: {errors}")
    scores = np.full((len(dataset), k), np.nan)
    for i, p in rows.items():
        scores[i] = p
    return Predictions.for_items(dataset.items, scores, errors)
