"""Files that several runs share: atomic writes, locks, and checksummed "build once" caches.

Every file this project keeps for later runs (converted models, fitted lenses, results folders)
is written through here, so that two processes working at once never read or replace each other's
half-written files, and a damaged cache is found on load and rebuilt (with a warning naming the
file) instead of failing with a library's error.

* ``atomic_write(path, write)`` / ``write_text_atomic(path, text)``: write into a uniquely named
  temporary file in the target's own folder (``tempfile``), then ``os.replace`` it into place.
* ``replace_folder(new, final)``: the same for a whole folder.
* ``file_lock(path, wait=True)``: an exclusive ``fcntl.flock`` on ``.<name>.lock`` beside ``path``
  (removed again by its last holder). A second process waits, saying whom it waits for, or, with
  ``wait=False``, gets ``Busy`` naming the holder: pid, host, start time and command.
  ``hold_lock(path)`` takes it without waiting and keeps it until the process exits.
* ``sha256_file``, ``write_manifest(folder)``, ``check_manifest(folder)``: a ``manifest.json`` with
  the sha256 of every file in a folder, and its check (``CacheError`` naming the bad file).
* ``cached_folder(folder, build, load, what)``: under the folder's lock, ``load`` it when its
  manifest checks out; else (missing, or damaged: warned) ``build`` it into a staging folder, write
  its manifest and move it into place. A process that waited for the lock finds the finished
  folder and loads it.

Public names: ``atomic_write``, ``write_text_atomic``, ``replace_folder``, ``file_lock``,
``hold_lock``, ``Busy``, ``lock_path``, ``sha256_file``, ``write_manifest``, ``check_manifest``,
``CacheError``, ``cached_folder``, ``MANIFEST``.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

__all__ = [
    "MANIFEST",
    "Busy",
    "CacheError",
    "atomic_write",
    "cached_folder",
    "check_manifest",
    "file_lock",
    "hold_lock",
    "lock_path",
    "replace_folder",
    "sha256_file",
    "write_manifest",
    "write_text_atomic",
]

T = TypeVar("T")
MANIFEST = "manifest.json"
HOLDER_WAIT_S = 1.0  # how long to wait for a fresh holder to write who it is


# ------------------------------------------------------------------------------ atomic writes
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a uniquely named temporary file beside ``path``, then move it to ``path`` in one step.

    A reader sees the old file or the new one, never half of one; two writers never share a
    temporary file. On failure the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # as an ordinary file, not mkstemp's owner-only mode
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) in one step, through a uniquely named temporary file."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def replace_folder(new: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move folder ``new`` to ``final``, replacing it; the old one is deleted only once ``new`` is in place."""
    new, final = Path(new), Path(final)
    backup = None
    if final.exists():
        backup = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
        os.replace(final, backup)  # renaming a folder onto an empty one replaces it
    os.replace(new, final)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


# ------------------------------------------------------------------------------------- locks
class Busy(RuntimeError):
    """Another process holds the lock; the message names it (pid, host, start time, command)."""

    def __init__(self, target: Path, holder: str):
        super().__init__(f"{target} is in use by {holder}")
        self.target, self.holder = target, holder


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of ``path``: ``.<name>.lock`` in the same folder."""
    path = Path(path).absolute()
    return path.with_name(f".{path.name}.lock")


def _whoami() -> bytes:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": " ".join(sys.argv)[:300],
        }
    ).encode()


def _holder(fd: int) -> str:
    """Who holds the lock file open on ``fd``, in words (it writes that just after locking)."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        raw = os.pread(fd, 4096, 0)
        try:
            who = json.loads(raw)
            return f"pid {who['pid']} on {who['host']}, running since {who['started']} (`{who['command']}`)"
        except (ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return "another process (it has not yet written who it is)"
            time.sleep(0.05)


def _same_file(fd: int, lock: Path) -> bool:
    """Whether ``lock`` still names the file open on ``fd`` (its last holder may have removed it)."""
    try:
        named = os.stat(lock)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _acquire(lock: Path, target: Path, wait: bool) -> int:
    """Lock ``lock`` exclusively and write who we are into it; return its file descriptor."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    raise Busy(target, holder) from None
                if not told:
                    print(f"waiting for {holder}, which holds {target} ...", file=sys.stderr, flush=True)
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, lock):
                os.ftruncate(fd, 0)
                os.pwrite(fd, _whoami(), 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # we locked a lock file its last holder had already removed: lock the current one


def _release(lock: Path, fd: int) -> None:
    try:
        if _same_file(fd, lock):
            os.unlink(lock)  # while still holding it, so no one else is inside
    finally:
        os.close(fd)


@contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` inside the block (``Busy`` at once if taken and not ``wait``)."""
    lock = lock_path(path)
    fd = _acquire(lock, Path(path), wait)
    try:
        yield
    finally:
        _release(lock, fd)


_HELD: dict[Path, tuple[int, int]] = {}  # lock file -> (pid that took it, file descriptor)


def hold_lock(path: str | os.PathLike) -> None:
    """Take the lock of ``path`` without waiting (``Busy`` naming the holder) and keep it until this process exits."""
    lock = lock_path(Path(path).resolve())
    if _HELD.get(lock, (None,))[0] == os.getpid():
        return
    _HELD[lock] = (os.getpid(), _acquire(lock, Path(path), wait=False))


@atexit.register
def _release_held() -> None:
    for lock, (pid, fd) in list(_HELD.items()):
        if pid == os.getpid():  # a forked child does not remove its parent's lock
            _release(lock, fd)
    _HELD.clear()


# ----------------------------------------------------------------------- checksums and caches
class CacheError(ValueError):
    """A cached file is missing, unreadable or does not match its checksum; the message names it."""


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: str | os.PathLike, **fields) -> Path:
    """Write ``folder/manifest.json``: the sha256 of every file below ``folder`` (and ``fields``)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != folder / MANIFEST)
    checksums = {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}
    target = folder / MANIFEST
    write_text_atomic(target, json.dumps({**fields, "sha256": checksums}, indent=1) + "\n")
    return target


def check_manifest(folder: str | os.PathLike) -> dict:
    """``folder``'s manifest, once every file it lists is there with its checksum; else ``CacheError`` naming the file."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        raise CacheError(f"{manifest} is missing")
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
        checksums = content["sha256"]
        if not isinstance(checksums, dict) or not checksums:
            raise ValueError("no checksums")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CacheError(f"{manifest} is unreadable ({type(err).__name__}: {err})") from None
    for name, digest in checksums.items():
        path = Path(folder) / name
        if not path.is_file():
            raise CacheError(f"{path} is missing")
        if sha256_file(path) != digest:
            raise CacheError(f"{path} does not match its checksum in {MANIFEST} (truncated or changed)")
    return content


def cached_folder(
    folder: str | os.PathLike,
    build: Callable[[Path], T],
    load: Callable[[Path], T],
    what: str,
    current: Callable[[Path], bool] | None = None,
) -> T:
    """``load(folder)`` when its manifest checks out; else ``build(staging)``, which writes the folder's files and returns the object.

    Runs under the folder's lock, so concurrent processes build once: the others wait, then load
    the finished folder. A damaged folder (a file missing, truncated or changed, or one that
    ``load`` cannot read) is rebuilt with a warning that names the file and says ``what`` it holds.
    A folder in a read-only cache (a classroom's shared one) is checked and loaded without a lock.
    ``current(folder)`` False means the folder answers another request (other settings): it is
    replaced without a warning; an empty folder counts as nothing cached.
    """
    folder = Path(folder)
    if folder.is_dir() and not os.access(folder.parent, os.W_OK):  # no one can change it: no lock needed
        check_manifest(folder)
        return load(folder)
    with file_lock(folder):
        stale = folder.is_dir() and (not any(folder.iterdir()) or (current is not None and not current(folder)))
        if folder.exists() and not stale:
            try:
                check_manifest(folder)
                return load(folder)
            except Exception as err:  # any damage means: rebuild it, never use it
                reason = str(err) if isinstance(err, CacheError) else f"{type(err).__name__}: {err}"
                warnings.warn(f"{what} at {folder} is damaged ({reason}); rebuilding it", stacklevel=2)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        os.chmod(staging, 0o777 & ~_umask())  # as an ordinary folder, not mkdtemp's owner-only mode
        try:
            built = build(staging)
            write_manifest(staging)
            replace_folder(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return built
