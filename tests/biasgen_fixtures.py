"""Real inputs for building bias sets: H.264 videos of a coloured square moving over a textured background,
the square's exact per-frame PNG masks, and its boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import write_video
from PIL import Image

H, W, T = 48, 64, 10
SQUARE = 16
# key -> (label, colour, start x, start y); the square moves 2 px right per frame
VIDEOS = {
    "walk_a": (0, (230, 40, 40), 4, 8),
    "walk_b": (0, (40, 200, 60), 10, 20),
    "jump_a": (1, (50, 90, 240), 6, 14),
    "jump_b": (1, (240, 220, 40), 20, 4),
}
CLASSES = ["walk", "jump"]


def square_mask(key: str, t: int) -> np.ndarray:
    _, _, x, y = VIDEOS[key]
    m = np.zeros((H, W), dtype=bool)
    m[y:y + SQUARE, x + 2 * t:x + 2 * t + SQUARE] = True
    return m


def square_box(key: str, t: int, pad: int = 2) -> tuple[int, int, int, int]:
    """The square's box grown by ``pad`` px on each side: x1, y1, x2 (exclusive), y2 (exclusive)."""
    _, _, x, y = VIDEOS[key]
    return x + 2 * t - pad, y - pad, x + 2 * t + SQUARE + pad, y + SQUARE + pad


def render(key: str) -> np.ndarray:
    label, colour, _, _ = VIDEOS[key]
    rng = np.random.default_rng(sum(map(ord, key)))
    coarse = rng.uniform(30, 220, (3, 4, 3)).astype(np.uint8)
    bg = np.asarray(Image.fromarray(coarse).resize((W, H), Image.BICUBIC))
    frames = np.repeat(bg[None], T, axis=0)
    for t in range(T):
        frames[t][square_mask(key, t)] = colour
    return frames


def write_inputs(root: Path) -> dict[str, Path]:
    """Videos + list, PNG masks (1-based names; ``jump_b`` as JHMDB-style 0/1 values), a box CSV."""
    (root / "videos").mkdir(parents=True)
    lines = []
    for key, (label, *_rest) in VIDEOS.items():
        write_video(root / "videos" / f"{key}.mp4", render(key))
        lines.append(f"videos/{key}.mp4 {label}\n")
        folder = root / "masks" / key
        folder.mkdir(parents=True)
        for t in range(T):
            scale = 1 if key == "jump_b" else 255
            Image.fromarray(square_mask(key, t).astype(np.uint8) * scale).save(folder / f"{t + 1:05d}.png")
    (root / "videos.txt").write_text("".join(lines))
    rows = ["key,frame,x1,y1,x2,y2\n"]
    for key in VIDEOS:
        rows += [f"{key},{t + 1},{','.join(map(str, square_box(key, t)))}\n" for t in range(T)]
    (root / "boxes.csv").write_text("".join(rows))
    (root / "classes.txt").write_text("walk\njump\n")
    return {"list": root / "videos.txt", "masks": root / "masks", "boxes": root / "boxes.csv",
            "classes": root / "classes.txt"}
