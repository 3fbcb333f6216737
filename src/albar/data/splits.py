"""A held-out validation split cut from the training list: model selection never sees the test split."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from albar.data.lists import ClipItem


def holdout_split(
    items: Sequence[ClipItem], fraction: float = 0.2, seed: int = 0,
) -> tuple[list[ClipItem], list[ClipItem]]:
    """``(train, val)``: per class, ``round(fraction * n)`` items go to validation (at least one when a
    class has two or more, never all of them), chosen by ``seed``.

    Deterministic and independent of the input order (items are ranked by key within their class), so
    the same training list and seed always give the same split. Keys must be unique.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {dup!r}: a held-out split needs unique keys")
    by_class: dict[int, list[ClipItem]] = defaultdict(list)
    for it in items:
        by_class[it.label].append(it)
    val_keys: set[str] = set()
    for label, group in by_class.items():
        group = sorted(group, key=lambda it: it.key)
        n = len(group)
        k = min(max(int(round(fraction * n)), 1 if n >= 2 else 0), n - 1)
        rng = np.random.default_rng([seed, label % 2**32, zlib.crc32(b"holdout")])
        val_keys.update(group[i].key for i in rng.permutation(n)[:k])
    train = [it for it in items if it.key not in val_keys]
    val = [it for it in items if it.key in val_keys]
    return train, val
