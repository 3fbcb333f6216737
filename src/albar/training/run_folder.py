"""One run per folder: a lock, a config that keeps describing the weights, and no litter of killed processes.

``fit`` (main process only) does, in this order::

    with RunLock(out_dir):
        clean_stale(out_dir)
        prepare_run_config(out_dir, cfg, force)
        ...  # train, evaluate, write results

Under ``accelerate launch`` only the main process takes the lock and writes the config (the others pass
``is_main=False``, which makes :class:`RunLock` do nothing): ranks of one run share the folder by design.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from albar.config import ConfigError, TrainConfig, dump_config, load_config, parse_config
from albar.utils import HOST_ID, atomic_write_text, ensure_folder, pid_alive, remove_dead_leftovers

LOCK_NAME = ".lock"
CONFIG_NAME = "config.yaml"
# One JSON object per line: each time config.yaml was replaced while the folder held a run (``--force``, or a
# changed config in a folder whose run left no checkpoint): time, host, pid, event, the changed keys as
# {key: [saved, new]}, and the previous config in full.
HISTORY_NAME = "config_history.jsonl"
CHECKPOINT_NAMES = ("last.pt", "best.pt", "model.pt")  # a folder with one of these holds a run

# Keys (dotted; a section name covers its keys) whose value cannot change the weights or the results, so that a
# run may continue with another value: where the run is and how it is continued, how many loader processes
# and CPU threads it uses (the clips and their order do not depend on them; float sums over threads may differ
# in the last bits), the evaluation batch (eval mode: no batch statistics), how often last.pt is written, when
# to give up on unreadable files (the clips used do not change), and logging. config.yaml keeps the values
# of the run that created it for these keys: it is not rewritten for them.
RESULT_NEUTRAL_KEYS = (
    "out_dir",
    "resume",
    "threads",
    "data.num_workers",
    "data.max_failure_fraction",
    "eval.batch_size",
    "checkpoint.every_steps",
    "log",
)


class RunFolderBusy(ValueError):
    """Another process holds the run folder's lock."""


class ConfigChanged(ValueError):
    """The folder holds a run made with another config; the message has the differences."""


def _holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "another process (it has not written its details yet)"
    pid, host = info.get("pid"), info.get("host")
    started = info.get("started", "?")
    text = f"pid {pid} on {host}, started {started}"
    if info.get("command"):
        text += f": {info['command']}"
    if host == HOST_ID and isinstance(pid, int) and not pid_alive(pid):
        text += (f"; process {pid} no longer runs, but a process it started (such as a data-loader worker) still "
                 "holds the lock, which the system releases when that one exits")
    return text


class RunLock:
    """An exclusive advisory lock on ``<out_dir>/.lock`` (``flock``, non-blocking), held for a whole run.

    A second run into the same folder fails at once with :class:`RunFolderBusy` naming the folder and the
    holder (pid, host, start time, command) instead of mixing its files with the first run's. The system
    releases the lock when the holder exits, however it exits (kill -9 included): a lock file left by a dead
    process is no obstacle. The file is never deleted (deleting it would let two processes lock two
    different files). Works across hosts where the file system supports ``flock`` (local, NFS); where it does
    not (some Lustre mounts), a warning says that the folder is not protected and the run goes on.

    ``is_main=False`` (the non-main processes of a multi-process run) makes it do nothing. Creates
    ``out_dir``; a file in its way is a :class:`~albar.utils.NotAFolderError` naming it.
    """

    def __init__(self, out_dir: str | Path, is_main: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self.is_main = is_main
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if not self.is_main or self._fd is not None:
            return self
        import fcntl

        ensure_folder(self.out_dir, "out_dir")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as err:
            raise OSError(err.errno, f"cannot create the run lock {self.path}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(
                f"run folder {self.out_dir} is in use by {_holder_text(self._read_info())}; wait for that run to "
                "end, or choose another out_dir"
            ) from None
        except OSError as err:
            if err.errno not in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL):
                os.close(fd)
                raise
            os.close(fd)
            warnings.warn(f"{self.path}: the file system cannot lock files ({err.strerror}); nothing keeps a second "
                          "run out of this folder", RuntimeWarning, stacklevel=2)
            return self
        info = {"pid": os.getpid(), "host": HOST_ID, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(sys.argv)[:500]}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:
            pass  # the details are for messages only; the lock itself is held
        self._fd = fd
        return self

    def _read_info(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(errors="replace")
            info = json.loads(text) if text.strip() else {}
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no details of a finished holder; the file itself stays
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def clean_stale(out_dir: str | Path) -> list[Path]:
    """Remove what killed processes left in ``out_dir``: temporary files of :func:`~albar.utils.atomic_write`
    and ``.building-<pid>`` folders whose writer no longer runs (on this host). A live writer's are kept.
    Call it while holding the :class:`RunLock`. Returns the removed paths."""
    return remove_dead_leftovers(out_dir)


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = obj
    return out


_ABSENT = "(absent)"


def _neutral(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESULT_NEUTRAL_KEYS)


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (saved, new) for every value that differs and may change results (not in
    :data:`RESULT_NEUTRAL_KEYS`). A key on one side only shows ``"(absent)"`` on the other."""
    a, b = _flatten("", saved, {}), _flatten("", new, {})
    changes = {}
    for key in [*a, *(k for k in b if k not in a)]:
        old, cur = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if old != cur and not _neutral(key):
            changes[key] = (old, cur)
    return changes


def _short(value: Any, limit: int = 60) -> str:
    text = value if value == _ABSENT else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_changes(changes: dict[str, tuple[Any, Any]], limit: int = 12) -> str:
    """``key: saved -> new; ...`` on one line, at most ``limit`` keys."""
    parts = [f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in list(changes.items())[:limit]]
    if len(changes) > limit:
        parts.append(f"and {len(changes) - limit} more")
    return "; ".join(parts)


# Keys that older versions did not write, with the value those versions used. A saved config is complete (written
# by dump_config), so a missing key means an older run, trained with the old behaviour, not with today's default.
LEGACY_VALUES = {("objective", "gp_norm"): "sample"}  # before gp_norm existed the per-sample norm was the only one


def upgrade_saved(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a saved config) with the keys an older version lacked set to what that version did."""
    data = json.loads(json.dumps(data))
    for (section, key), value in LEGACY_VALUES.items():
        if isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    return data


def _normalized(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config as this version reads it (defaults filled in); as it is when this version rejects it."""
    try:
        return parse_config(upgrade_saved(data)).model_dump(mode="json")
    except ConfigError:
        return data


def _saved_config(out: Path) -> tuple[dict[str, Any] | None, str, Path | None]:
    """(saved config or None, its text for the history, where it came from). config.yaml first; without it,
    the config stored in the run's checkpoint."""
    path = out / CONFIG_NAME
    if path.is_file():
        try:
            text = path.read_text(errors="replace")
            load_config(path)  # validates (and refuses alias bombs) before the plain read below
            return _normalized(yaml.safe_load(text)), text, path
        except ConfigError as err:
            reason = " ".join(str(err).removeprefix(f"{path}: ").split())[:300]  # one line
            raise ConfigChanged(
                f"{path}: the saved config of this run cannot be read ({reason}); it cannot be compared "
                f"with the new one. Pass --force to replace it (the old text is kept in {out / HISTORY_NAME})"
            ) from None
    for name in CHECKPOINT_NAMES:
        ckpt = out / name
        if ckpt.is_file():
            try:
                state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
            except Exception:  # unreadable here: the trainer reports it when it resumes  # noqa: BLE001
                continue
            if isinstance(state, dict) and isinstance(state.get("config"), dict):
                return _normalized(state["config"]), json.dumps(state["config"]), ckpt
    return None, "", None


def _record(out: Path, event: str, changes: dict[str, tuple[Any, Any]], previous_text: str) -> Path:
    """Append one event to the history file (rewritten atomically)."""
    history = out / HISTORY_NAME
    old = history.read_text() if history.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": HOST_ID, "pid": os.getpid(), "event": event,
             "changes": {k: [a, b] for k, (a, b) in changes.items()}, "previous": previous_text}
    atomic_write_text(history, old + json.dumps(entry, default=str) + "\n")
    return history


def prepare_run_config(out_dir: str | Path, cfg: TrainConfig, force: bool) -> None:
    """Make ``<out_dir>/config.yaml`` describe the run about to start, without ever rewriting it silently.

    - A new run (no checkpoint in the folder): config.yaml is written. If one was there with other values (a
      run that stopped before its first checkpoint), the replacement is recorded in ``config_history.jsonl``.
    - An existing run (``last.pt``, ``best.pt`` or ``model.pt`` present): the saved config (config.yaml, or
      the checkpoint's own when config.yaml is gone) is compared with ``cfg``. Differences in
      :data:`RESULT_NEUTRAL_KEYS` are allowed and change nothing on disk. Any other difference raises
      :class:`ConfigChanged` with the keys and both values, unless ``force``: then the run goes on with
      ``cfg``, the previous config and the differences are appended to ``config_history.jsonl``, and
      config.yaml is replaced by ``cfg``.

    Call it on the main process only, with the :class:`RunLock` held.
    """
    out = Path(out_dir)
    ensure_folder(out, "out_dir")
    path = out / CONFIG_NAME
    new = cfg.model_dump(mode="json")
    has_run = any((out / n).is_file() for n in CHECKPOINT_NAMES)
    if not has_run:
        if path.is_file():
            try:
                saved, text, _ = _saved_config(out)
            except ConfigChanged:
                saved, text = None, path.read_text(errors="replace")
            changes = config_changes(saved, new) if saved is not None else {"config.yaml": ("unreadable", "new")}
            if changes:
                _record(out, "replaced: the run had no checkpoint", changes, text)
            elif saved is not None:
                return  # same run settings: config.yaml stays as written
        atomic_write_text(path, dump_config(cfg))
        return
    try:
        saved, text, source = _saved_config(out)
    except ConfigChanged:
        if not force:
            raise
        _record(out, "forced: saved config unreadable", {}, path.read_text(errors="replace"))
        atomic_write_text(path, dump_config(cfg))
        return
    if saved is None:
        warnings.warn(f"{out}: the run's checkpoints carry no readable config and {path} is missing; writing it from "
                      "the config given now, which may not be the one the weights were trained with",
                      RuntimeWarning, stacklevel=2)
        atomic_write_text(path, dump_config(cfg))
        return
    changes = config_changes(saved, new)
    if changes and not force:
        raise ConfigChanged(
            f"{out} holds a run with another config ({source}); these keys differ (saved -> new): "
            f"{format_changes(changes)}. Continuing would mix two configs in one run: set them back, choose "
            f"another out_dir, or pass --force to continue with the new values (recorded in "
            f"{out / HISTORY_NAME})"
        )
    if changes:
        _record(out, "forced", changes, text)
        atomic_write_text(path, dump_config(cfg))
    elif not path.is_file():
        atomic_write_text(path, dump_config(cfg))  # config.yaml was gone; the checkpoint's config agrees
