"""From a validated data config to the datasets of a run: train, val, test and the bias sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from albar.config import DataConfig, SetConfig
from albar.data.bias_sets import albar_bias_set, check_pairing, class_labeler, find_bias_sets
from albar.data.dataset import ClipDataset
from albar.data.datasets import DatasetSplit, hmdb51_split, kinetics400_csv, ucf101_split
from albar.data.lists import ClipItem, read_list
from albar.data.splits import holdout_split
from albar.data.transforms import build_transform
from albar.data.views import ViewDataset


@dataclass
class DataBundle:
    train: ClipDataset | None = None
    val: ClipDataset | None = None
    test: ClipDataset | ViewDataset | None = None
    scuba: dict[str, ClipDataset | ViewDataset] = field(default_factory=dict)
    scufo: dict[str, ClipDataset | ViewDataset] = field(default_factory=dict)
    conflfg: ClipDataset | ViewDataset | None = None
    classes: list[str] | None = None

    def eval_sets(self) -> dict[str, ClipDataset | ViewDataset]:
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
    from albar.synthetic import build_benchmark

    if cfg.root is None:
        raise ValueError("data.root: the synthetic benchmark needs a folder to be built in")
    bench = build_benchmark(cfg.root, cfg.synthetic, progress=progress)
    lists = bench.root / "lists"
    paired = {"scuba": {}, "scufo": {}, "conflfg": {"list": lists / "conflfg.txt", "key": "stem"}}
    for source in bench.sources:
        for kind in ("scuba", "scufo"):
            paired[kind][source] = {"list": lists / f"{kind}_{source}.txt", "key": "stem"}
    return DataConfig.model_validate({
        **cfg.model_dump(), "source": "lists", "root": bench.root, "bias": paired,
        **{split: {"list": lists / f"{split}.txt"} for split in ("train", "val", "test")},
    })


_RELEASE_NAME = {"hmdb51": "HMDB51", "ucf101": "UCF101", "kinetics400": "K400"}


def official_splits(cfg: DataConfig) -> tuple[DatasetSplit, DatasetSplit]:
    """(train, test) of HMDB51, UCF101 or Kinetics-400 from their distributed split files."""
    if cfg.splits is None or cfg.root is None:
        raise ValueError(f"data.splits and data.root: source {cfg.source!r} needs its split files and videos")
    if not cfg.splits.exists():
        raise FileNotFoundError(f"data.splits: not found: {cfg.splits}")
    if cfg.source == "hmdb51":
        return (hmdb51_split(cfg.splits, cfg.root, cfg.split, "train"),
                hmdb51_split(cfg.splits, cfg.root, cfg.split, "test"))
    if cfg.source == "ucf101":
        return (ucf101_split(cfg.splits, cfg.root, cfg.split, "train"),
                ucf101_split(cfg.splits, cfg.root, cfg.split, "test"))
    train = kinetics400_csv(cfg.splits / "train.csv", cfg.root)
    test_csv = next((cfg.splits / n for n in ("validate.csv", "val.csv") if (cfg.splits / n).is_file()), None)
    if test_csv is None:
        raise FileNotFoundError(f"data.splits: no validate.csv or val.csv in {cfg.splits}")
    return train, kinetics400_csv(test_csv, cfg.root, classes=train.classes)


def release_bias_sets(cfg: DataConfig, splits: tuple[DatasetSplit, ...]) -> dict[str, dict[str, list[ClipItem]]]:
    """The dataset's sets in ALBAR's release under ``cfg.bias_root``: {kind: {source: items}}."""
    assert cfg.bias_root is not None
    if not cfg.bias_root.is_dir():
        raise FileNotFoundError(f"data.bias_root: not a folder: {cfg.bias_root}")
    ds = _RELEASE_NAME[cfg.source]
    classes = splits[0].classes
    if cfg.source == "ucf101":
        label_of = class_labeler(classes)
    else:  # generated videos are named after the test video they come from: label through the split
        label_of = class_labeler(classes, {it.key: classes[it.label] for s in splits for it in s.items})
    found: dict[str, dict[str, list[ClipItem]]] = {"scuba": {}, "scufo": {}, "conflfg": {}}
    for (name, kind, source), _ in find_bias_sets(cfg.bias_root).items():
        if name == ds:
            found[kind.lower()][source.lower()] = albar_bias_set(
                cfg.bias_root, ds, kind, source, label_of, classes).items
    if not any(found.values()):
        raise FileNotFoundError(f"data.bias_root: no {ds}_SCUBA_*, {ds}_SCUFO_* or {ds}_ConflFG_* folder in "
                                f"{cfg.bias_root}")
    return found


def build_data(
    cfg: DataConfig, seed: int, num_classes: int | None = None, train: bool = True, progress: bool = True,
) -> DataBundle:
    """Datasets of a run. Every list is checked before any work; errors name the config key."""
    if cfg.source == "synthetic":
        cfg = synthetic_lists(cfg, progress)
    official = official_splits(cfg) if cfg.source in _RELEASE_NAME else None
    test_tf = build_transform(False, cfg.crop_size, cfg.resize_short, cfg.train_crop, cfg.hflip, cfg.mean, cfg.std)
    train_tf = build_transform(True, cfg.crop_size, cfg.resize_short, cfg.train_crop, cfg.hflip, cfg.mean, cfg.std)

    multi_view = cfg.test_view not in ("center", "first")

    def dataset(items: list[ClipItem], training: bool, views: bool = True) -> ClipDataset | ViewDataset:
        if multi_view and views and not training:
            return ViewDataset(items, cfg.num_frames, cfg.stride, cfg.test_view, cfg.crop_size, cfg.resize_short,
                               cfg.mean, cfg.std, cfg.min_frames)
        mode = "random" if training and not cfg.cache else ("center" if multi_view else cfg.test_view)
        return ClipDataset(items, cfg.num_frames, cfg.stride, mode=mode, transform=train_tf if training else test_tf,
                           seed=seed, cache=cfg.cache, min_frames=cfg.min_frames)

    out = DataBundle()
    if train:
        if official is not None:
            train_items = official[0].items
        elif cfg.train is None:
            raise ValueError("data.train: training needs a training list")
        else:
            train_items = _items("train", cfg.train, cfg.root, num_classes)
        if cfg.val is not None:
            val_items = _items("val", cfg.val, cfg.root, num_classes)
        else:
            train_items, val_items = holdout_split(train_items, cfg.val_fraction, seed)
        # validation picks the model on one clip per video, whatever the test view
        out.train, out.val = dataset(train_items, True), dataset(val_items, False, views=False)
    if official is not None:
        out.test = dataset(official[1].items, False)
        out.classes = official[0].classes
        if cfg.bias_root is not None:
            release = release_bias_sets(cfg, official)
            out.scuba.update({k: dataset(v, False) for k, v in release["scuba"].items()})
            out.scufo.update({k: dataset(v, False) for k, v in release["scufo"].items()})
            if release["conflfg"]:
                out.conflfg = dataset(next(iter(release["conflfg"].values())), False)
    elif cfg.test is not None:
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
    if out.classes is None and classes_file is not None and classes_file.is_file():
        out.classes = classes_file.read_text().split()
    if out.scufo and set(out.scuba) != set(out.scufo):
        raise ValueError(f"data: SCUBA sources {sorted(out.scuba)} and SCUFO sources {sorted(out.scufo)} differ")
    for source in out.scufo:  # contrasted accuracy pairs them by key: check now, not after training
        report = check_pairing(out.scuba[source].items, out.scufo[source].items)
        if not report.ok:
            shown = "; ".join(f"{k}: {v}" for k, v in list(report.problems().items())[:3])
            raise ValueError(
                f"data.bias ({source}): SCUBA and SCUFO items do not pair by key ({shown}). Keys are file stems "
                f"with `key: stem` in each set's config"
            )
    return out


def preload(data: DataBundle, num_workers: int) -> None:
    """Decode every cached dataset of ``data`` once, in ``num_workers`` processes."""
    for ds in [data.train, data.val, *data.eval_sets().values()]:
        if isinstance(ds, ClipDataset) and ds.cache is not None:
            ds.preload(num_workers)
