"""Clip transforms on torchvision v2: one random crop and flip shared by every frame of a clip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TrainCrop = Literal["random_resized", "random", "center", "none"]


def build_transform(
    train: bool,
    crop_size: int = 224,
    resize_short: int | None = 256,
    train_crop: TrainCrop = "random_resized",
    hflip: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Transform:
    """Takes uint8 frames (T, C, H, W), returns a float clip (C, T, H, W), normalised.

    Paper recipe: short side 256, random resized crop 224 and horizontal flip for training; short side
    256 and centre crop 224 for testing. Turn ``hflip`` off where direction is the class (left vs right).
    """
    ops = resizing(resize_short)
    if train and train_crop == "random_resized":
        ops.append(v2.RandomResizedCrop(crop_size, antialias=True))
    elif train and train_crop == "random":
        ops.append(v2.RandomCrop(crop_size))
    elif train_crop != "none" or not train:
        ops.append(v2.CenterCrop(crop_size))
    if train and hflip:
        ops.append(v2.RandomHorizontalFlip())
    return v2.Compose([*ops, *normalization(mean, std)])


def resizing(resize_short: int | None) -> list[v2.Transform]:
    """The resize of every clip, for training and testing: the short side to ``resize_short`` (None: none)."""
    return [v2.Resize(resize_short, antialias=True)] if resize_short else []


def normalization(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> list[v2.Transform]:
    """uint8 (..., C, H, W) -> float in [0, 1], normalised per channel: the last steps of every clip transform."""
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


def apply_transform(transform: v2.Transform, frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> transformed (C, T, H, W)."""
    video = tv_tensors.Video(frames.permute(0, 3, 1, 2))
    return transform(video).as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()
