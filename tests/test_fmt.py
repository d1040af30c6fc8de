"""`archc fmt` and `archc convert --to arch`: same IR, comments kept, a fixed point of itself."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc import ir
from archc.cli import main, spec_to_json
from archc.diagnostics import ArchcError
from archc.fmt import comments_of, format_spec, format_text, same_spec
from archc.loader import parse_json
from archc.parser import parse

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.arch"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_shipped_specs_are_canonical(path):
    text = path.read_text()
    assert format_text(text, str(path)) == text


def test_messy_spec_gets_canonical_layout():
    text = (FIXTURES / "messy.arch").read_text()
    out = format_text(text)
    assert out == (FIXTURES / "messy.formatted.arch").read_text()
    assert same_spec(parse(out), parse(text))
    assert format_text(out) == out
    assert [c.text for c in comments_of(out)] == [c.text for c in comments_of(text)]


def test_stage_rows_align_like_the_table():
    text = ("input 224x224x3\nconv1 112x112: conv 7x7, 64, stride=2, same\n"
            "conv2_x 56x56 : maxpool 3x3, stride=2, same\nhead 1x1: globalavgpool;dense 10\n")
    assert format_text(text).splitlines()[1:] == [
        "conv1   112x112 : conv 7x7, 64, stride=2, same",
        "conv2_x  56x56  : maxpool 3x3, stride=2, same",
        "head      1x1   : globalavgpool; dense 10",
    ]


def test_blank_line_ends_an_alignment_run_and_scopes_without_size_align_on_the_colon():
    text = "input 8x8x3\na: relu\nlonger: relu\n\nc 8x8: relu\n"
    assert format_text(text) == "input 8x8x3\na:      relu\nlonger: relu\n\nc 8x8 : relu\n"


def test_comments_survive_everywhere():
    text = (
        "# top\n"
        'network n "not # a comment"  # after network\n'
        "input 8x8x3  # after input\n"
        "block b(w):  # after header\n"
        "  # inside block\n"
        "  conv 3x3, w,   same  # after layer\n"
        "  residual:\n"
        "    relu\n"
        "  # before shortcut\n"
        "  shortcut:  # after shortcut\n"
        "    identity\n"
        "s: (relu;   # inside a group that spans lines\n"
        "    relu)\n"
        "b(4)\n"
        "# bottom\n"
    )
    out = format_text(text)
    assert format_text(out) == out
    kept = "\n".join(c.text for c in comments_of(out))
    for c in comments_of(text):
        assert c.text in kept
    assert '"not # a comment"' in out
    assert "  # inside block\n  conv 3x3, w, same  # after layer\n" in out
    assert "  shortcut:  # after shortcut\n" in out
    assert out.endswith("# bottom\n")


def test_layout_choices_of_the_author_are_kept():
    text = "input 8x8x3\nblock b(): bn; relu\nblock c():\n  bn; relu\n  conv 1x1, 4*in.c\nb()\nc()\n"
    out = format_text(text)
    assert "block b(): bn; relu\n" in out
    assert "block c():\n  bn; relu\n  conv 1x1, 4*in.c\n" in out


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_json_to_text_round_trip(path):
    spec = parse(path.read_text())
    from_json = parse_json(spec_to_json(spec))
    text = format_spec(from_json)
    assert same_spec(parse(text), spec)
    assert format_text(text) == text


def test_unwritable_json_is_a_diagnostic():
    spec = ir.Spec(name="n", input=ir.Str(value='a "quoted" word'))
    with pytest.raises(ArchcError) as e:
        format_spec(spec)
    assert e.value.diagnostics[0].code == "A006"


def test_syntax_error_is_a_diagnostic():
    with pytest.raises(ArchcError) as e:
        format_text("input 8x8x3\nconv 3x3,, 4\n")
    assert e.value.diagnostics[0].code == "A001"


# ---------------------------------------------------------------- CLI


def test_cli_fmt_check_and_rewrite(tmp_path):
    messy = tmp_path / "m.arch"
    messy.write_text((FIXTURES / "messy.arch").read_text())
    runner = CliRunner()
    result = runner.invoke(main, ["fmt", "--check", str(messy)])
    assert result.exit_code == 1 and "would reformat" in result.output
    assert messy.read_text() == (FIXTURES / "messy.arch").read_text()
    result = runner.invoke(main, ["fmt", str(messy)])
    assert result.exit_code == 0
    assert messy.read_text() == (FIXTURES / "messy.formatted.arch").read_text()
    assert runner.invoke(main, ["fmt", "--check", str(messy)]).exit_code == 0


def test_cli_fmt_stdin_and_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["fmt", "-"], input="input   8x8x3\nrelu\n")
    assert result.exit_code == 0 and result.output == "input 8x8x3\nrelu\n"
    bad = tmp_path / "bad.arch"
    bad.write_text("input 8x8x3\nconv 3x3,, 4\n")
    result = runner.invoke(main, ["fmt", str(bad)])
    assert result.exit_code == 1 and "A001" in result.output
    result = runner.invoke(main, ["fmt", str(tmp_path / "x.json")])
    assert result.exit_code == 2


def test_cli_convert_to_arch(tmp_path):
    runner = CliRunner()
    spec = ROOT / "specs" / "resnet50.arch"
    as_json = tmp_path / "r.json"
    assert runner.invoke(main, ["convert", str(spec), "-o", str(as_json)]).exit_code == 0
    result = runner.invoke(main, ["convert", str(as_json), "--to", "arch"])
    assert result.exit_code == 0
    assert same_spec(parse(result.output), parse(spec.read_text()))
    # text to text keeps the comments: it is the formatter
    result = runner.invoke(main, ["convert", str(spec), "--to", "arch"])
    assert result.output == spec.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "n", "input": {"kind": "str", "value": 'a"b'}}))
    result = runner.invoke(main, ["convert", str(bad), "--to", "arch"])
    assert result.exit_code == 1 and "A006" in result.output


# ---------------------------------------------------------------- properties

_names = st.sampled_from(["w", "k", "in.c", "in.h", "stride", "classes"]).map(lambda n: ir.Name(id=n))
_decimal = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3})?", fullmatch=True)
_leaves = st.one_of(
    st.integers(-100, 10_000),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f) or abs(f) < 1e15),
    st.booleans(),
    _names,
    _decimal.map(lambda s: ir.Percent(value=float(s) / 100)),
    st.lists(st.integers(0, 512), min_size=2, max_size=3).map(lambda d: ir.Dims(dims=d)),
    st.text(alphabet="abc #x.", max_size=6).map(lambda s: ir.Str(value=s)),
)
_ops = st.sampled_from(["+", "-", "*", "/", "//", "==", "!=", "<", "<=", ">", ">=", "and", "or"])


def _compound(children):
    return st.one_of(
        st.builds(lambda op, a, b: ir.BinOp(op=op, left=a, right=b), _ops, children, children),
        st.builds(lambda a: ir.UnaryOp(op="not", operand=a), children),
        st.builds(lambda a: ir.UnaryOp(op="-", operand=a), children.filter(
            lambda a: not isinstance(a, (int, float)))),  # the parser folds `-3` into the literal
        st.builds(lambda f, args: ir.Func(func=f, args=args), st.sampled_from(["int", "min", "max", "round"]),
                  st.lists(children, min_size=1, max_size=2)),
        st.builds(lambda a, b, c: ir.Cond(then=a, test=b, orelse=c), children, children, children),
        st.lists(children, min_size=2, max_size=3).map(lambda d: ir.Dims(dims=d)),
    )


_exprs = st.recursive(_leaves, _compound, max_leaves=12)


@settings(max_examples=600 if THOROUGH else 120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_exprs)
def test_any_expression_prints_back_to_itself(value):
    spec = ir.Spec(params=[ir.Param(name="p", default=value)], body=[
        ir.Layer(op="conv", args=[ir.Arg(value=value), ir.Arg(name="stride", value=value)], repeat=value)])
    text = format_spec(spec)  # raises unless the text parses back to this very IR
    assert same_spec(parse(text), spec)


def _mangle(text: str, rnd: random.Random) -> str:
    """The same spec written carelessly: odd spacing, extra blank lines, comments on random lines."""
    out = []
    for number, line in enumerate(text.splitlines()):
        if line.strip() and not line.lstrip().startswith("#") and '"' not in line:
            line = line.replace(", ", rnd.choice([",", ",  ", " , "])).replace("; ", rnd.choice([";", " ;  "]))
            if rnd.random() < 0.3:
                line += rnd.choice([f"  # note {number}", f"# n{number}"])
        out.append(line)
        if rnd.random() < 0.15:
            out.append(rnd.choice(["", f"# standalone {number}", "   "]))
    return "\n".join(out) + "\n"


@settings(max_examples=60 if THOROUGH else 15, deadline=None)
@given(st.sampled_from(SPECS + [FIXTURES / "messy.arch"]), st.integers(0, 2**32))
def test_formatting_a_mangled_spec_keeps_meaning_and_comments(path, seed):
    original = path.read_text()
    mangled = _mangle(original, random.Random(seed))
    out = format_text(mangled)
    assert same_spec(parse(out), parse(original))
    assert format_text(out) == out
    kept = "\n".join(c.text for c in comments_of(out))
    assert all(c.text in kept for c in comments_of(mangled))


# ---------------------------------------------------------------- never a character of a comment lost

# Every character Python's str.splitlines() breaks lines at, except `\n` itself: to the grammar (and so to
# `archc fmt`) they are ordinary characters of a comment.
LINE_BREAK_LIKE = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", LINE_BREAK_LIKE, ids=lambda c: f"U+{ord(c):04X}")
def test_comments_keep_every_character(char):
    text = (f"# standalone{char}tail one\ninput 8x8x3\nconv 3x3, 4  # keep this{char} and this part too\n"
            f"block b():\n  relu  # in a block{char}{char}end\n  # last{char}\nb()\n")
    out = format_text(text)
    for comment in comments_of(text):
        assert comment.text in out
    assert [c.text for c in comments_of(out)] == [c.text for c in comments_of(text)]
    assert "and this part too" in out and "tail one" in out and f"block{char}{char}end" in out
    assert format_text(out) == out
    assert same_spec(parse(out), parse(text))


def test_comment_lines_match_the_grammar_lines():
    """Line numbers of diagnostics and of the formatter agree with the parser's after such a character."""
    from archc.diagnostics import source_lines

    text = "input 8x8x3\n# a\u2028b\x0cc\nconv 3x3, 4\r\nconv 9x9, 4\n"
    assert source_lines(text) == ["input 8x8x3", "# a\u2028b\x0cc", "conv 3x3, 4", "conv 9x9, 4"]
    with pytest.raises(ArchcError) as e:
        import archc

        archc.check(text=text)
    assert "4 | conv 9x9, 4" in e.value.render()


def test_the_comments_check_catches_a_lost_character(monkeypatch):
    """The check that guards `format_text` must fail when the printer drops any part of a comment, even a tail
    that leaves the comment's start in place (the old check looked for each comment as a substring)."""
    import archc.fmt as fmt

    original = fmt.render
    text = "input 8x8x3\nconv 3x3, 4  # keep this and this part too\n# whole\nrelu\n"
    for damage in (lambda out: out.replace(" and this part too", ""), lambda out: out.replace("# whole\n", ""),
                   lambda out: out.replace("too", "too # extra")):
        monkeypatch.setattr(fmt, "render", lambda spec, source=None, d=damage: d(original(spec, source)))
        with pytest.raises(AssertionError):
            fmt.format_text(text)


# ---------------------------------------------------------------- the file fmt rewrites


MESSY = "input   8x8x3\nrelu\n"


def test_fmt_keeps_the_files_mode(tmp_path):
    spec = tmp_path / "m.arch"
    for mode in (0o600, 0o640, 0o755):
        spec.write_text(MESSY)
        spec.chmod(mode)
        assert CliRunner().invoke(main, ["fmt", str(spec)]).exit_code == 0
        assert spec.read_text() == "input 8x8x3\nrelu\n"
        assert spec.stat().st_mode & 0o7777 == mode


def test_fmt_refuses_a_read_only_file(tmp_path):
    spec = tmp_path / "m.arch"
    spec.write_text(MESSY)
    spec.chmod(0o444)
    other = tmp_path / "other.arch"
    other.write_text(MESSY)
    result = CliRunner().invoke(main, ["fmt", str(spec), str(other)])
    assert result.exit_code == 1 and f"cannot write `{spec}`: the file is read-only" in result.stderr
    assert spec.read_text() == MESSY and spec.stat().st_mode & 0o7777 == 0o444
    assert other.read_text() == "input 8x8x3\nrelu\n"  # the other files are still formatted
    assert CliRunner().invoke(main, ["fmt", "--check", str(spec)]).exit_code == 1  # checking needs no writing


def test_fmt_keeps_hard_links_and_symlinks(tmp_path):
    spec = tmp_path / "m.arch"
    spec.write_text(MESSY)
    alias = tmp_path / "alias.arch"
    os.link(spec, alias)
    link = tmp_path / "link.arch"
    link.symlink_to(spec)
    for name in (spec, link):
        spec.write_text(MESSY)
        assert CliRunner().invoke(main, ["fmt", str(name)]).exit_code == 0
        assert alias.read_text() == spec.read_text() == "input 8x8x3\nrelu\n"
        assert os.path.samefile(spec, alias) and spec.stat().st_nlink == 2 and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.arch", "link.arch", "m.arch"]


@pytest.mark.parametrize("written, canonical", [("1e-6", "1e-6"), ("0.000001", "1e-6"), ("1e-06", "1e-6"),
                                                 ("0.001", "0.001"), ("1e-4", "1e-4"), ("2.5e-5", "2.5e-5"),
                                                 ("0.1", "0.1"), ("1e20", "1e20")])
def test_floats_read_as_papers_write_them(written, canonical):
    # repr gives `1e-06`; the papers (and ConvNeXt's layer norms) write `1e-6`
    out = format_text(f"input 4\nlayer_scale {written}\n")
    assert out.splitlines()[-1] == f"layer_scale {canonical}"
