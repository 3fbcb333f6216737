"""From a validated data config to the datasets of a run: train, val, test and the bias sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from albar.config import DataConfig, SetConfig
from albar.data.dataset import ClipDataset
from albar.data.lists import ClipItem, read_list
from albar.data.splits import holdout_split
from albar.data.transforms import build_transform


@dataclass
class DataBundle:
    train: ClipDataset | None = None
    val: ClipDataset | None = None
    test: ClipDataset | None = None
    scuba: dict[str, ClipDataset] = field(default_factory=dict)
    scufo: dict[str, ClipDataset] = field(default_factory=dict)
    conflfg: ClipDataset | None = None
    classes: list[str] | None = None

    def eval_sets(self) -> dict[str, ClipDataset]:
        """Every evaluation set by name: test, scuba_<source>, scufo_<source>, conflfg."""
        sets = {"test": self.test} if self.test is not None else {}
        sets.update({f"scuba_{k}": v for k, v in self.scuba.items()})
        sets.update({f"scufo_{k}": v for k, v in self.scufo.items()})
        if self.conflfg is not None:
            sets["conflfg"] = self.conflfg
        return sets


def _items(name: str, spec: SetConfig, default_root: Path | None, num_classes: int | None) -> list[ClipItem]:
    if not spec.list.is_file():
        raise FileNotFoundError(f"data.{name}.list: file not found: {spec.list}")
    items = read_list(spec.list, root=spec.root or default_root, key=spec.key)
    if num_classes is not None:
        bad = [it for it in items if it.label >= num_classes]
        if bad:
            raise ValueError(
                f"data.{name}: label {bad[0].label} of {bad[0].source} is out of range for model.num_classes="
                f"{num_classes} ({len(bad)} such entries in {spec.list})"
            )
    return items


def synthetic_lists(cfg: DataConfig, progress: bool = True) -> DataConfig:
    """Build the synthetic benchmark if needed and return ``cfg`` pointing at its lists."""
    from albar.synthetic import BenchmarkSpec, build_benchmark

    if cfg.root is None:
        raise ValueError("data.root: the synthetic benchmark needs a folder to be built in")
    bench = build_benchmark(cfg.root, BenchmarkSpec(**cfg.synthetic.model_dump()), progress=progress)
    lists = bench.root / "lists"
    paired = {"scuba": {}, "scufo": {}, "conflfg": {"list": lists / "conflfg.txt", "key": "stem"}}
    for source in bench.sources:
        for kind in ("scuba", "scufo"):
            paired[kind][source] = {"list": lists / f"{kind}_{source}.txt", "key": "stem"}
    return DataConfig.model_validate({
        **cfg.model_dump(), "source": "lists", "root": bench.root, "bias": paired,
        **{split: {"list": lists / f"{split}.txt"} for split in ("train", "val", "test")},
    })


def build_data(
    cfg: DataConfig, seed: int, num_classes: int | None = None, train: bool = True, progress: bool = True,
) -> DataBundle:
    """Datasets of a run. Every list is checked before any work; errors name the config key."""
    if cfg.source == "synthetic":
        cfg = synthetic_lists(cfg, progress)
    test_tf = build_transform(False, cfg.crop_size, cfg.resize_short, cfg.train_crop, cfg.hflip, cfg.mean, cfg.std)
    train_tf = build_transform(True, cfg.crop_size, cfg.resize_short, cfg.train_crop, cfg.hflip, cfg.mean, cfg.std)

    def dataset(items: list[ClipItem], training: bool) -> ClipDataset:
        return ClipDataset(items, cfg.num_frames, cfg.stride, mode="random" if training and not cfg.cache else
                           cfg.test_view, transform=train_tf if training else test_tf, seed=seed, cache=cfg.cache,
                           min_frames=cfg.min_frames)

    out = DataBundle()
    if train:
        if cfg.train is None:
            raise ValueError("data.train: training needs a training list")
        train_items = _items("train", cfg.train, cfg.root, num_classes)
        if cfg.val is not None:
            val_items = _items("val", cfg.val, cfg.root, num_classes)
        else:
            train_items, val_items = holdout_split(train_items, cfg.val_fraction, seed)
        out.train, out.val = dataset(train_items, True), dataset(val_items, False)
    if cfg.test is not None:
        out.test = dataset(_items("test", cfg.test, cfg.root, num_classes), False)
    missing = sorted(set(cfg.bias.scuba) ^ set(cfg.bias.scufo))
    if missing and cfg.bias.scufo:
        raise ValueError(f"data.bias: sources {missing} have SCUBA or SCUFO but not both")
    for source, spec in cfg.bias.scuba.items():
        out.scuba[source] = dataset(_items(f"bias.scuba.{source}", spec, cfg.root, num_classes), False)
    for source, spec in cfg.bias.scufo.items():
        out.scufo[source] = dataset(_items(f"bias.scufo.{source}", spec, cfg.root, num_classes), False)
    if cfg.bias.conflfg is not None:
        out.conflfg = dataset(_items("bias.conflfg", cfg.bias.conflfg, cfg.root, num_classes), False)
    classes_file = (cfg.root / "classes.txt") if cfg.root is not None else None
    if classes_file is not None and classes_file.is_file():
        out.classes = classes_file.read_text().split()
    return out


def preload(data: DataBundle, num_workers: int) -> None:
    """Decode every cached dataset of ``data`` once, in ``num_workers`` processes."""
    for ds in [data.train, data.val, *data.eval_sets().values()]:
        if ds is not None and ds.cache is not None:
            ds.preload(num_workers)
