"""Writing outputs safely: atomically (a failed write leaves nothing behind), never over an input, never
replacing what is not a regular file, and with the OS's refusals reported as diagnostics, not crashes.

- A regular file (or a new path) is written through a temporary file in the same directory, then renamed
  into place; an existing file keeps its permission bits (and, where we may, its owner).
- A file with other hard links is written in place: a rename would split it from its other names.
- A character device or a FIFO (`/dev/null`, `/dev/stdout`, a pipe from `>(...)`) is written directly: a
  rename would replace the device node with a regular file. A FIFO nobody reads is refused, not waited on.
- Anything else that exists (a directory, a socket, a block device), and a read-only file, is refused.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .diagnostics import ArchcError, Diagnostic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cannot_write(path: Path | str, reason: str, help: str | None = None) -> ArchcError:
    return ArchcError([Diagnostic("A401", f"cannot write `{path}`: {reason}", None, help=help)])


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _same_file(a: os.stat_result, b: Path) -> bool:
    try:
        other = os.stat(b)
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (other.st_dev, other.st_ino)


def _refuse_inputs(path: Path, info: os.stat_result, protect: Iterable[Path]) -> None:
    """An input named directly, relatively, through a symlink or through another hard link is still the input."""
    for p in protect:
        if _same_file(info, p):
            raise ArchcError([Diagnostic("A401", f"refusing to overwrite the input `{p}`", None,
                                         help="choose another output path with -o")])


def write_atomic(path: Path, data: bytes, protect: Iterable[Path] = ()) -> None:
    """Write `data` to `path` (see the module's docstring); an OS error becomes an `A401` diagnostic."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows symlinks, /dev/stdout's /proc/self/fd/1 included
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise cannot_write(path, _reason(e)) from None
    if info is not None:
        _refuse_inputs(path, info, protect)
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
            _write_direct(path, data, fifo=stat.S_ISFIFO(info.st_mode))
            return
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise cannot_write(path, kind, help="choose a file path with -o")
        if not info.st_mode & 0o222 or not os.access(path, os.W_OK):
            raise cannot_write(path, "the file is read-only", help="make it writable first if you mean it")
        if info.st_nlink > 1:
            _write_in_place(path, data)
            return
    try:
        _replace(path.resolve(), data, info)
    except OSError as e:
        raise cannot_write(path, _reason(e)) from None


def _replace(target: Path, data: bytes, info: os.stat_result | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if info is None:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a new output is an ordinary file
        else:
            if info.st_uid != os.geteuid() or info.st_gid != os.getegid():
                try:  # only root may give a file away; everyone else's outputs are theirs anyway
                    os.chown(tmp, info.st_uid, info.st_gid)
                except OSError:
                    pass
            os.chmod(tmp, stat.S_IMODE(info.st_mode))  # 0600 stays 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_in_place(path: Path, data: bytes) -> None:
    """Not atomic, but the file stays one file under all its names."""
    try:
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate()
    except OSError as e:
        raise cannot_write(path, _reason(e)) from None


def _write_direct(path: Path, data: bytes, fifo: bool) -> None:
    try:
        # O_NONBLOCK: opening a FIFO that nobody reads fails with ENXIO instead of waiting for a reader forever
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if fifo and e.errno == errno.ENXIO:
            raise cannot_write(path, "no process is reading this FIFO") from None
        raise cannot_write(path, _reason(e)) from None
    try:
        import fcntl  # POSIX only, as FIFOs and device nodes are

        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        with os.fdopen(fd, "wb", closefd=True) as f:
            fd = -1
            f.write(data)
    except OSError as e:  # a closed pipe (EPIPE), a full disk behind /dev/stdout
        raise cannot_write(path, _reason(e)) from None
    finally:
        if fd != -1:
            os.close(fd)
