"""Actor masks for building bias sets: per-frame PNG masks, or per-frame boxes filled as rectangles.

Both sources give, for a video key, a map ``frame number -> boolean mask``; :func:`video_masks` turns that
into one mask per decoded frame under these rules (the same for PNGs and boxes):

- Frame numbers are counted from ``first_index`` (default 1: ``00001.png`` is the first frame; SAM-Track
  writes ``00000.png`` first, so give 0 for its output). A PNG's number is the last run of digits in its
  stem (``00001.png``, ``frame000001.png``, ``img_00001.png``).
- A decoded frame with no mask (a gap, or before/after an annotated tube) gets an empty mask: no actor.
  It then counts as a frame whose mask is too small (see ``min_area`` in the builder).
- Masks numbered past the video's last decoded frame are dropped when they are few (at most
  ``max(2, 5%)`` of the video's frames: decoders disagree by a frame or two at the end); more than that
  means the masks belong to another video or frame rate, and the video is skipped (:class:`MaskMismatch`).
- A mask of another size than the frame is resized to it (nearest neighbour).
- Foreground is every non-zero pixel: any channel of an RGB(A) PNG, any object id of a palette PNG
  (SAM-Track), any part of a JHMDB ``part_mask`` converted with values 0/1.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

MASK_EXTENSIONS = {".png", ".bmp", ".gif", ".tif", ".tiff"}
EXCESS_TOLERANCE = 0.05  # share of a video's frames that masks may run past its end
_DIGITS = re.compile(r"(\d+)(?!.*\d)")


class MaskMismatch(ValueError):
    """The masks do not fit the video (too many past its end): the video is skipped, this is the reason."""


class MaskSource(Protocol):
    """Where the actor masks of a video come from."""

    kind: str
    first_index: int

    def describe(self) -> str: ...

    def frame_numbers(self, key: str) -> list[int] | None:
        """Sorted frame numbers with a mask (``first_index``-based), or None if the video has none."""

    def mask(self, key: str, number: int, size: tuple[int, int]) -> np.ndarray:
        """The boolean (H, W) mask of frame ``number`` for a frame of ``size`` = (H, W)."""


def _foreground(arr: np.ndarray) -> np.ndarray:
    return (arr != 0).any(axis=-1) if arr.ndim == 3 else arr != 0


def _fit(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape == tuple(size):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(img) > 127


class MaskFolder:
    """Per-frame mask images in one folder per video: ``<root>/<video key>/<NNNNN>.png``."""

    kind = "png"

    def __init__(self, root: str | Path, first_index: int = 1) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"mask folder not found: {self.root}")
        self.first_index = first_index
        self._files: dict[str, dict[int, Path]] = {}

    def describe(self) -> str:
        return f"png masks under {self.root} (first frame = {self.first_index})"

    def _index(self, key: str) -> dict[int, Path] | None:
        if key not in self._files:
            folder = self.root / key
            if not folder.is_dir():
                return None
            files: dict[int, Path] = {}
            for p in sorted(folder.iterdir()):
                if p.suffix.lower() not in MASK_EXTENSIONS:
                    continue
                m = _DIGITS.search(p.stem)
                if not m:
                    raise ValueError(f"{p}: mask file name has no frame number")
                n = int(m.group(1)) - self.first_index
                if n < 0:
                    raise ValueError(f"{p}: frame number {m.group(1)} is below the first index {self.first_index}")
                if n in files:
                    raise ValueError(f"{p}: frame number {m.group(1)} also in {files[n].name}")
                files[n] = p
            self._files[key] = files
        return self._files[key]

    def frame_numbers(self, key: str) -> list[int] | None:
        files = self._index(key)
        return None if files is None else sorted(files)

    def mask(self, key: str, number: int, size: tuple[int, int]) -> np.ndarray:
        files = self._index(key) or {}
        if number not in files:
            return np.zeros(size, dtype=bool)
        path = files[number]
        try:
            with Image.open(path) as img:
                arr = np.asarray(img)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{path}: cannot read mask ({err})") from err
        return _fit(_foreground(arr), size)


class BoxTable:
    """Per-frame boxes, filled as rectangles (UCF101's old protocol).

    CSV with a header ``key,frame,x1,y1,x2,y2`` (one row per box; several rows of a frame are united), or
    JSON ``{"<key>": {"<frame>": [[x1, y1, x2, y2], ...]}}``. Coordinates are pixels of the video frame,
    x1/y1 the top-left corner, x2/y2 the bottom-right one (exclusive); fractional coordinates cover every
    pixel they touch. Frame numbers follow ``first_index`` like mask files.
    """

    kind = "boxes"

    def __init__(self, path: str | Path, first_index: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"box file not found: {self.path}")
        self.first_index = first_index
        self.boxes: dict[str, dict[int, list[tuple[float, float, float, float]]]] = {}
        if self.path.suffix.lower() == ".json":
            self._read_json()
        else:
            self._read_csv()

    def _add(self, key: str, frame: int, box: list, where: str) -> None:
        if len(box) != 4:
            raise ValueError(f"{where}: a box is [x1, y1, x2, y2], got {box!r}")
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (x2 > x1 and y2 > y1) or not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise ValueError(f"{where}: box {box!r} is empty or not finite (need x2 > x1 and y2 > y1)")
        n = frame - self.first_index
        if n < 0:
            raise ValueError(f"{where}: frame {frame} is below the first index {self.first_index}")
        self.boxes.setdefault(key, {}).setdefault(n, []).append((x1, y1, x2, y2))

    def _read_csv(self) -> None:
        with open(self.path, newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"key", "frame", "x1", "y1", "x2", "y2"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                raise ValueError(f"{self.path}: header must have columns {sorted(need)}, got {reader.fieldnames}")
            for lineno, row in enumerate(reader, 2):
                where = f"{self.path}:{lineno}"
                try:
                    frame = int(row["frame"])
                    box = [float(row[c]) for c in ("x1", "y1", "x2", "y2")]
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: frame must be an integer and x1..y2 numbers, got {row}") from None
                self._add(row["key"].strip(), frame, box, where)

    def _read_json(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: expected {{key: {{frame: [[x1, y1, x2, y2], ...]}}}}")
        for key, frames in data.items():
            if not isinstance(frames, dict):
                raise ValueError(f"{self.path}: {key!r} must map frame numbers to lists of boxes")
            for frame, boxes in frames.items():
                where = f"{self.path}: {key!r} frame {frame!r}"
                if not str(frame).isdigit() or not isinstance(boxes, list):
                    raise ValueError(f"{where}: frame must be a number and map to a list of boxes")
                for box in boxes:
                    self._add(key, int(frame), box if isinstance(box, list) else [box], where)

    def describe(self) -> str:
        return f"boxes from {self.path} (first frame = {self.first_index})"

    def frame_numbers(self, key: str) -> list[int] | None:
        return sorted(self.boxes[key]) if key in self.boxes else None

    def mask(self, key: str, number: int, size: tuple[int, int]) -> np.ndarray:
        h, w = size
        out = np.zeros(size, dtype=bool)
        for x1, y1, x2, y2 in self.boxes.get(key, {}).get(number, []):
            c0, r0 = max(0, math.floor(x1)), max(0, math.floor(y1))
            c1, r1 = min(w, math.ceil(x2)), min(h, math.ceil(y2))
            out[r0:r1, c0:c1] = True
        return out


def video_masks(source: MaskSource, key: str, num_frames: int, size: tuple[int, int]) -> np.ndarray:
    """Boolean (T, H, W) masks for the ``num_frames`` decoded frames of ``key`` (rules: module docstring).

    Raises ``MaskMismatch`` when the video has no masks, or too many masks past its last frame.
    """
    numbers = source.frame_numbers(key)
    if not numbers:
        raise MaskMismatch(f"no masks for {key!r} in {source.describe()}")
    excess = sum(1 for n in numbers if n >= num_frames)
    if excess > max(2, int(EXCESS_TOLERANCE * num_frames)):
        raise MaskMismatch(f"{key!r}: {excess} masks past the video's {num_frames} decoded frames "
                           f"(last mask frame {numbers[-1] + source.first_index})")
    have = set(numbers)
    out = np.zeros((num_frames, *size), dtype=bool)
    for t in range(num_frames):
        if t in have:
            out[t] = source.mask(key, t, size)
    return out
