"""The grammar and the structural transformer: text -> IR, with positions."""

import pytest
from helpers import strip_spans

from archc import ir
from archc.diagnostics import ArchcError
from archc.parser import MAX_SYNTAX_ERRORS, parse


def body(text):
    return strip_spans(parse(text, "t.arch"))["body"]


def test_header_statements():
    spec = parse('network net "A description"\ninput 32x32x3\nparam classes=10, w = 2*8\nimport "b.arch"\n', "t")
    assert spec.name == "net" and spec.description == "A description"
    assert strip_spans(spec.input) == {"kind": "dims", "dims": [32, 32, 3]}
    assert [p.name for p in spec.params] == ["classes", "w"]
    assert spec.imports[0].path == "b.arch"


def test_layer_arguments_positional_keyword_and_flags():
    [layer] = body("conv 3x3, 64, stride=2, same, bn, relu\n")
    assert layer["op"] == "conv"
    args = layer["args"]
    assert args[0]["value"] == {"kind": "dims", "dims": [3, 3]}
    assert args[1]["value"] == 64
    assert args[2] == {"name": "stride", "value": 2}
    assert [a["value"]["id"] for a in args[3:]] == ["same", "bn", "relu"]


def test_repeat_expect_and_unicode_times():
    items = body("conv 3x3, 64, relu x 2 -> 28x28x64\nbottleneck(64) × 3\n")
    assert items[0]["repeat"] == 2
    assert items[0]["expect"] == {"kind": "dims", "dims": [28, 28, 64]}
    assert items[1]["kind"] == "call" and items[1]["repeat"] == 3


def test_calls_need_no_space_before_parenthesis():
    [call] = body("bottleneck(128, stride=2)\n")
    assert call == {"kind": "call", "block": "bottleneck", "repeat": None, "expect": None,
                    "args": [{"name": None, "value": 128}, {"name": "stride", "value": 2}]}
    [layer] = body("dense (10 + 2) * 2\n")
    assert layer["kind"] == "layer" and layer["args"][0]["value"]["op"] == "*"


def test_expressions():
    [layer] = body("conv 1x1, int(in.c * 0.5) if a >= 2 and not b else -1, stride=(2, 1)\n")
    value = layer["args"][1]["value"]
    assert value["kind"] == "cond"
    assert value["then"]["kind"] == "func" and value["then"]["args"][0]["left"] == {"kind": "name", "id": "in.c"}
    assert value["orelse"] == -1
    assert layer["args"][2]["value"] == {"kind": "dims", "dims": [2, 1]}
    [layer] = body("dense 2 - 1 + a - -b\n")
    value = layer["args"][0]["value"]
    assert value["op"] == "-" and value["right"] == {"kind": "unary", "op": "-", "operand": {"kind": "name", "id": "b"}}
    assert value["left"]["op"] == "+" and value["left"]["left"] == {"kind": "binop", "op": "-", "left": 2, "right": 1}
    [layer] = body("dropout 40%\n")
    assert layer["args"][0]["value"] == {"kind": "percent", "value": 0.4}
    [layer] = body("lrn alpha=1e-4, beta=.75\n")
    assert [a["value"] for a in layer["args"]] == [1e-4, 0.75]


def test_scopes_inline_and_indented():
    items = body("conv1 112x112 : conv 7x7, 64\nconv2_x:\n  maxpool 3x3\n  conv 3x3, 64\n")
    assert items[0]["kind"] == "scope" and items[0]["name"] == "conv1"
    assert items[0]["expect"] == {"kind": "dims", "dims": [112, 112]}
    assert len(items[1]["body"]) == 2 and items[1]["expect"] is None


def test_residual_with_shortcut_and_concat():
    [res] = body("residual:\n  conv 3x3, 8\nshortcut:\n  conv 1x1, 8\n")
    assert res["merge"] == "add" and len(res["body"]) == 1 and len(res["shortcut"]) == 1
    [res] = body("residual concat: bn; conv 3x3, 8\n")
    assert res["merge"] == "concat" and len(res["body"]) == 2 and res["shortcut"] is None


def test_branches_named_and_unnamed():
    [br] = body("concat:\n  conv 1x1, 8\n  b2: conv 1x1, 4; conv 3x3, 8\n  maxpool 3x3, stride=1, same\n")
    assert br["merge"] == "concat"
    assert [b["name"] for b in br["branches"]] == [None, "b2", None]
    assert len(br["branches"][1]["body"]) == 2


def test_block_definitions():
    spec = parse("block f(a, b=2):\n  conv 3x3, a\n  conv 3x3, b\nblock g(x1): f(x1)\n", "t")
    assert [b.name for b in spec.blocks] == ["f", "g"]
    assert [p.name for p in spec.blocks[0].params] == ["a", "b"]
    assert spec.blocks[0].params[1].default == 2


def test_comments_blank_lines_and_groups():
    items = body("# top\n\nconv 3x3, 8  # trailing\n  # indented comment\n(conv 3x3, 8; maxpool 2) x 2\n")
    assert [i["kind"] for i in items] == ["layer", "group"]
    assert items[1]["repeat"] == 2


def test_spans_are_kept():
    spec = parse("input 8x8x1\n\nconv 3x3, 8, relu\n", "f.arch")
    layer = spec.body[0]
    assert (layer.span.file, layer.span.line, layer.span.column) == ("f.arch", 3, 1)
    assert layer.args[2].span.column == 14


@pytest.mark.parametrize("text, line, column, fragment", [
    ("conv 3x3 64\n", 1, 10, "expected"),
    ("conv 3x3, 64,\n", 1, 14, "unexpected end of line"),
    ("input 8x8x1\nconv 3x3, 8 $\n", 2, 13, "unexpected character `$`"),
    ("block f(a):\nconv 3x3, a\n", 2, 1, "unexpected"),
    ("conv 3x3, 8\n    conv 3x3, 8\n", 2, 5, "unexpected indented block"),
    ("stage:\n    conv 3x3, 8\n  conv 3x3, 8\n", 3, 1, "indented by 2"),
    ("conv 3x3, (8\n", 1, 13, "unexpected end of file"),
    ("conv 3x3, 8)\n", 1, 12, "unexpected `)`"),
])
def test_syntax_errors_have_positions(text, line, column, fragment):
    with pytest.raises(ArchcError) as err:
        parse(text, "bad.arch")
    [diag] = err.value.diagnostics
    assert diag.span.file == "bad.arch"
    assert (diag.span.line, diag.span.column) == (line, column), err.value.render()
    assert fragment in diag.message + diag.label


def test_every_statement_with_a_syntax_error_is_reported():
    text = ("input 8x8x3\nconv 3x3 8\nstage:\n  relu\n  conv 3x3, (8\n  relu\n"
            "residual:\n  conv 3x3, 8 8\nshortcut:\n  conv 1x1, 8\n"  # `shortcut:` is no new statement
            "relu\n# a comment, then a good line\nglobalavgpool\ndense 10 softmax\n")
    with pytest.raises(ArchcError) as err:
        parse(text, "bad.arch")
    assert [(d.span.line, d.span.column) for d in err.value.diagnostics] == [(2, 10), (6, 3), (8, 15), (14, 10)]


def test_problems_before_a_syntax_error_are_reported_too():
    """`a < b < c` shows only when the walk into IR reaches it, which a later syntax error stops: the statements
    before the syntax error are checked on their own."""
    text = ("input 8x8x3\nparam a = 1 < 2 < 3\nconv 3x3, 8\nstage:\n  dense 99999999999999999999\n"
            "relu\nconv 3x3 8\nrelu\nparam b = 1 < 2 < 3\nconv 3x3 8\n")
    with pytest.raises(ArchcError) as err:
        parse(text, "bad.arch")
    found = [(d.span.line, d.code) for d in err.value.diagnostics]
    assert found == [(2, "A001"), (5, "A301"), (7, "A001"), (9, "A001"), (10, "A001")], err.value.render()


def test_syntax_errors_are_capped():
    with pytest.raises(ArchcError) as err:
        parse("input 8x8x3\n" + "conv 3x3 8\n" * 1_000, "bad.arch")
    assert len(err.value.diagnostics) == MAX_SYNTAX_ERRORS
    assert [d.span.line for d in err.value.diagnostics] == list(range(2, 2 + MAX_SYNTAX_ERRORS))


def test_errors_spread_through_a_long_spec_are_all_reported():
    good = "conv 3x3, 8, same\n" * 2_000
    with pytest.raises(ArchcError) as err:
        parse("input 8x8x3\n" + "".join("dense 10 10\n" + good for _ in range(10)), "bad.arch")
    assert [d.span.line for d in err.value.diagnostics] == [2 + 2_001 * i for i in range(10)]


def test_recovery_is_bounded_when_each_error_needs_a_whole_parse(monkeypatch):
    """Some errors show only after the whole text is parsed (a number too large, `a < b < c`): recovery stops
    after about two more parses instead of one per error."""
    import archc.parser as parser_module

    parsed = []
    original = parser_module._ToIR.transform
    monkeypatch.setattr(parser_module._ToIR, "transform", lambda self, tree: parsed.append(1) or original(self, tree))
    good = "conv 3x3, 8, same\n" * 500
    with pytest.raises(ArchcError) as err:
        parse("input 8x8x3\n" + "".join("dense 10 if 1 < 2 < 3 else 1\n" + good for _ in range(10)), "bad.arch")
    assert 2 <= len(err.value.diagnostics) <= 4 and len(parsed) <= 4
    assert all("do not chain" in d.message for d in err.value.diagnostics)


def test_ir_json_round_trip():
    spec = parse("network n\ninput 8x8x3\nparam k=2\nblock b(w):\n  residual: conv 3x3, w, same\n"
                 "s1 8x8: b(k*2) x 2\nconcat:\n  conv 1x1, 2\n  x1: maxpool 3x3, stride=1, same\n", "t")
    again = ir.Spec.model_validate_json(spec.model_dump_json())
    assert strip_spans(again) == strip_spans(spec)
