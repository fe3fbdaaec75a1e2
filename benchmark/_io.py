"""Atomic file writes: a temp file in the target folder, then ``os.replace``.

A reader never sees a half-written file, and a crash leaves either the old file or the new
one, never a mix. Directories are published the same way (build in a hidden sibling, rename).
A failed write (read-only folder, full disk, a file where a folder should be) is one
:class:`~benchmark.errors.BenchmarkError` line naming the path, never a traceback, and what a
``kill -9`` leaves behind is cleaned up by the next write of the same folder.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import BenchmarkError

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so stale temp folders are never removed
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_LOCK = ".atomic_dir.lock"  # inside a folder being built by atomic_dir; held while it is built


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _free(path: Path) -> int | None:
    """Free bytes on the filesystem of ``path`` (or its nearest existing ancestor)."""
    for p in (path, *path.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(p).free
    return None


def _concerns(path: Path, name: Any) -> bool:
    """Whether the OSError's file ``name`` is ``path``, inside it, a temp sibling of it or the
    folder it is written into."""
    if name is None:
        return True
    try:
        rel = Path(os.path.abspath(os.fsdecode(name))).relative_to(os.path.abspath(path.parent))
    except ValueError:
        return False
    first = rel.parts[0] if rel.parts else ""
    return not first or first == path.name or first.startswith(f".{path.name}.")


def write_error(path: str | os.PathLike, e: OSError) -> BenchmarkError:
    """The one-line error for an OSError met while writing ``path`` (a file or a folder)."""
    path = Path(path)
    if e.errno in _NO_SPACE:
        free = _free(path.parent)
        return BenchmarkError(f"{path}: not enough disk space ({e.strerror or e}"
                              + (f", {_size(free)} free)" if free is not None else ")"))
    reason = e.strerror or str(e) or type(e).__name__
    if _concerns(path, e.filename):
        return BenchmarkError(f"{path}: cannot write ({reason})")
    return BenchmarkError(f"{os.fsdecode(e.filename)}: {reason} (while writing {path})")


def make_dirs(path: str | os.PathLike) -> None:
    """``mkdir -p path``; a file in the way or an unwritable parent is one BenchmarkError line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is None:
            raise write_error(path, e) from e
        if blocker == path:
            raise BenchmarkError(f"{path}: is a file, a folder is needed there") from None
        raise BenchmarkError(f"{path}: cannot create this folder, {blocker} is a file") from None
    except OSError as e:
        raise write_error(path, e) from e


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on error it is removed.

    Any OSError, the caller's own writing into the temp path included, becomes a one-line
    BenchmarkError naming ``path`` (or the other file the error names): every caller, training
    included, then reports a read-only folder or a full disk as a user error.
    """
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be readable like any file
        finally:
            os.close(fd)
    except OSError as e:
        raise write_error(path, e) from e
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(e, OSError):
            raise write_error(path, e) from e
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    # the suffix keeps np.save from appending a second ".npy" to the temp name
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(array), allow_pickle=False)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Build a directory in a hidden sibling and publish it with one rename.

    An existing ``path`` is only replaced once the new one is complete (old moved aside as
    ``.<name>.old-<pid>``, new renamed in, old deleted), so an interrupted run never destroys
    what was there. The sibling is ``.<name>.tmp-<random>``, with a lock file inside held
    (flock) while it is built: what a ``kill -9`` leaves behind is removed by the next
    atomic_dir for the same ``path`` (:func:`remove_stale`).

    Args:
        check: called with ``path`` before building and again just before an existing
            ``path`` is replaced; it raises to keep ``path`` as it is (nothing is published).

    Raises:
        BenchmarkError: for any OSError of the folder's own steps or of the caller's block.
    """
    path = Path(path)
    make_dirs(path.parent)
    remove_stale(path)
    if check is not None:
        check(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    except OSError as e:
        raise write_error(path, e) from e
    lock = None
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        lock = _lock(tmp / _LOCK, create=True)
        yield tmp
        if check is not None:
            check(path)
        os.unlink(tmp / _LOCK)  # not part of what is published; still held until the rename
        _publish(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from e
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _publish(tmp: Path, path: Path) -> None:
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.replace(old, path)  # put the previous one back
        raise
    _remove(old)


def _remove(p: str | os.PathLike) -> None:
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(p)


def _lock(path: Path, create: bool) -> int | None:
    """A descriptor holding an exclusive flock on ``path``; None if the file is missing or
    another process holds the lock (``create``: make it, and keep going unlocked where the
    filesystem has no locks)."""
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666 & ~_UMASK)
    except FileNotFoundError:
        if create:
            raise
        return None
    if fcntl is None:
        if create:
            return fd
        os.close(fd)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        if create:
            return fd
        os.close(fd)
        return None
    return fd


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a folder named after us is from an earlier process that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    with contextlib.suppress(OSError):  # a zombie is as dead as it gets
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    return True


def remove_stale(path: str | os.PathLike) -> None:
    """Clean up what killed :func:`atomic_dir` runs for ``path`` left beside it, nothing else.

    ``.<name>.tmp-XXXXXXXX`` folders are removed when their lock file can be locked (whoever
    built them is dead). A ``.<name>.old-<pid>`` folder whose process is gone is a replace that
    was interrupted: deleted if ``path`` exists, else renamed back to ``path`` (the run died
    between its two renames, and that folder is the previous complete one). Best effort: an
    entry that cannot be handled is left alone.
    """
    path = Path(path)
    tmp_re = re.compile(re.escape(f".{path.name}.tmp-") + r"[a-z0-9_]{8}")
    old_re = re.compile(re.escape(f".{path.name}.old-") + r"([0-9]+)")
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(f".{path.name}.")]
    except OSError:
        return
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if tmp_re.fullmatch(entry.name):
                fd = _lock(Path(entry.path) / _LOCK, create=False)
                if fd is None:
                    continue
                try:  # the lock file goes last, so an interrupted removal is retried next time
                    for child in os.scandir(entry.path):
                        if child.name != _LOCK:
                            _remove(child.path)
                    shutil.rmtree(entry.path, ignore_errors=True)
                finally:
                    os.close(fd)
                log.info("%s: removed the temp folder of an interrupted run", entry.path)
            elif (m := old_re.fullmatch(entry.name)) and not _alive(int(m[1])):
                if os.path.lexists(path):
                    _remove(entry.path)
                    log.info("%s: removed the previous version an interrupted run left", entry.path)
                else:
                    os.replace(entry.path, path)
                    log.warning("%s: put back from %s, where an interrupted replace had left it",
                                path, entry.name)
        except OSError as e:
            log.debug("%s: left as it is (%s)", entry.path, e)


def reserve_space(path: str | os.PathLike, target: str | os.PathLike) -> None:
    """Allocate the blocks of the (sparse) file ``path`` now, for the store ``target``.

    A memory map writing into a sparse file on a full disk dies with SIGBUS (exit 135) and
    leaves its temp file behind; reserving up front turns that into one line. Filesystems
    without ``posix_fallocate`` go on unreserved.
    """
    path = Path(path)
    size = path.stat().st_size
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None or size == 0:
        return
    free = _free(path.parent)
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in _NO_SPACE:
            have = f", {_size(free)} free" if free is not None else ""
            raise BenchmarkError(f"{target}: not enough disk space (needs {_size(size)}{have})") from e
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", 0)):
            log.debug("%s: cannot reserve space here (%s); writing unreserved", path, e.strerror)
            return
        raise write_error(target, e) from e
    finally:
        os.close(fd)


def die_with_parent(parent: int) -> None:
    """Process-pool initializer: the worker is killed when ``parent`` dies, even by ``kill -9``.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op. Pass ``os.getpid()`` of the
    process that creates the pool: a parent that died before the prctl is caught by getppid.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # orphaned already: the signal would never come
        os._exit(1)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
