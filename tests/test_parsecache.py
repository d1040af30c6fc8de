"""Spec files' IR kept on disk between runs (archc/parsecache.py): the same IR and the same diagnostics as a fresh
parse, a new entry for any edit, imported blocks unpickled only when called, lark never imported on a warm run, and
never a failure of its own."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc import loader, parsecache

BLOCKS = "block unit(w):\n  conv 3x3, w, same, relu\nblock unused(w):\n  dense w\n"
SPEC = 'import "lib.arch"\ninput 8x8x3\nunit(4)\nunit(8)\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(folder))
    loader.clear_cache()  # this process's copies: each load below must go to the disk
    yield folder
    loader.clear_cache()


@pytest.fixture
def parses(monkeypatch):
    """The files really parsed, in order."""
    calls = []
    real = loader.parse_source

    def counting(text, file=None):
        calls.append(file)
        return real(text, file)

    monkeypatch.setattr(loader, "parse_source", counting)
    return calls


def _spec(folder: Path, blocks: str = BLOCKS, spec: str = SPEC) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "lib.arch").write_text(blocks)
    (folder / "net.arch").write_text(spec)
    return folder / "net.arch"


def _fresh_load(path: Path):
    loader.clear_cache()
    return loader.load_path(path)


def test_a_kept_file_is_not_parsed_again_and_gives_the_same_ir(tmp_path, cache, parses):
    path = _spec(tmp_path / "specs")
    first = _fresh_load(path)
    assert len(parses) == 2  # the spec, then its import
    second = _fresh_load(path)
    assert len(parses) == 2  # neither again
    assert second.spec == first.spec and second.blocks == first.blocks
    assert sorted(e.name.endswith(".ir.pickle") for e in cache.iterdir()) == [True, True]
    assert archc.check(second).nodes == archc.check(first).nodes


def test_only_the_blocks_a_spec_calls_are_unpickled(tmp_path, cache):
    path = _spec(tmp_path / "specs")
    _fresh_load(path)
    loaded = _fresh_load(path)
    (kept,) = loader._BLOCK_FILES.values()
    assert list(loaded.blocks) == ["unit", "unused"] and kept.blocks == {}  # names alone unpickle nothing
    archc.check(loaded)
    assert list(kept.blocks) == ["unit"]
    assert loaded.blocks["unused"].name == "unused"  # and any other, once asked for


def test_text_that_is_no_files_own_is_parsed_each_time(tmp_path, cache, parses):
    path = _spec(tmp_path / "specs")
    for _ in range(2):  # an editor's unsaved buffer: each version would only churn the cache
        loader.clear_cache()
        loader.load_text(SPEC, path)
    assert parses.count(str(path)) == 2 and parses.count(str((path.parent / "lib.arch").resolve())) == 1


def test_a_file_read_as_a_spec_and_as_an_import_is_kept_apart(tmp_path, cache):
    path = _spec(tmp_path / "specs")
    lib = (path.parent / "lib.arch").resolve()  # named as the import names it: the same path and text
    for _ in range(2):
        assert [b.name for b in _fresh_load(lib).spec.blocks] == ["unit", "unused"]
        assert list(_fresh_load(path).blocks) == ["unit", "unused"]
    assert len(list(cache.glob("*.ir.pickle"))) == 3


def test_a_warm_run_never_imports_lark(tmp_path, cache):
    path = _spec(tmp_path / "specs")
    script = f"import sys, archc; plan = archc.check({str(path)!r}); print(len(plan.nodes), 'lark' in sys.modules)"
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env=dict(os.environ, ARCHC_CACHE_DIR=str(cache))).stdout.split() for _ in range(2)]
    assert runs == [["4", "True"], ["4", "False"]]


def test_any_edit_of_the_text_is_a_new_entry(tmp_path, cache, parses):
    path = _spec(tmp_path / "specs")
    _fresh_load(path)
    (tmp_path / "specs" / "lib.arch").write_text(BLOCKS.replace("relu", "sigmoid"))
    plan = archc.check(_fresh_load(path))
    assert {n.op for n in plan.nodes} >= {"sigmoid"} and "relu" not in {n.op for n in plan.nodes}
    assert len(list(cache.glob("*.ir.pickle"))) == 3  # the spec's, and one for each text of lib.arch


def test_diagnostics_into_a_kept_file_point_where_a_fresh_parse_does(tmp_path, cache):
    # the block's 5x5 window does not fit a 2x2 input: the error points into lib.arch
    path = _spec(tmp_path / "specs", blocks=BLOCKS + "block shrink():\n  conv 5x5, 4\n",
                 spec='import "lib.arch"\ninput 2x2x3\nshrink()\n')
    messages = []
    for _ in range(2):  # parsed, then read from the cache
        with pytest.raises(archc.ArchcError) as e:
            archc.check(_fresh_load(path))
        messages.append(e.value.render())
    assert messages[0] == messages[1] and "lib.arch:6:3" in messages[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_entry_is_parsed_again_and_replaced(tmp_path, cache, parses, damage):
    path = _spec(tmp_path / "specs")
    first = _fresh_load(path)
    entries = {entry: entry.read_bytes() for entry in cache.glob("*.ir.pickle")}
    for entry, data in entries.items():
        entry.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(500), "empty": b""}[damage])
    before = len(parses)
    assert _fresh_load(path).blocks == first.blocks
    assert len(parses) - before == 2  # the main spec and the import, parsed again
    assert {entry: entry.read_bytes() for entry in entries} == entries  # and the entries written anew


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership")
@pytest.mark.parametrize("what", ["entry", "folder"])
def test_an_entry_others_could_write_is_never_unpickled(tmp_path, cache, parses, what):
    path = _spec(tmp_path / "specs")
    _fresh_load(path)
    targets = list(cache.glob("*.ir.pickle")) if what == "entry" else [cache]
    for target in targets:
        target.chmod(target.stat().st_mode | stat.S_IWOTH)
    before = len(parses)
    _fresh_load(path)
    assert len(parses) - before == 2


def test_off_and_an_unusable_folder_cost_only_the_parse(tmp_path, monkeypatch, parses):
    path = _spec(tmp_path / "specs")
    monkeypatch.setenv("ARCHC_CACHE_DIR", "off")
    _fresh_load(path)
    assert not (Path.cwd() / "off").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    plan = archc.check(_fresh_load(path))
    assert plan.total_params == 3 * 9 * 4 + 4 + 4 * 9 * 8 + 8
    loader.clear_cache()


def test_old_entries_are_pruned(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(parsecache, "MAX_ENTRIES", 2)
    for width in range(4):
        path = _spec(tmp_path / f"specs{width}", blocks=BLOCKS.replace("w, same", f"w + {width}, same"))
        _fresh_load(path)
    assert len(list(cache.glob("*.ir.pickle"))) == 2
    assert not list(cache.glob(".tmp-*"))


def test_the_folder_stays_within_its_size_and_an_entry_too_big_is_never_written(tmp_path, cache, monkeypatch):
    path = _spec(tmp_path / "specs")
    _fresh_load(path)
    sizes = sorted(entry.stat().st_size for entry in cache.glob("*.ir.pickle"))  # the spec's, then lib.arch's
    monkeypatch.setattr(parsecache, "MAX_BYTES", 4 * sizes[-1] + sizes[0])  # room for both, and for one more
    for width in range(3):
        _fresh_load(_spec(tmp_path / f"specs{width}", blocks=BLOCKS.replace("w, same", f"w + {width}, same")))
    total = sum(entry.stat().st_size for entry in cache.glob("*.ir.pickle"))
    assert total <= parsecache.MAX_BYTES and len(list(cache.glob("*.ir.pickle"))) < 8
    monkeypatch.setattr(parsecache, "MAX_BYTES", 2 * sizes[0])  # now any entry is over a quarter of it
    before = set(cache.glob("*.ir.pickle"))
    loaded = _fresh_load(_spec(tmp_path / "big", blocks=BLOCKS.replace("relu", "sigmoid")))
    assert list(loaded.blocks) == ["unit", "unused"]  # parsed and used, but neither file kept
    assert set(cache.glob("*.ir.pickle")) == before and not list(cache.glob(".tmp-*"))


def test_the_key_changes_with_archcs_parsing_code(monkeypatch):
    base = parsecache._code_fingerprint()
    parsecache._code_fingerprint.cache_clear()
    monkeypatch.setattr(parsecache, "_PARSING_CODE", parsecache._PARSING_CODE[:-1])
    try:
        assert parsecache._code_fingerprint() != base
    finally:
        parsecache._code_fingerprint.cache_clear()
