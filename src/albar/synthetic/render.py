"""Rendering of synthetic clips whose class is the motion of a foreground object.

Static cues (object shape, object colour, background style) can be tied to the class; the motion never
shows in a single frame: at the middle frame (the one a static clip repeats) every class has the same
distribution of position, scale and angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

MOTIONS = ("right", "left", "down", "up", "rotate_cw", "rotate_ccw", "grow", "shrink")

# Asymmetric polygons in unit coordinates (extent about [-1, 1]): rotation must be visible.
SHAPES: dict[str, list[tuple[float, float]]] = {
    "L": [(-0.8, -1), (-0.2, -1), (-0.2, 0.4), (0.8, 0.4), (0.8, 1), (-0.8, 1)],
    "T": [(-1, -1), (1, -1), (1, -0.4), (0.3, -0.4), (0.3, 1), (-0.3, 1), (-0.3, -0.4), (-1, -0.4)],
    "triangle": [(-1, 0.9), (1, 0.9), (-0.4, -1)],
    "arrow": [(-1, -0.3), (0.2, -0.3), (0.2, -0.9), (1, 0), (0.2, 0.9), (0.2, 0.3), (-1, 0.3)],
    "bar": [(-1, -0.35), (1, -0.35), (1, 0.35), (-1, 0.35)],
    "F": [(-0.7, -1), (0.8, -1), (0.8, -0.5), (-0.1, -0.5), (-0.1, -0.1), (0.5, -0.1), (0.5, 0.4),
          (-0.1, 0.4), (-0.1, 1), (-0.7, 1)],
    "chevron": [(-1, -1), (0, -0.2), (1, -1), (1, -0.2), (0, 0.8), (-1, -0.2)],
    "kite": [(0, -1), (0.6, -0.2), (0, 1), (-0.3, -0.2)],
}
SHAPE_NAMES = tuple(SHAPES)

COLOURS = (
    (230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 220, 40),
    (220, 50, 220), (40, 220, 220), (250, 140, 20), (245, 245, 245),
)
# Training background styles (one per class); the bias sets use other families.
TRAIN_BACKGROUNDS = ("hstripes", "vstripes", "checker", "dots", "rings", "dstripes", "grid", "zigzag")
UNSEEN_BACKGROUNDS = ("noise", "gradient", "stripe")


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides one clip: its motion and its look."""

    motion: str
    shape: str
    colour: int
    background: str
    seed: int


def _hue_colour(rng: np.random.Generator, hue: float, sat: float = 0.55, val: float = 0.45) -> np.ndarray:
    h = (hue + rng.uniform(-0.04, 0.04)) % 1.0
    i = int(h * 6)
    f = h * 6 - i
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i % 6]
    return np.array(rgb) * 255


BACKGROUND_CONTRAST = 0.5  # backgrounds are shown at this contrast around their mean: the object stands out


def render_background(
    style: str, size: int, rng: np.random.Generator, contrast: float = BACKGROUND_CONTRAST,
) -> np.ndarray:
    """A static (size, size, 3) float background, its contrast scaled by ``contrast`` around its mean."""
    bg = _background(style, size, rng)
    mean = bg.mean(axis=(0, 1), keepdims=True)
    return mean + contrast * (bg - mean)


def _background(style: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if style in TRAIN_BACKGROUNDS:
        k = TRAIN_BACKGROUNDS.index(style)
        a = _hue_colour(rng, k / len(TRAIN_BACKGROUNDS), val=0.55)
        b = _hue_colour(rng, k / len(TRAIN_BACKGROUNDS), val=0.25)
        period = rng.uniform(5, 8)
        phase = rng.uniform(0, 2 * math.pi)
        w = 2 * math.pi / period
        if style == "hstripes":
            m = np.sin(w * yy + phase) > 0
        elif style == "vstripes":
            m = np.sin(w * xx + phase) > 0
        elif style == "dstripes":
            m = np.sin(w * (xx + yy) / 1.4 + phase) > 0
        elif style == "checker":
            m = (np.sin(w * xx + phase) > 0) ^ (np.sin(w * yy + phase) > 0)
        elif style == "dots":
            m = (np.sin(w * xx + phase) * np.sin(w * yy + phase)) > 0.5
        elif style == "rings":
            cy, cx = rng.uniform(0, size, 2)
            m = np.sin(w * np.hypot(xx - cx, yy - cy) + phase) > 0
        elif style == "grid":
            m = (np.abs(np.sin(w * xx + phase)) < 0.3) | (np.abs(np.sin(w * yy + phase)) < 0.3)
        else:  # zigzag
            m = np.sin(w * yy + 2.5 * np.abs(((xx / 4) % 2) - 1) + phase) > 0
        return np.where(m[..., None], a, b)
    if style == "noise":  # smooth colour noise: a coarse random grid, upsampled
        coarse = rng.uniform(20, 200, size=(4, 4, 3))
        img = Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.BICUBIC)
        return np.asarray(img, dtype=np.float64)
    if style == "gradient":
        a, b = rng.uniform(20, 220, 3), rng.uniform(20, 220, 3)
        angle = rng.uniform(0, 2 * math.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy) / size
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        return a * (1 - t[..., None]) + b * t[..., None]
    if style == "stripe":
        return stripe_background(size, rng)
    raise ValueError(f"unknown background style {style!r}")


STRIPE_CANVAS = 384  # StillMix draws on this canvas, rotates it, then keeps the centre STRIPE_CROP square
STRIPE_CROP = 256


@dataclass(frozen=True)
class StripeParams:
    """The random draw behind one stripe image: recorded in bias-set manifests so an image can be redrawn."""

    colour: tuple[float, float, float]  # c in [0, 1]^3; lines get 1 - c
    half_width: float  # px on the canvas, in [5, 20]
    spacing: float  # px between line centres: 3-5x the width (2 * half_width)
    amplitude: float  # A in [10, 110]
    frequency: float  # w, radians per px
    phase: float  # t
    angle: float  # rotation in degrees

    def to_dict(self) -> dict[str, float | list[float]]:
        return {"colour": [float(x) for x in self.colour], "half_width": self.half_width, "spacing": self.spacing,
                "amplitude": self.amplitude, "frequency": self.frequency, "phase": self.phase, "angle": self.angle}


def stripe_params(rng: np.random.Generator) -> StripeParams:
    """Draw StillMix's stripe parameters (ALBAR.md section 3) from ``rng``, in a fixed order."""
    c = rng.uniform(0, 1, 3)
    half = rng.uniform(5, 20)
    spacing = rng.uniform(3, 5) * 2 * half
    amp = rng.uniform(10, 110)
    freq = rng.uniform(0.005, 0.03)
    shift = rng.uniform(0, 2 * math.pi)
    angle = rng.uniform(0, 360)
    return StripeParams(tuple(float(x) for x in c), float(half), float(spacing), float(amp), float(freq),
                        float(shift), float(angle))


def draw_stripes(params: StripeParams, size: int | tuple[int, int]) -> np.ndarray:
    """The (H, W, 3) float stripe image of ``params``: lines y = A sin(w x + t) + 128 on a 384 canvas,
    rotated, centre-cropped to 256 and resized to ``size`` (an int for a square, or ``(width, height)``)."""
    canvas = STRIPE_CANVAS
    c = np.asarray(params.colour, dtype=np.float64)
    yy, xx = np.mgrid[0:canvas, 0:canvas].astype(np.float64)
    centre = params.amplitude * np.sin(params.frequency * xx + params.phase) + 128
    d = np.mod(yy - centre, params.spacing)
    line = np.minimum(d, params.spacing - d) <= params.half_width
    img = np.where(line[..., None], 1 - c, c) * 255
    pil = Image.fromarray(img.astype(np.uint8)).rotate(params.angle, resample=Image.BILINEAR)
    off = (canvas - STRIPE_CROP) // 2
    wh = (size, size) if isinstance(size, int) else tuple(size)
    pil = pil.crop((off, off, off + STRIPE_CROP, off + STRIPE_CROP)).resize(wh, Image.BILINEAR)
    return np.asarray(pil, dtype=np.float64)


def stripe_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """StillMix's sinusoidal stripes (ALBAR.md section 3), drawn on a 384 canvas scaled to ``size``.

    Random colour c; lines y = A sin(w x + t) + 128 in colour 1 - c, A in [10, 110], half-width 5-20 px,
    spacing 3-5x the width; random rotation; centre crop 256; resized to ``size``.
    """
    return draw_stripes(stripe_params(rng), size)


def _mask(shape: str, cx: float, cy: float, radius: float, angle: float, size: int, ss: int = 4) -> np.ndarray:
    """Antialiased (size, size) mask in [0, 1] of the rotated, scaled polygon."""
    ca, sa = math.cos(angle), math.sin(angle)
    pts = [((cx + radius * (ca * x - sa * y)) * ss, (cy + radius * (sa * x + ca * y)) * ss) for x, y in SHAPES[shape]]
    img = Image.new("L", (size * ss, size * ss), 0)
    ImageDraw.Draw(img).polygon(pts, fill=255)
    return np.asarray(img.resize((size, size), Image.BOX), dtype=np.float64) / 255.0


def render_clip(spec: ClipSpec, num_frames: int = 8, size: int = 32, noise: float = 4.0) -> np.ndarray:
    """uint8 (T, size, size, 3): the object moving per ``spec.motion`` over a static background.

    The trajectory is centred on the middle frame ``num_frames // 2``: there, position, scale and angle
    follow the same distribution for every motion.
    """
    return render_clip_with_masks(spec, num_frames, size, noise)[0]


def render_clip_with_masks(
    spec: ClipSpec, num_frames: int = 8, size: int = 32, noise: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_clip` and the object's exact antialiased masks, float (T, size, size) in [0, 1]:
    the ground truth a bias set built from masks or boxes can be checked against."""
    rng = np.random.default_rng(spec.seed)
    bg = render_background(spec.background, size, rng)
    colour = np.array(COLOURS[spec.colour], dtype=np.float64) * rng.uniform(0.85, 1.0)
    mid = num_frames // 2
    cx0, cy0 = rng.uniform(0.38, 0.62, 2) * size
    radius0 = size * rng.uniform(0.17, 0.22)
    angle0 = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(0.8, 1.2)
    step = size * 0.05 * speed  # pixels per frame
    spin = math.radians(14) * speed
    growth = 1.07 ** speed
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    masks = np.empty((num_frames, size, size), dtype=np.float64)
    for t in range(num_frames):
        d = t - mid
        cx, cy, r, a = cx0, cy0, radius0, angle0
        if spec.motion == "right":
            cx += step * d
        elif spec.motion == "left":
            cx -= step * d
        elif spec.motion == "down":
            cy += step * d
        elif spec.motion == "up":
            cy -= step * d
        elif spec.motion == "rotate_cw":
            a += spin * d
        elif spec.motion == "rotate_ccw":
            a -= spin * d
        elif spec.motion == "grow":
            r *= growth**d
        elif spec.motion == "shrink":
            r /= growth**d
        else:
            raise ValueError(f"unknown motion {spec.motion!r}")
        masks[t] = _mask(spec.shape, cx, cy, r, a, size)
        m = masks[t][..., None]
        img = bg * (1 - m) + colour * m + rng.normal(0, noise, (size, size, 3))
        frames[t] = np.clip(img, 0, 255).round().astype(np.uint8)
    return frames, masks
