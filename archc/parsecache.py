"""Parsed spec files kept on disk between runs, as Python keeps `.pyc` files.

Every check of a spec that imports the shipped `blocks.arch` (15 KB, most of the zoo) parsed all of it again: 60-80
ms of a 0.6 s `archc check`. The IR of every spec file read from disk (the spec named on the command line and each
file it imports) is kept under `$ARCHC_CACHE_DIR` (default `$XDG_CACHE_HOME/archc` or `~/.cache/archc`), named by a
hash of the file's path, its text, archc's own parsing code and the Python, pydantic and lark it runs on, so a
change to any of them is a new entry, never a stale one. `ARCHC_CACHE_DIR=off` turns it off. A run whose files all
come from the cache never imports lark (a sixth of a warm `archc check`). An imported file's blocks are kept
pickled one by one, and a run unpickles only those it calls (archc.loader.Blocks).

The entries are pickles, so only a folder and files that this user owns and nobody else can write are read; an
entry that does not load is parsed again and replaced. Writes go to a temporary file renamed into place, so a run
never reads half an entry; every failure to read or write the cache is silent: it only ever costs the parse.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import stat
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# What the folder may hold: the newest entries up to both limits; the oldest go when a new one is written. An
# entry is ~10-25x its text (blocks.arch: 144 KB; a 1 MiB spec of bare layers, the largest a spec may be: ~25 MB),
# so a user checking many big specs, or a hostile one, never fills a disk.
MAX_ENTRIES = 512  # the zoo is 45 files; a second install of archc keys them anew
MAX_BYTES = 128 * 2**20
_SUFFIX = ".ir.pickle"
# The modules whose code decides what a text parses to (ops.py: the parser knows merges by their kind), and the
# libraries whose objects and pickling the IR holds: a change to any of them changes every key.
_PARSING_CODE = ("grammar.lark", "parser.py", "ir.py", "ops.py", "diagnostics.py", "speedups.py", "loader.py",
                 "_version.py")


def cache_dir() -> Path | None:
    chosen = os.environ.get("ARCHC_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "none") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "archc"


@cache
def _code_fingerprint() -> bytes:
    import pydantic

    digest = hashlib.sha256(f"{sys.version} {pydantic.VERSION}".encode())
    here = Path(__file__).resolve().parent
    for name in _PARSING_CODE:
        digest.update((here / name).read_bytes())
    digest.update(_lark_init().read_bytes())  # it holds lark's __version__: read, not imported (the point of a hit)
    return digest.digest()


def _lark_init() -> Path:
    spec = importlib.util.find_spec("lark")
    if spec is None or spec.origin is None:
        raise OSError("lark is not installed where it can be read")
    return Path(spec.origin)


def parsed(file: str, text: str, parse: Callable[[str, str], T], kind: str = "spec") -> T:
    """`parse(text, file)`, or what an earlier run kept for exactly this file, text, archc and `kind` (what
    `parse` makes of the text: a file read as a spec and as an import are kept apart)."""
    folder = cache_dir()
    if folder is None:
        return parse(text, file)
    try:
        key = hashlib.sha256(_code_fingerprint() + kind.encode() + b"\0" + file.encode("utf-8", "surrogatepass")
                             + b"\0" + text.encode("utf-8", "surrogatepass")).hexdigest()
    except OSError:  # archc's own files unreadable: no key can be trusted
        return parse(text, file)
    entry = folder / (key + _SUFFIX)
    kept = _load(folder, entry)
    if kept is not None:
        return kept
    value = parse(text, file)
    _store(folder, entry, value)
    return value


def _trusted(info: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else: what another user could write must never be unpickled."""
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _load(folder: Path, entry: Path):
    try:
        if not _trusted(folder.stat()):
            return None
        with open(entry, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or not _trusted(info):
                return None
            return pickle.load(f)
    except Exception:  # missing, unreadable, truncated, from an incompatible archc: parse again
        return None


def _store(folder: Path, entry: Path, value) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _trusted(folder.stat()):
            return
        import tempfile  # only when an entry is written: most runs only read

        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=_SUFFIX)
        try:
            with os.fdopen(handle, "wb") as f:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
                if f.tell() > MAX_BYTES // 4:  # it would push out most others: parsing it again is the cheaper loss
                    raise _TooBig()
            os.replace(temporary, entry)
        except BaseException:
            os.unlink(temporary)
            raise
        _prune(folder)
    except Exception:  # a read-only home, a full disk: the cache is only ever a shortcut
        pass


class _TooBig(Exception):
    pass


def _prune(folder: Path) -> None:
    """Keep the newest entries while they stay within MAX_ENTRIES and MAX_BYTES together."""
    entries = sorted(((info.st_mtime, info.st_size, e.path) for e in os.scandir(folder)
                      if e.name.endswith(_SUFFIX) and not e.name.startswith(".tmp-") for info in (e.stat(),)),
                     reverse=True)
    kept = total = 0
    for _, size, path in entries:
        if kept < MAX_ENTRIES and total + size <= MAX_BYTES:
            kept, total = kept + 1, total + size
        else:
            os.unlink(path)
