"""Atomic file writes: a temp file next to the target, then a rename (torch-free).

Files and folders made here get the modes a plain ``open()`` / ``mkdir()`` would give them
(``0o666`` / ``0o777`` less the process umask; an overwritten file keeps its mode), not the
``0600`` / ``0700`` of :mod:`tempfile`, so ensembles and submissions stay readable by the group.
A write that fails (disk full, quota, I/O error) raises one :class:`WriteError` naming the
target and the free space left.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


class WriteError(OSError):
    """A file could not be written; the message names it and the free space left."""

    def __str__(self) -> str:
        return str(self.strerror)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    Linux (>= 4.7) shows it in ``/proc/self/status``; reading it there is thread-safe. The
    fallback (no /proc) sets it to ``0o077`` for an instant and back, since ``os.umask`` can
    only be read by setting it: a file another thread makes in that instant gets stricter
    modes, never looser ones (``os.umask(0)`` would make it world-writable).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the strictest value while it is being read
    os.umask(mask)
    return mask


def file_mode(path: str | Path | None = None) -> int:
    """Mode a plain ``open(path, "w")`` would leave: the mode of an existing ``path``, else
    ``0o666`` less the umask."""
    if path is not None:
        try:
            return stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            pass
    return 0o666 & ~current_umask()


def temp_file_next_to(path: str | Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """Open a new hidden temp file in ``path``'s folder with the mode ``path`` will get.

    Returns:
        ``(fd, temp_path)``; the caller closes ``fd`` and renames or deletes the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, file_mode(path))  # mkstemp makes it 0600
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, Path(tmp)


def temp_dir_next_to(path: str | Path, prefix: str) -> Path:
    """Make a new folder ``<parent>/<prefix><random>`` with the mode ``mkdir`` would give it
    (``0o777`` less the umask; :func:`tempfile.mkdtemp` makes it ``0700``)."""
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


_LOW_SPACE = 64 * 2**20  # below this a failed write is taken for a full disk
_FULL = {errno.ENOSPC: "no space left on device"}
if hasattr(errno, "EDQUOT"):
    _FULL[errno.EDQUOT] = "disk quota exceeded"


def write_error(path: str | Path, exc: BaseException) -> WriteError | None:
    """One clear :class:`WriteError` for a failed write of ``path`` (None: ``exc`` is not about
    writing ``path``, e.g. an OSError naming another file, or a RuntimeError of another kind).

    torch reports a failed write only as ``enforce fail at inline_container.cc ... file write
    failed``; with little space left that is taken for a full disk.
    """
    path = Path(path)
    if isinstance(exc, WriteError):
        return exc
    if isinstance(exc, OSError):
        name = Path(exc.filename) if exc.filename is not None else None
        if name is not None and name.parent != path.parent and name != path.parent:
            return None
        code, reason = exc.errno, _FULL.get(exc.errno or 0, exc.strerror or str(exc))
    elif isinstance(exc, RuntimeError) and (
        "file write failed" in str(exc) or "inline_container" in str(exc)
    ):
        code, reason = None, "the write failed"
    else:
        return None
    try:
        free: int | None = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if code is None:  # torch does not say why
        low = free is not None and free < _LOW_SPACE
        code, reason = (errno.ENOSPC, _FULL[errno.ENOSPC]) if low else (errno.EIO, reason)
    where = f"{_size(free)} free" if free is not None else "free space unknown"
    return WriteError(code, f"cannot write {path}: {reason} ({where})")


def atomic_write_via(
    path: str | Path, write_to: Callable[[Path], Any], suffix: str = ".tmp"
) -> None:
    """Call ``write_to(temp_path)`` (a writer that takes a file name, e.g. ``torch.onnx.export``)
    on a temp file next to ``path``, fsync it, then rename it into place.

    Raises:
        WriteError: the write failed (disk full, quota, I/O error), naming ``path`` and the
            free space; the old ``path`` is left as it was and no temp file stays behind.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        fd, tmp = temp_file_next_to(path, suffix=suffix)
        os.close(fd)
        write_to(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # free space is measured while the temp file is still there: a full disk shows as full
        clear = write_error(path, exc) if isinstance(exc, (OSError, RuntimeError)) else None
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if clear is not None and clear is not exc:
            raise clear from exc
        raise


def atomic_write_bytes(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(file_obj)`` on a temp file next to ``path``, then rename it into place
    (errors as :func:`atomic_write_via`)."""

    def write_to(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_write_via(path, write_to)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temp file + rename)."""
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def replace_folder(new: Path, out: Path, aside: Path) -> None:
    """Put folder ``new`` at ``out`` with two renames: an existing ``out`` is moved to ``aside``
    first and deleted only once ``new`` is in place (a crash in between leaves it at
    ``aside``, from where a caller can restore it)."""
    if out.exists():
        os.replace(out, aside)
        os.replace(new, out)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, out)
