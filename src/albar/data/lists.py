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


def read_text_lines(path: Path) -> list[str]:
    """The lines of a text list (split, CSV), decoded as UTF-8 with or without a BOM; CRLF or LF.

    A BOM left in place would glue itself to the first item (its key then matches nothing, silently), and a
    list saved in another encoding must fail naming the file and line, not with a bare UnicodeDecodeError.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        offset = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        lineno = data.count(b"\n", 0, offset) + 1
        bad = data[offset:offset + max(1, err.end - err.start)]
        line_start = data.rfind(b"\n", 0, offset) + 1
        line_end = data.find(b"\n", offset)
        line = data[line_start:line_end if line_end >= 0 else len(data)].rstrip(b"\r")
        raise ValueError(
            f"{path}:{lineno}: not UTF-8: cannot decode byte(s) {bad!r} (Latin-1? another encoding?); as "
            f"Latin-1 the line reads {line.decode('latin-1')!r}; save the file as UTF-8") from None
    # Only line breaks split lines (str.splitlines would also split on form feeds and U+2028 inside a name).
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


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
    for lineno, line in enumerate(read_text_lines(path), 1):
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
    if not items:
        raise ValueError(f"{path}: no entries (the list is empty or holds only comments)")
    return items


def write_list(path: str | Path, items: list[tuple[str, int] | tuple[str, int, int]]) -> None:
    """Write ``path label [conflict_label]`` lines, atomically."""
    atomic_write_text(path, "".join(" ".join(str(x) for x in row) + "\n" for row in items))
