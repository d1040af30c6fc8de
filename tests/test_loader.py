"""Reading specs: files, JSON, imports and their rules."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archc
from archc import loader
from archc.cli import spec_to_json
from archc.diagnostics import ArchcError
from archc.loader import MAX_SPEC_BYTES, load, parse_value

ROOT_SPECS = Path(__file__).resolve().parent.parent / "specs"


def errors(spec, **kw):
    with pytest.raises(ArchcError) as err:
        archc.check(spec, **kw)
    return err.value.diagnostics


def test_imports_resolve_relative_to_the_importing_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.arch").write_text('import "b.arch"\nblock a(w): b(w); relu\n')
    (tmp_path / "lib" / "b.arch").write_text("block b(w): conv 1x1, w\n")
    (tmp_path / "net.arch").write_text('import "lib/a.arch"\ninput 4x4x2\na(3)\n')
    plan = archc.check(tmp_path / "net.arch")
    assert [n.name for n in plan.nodes] == ["a.conv", "a.relu"]


def test_local_blocks_win_over_imported_ones(tmp_path):
    (tmp_path / "lib.arch").write_text("block b(w): conv 1x1, w\n")
    (tmp_path / "net.arch").write_text('import "lib.arch"\ninput 4x4x2\nblock b(w): conv 3x3, w\nb(3)\n')
    assert archc.check(tmp_path / "net.arch").output_shape == (2, 2, 3)


def test_imports_cannot_escape_or_loop(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "outside.arch").write_text("block b(): relu\n")
    (inner / "net.arch").write_text('import "../outside.arch"\ninput 4x4x2\nb()\n')
    [diag] = errors(inner / "net.arch")
    assert diag.code == "A107" and "outside" in diag.message and diag.span.line == 1
    assert archc.check(inner / "net.arch", allow=[tmp_path]).output_shape == (4, 4, 2)
    (inner / "a.arch").write_text('import "b.arch"\nblock a(): relu\n')
    (inner / "b.arch").write_text('import "a.arch"\nblock b(): relu\n')
    (inner / "loop.arch").write_text('import "a.arch"\ninput 4x4x2\na()\n')
    [diag] = errors(inner / "loop.arch")
    assert diag.code == "A107" and "itself" in diag.message
    (inner / "abs.arch").write_text('import "/etc/passwd"\ninput 4x4x2\nrelu\n')
    assert errors(inner / "abs.arch")[0].code == "A107"


def test_an_imported_file_holds_only_blocks(tmp_path):
    (tmp_path / "lib.arch").write_text("input 4x4x2\nrelu\n")
    (tmp_path / "net.arch").write_text('import "lib.arch"\ninput 4x4x2\nrelu\n')
    assert errors(tmp_path / "net.arch")[0].code == "A107"


def test_missing_import(tmp_path):
    (tmp_path / "net.arch").write_text('import "nope.arch"\ninput 4x4x2\nrelu\n')
    [diag] = errors(tmp_path / "net.arch")
    assert diag.code == "A004" and diag.span.line == 1


def test_oversized_files_are_refused_before_reading(tmp_path):
    big = tmp_path / "big.arch"
    with big.open("wb") as f:
        f.truncate(MAX_SPEC_BYTES + 1)
    [diag] = errors(big)
    assert diag.code == "A301"


def test_non_utf8(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_bytes(b"input 4x4x1\n\xff\xfe\n")
    assert errors(bad)[0].code == "A002"


def test_json_round_trip_is_the_identity(tmp_path):
    text = ('network n "d"\ninput 8x8x3\nparam k=2\nblock b(w, s=1):\n  residual:\n    conv 3x3, w, stride=s, '
            'same, bn, relu\n  relu\nst 8x8: b(k*2) x 2 -> 8x8x4\nconcat:\n  conv 1x1, 2\n  p: maxpool 3x3, '
            'stride=1, same\ndropout 40%\n')
    spec = load(text).spec
    again = load(spec_to_json(spec)).spec
    assert spec_to_json(again) == spec_to_json(spec)
    a, b = archc.check(text), archc.check(spec_to_json(spec))
    assert [(n.name, n.shape, n.params) for n in a.nodes] == [(n.name, n.shape, n.params) for n in b.nodes]


def test_json_errors_point_into_the_json(tmp_path):
    spec = json.loads(spec_to_json(load("input 8x8x3\nconv 3x3, 4\nconv 9x9, 4\n").spec))
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec, indent=2))
    [diag] = errors(path)
    assert diag.code == "A201" and diag.span.file == str(path) and diag.span.line > 1
    spec["body"][0]["kind"] = "layr"
    path.write_text(json.dumps(spec, indent=2))
    [diag] = errors(path)
    lines = path.read_text().splitlines()
    assert diag.code == "A005" and lines[diag.span.line - 1].strip() == "{" and "layr" in lines[diag.span.line]
    path.write_text('{"body": [}')
    [diag] = errors(path)
    assert diag.code == "A005" and (diag.span.line, diag.span.column) == (1, 11)
    path.write_text("[1, 2]")
    assert errors(path)[0].code == "A005"


def test_json_is_never_evaluated(tmp_path):
    payload = {"input": {"kind": "dims", "dims": [4, 4, 1]},
               "body": [{"kind": "layer", "op": "__import__('os').system('echo pwned')", "args": []}]}
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(payload))
    [diag] = errors(path)
    assert diag.code == "A005" and "is not a name" in diag.message  # refused before anything reads it


@pytest.mark.parametrize("text, value", [("10", 10), ("32x32x3", (32, 32, 3)), ("0.5", 0.5), ("true", True),
                                         ("same", "same"), ("2*8", 16)])
def test_set_values(text, value):
    assert parse_value(text) == value


_SIDE = st.text("0123456789", min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(_SIDE, min_size=1, max_size=4).map("x".join) | st.sampled_from(["0", "007", "1x", "x1", "1xx2"]))
def test_plain_set_values_read_as_the_parser_reads_them(text):
    """`10` and `224x224x3` skip the parser (loader._PLAIN_VALUE); every other text (20 digits, `1x`) goes to it,
    and both give the same value of the same type, or the same error."""
    def outcome(read):
        try:
            value = read(text)
            return type(value), value
        except ArchcError as e:
            return e.diagnostics[0].code

    fast = outcome(parse_value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "_PLAIN_VALUE", re.compile(r"(?!)"))  # matches nothing: always the parser
        assert outcome(parse_value) == fast


def test_the_api_load_gives_a_self_contained_ir(tmp_path):
    spec = archc.load(ROOT_SPECS / "resnet50.arch")
    assert spec.imports == [] and {"bottleneck", "bottleneck_stage"} <= {b.name for b in spec.blocks}
    assert archc.check(spec).trainable_params == 25_557_032
    saved = tmp_path / "resnet50.json"
    saved.write_text(spec_to_json(spec))  # anywhere: it imports nothing
    assert archc.check(saved, classes=10).output_shape == (10,)
