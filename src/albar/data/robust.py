"""Training that survives bad files without hiding them.

A clip that cannot be read (corrupt, truncated, empty, missing, too short) is replaced by another item,
drawn from a seed as SlowFast does, and recorded with its file and reason in a :class:`FailureLog`. Past a
configurable fraction of failed files the run stops with an error naming them: a dataset that is mostly
broken should not train quietly on what is left.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from albar.data.dataset import ClipDataset
from albar.data.io import ClipReadError
from albar.utils import atomic_write_text


class TooManyFailures(RuntimeError):
    """More files failed than the run allows."""


class FailureLog:
    """Failures as dicts ``{key, source, reason, index, epoch}``.

    With ``path``, each record is appended at once as one JSON line (one ``write`` on an ``O_APPEND``
    file), so records made inside DataLoader worker processes reach the main process through the file;
    without it they stay in this process's memory (enough for ``num_workers=0``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            self._memory.append(entry)
            return
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        if self.path is None:
            return list(self._memory)
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def failed_sources(self, set_name: str | None = None) -> dict[str, str]:
        """Each failed file once, with its (last) reason; ``set_name``: only that set's (records without a set
        are training records)."""
        return {r["source"]: r["reason"] for r in self.records()
                if set_name is None or r.get("set", "train") == set_name}

    def write_manifest(self, path: str | Path) -> None:
        """The per-run manifest: one JSON line per failed file (first failure), written atomically."""
        first: dict[str, dict[str, Any]] = {}
        for r in self.records():
            first.setdefault(r["source"], r)
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in first.values()))


class RobustClipDataset(Dataset):
    """Wraps a :class:`ClipDataset`: a failed item is replaced by a seeded random other item.

    The replacement depends on ``(seed, epoch, index, attempt)`` only, so runs are reproducible whatever
    the number of workers. ``max_failure_fraction``: the share of distinct failed files (of the dataset's
    size) above which :class:`TooManyFailures` is raised; ``max_retries``: replacements tried per item.
    Samples carry ``replaced`` (the key of the item that failed, or ``""``).
    """

    def __init__(
        self,
        dataset: ClipDataset,
        max_failure_fraction: float = 0.05,
        max_retries: int = 10,
        seed: int = 0,
        log: FailureLog | str | Path | None = None,
    ) -> None:
        if not 0.0 <= max_failure_fraction < 1.0:
            raise ValueError(f"max_failure_fraction must be in [0, 1), got {max_failure_fraction}")
        self.dataset = dataset
        self.max_failure_fraction, self.max_retries, self.seed = max_failure_fraction, max_retries, seed
        self.log = log if isinstance(log, FailureLog) else FailureLog(log)
        self.epoch = 0

    @property
    def items(self):
        return self.dataset.items

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    @property
    def failure_count(self) -> int:
        """Distinct training files that failed so far (as seen through the log; records of another set, such
        as the held-out validation's ``"set": "val"``, do not count against the training's allowance)."""
        return len(self.log.failed_sources("train"))

    def __getitem__(self, index: int) -> dict[str, Any]:
        tried = index
        for attempt in range(self.max_retries + 1):
            try:
                sample = self.dataset[tried]
            except ClipReadError as err:
                self._failed(tried, err)
                tried = int(np.random.default_rng([self.seed, self.epoch, index, attempt]).integers(len(self)))
                continue
            sample["replaced"] = "" if tried == index else self.dataset.items[index].key
            return sample
        raise TooManyFailures(
            f"item {index} ({self.dataset.items[index].source}) and {self.max_retries} replacements all failed; "
            f"failures so far: {self._summary()}"
        )

    def _failed(self, index: int, err: ClipReadError) -> None:
        item = self.dataset.items[index]
        self.log.record({"key": item.key, "source": str(item.source), "reason": err.reason,
                         "index": index, "epoch": self.epoch, "set": "train"})
        count = self.failure_count
        if count > self.max_failure_fraction * len(self):
            raise TooManyFailures(
                f"{count} of {len(self)} files failed ({100 * count / len(self):.1f}% > "
                f"{100 * self.max_failure_fraction:.1f}% allowed): {self._summary()}"
            )

    def _summary(self, limit: int = 5) -> str:
        failed = self.log.failed_sources("train")
        shown = "; ".join(f"{s}: {r}" for s, r in list(failed.items())[:limit])
        where = f" (full list: {self.log.path})" if self.log.path else ""
        return shown + (f" and {len(failed) - limit} more" if len(failed) > limit else "") + where
