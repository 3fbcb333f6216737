"""The ``data`` section of a run's config: the data layer's spec.

:mod:`albar.config` assembles it into the run config and the data layer (:mod:`albar.data.bundle`) reads it.
``data.source`` is ``lists``, ``synthetic`` or a registered dataset layout (:mod:`albar.data.layouts`). Besides
the data layer it reads the synthetic benchmark's spec (:class:`~albar.synthetic.benchmark.BenchmarkSpec`),
whose builder writes through :mod:`albar.data.io`; this module is not imported by ``albar.data``'s package
face, so that the benchmark's import of :mod:`albar.data.io` never waits on it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from albar.data.layouts import LAYOUTS, SOURCES, DatasetLayout
from albar.data.views import parse_view
from albar.registry import PLUGIN_HINT
from albar.synthetic.benchmark import BenchmarkSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def expand_user(path: Path | None) -> Path | None:
    return path.expanduser() if path is not None else None


class SetConfig(_Strict):
    """One clip list in mmaction2 format; relative entries resolve against ``root`` (default: its folder)."""

    list: Path
    root: Path | None = None
    key: Literal["path", "stem"] = "path"  # "stem" pairs a SCUBA zip with its SCUFO image by file name

    _expand_paths = field_validator("list", "root")(expand_user)


class BiasSetsConfig(_Strict):
    scuba: dict[str, SetConfig] = Field(default_factory=dict)  # background source -> set
    scufo: dict[str, SetConfig] = Field(default_factory=dict)  # same sources, paired by key
    conflfg: SetConfig | None = None


class DataConfig(_Strict):
    """Where clips come from: ``lists`` (mmaction2 files), ``synthetic``, or a dataset as distributed."""

    # lists (mmaction2 files), synthetic (the benchmark, built under root) or a registered dataset layout
    # (hmdb51, ucf101, kinetics400: the dataset as distributed; see register_layout)
    source: str = "lists"
    # lists: default root of relative entries; synthetic: where it is built; hmdb51/ucf101/kinetics400: videos
    root: Path | None = None
    # hmdb51: the folder of <class>_test_split<N>.txt; ucf101: ucfTrainTestlist/; kinetics400: the folder of
    # the annotation CSVs (train.csv, and validate.csv or val.csv, used as the test split)
    splits: Path | None = None
    split: int = Field(ge=1, le=3, default=1)
    # ALBAR's release folder (<DS>_SCUBA_<Source>, <DS>_SCUFO_<Source>, <DS>_ConflFG_Stripe), possibly shared
    # by several datasets: every set of this dataset found there is evaluated (other datasets' sets are
    # skipped), labelled through the dataset's own splits, then ``bias_labels``, then (UCF101) the
    # v_<Class>_gNN_cNN name. Sets listed under ``bias`` are added to them.
    bias_root: Path | None = None
    # the prefix of the sets to read under bias_root; default: HMDB51/UCF101/K400 from ``source`` (with
    # ``lists``: the only dataset there); your own name for sets built with `make-bias-set --dataset NAME`
    bias_dataset: str | None = None
    bias_labels: Path | None = None  # filename,label CSV labelling the release's files (videos not in the splits)
    # class names, one per line or classInd style (``lists``; default: <root>/classes.txt when present)
    classes: Path | None = None
    synthetic: BenchmarkSpec = Field(default_factory=BenchmarkSpec)  # source: synthetic, built under root
    train: SetConfig | None = None
    val: SetConfig | None = None  # None: hold out ``val_fraction`` of train, stratified, seeded
    val_fraction: float = Field(gt=0, lt=1, default=0.2)
    test: SetConfig | None = None
    bias: BiasSetsConfig = Field(default_factory=BiasSetsConfig)
    num_frames: int = Field(gt=0, default=32)
    stride: int = Field(gt=0, default=2)
    # center: the paper's one centre clip; first: the official code's; "<clips>x<1|3>" (e.g. 4x3): clips
    # spread over the video x spatial crops, softmax averaged (mmaction2, StillMix)
    test_view: str = "center"
    crop_size: int = Field(gt=0, default=224)
    resize_short: int | None = 256
    train_crop: Literal["random_resized", "random", "center", "none"] = "random_resized"
    hflip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    num_workers: int = Field(ge=0, default=4)
    cache: bool = False  # keep decoded clips in memory (small sets of short videos; fixed clip per video)
    min_frames: int = Field(ge=1, default=1)  # a video with fewer frames is a failure ("too short")
    max_failure_fraction: float = Field(ge=0, lt=1, default=0.05)  # unreadable training files before stopping

    _expand_root = field_validator("root", "splits", "bias_root", "bias_labels", "classes")(expand_user)

    @field_validator("mean", "std")
    @classmethod
    def _normalisation(cls, v: tuple[float, float, float], info) -> tuple[float, float, float]:
        if not all(math.isfinite(x) for x in v) or (info.field_name == "std" and min(v) <= 0):
            raise ValueError(f"must be finite{' and > 0' if info.field_name == 'std' else ''} per channel, got {v}")
        return v

    @field_validator("test_view")
    @classmethod
    def _view(cls, v: str) -> str:
        parse_view(v)
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v not in SOURCES:
            raise ValueError(f"unknown data source {v!r}; known: {', '.join(sorted(SOURCES))} ({PLUGIN_HINT})")
        return v

    @property
    def layout(self) -> DatasetLayout | None:
        """The registered layout of ``source`` (None for lists and synthetic)."""
        entry = LAYOUTS.get(self.source) if self.source in LAYOUTS else None
        return entry.factory() if entry is not None else None


