"""Clip lists in mmaction2's formats: videos ``path label`` and rawframes ``dir num_frames label``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from albar.utils import atomic_write_text


@dataclass(frozen=True)
class ClipItem:
    """One labelled clip source. ``key`` pairs items across sets (a SCUBA clip and its SCUFO frame)."""

    source: Path
    label: int
    key: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def default_key(relative: str) -> str:
    """The key of a list entry: its relative path without the extension."""
    path = Path(relative)
    return str(path.with_suffix("")) if path.suffix else str(path)


def read_list(
    path: str | Path, root: str | Path | None = None, key: Literal["path", "stem"] = "path",
) -> list[ClipItem]:
    """Read an mmaction2 list: ``path label`` (videos) or ``path num_frames label`` (rawframes).

    Labels are 0-based. Relative paths resolve against ``root`` (default: the list's folder). Further
    integer columns after the label are kept in ``extra['labels']`` (a ConflFG list names the pasted
    actor's class there as ``conflict_label``). ``key``: ``path`` (relative path without extension) or
    ``stem`` (file name without extension: what pairs a SCUBA zip with its SCUFO image).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip list not found: {path}")
    base = Path(root) if root is not None else path.parent
    items: list[ClipItem] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        rel, rest = parts[0], parts[1:]
        try:
            numbers = [int(x) for x in rest]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: labels must be integers, got {line!r}") from None
        if not numbers:
            raise ValueError(f"{path}:{lineno}: no label in {line!r}")
        source = base / rel
        extra: dict[str, Any] = {}
        # rawframes: `dir num_frames label`; a frame folder has no extension (even when it is missing)
        if len(numbers) >= 2 and (source.is_dir() or not Path(rel).suffix):
            extra["num_frames"] = numbers[0]
            numbers = numbers[1:]
        label = numbers[0]
        if label < 0:
            raise ValueError(f"{path}:{lineno}: label {label} is negative (labels are 0-based)")
        if len(numbers) > 1:
            extra["conflict_label"] = numbers[1]
        item_key = default_key(rel) if key == "path" else Path(rel).stem
        items.append(ClipItem(source=source, label=label, key=item_key, extra=extra))
    return items


def write_list(path: str | Path, items: list[tuple[str, int] | tuple[str, int, int]]) -> None:
    """Write ``path label [conflict_label]`` lines, atomically."""
    atomic_write_text(path, "".join(" ".join(str(x) for x in row) + "\n" for row in items))
