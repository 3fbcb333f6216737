"""Share a trained model the way the field does: a folder with ``model.safetensors``, ``config.json`` and a
model card (``README.md`` with the Hub's YAML front matter), pushed to the Hugging Face Hub and loaded back
from ``hf://<user>/<repo>`` wherever albar takes a checkpoint.

The folder describes itself like a checkpoint does (:func:`albar.training.checkpoint.checkpoint_meta`): the
resolved config, the class names and the preprocessing, in ``config.json`` and again in the safetensors header
(so that the weights file alone says what it is; the two must agree when both are there). The card holds the
model, the preprocessing, the training recipe and the bias table of the run's ``results.json`` when that file
describes the exported weights. ``results.json`` itself travels too.

safetensors is installed with albar (accelerate needs it); ``huggingface_hub`` (also pulled in by accelerate) is
imported only to push or to read ``hf://``, with an install hint when missing (the ``hub`` extra).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from albar.utils import atomic_write, atomic_write_json, atomic_write_text, ensure_folder

if TYPE_CHECKING:
    import torch

    from albar.evaluation.inference import CheckpointInfo

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
RESULTS_FILE = "results.json"
EXPORT_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, RESULTS_FILE)
HUB_SCHEME = "hf://"
FORMAT_VERSION = 1
_META_KEYS = ("config", "classes", "preprocessing", "albar_version", "epoch", "val_top1")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


# ---------------------------------------------------------------------------------------------------- sources


def is_hub(source: str | Path) -> bool:
    """``hf://user/repo[@revision]`` (a ``Path`` made of it reads ``hf:/user/repo``: accepted too)."""
    return str(source).startswith("hf:/")


def parse_hub(source: str | Path) -> tuple[str, str | None]:
    """(repo id, revision or None) of ``hf://user/repo[@revision]``; ValueError naming ``source`` otherwise."""
    text = str(source)
    rest = text[len(HUB_SCHEME):] if text.startswith(HUB_SCHEME) else text[len("hf:/"):]
    repo, _, revision = rest.partition("@")
    repo = repo.strip("/")
    if not _REPO_ID.fullmatch(repo) or ".." in repo or (_ and not revision):
        raise ValueError(f"{text}: not a Hub model; write hf://<user or org>/<repo>[@<revision>]")
    return repo, revision or None


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise ValueError("the Hugging Face Hub needs the huggingface_hub package: pip install 'albar[hub]'") from None
    return huggingface_hub


def hub_folder(source: str | Path) -> Path:
    """The local snapshot of ``hf://user/repo[@revision]`` (downloaded, or from HF's cache when offline):
    only the exported files, never the whole repository."""
    repo, revision = parse_hub(source)
    hub = _hub()
    try:
        folder = hub.snapshot_download(repo, revision=revision, allow_patterns=list(EXPORT_FILES))
    except (OSError, ValueError) as err:  # not found, gated, offline and not cached (HF's errors subclass these)
        raise ValueError(f"{source}: cannot get {repo} from the Hub: {type(err).__name__}: {err}") from err
    return Path(folder)


def is_exported(path: str | Path) -> bool:
    """A folder holding ``model.safetensors``, or a ``.safetensors`` file."""
    path = Path(path)
    return (path.is_dir() and (path / WEIGHTS_FILE).is_file()) or (path.suffix == ".safetensors" and path.is_file())


def local_source(source: str | Path) -> Path:
    """Where ``source`` lies on this machine: an ``hf://`` model's snapshot folder, else the path itself."""
    return hub_folder(source) if is_hub(source) else Path(source).expanduser()


# ------------------------------------------------------------------------------------------------- reading


def _decode_header(path: Path, header: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _META_KEYS:
        if key in header:
            try:
                out[key] = json.loads(header[key])
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: the safetensors header's {key!r} is not JSON: {err}") from None
    return out


def read_exported(path: str | Path) -> dict[str, Any]:
    """An exported folder (or its ``.safetensors`` file) as a checkpoint dict: ``{"model": state dict, "config",
    "classes", "preprocessing", "albar_version", ...}``. ValueError naming the file when the weights cannot be
    read, or when ``config.json`` and the weights' header disagree (one of them was edited or replaced)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: no {WEIGHTS_FILE} (an exported albar model has one)")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            header = dict(fh.metadata() or {})
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"cannot read weights {weights}: {err}") from err
    version = header.get("albar_format", "1")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise ValueError(f"{weights}: albar_format {version!r} is newer than this albar reads ({FORMAT_VERSION}); "
                         "upgrade albar")
    meta = _decode_header(weights, header)
    config_file = weights.parent / CONFIG_FILE
    if config_file.is_file():
        try:
            recorded = json.loads(config_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{config_file} is not JSON: {err}") from None
        if not isinstance(recorded, dict):
            raise ValueError(f"{config_file}: expected a JSON object, got {type(recorded).__name__}")
        for key in _META_KEYS:
            if key in recorded and key in meta and recorded[key] != meta[key]:
                raise ValueError(f"{config_file} and {weights} disagree on {key!r}: the folder holds files of two "
                                 "exports; export the model again")
            if key in recorded:
                meta.setdefault(key, recorded[key])
    return {**meta, "model": state}


def read_source(source: str | Path) -> CheckpointInfo:
    """A checkpoint from anywhere albar takes one: an albar ``.pt`` file, an exported folder or ``.safetensors``
    file, or ``hf://user/repo[@revision]``. ``path`` of the result is the local file or folder."""
    from albar.evaluation.inference import CheckpointInfo, read_checkpoint

    local = local_source(source)
    if not is_exported(local):
        if local.is_dir():
            raise FileNotFoundError(f"{source}: a folder without {WEIGHTS_FILE}; give an albar checkpoint (.pt) or "
                                    "a folder written by `albar export`")
        return read_checkpoint(local)
    return CheckpointInfo.from_state(local, read_exported(local))


def load_model(source: str | Path, overrides: Sequence[str] = ()) -> tuple[torch.nn.Module, CheckpointInfo]:
    """The model of ``source`` (see :func:`read_source`), built from its recorded config (``overrides``:
    ``key=value`` on top) with its weights, in eval mode, and what the source records (classes,
    preprocessing)."""
    from albar.evaluation.inference import resolve_config
    from albar.models.registry import model_from_state

    info = read_source(source)
    cfg, _ = resolve_config(info, None, list(overrides))
    model = model_from_state(cfg.model.name, cfg.model.num_classes, info.state, str(info.path), **cfg.model.kwargs)
    return model.eval(), info


# ------------------------------------------------------------------------------------------------- results


@dataclass
class RunResults:
    """The bias metrics of one method from a ``results.json`` that describes the exported weights."""

    method: str
    metrics: dict[str, Any]
    source: Path
    record: dict[str, Any]  # the whole file


def _describes(results_file: Path, recorded: str, checkpoint: Path) -> bool:
    """Whether a results file's ``"checkpoint"`` entry names ``checkpoint``. A run's ``model.pt`` holds the
    weights of its ``best.pt`` (the ones ``fit`` evaluates), so a run's results describe both."""
    rec = Path(recorded)
    target = checkpoint / WEIGHTS_FILE if checkpoint.is_dir() else checkpoint
    candidates = [rec] if rec.is_absolute() else [results_file.parent / rec, Path.cwd() / rec]
    try:
        if any(c.exists() and c.resolve() == target.resolve() for c in candidates):
            return True
        same_folder = results_file.parent.resolve() == target.parent.resolve()
    except OSError:
        return False
    return same_folder and target.name == "model.pt" and rec.name == "best.pt"


def find_results(checkpoint: Path, classes: list[str] | None, results: Path | None = None
                 ) -> tuple[RunResults | None, str | None]:
    """(results, note): the metrics for the card. ``results`` given: that file, which must describe
    ``checkpoint`` (ValueError naming both otherwise). Not given: ``results.json`` beside the checkpoint (in
    an exported folder: inside it) when it describes it; otherwise None and a note saying why."""
    explicit = results is not None
    path = results if explicit else (checkpoint if checkpoint.is_dir() else checkpoint.parent) / RESULTS_FILE
    if not path.is_file():
        if explicit:
            raise FileNotFoundError(f"--results: no such file: {path}")
        return None, f"no {path}: the model card has no bias table (pass --results)"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not JSON: {err}") from None
    methods = record.get("methods") if isinstance(record, dict) else None
    if not isinstance(methods, dict) or not methods or not all(isinstance(v, dict) for v in methods.values()):
        raise ValueError(f"{path}: not an albar results.json (no 'methods' with per-method metrics)")

    def refuse(why: str) -> tuple[None, str]:
        if explicit:
            raise ValueError(f"--results {path}: {why}")
        return None, f"{path}: {why}; the model card has no bias table (pass --results)"

    recorded = record.get("checkpoint")
    if not isinstance(recorded, str) or not _describes(path, recorded, checkpoint):
        return refuse(f"it describes {recorded!r}, not {checkpoint}")
    if len(methods) != 1:
        return refuse(f"it holds several methods ({', '.join(methods)}); export from the method's own run folder")
    rec_classes = record.get("classes")
    if classes is not None and rec_classes is not None and list(rec_classes) != list(classes):
        return refuse("its class names differ from the checkpoint's")
    (name, metrics), = methods.items()
    return RunResults(name, metrics, path, record), None


# ------------------------------------------------------------------------------------------------- the card


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items()) or "-"
    return "-" if v is None else str(v)


def _table(rows: Sequence[tuple[str, Any]], head: tuple[str, str] = ("key", "value")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| `{k}` | {_value(v).replace('|', '/')} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _section_rows(section: Mapping[str, Any] | None, prefix: str) -> list[tuple[str, Any]]:
    return [(f"{prefix}.{k}", v) for k, v in (section or {}).items()]


# results.json key -> (model-index metric name, higher is better)
CARD_METRICS = {
    "iid_top1": ("IID top-1", True), "scuba_top1": ("SCUBA top-1", True), "scufo_top1": ("SCUFO top-1", False),
    "contrasted": ("Contrasted accuracy", True), "conflfg_top1": ("ConflFG top-1", True),
}


def _model_index(name: str, cfg: Mapping[str, Any], results: RunResults | None) -> list[dict] | None:
    if results is None:
        return None
    metrics = [{"type": "accuracy" if key == "iid_top1" else key, "name": title,
                "value": round(float(results.metrics[key]), 2)}
               for key, (title, _) in CARD_METRICS.items() if isinstance(results.metrics.get(key), (int, float))]
    if not metrics:
        return None
    source = str(cfg.get("data", {}).get("source") or "custom")
    return [{"name": name, "results": [{
        "task": {"type": "video-classification", "name": "Video classification"},
        "dataset": {"type": source, "name": f"{source} (test split and bias sets)"},
        "metrics": metrics,
    }]}]


def _bias_section(results: RunResults | None, num_classes: int, note: str | None) -> str:
    if results is None:
        return f"No bias evaluation was exported with these weights ({note or 'no results.json'}).\n"
    from albar.evaluation.report import format_table

    m = results.metrics
    text = format_table({results.method: m}, markdown=True)
    text += (f"\nPercent. ↑ higher is better, ↓ lower is better. SCUFO's chance level is {100 / num_classes:.2f} "
             "(1 / classes): a model that recognises motion should be near it on clips with no motion. From "
             f"`{results.source.name}`")
    extra = {k: results.record[k] for k in ("best_epoch", "test_view") if k in results.record}
    text += f" ({', '.join(f'{k} {v}' for k, v in extra.items())}).\n" if extra else ".\n"
    per_source = m.get("per_source")
    if isinstance(per_source, dict) and per_source:
        keys = [k for k in ("scuba_top1", "scufo_top1", "contrasted") if any(k in v for v in per_source.values())]
        text += "\nPer background source:\n\n| source | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
        for src, v in per_source.items():
            text += f"| {src} | " + " | ".join(f"{v[k]:.2f}" if isinstance(v.get(k), (int, float)) else "-"
                                              for k in keys) + " |\n"
    sets = m.get("sets")
    if isinstance(sets, dict) and sets:
        failed = {s: v.get("failed", 0) for s, v in sets.items() if isinstance(v, dict) and v.get("failed")}
        counts = ", ".join(f"{s} {v.get('items')}" for s, v in sets.items() if isinstance(v, dict))
        text += f"\nItems per set: {counts}."
        text += (f" Unreadable items, counted against the model: {failed}.\n" if failed else
                 " No item failed.\n")
    return text


def model_card(meta: Mapping[str, Any], results: RunResults | None, *, repo_id: str | None = None,
               name: str | None = None, license: str | None = None, note: str | None = None,
               num_parameters: int | None = None) -> str:
    """The model card (``README.md``): Hub YAML front matter, then the model, how to use it, its input,
    the training recipe, the bias table and the class names. ``meta``: the exported checkpoint's metadata."""
    cfg = meta.get("config") or {}
    model = cfg.get("model", {})
    classes = meta.get("classes")
    num_classes = int(model.get("num_classes") or len(classes or []) or 2)
    arch = str(model.get("name", "?"))
    title = name or (repo_id.split("/")[-1] if repo_id else f"albar {arch}")
    front: dict[str, Any] = {"library_name": "albar"}
    if license:
        front["license"] = license
    front["tags"] = ["video-classification", "action-recognition", "albar", "static-bias",
                     arch.removeprefix("hf:").split("/")[-1]]
    front["pipeline_tag"] = "video-classification"
    if arch.startswith("hf:") and "/" in arch:
        front["base_model"] = arch.removeprefix("hf:")
    index = _model_index(title, cfg, results)
    if index:
        front["model-index"] = index
    where = f"hf://{repo_id}" if repo_id else "<this folder>"
    objective = cfg.get("objective") or {}
    objective_name = objective.get("name", "albar")
    if objective_name == "albar" and any(float(objective.get(k) or 0) for k in ("w_adv", "w_ent", "w_gp")):
        trained = ("the ALBAR objective (adversarial cross-entropy, entropy maximisation and a gradient penalty "
                   "on a static clip)")
    elif objective_name in ("albar", "ce"):
        trained = "plain cross-entropy"
    else:
        trained = f"the `{objective_name}` objective"
    method = (cfg.get("method") or {}).get("name", "none")
    if method not in (None, "none"):
        trained += f" and the `{method}` batch method"
    pre = meta.get("preprocessing") or {}
    parts = [
        "---\n" + _yaml(front) + "---\n",
        f"# {title}\n",
        f"A video action-recognition model ({arch}, {num_classes} classes) trained with "
        f"albar using {trained}. albar measures how much a model leans on static cues "
        "(scene, actor's looks) instead of motion: SCUBA, SCUFO, contrasted accuracy and ConflFG (ALBAR, ICLR "
        "2025).\n",
        "## Use\n",
        "```bash\npip install albar            # with the hub extra for hf:// (pip install 'albar[hub]')\n"
        f"albar predict --checkpoint {where} --videos clip.mp4\n"
        f"albar eval --checkpoint {where} --config my_data.yaml     # the bias suite on your data\n```\n",
        f"```python\nfrom albar.sharing import load_model\nmodel, info = load_model({where!r})  # eval mode\n"
        "logits = model(clips)   # clips: (batch, channels, frames, height, width), preprocessed as below\n```\n",
        "`model.weights: " + where + "` in a training config starts from these weights.\n",
        "## Model\n",
        _table([("model.name", arch), ("model.num_classes", num_classes), ("model.kwargs", model.get("kwargs")),
                ("model.weights (initialisation)", model.get("weights")),
                *([("parameters", f"{num_parameters:,}")] if num_parameters else []),
                ("albar_version", meta.get("albar_version")),
                *([("epoch", meta["epoch"])] if meta.get("epoch") is not None else []),
                *([("val_top1", meta["val_top1"])] if meta.get("val_top1") is not None else [])]),
        "\n## Input\n",
        "Clips of `num_frames` frames `stride` apart, short side resized to `resize_short`, centre-cropped to "
        "`crop_size`, scaled to [0, 1] and normalised with `mean`/`std`; tensor layout (B, C, T, H, W).\n\n",
        _table([(f"data.{k}", v) for k, v in pre.items()]),
        "\n## Training recipe\n",
        _table([("seed", cfg.get("seed")), ("mixed_precision", cfg.get("mixed_precision")),
                *[(f"data.{k}", (cfg.get("data") or {}).get(k)) for k in ("source", "split", "val_fraction")
                  if k in (cfg.get("data") or {})],
                *_section_rows(objective, "objective"), *_section_rows(cfg.get("method"), "method"),
                *_section_rows(cfg.get("optim"), "optim")]),
        "\n## Static bias\n",
        _bias_section(results, num_classes, note),
    ]
    if classes:
        shown = classes if len(classes) <= 200 else classes[:200]
        more = f" ... and {len(classes) - 200} more (all in `config.json`)" if len(classes) > 200 else ""
        parts += ["\n## Classes\n", "In label order: " + ", ".join(f"`{c}`" for c in shown) + more + ".\n"]
    parts += ["\n## Full config\n", "The resolved training config (also in `config.json`):\n\n",
              "```yaml\n" + _yaml(cfg) + "```\n"]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts)


# ------------------------------------------------------------------------------------------------- export


def _safetensors_state(state: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """A state dict safetensors can write: CPU, contiguous, no two tensors sharing memory."""
    import torch

    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        where = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        if where in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # shared or a view into a larger storage
        seen.add(where)
        out[key.removeprefix("module.")] = t
    return out


def reproducible_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """safetensors bytes of ``tensors`` with ``metadata``, the same bytes for the same input: safetensors writes
    the metadata in a random order (a Rust HashMap), so the header is rewritten with the metadata sorted. The same
    checkpoint then exports to the same file, and pushing it again changes nothing on the Hub."""
    import struct

    from safetensors.torch import save

    raw = save(dict(tensors), metadata=dict(metadata))
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    head["__metadata__"] = dict(sorted(head.get("__metadata__", {}).items()))
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # safetensors keeps the data 8-byte aligned
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


def export_model(
    source: str | Path, out: str | Path, *, config_path: Path | None = None, overrides: Sequence[str] = (),
    results: Path | None = None, repo_id: str | None = None, license: str | None = None, overwrite: bool = False,
) -> tuple[list[Path], list[str]]:
    """Write ``source`` (any checkpoint :func:`read_source` takes) as a shareable folder ``out``:
    ``model.safetensors`` (weights + metadata header), ``config.json``, ``README.md`` (model card) and, when
    the run's results describe these weights, ``results.json``. The config is the one the checkpoint records,
    or ``config_path`` (needed for checkpoints that record none), with ``overrides`` on top. The weights are
    loaded into the architecture first: a folder that would not load is never written. Returns (files
    written, notes for the user: config changes against the record, why the card has no bias table)."""
    from albar import __version__
    from albar.evaluation.inference import resolve_config
    from albar.models.registry import model_from_state
    from albar.training.checkpoint import PREPROCESSING_KEYS, first_non_finite

    info = read_source(source)
    out = Path(out).expanduser()
    cfg, notes = resolve_config(info, config_path, list(overrides))
    state = info.state.get("model") if isinstance(info.state.get("model"), dict) else info.state
    bad = first_non_finite({"model": state})
    if bad is not None:
        raise ValueError(f"{info.path}: {bad[0]} holds {bad[1]} non-finite values; not exporting diverged weights")
    model = model_from_state(cfg.model.name, cfg.model.num_classes, state, str(info.path), **cfg.model.kwargs)
    config = cfg.model_dump(mode="json")
    meta: dict[str, Any] = {
        "config": config, "classes": info.classes,
        "preprocessing": {k: config["data"][k] for k in PREPROCESSING_KEYS},
        "albar_version": info.state.get("albar_version") or __version__,
        "epoch": info.state.get("epoch"), "val_top1": info.state.get("val_top1"),
    }
    found, note = find_results(info.path, info.classes, results)
    notes += [note] if note else []

    existing = [p.name for p in out.iterdir()] if out.is_dir() else []
    if existing and not overwrite:
        raise ValueError(f"{out} is not empty ({', '.join(sorted(existing)[:5])}); pass --overwrite to replace the "
                         "exported files in it, or choose another --out")
    ensure_folder(out, "--out")
    weights = _safetensors_state(model.state_dict(), str(info.path))
    header = {"format": "pt", "albar_format": str(FORMAT_VERSION),
              **{k: json.dumps(v) for k, v in meta.items()}}

    def write_weights(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(reproducible_safetensors(weights, header))

    written = []
    atomic_write(out / WEIGHTS_FILE, write_weights)
    written.append(out / WEIGHTS_FILE)
    atomic_write_json(out / CONFIG_FILE, {"albar_format": FORMAT_VERSION, "library_name": "albar", **meta})
    written.append(out / CONFIG_FILE)
    if found is not None:
        atomic_write_json(out / RESULTS_FILE, {**{k: v for k, v in found.record.items() if k != "methods"},
                                               "checkpoint": WEIGHTS_FILE, "exported_from": str(info.path),
                                               "methods": {found.method: found.metrics}})
        written.append(out / RESULTS_FILE)
    elif (out / RESULTS_FILE).exists():
        (out / RESULTS_FILE).unlink()  # from an earlier export: it would describe other weights
    params = sum(p.numel() for p in model.parameters())
    card = model_card(meta, found, repo_id=repo_id, license=license, note=note, num_parameters=params)
    atomic_write_text(out / CARD_FILE, card)
    written.append(out / CARD_FILE)
    return written, notes


def push_to_hub(
    source: str | Path, repo_id: str, *, config_path: Path | None = None, overrides: Sequence[str] = (),
    results: Path | None = None, license: str | None = None, private: bool = False, token: str | None = None,
    revision: str | None = None, commit_message: str | None = None, keep: Path | None = None,
) -> tuple[str, list[Path], list[str]]:
    """Export ``source`` for ``repo_id`` (into ``keep``, or a temporary folder) and upload that folder to the
    Hub as it is: what lands in the repository is exactly what was written. Returns (commit URL, the
    exported files, notes)."""
    parse_hub(HUB_SCHEME + repo_id)  # the id's form, before any work
    hub = _hub()
    stage = Path(tempfile.mkdtemp(prefix="albar-push-")) if keep is None else Path(keep)
    try:
        files, notes = export_model(source, stage, config_path=config_path, overrides=overrides, results=results,
                                    repo_id=repo_id, license=license, overwrite=keep is not None)
        api = hub.HfApi(token=token)
        message = commit_message or f"Upload albar model from {Path(str(source)).name}"
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(repo_id=repo_id, folder_path=str(stage), repo_type="model", revision=revision,
                                       allow_patterns=list(EXPORT_FILES), commit_message=message)
        except (OSError, ValueError) as err:  # HF's HTTP, auth and offline errors subclass these
            raise ValueError(f"could not push to {repo_id}: {type(err).__name__}: {err}") from err
        url = str(getattr(commit, "commit_url", None) or getattr(commit, "oid", None) or f"hf://{repo_id}")
    finally:
        if keep is None:
            shutil.rmtree(stage, ignore_errors=True)
    return url, files if keep is not None else [Path(f.name) for f in files], notes
