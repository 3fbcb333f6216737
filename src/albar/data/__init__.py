"""Clip sources, frame sampling, transforms and the clip dataset."""

from albar.data.dataset import ClipDataset
from albar.data.io import ClipReadError, read_clip
from albar.data.lists import ClipItem, read_list, write_list
from albar.data.sampling import clip_indices
from albar.data.transforms import build_transform

__all__ = [
    "ClipDataset", "ClipItem", "ClipReadError", "build_transform", "clip_indices", "read_clip",
    "read_list", "write_list",
]
