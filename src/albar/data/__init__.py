"""Clip sources, frame sampling, transforms, the clip dataset, dataset layouts (a registry: ``data.source``),
bias-set layouts. The ``data`` section of a config is :mod:`albar.data.spec` (not imported here: the synthetic
benchmark it names writes through :mod:`albar.data.io`)."""

from albar.data.bias_sets import albar_bias_set, check_pairing, find_bias_sets, regenerate_scufo, stillmix_bias_set
from albar.data.dataset import ClipDataset
from albar.data.io import ClipReadError, read_clip
from albar.data.layouts import (
    DatasetLayout,
    DatasetSplit,
    hmdb51_csv,
    hmdb51_split,
    kinetics400_csv,
    list_split,
    register_layout,
    ucf101_split,
)
from albar.data.lists import ClipItem, read_list, write_list
from albar.data.robust import FailureLog, RobustClipDataset, TooManyFailures
from albar.data.sampling import clip_indices
from albar.data.splits import holdout_split
from albar.data.transforms import build_transform
from albar.data.views import ViewDataset, parse_view

__all__ = [
    "ClipDataset", "ClipItem", "ClipReadError", "DatasetLayout", "DatasetSplit", "FailureLog",
    "RobustClipDataset", "TooManyFailures", "ViewDataset", "albar_bias_set", "build_transform", "check_pairing",
    "clip_indices", "find_bias_sets", "hmdb51_csv", "hmdb51_split", "holdout_split", "kinetics400_csv",
    "list_split", "parse_view", "read_clip", "read_list", "register_layout", "regenerate_scufo",
    "stillmix_bias_set", "ucf101_split", "write_list",
]
