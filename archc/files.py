"""Writing outputs safely: atomically (a failed write leaves nothing behind) and never over an input."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .diagnostics import ArchcError, Diagnostic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes, protect: list[Path] = ()) -> None:
    """Write `data` to `path` through a temporary file in the same directory, then rename it into place."""
    target = path.resolve()
    for p in protect:
        if p.exists() and p.resolve() == target:
            raise ArchcError([Diagnostic("A401", f"refusing to overwrite the input `{p}`", None,
                                         help="choose another output path with -o")])
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the output is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
