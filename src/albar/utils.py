"""Small helpers shared across the package: atomic writes and seeding."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash or full disk mid-write leaves the previous ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual permissions
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def parallel_map(
    fn: Callable[[Any], Any], jobs: list, workers: int = 1, desc: str = "", unit: str = "it", progress: bool = True,
) -> list:
    """``[fn(job) for job in jobs]`` in ``workers`` processes, in order, with a progress bar.

    Processes are forked where the platform can (state set before the call, such as a module-level context,
    is inherited, and scripts need no ``__main__`` guard); ``fn`` must be a module-level function.
    """
    from multiprocessing import get_all_start_methods, get_context

    from tqdm import tqdm

    out = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            method = "fork" if "fork" in get_all_start_methods() else "spawn"
            chunk = max(1, min(32, len(jobs) // (4 * workers)))
            with get_context(method).Pool(workers) as pool:
                for r in pool.imap(fn, jobs, chunksize=chunk):
                    out.append(r)
                    bar.update()
        else:
            for job in jobs:
                out.append(fn(job))
                bar.update()
    return out


def torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU; errors name the file and what it should be."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling raises many types
        raise ValueError(f"cannot read {what} {path}: {err}") from err


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
