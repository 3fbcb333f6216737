"""Small helpers shared across the package: atomic writes, leftovers of dead processes, and seeding.

torch and numpy are imported where they are used: the CLI imports this module before it knows whether the
command needs them (``albar --help`` must stay fast).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _host_id() -> str:
    """This machine (and pid namespace) in a form safe for file names: ``<hostname>-<pid-namespace inode>``.

    Leftovers are only ever judged by processes of the same host and pid namespace: a pid means nothing on
    another node of a shared file system, nor in another container that shares the host name.
    """
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:24] or "host"
    try:
        ns = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        ns = ""
    return f"{host}-{ns}" if ns else host


HOST_ID = _host_id()


def process_tag(pid: int | None = None) -> str:
    """``<pid>@<host id>``: who wrote a temporary file or folder, so that a later process can tell whether the
    writer still runs (:func:`tag_is_dead`)."""
    return f"{os.getpid() if pid is None else pid}@{HOST_ID}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def tag_is_dead(tag: str) -> bool:
    """True only when ``tag`` (``<pid>@<host id>``, or a bare ``<pid>`` written by older versions) names a
    process of this host that no longer runs. Another host's process cannot be checked: not dead."""
    pid, _, host = tag.partition("@")
    if not pid.isdigit() or (host and host != HOST_ID):
        return False
    return int(pid) != os.getpid() and not pid_alive(int(pid))


# ".<name>.<pid>@<host id>.<8 hex>.tmp": atomic_write's temporaries; the writer's tag tells a live one apart
_TMP_RE = re.compile(r"^\..+\.(?P<tag>\d+@[A-Za-z0-9-]+)\.[0-9a-f]{8}\.tmp$")
# ".<name>.<8 chars>.tmp": tempfile.mkstemp's names, used by albar 0.1 before the tag; no writer is known
_LEGACY_TMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
LEGACY_TMP_AGE_S = 15 * 60  # an older version's temporary not modified for this long has no writer left
# ".<name>.building-<pid>[@<host id>]": folders that a build fills before renaming them into place
_BUILDING_RE = re.compile(r"^\..+\.building-(?P<tag>\d+(@[A-Za-z0-9-]+)?)$")


def building_folder(target: Path) -> Path:
    """The sibling folder in which ``target`` is built before it is renamed into place; named after this
    process so that :func:`remove_dead_leftovers` can remove it once the process has died."""
    return target.with_name(f".{target.name}.building-{process_tag()}")


def remove_dead_leftovers(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` and the ``.building-<pid>`` folders in ``folder``
    (not below it) whose writer was a process of this host that has died. Those of live processes and of
    other hosts are kept. Temporaries of older versions (no pid in the name) are removed once not modified
    for ``LEGACY_TMP_AGE_S``. ``name``: only leftovers of that file or folder name. Returns what was removed.
    """
    import time

    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        if name is not None and not entry.name.startswith(f".{name}."):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                m = _BUILDING_RE.match(entry.name)
                if m and tag_is_dead(m["tag"]):
                    shutil.rmtree(path)
                    removed.append(path)
            elif entry.is_file(follow_symlinks=False):
                m = _TMP_RE.match(entry.name)
                if m:
                    stale = tag_is_dead(m["tag"])
                else:
                    stale = bool(_LEGACY_TMP_RE.match(entry.name)) and (
                        time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TMP_AGE_S)
                if stale:
                    path.unlink()
                    removed.append(path)
        except FileNotFoundError:  # removed meanwhile by someone else
            continue
    return removed


def ensure_folder(folder: str | Path, what: str = "folder") -> Path:
    """``mkdir -p folder``; when the path or one of its parents is a file, a :class:`NotAFolderError`
    naming that file (instead of ``FileExistsError``/``NotADirectoryError`` with a bare errno)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is None:
            raise
        where = "is a file" if blocker == folder else f"is under {blocker}, which is a file"
        raise NotAFolderError(errno.ENOTDIR, f"{what} {folder} {where}, not a folder") from None
    return folder


class NotAFolderError(NotADirectoryError, ValueError):
    """A folder was asked for where a file lies: a user error (also a ValueError), with the path in it."""

    def __str__(self) -> str:
        return str(self.strerror)


def _write_error(path: Path, err: BaseException, tmp: Path | None = None) -> OSError:
    """An OSError naming ``path`` and the reason, for a failed write of it."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OSError):  # torch raises RuntimeError while handling it
        cause = cause.__cause__ or cause.__context__
    err = cause or err
    if isinstance(err, OSError):
        reason = err.strerror or str(err)
        if err.filename is not None and str(err.filename) not in (str(path), str(tmp)):
            reason += f": {err.filename}"  # the write failed on another file (e.g. one it reads)
        if err.errno is None:
            return OSError(f"cannot write {path}: {reason}")
        return OSError(err.errno, f"cannot write {path}: {reason}")  # OSError picks the subclass by errno
    # torch.save to a path writes through C++ and reports a full disk as "unexpected pos N vs M"
    free = None
    try:
        st = os.statvfs(path.parent)
        free = st.f_bavail * st.f_frsize
    except OSError:
        pass
    if free is not None and free < 1 << 20:
        return OSError(errno.ENOSPC, f"cannot write {path}: {os.strerror(errno.ENOSPC)} ({free} bytes free; {err})")
    return OSError(errno.EIO, f"cannot write {path}: the write failed ({err})")


_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C held back until the block ends, then delivered as it would have been. Inside ``torch.save``'s
    writer a KeyboardInterrupt becomes a RuntimeError ("unexpected pos ...") that loses the checkpoint and the
    interrupt both; after the block the file is whole and the interrupt is still a KeyboardInterrupt. Only the
    main thread receives signals: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
        if got:
            signal.raise_signal(signal.SIGINT)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash or full disk mid-write leaves the previous ``path`` untouched; a failed write raises an
    ``OSError`` naming ``path`` and the reason. The data are flushed to disk (fsync) before the rename and
    the folder after it, so that a power loss cannot leave an empty file under the final name. The file gets
    the permissions any newly created file gets (0o666 less the umask, or the folder's default ACL): the
    kernel applies them when the temporary is created, and the process umask is never changed. The
    temporary's name carries the writer's pid and host (:func:`process_tag`), so that a later run can
    remove the temporaries of killed writers and only those (:func:`remove_dead_leftovers`).
    """
    path = Path(path)
    ensure_folder(path.parent)
    tag = process_tag()
    stem = path.name[: max(1, 255 - len(tag) - 16)]  # keep the name within NAME_MAX
    while True:
        tmp = path.with_name(f".{stem}.{tag}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise _write_error(path, err) from err
    with sigint_deferred():
        try:
            write(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # a full disk may only show here (delayed allocation)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as err:
            translated = None
            if isinstance(err, OSError) or (
                    isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_WRITE_FAILURES)):
                translated = _write_error(path, err, tmp)  # before the unlink frees the space it looks at
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if translated is not None:
                raise translated from err
            raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)  # the rename itself
    except OSError:
        pass  # some file systems cannot fsync a folder; the data are on disk already
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def parallel_map(
    fn: Callable[[Any], Any], jobs: list, workers: int = 1, desc: str = "", unit: str = "it", progress: bool = True,
) -> list:
    """``[fn(job) for job in jobs]`` in ``workers`` processes, in order, with a progress bar.

    Processes are forked where the platform can (state set before the call, such as a module-level context,
    is inherited, and scripts need no ``__main__`` guard); ``fn`` must be a module-level function.
    """
    from multiprocessing import get_all_start_methods, get_context

    from tqdm import tqdm

    out = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            method = "fork" if "fork" in get_all_start_methods() else "spawn"
            chunk = max(1, min(32, len(jobs) // (4 * workers)))
            with get_context(method).Pool(workers) as pool:
                for r in pool.imap(fn, jobs, chunksize=chunk):
                    out.append(r)
                    bar.update()
        else:
            for job in jobs:
                out.append(fn(job))
                bar.update()
    return out


def torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically (:func:`atomic_write`), through a Python file so that a full disk is
    an ``OSError(ENOSPC)`` naming ``path``, not torch's "unexpected pos N vs M"."""
    import torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    atomic_write(path, write)


def torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU; errors name the file and what it should be."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling raises many types
        raise ValueError(f"cannot read {what} {path}: {err}") from err


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
