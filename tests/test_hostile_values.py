"""Hostile input, round two (issue 14): time and memory bombs in rules, expressions, summaries, suggestions and
diagnostics; backends that allocated what a spec only describes; pictures of huge networks; argument values that
checked but no backend could build; and specs that checked silently though they are likely mistakes (warnings).
Each test names the instance it was filed for and covers its class."""

from __future__ import annotations

import difflib
import json
import random
import time
import tracemalloc

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import archc
from archc.cli import main
from archc.diagnostics import ArchcError, Diagnostic, Span, _closest, did_you_mean, render_text
from archc.exprs import FUNCS, MAX_ROUND_DIGITS
from archc.ir import MAX_INT
from archc.ops import MAX_DIM, MAX_ELEMENTS, _window_sees_padding_only
from archc.plan import StageSource
from archc.render import spec_row

FAST = 1.0  # seconds: each of these finished in well under a second once fixed (minutes before)


def timed(fn, *args, **kw):
    start = time.perf_counter()
    result = fn(*args, **kw)
    return result, time.perf_counter() - start


def codes(spec: str, **kw) -> list[str]:
    with pytest.raises(ArchcError) as info:
        archc.check(spec, **kw)
    return [d.code for d in info.value.diagnostics]


# ---------------------------------------------------------------- pooling windows over padding: arithmetic


def test_a_billion_wide_pooling_window_is_decided_at_once():
    """Filed: `maxpool (100000001, 1), stride=(2, 1), padding=(200000000, 8192, 0, 0), dilation=(2, 1)` on a 1x1
    input hung `check` (a scan over every window position)."""
    spec = ("input 1x1x1\nmaxpool (100000001, 1), stride=(2, 1), padding=(200000000, 8192, 0, 0), "
            "dilation=(2, 1)\n")
    plan, elapsed = timed(archc.check, spec)
    assert elapsed < FAST
    assert plan.output_shape == (4097, 1, 1)  # every window's taps land on the one pixel: valid


@pytest.mark.parametrize("padding, dilation", [((0, 2_000_000_000, 0, 0), 1), ((1_000_000_000, 0, 0, 0), 3),
                                               ((999_999_999, 1_000_000_000, 0, 0), 2)])
def test_pooling_windows_over_padding_are_found_at_any_size(padding, dilation):
    spec = f"input 3x1x1\navgpool (2, 1), stride=(1, 1), padding={padding}, dilation=({dilation}, 1)\n"
    start = time.perf_counter()
    assert "A207" in codes(spec)
    assert time.perf_counter() - start < FAST


def _scan(size, out, stride, before, kernel, dilation) -> bool:
    return any(not any(0 <= o * stride - before + i * dilation < size for i in range(kernel)) for o in range(out))


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 9), st.integers(1, 6), st.integers(1, 14), st.integers(1, 7), st.integers(0, 40),
       st.integers(0, 40))
def test_the_arithmetic_agrees_with_a_scan_of_every_window(size, kernel, dilation, stride, before, after):
    extent = dilation * (kernel - 1) + 1
    padded = size + before + after
    if extent > padded:
        return
    out = (padded - extent) // stride + 1
    assert _window_sees_padding_only(size, out, stride, before, kernel, dilation) == \
        _scan(size, out, stride, before, kernel, dilation)


# ---------------------------------------------------------------- expression functions


def test_round_to_minus_a_billion_digits_is_refused_at_once():
    """Filed: `round(5, -1000000000)` hung (Python computes 10**1000000000 first)."""
    start = time.perf_counter()
    assert codes("input 8x8x3\nparam n=round(5, -1000000000)\nrelu\n") == ["A115"]
    assert time.perf_counter() - start < FAST
    assert archc.check(f"input 8x8x3\nparam n=round(1234, -{MAX_ROUND_DIGITS})\nrelu\n").params["n"] == 0
    assert archc.check("input 8x8x3\nparam n=round(1250, -2)\nrelu\n").params["n"] == 1200


@pytest.mark.parametrize("func", sorted(FUNCS))
def test_every_function_is_fast_at_the_edges_of_numbers(func):
    """The class: no function of the language may take long whatever numbers it is given."""
    edges = [0, 1, -1, MAX_INT, -MAX_INT, 10**18, 1e308, -1e308, 5e-324, 0.5]
    for a in edges:
        for b in [None, *edges]:
            call = f"{func}({a!r})" if b is None else f"{func}({a!r}, {b!r})"
            start = time.perf_counter()
            try:
                archc.check(f"input 8x8x3\nparam n={call}\nrelu\n")
            except ArchcError as e:
                assert {d.code for d in e.diagnostics} <= {"A103", "A115", "A116"}, e.render()
            assert time.perf_counter() - start < FAST, call


# ---------------------------------------------------------------- stage rows through wrapper blocks


def _wrappers(levels: int, fan: int) -> str:
    lines = [f"block w{levels}():", "  relu"]
    for i in range(levels - 1, -1, -1):
        lines += [f"block w{i}():"] + [f"  w{i + 1}()"] * fan
    return "\n".join(lines) + "\n"


def test_a_stage_row_through_a_hundred_million_wrapper_calls_is_counted():
    """Filed: a stage over wrappers (`w0` calls `w1` ten times, ... eight levels) ran past the layer limit while
    building its summary row. The row is counted per block and arguments, not enumerated."""
    plan = archc.check("input 8x8x3\n" + _wrappers(8, 10) + "s: w8()\n")
    call = plan.stage_sources["s"].items[0].model_copy(update={"block": "w0"})
    row, elapsed = timed(spec_row, plan, StageSource([call], plan.stage_sources["s"].env))
    assert elapsed < FAST
    assert row == "w8 x 100000000"


def test_a_long_row_is_cut():
    body = "".join(f"  b{i}()\n" for i in range(20))
    blocks = "".join(f"block b{i}():\n  relu\n" for i in range(20))
    plan = archc.check(f"input 8x8x3\n{blocks}block w():\n{body}s: w()\n")
    row = spec_row(plan, plan.stage_sources["s"])
    assert row.endswith(", ...") and row.count(",") == 8


def test_wrappers_over_an_unknown_input_are_walked_once():
    """The same wrappers over a layer that fails: the walk went through all 10^8 calls (no layer is added, so the
    layer limit never stopped it)."""
    spec = "input 8x8x3\n" + _wrappers(8, 10).replace("  relu\n", "  relu x (0 - 1)\n") + "s: w0()\n"
    start = time.perf_counter()
    assert codes(spec) == ["A117"]
    assert time.perf_counter() - start < FAST


def test_wrappers_that_add_no_layer_are_bounded_by_the_call_limit():
    """`x 0` leaves an item out, so 10^8 calls of wrappers around an empty block add no layer: the layer limit
    alone never stopped that walk (it grew to all of the machine's memory). Calls are bounded like layers."""
    spec = "input 8x8x3\n" + _wrappers(8, 10).replace("  relu\n", "  relu x 0\n") + "s: w0()\nrelu\n"
    start = time.perf_counter()
    assert codes(spec, max_layers=20_000) == ["A301"]  # the default limit (200,000 calls) takes ~5 s
    assert time.perf_counter() - start < FAST


# ---------------------------------------------------------------- did-you-mean


def test_did_you_mean_over_6000_long_names_is_bounded():
    """Filed: 10 unknown calls among 6,000 block names of 128 characters took 75 s (difflib compares each pair
    in quadratic time)."""
    rng = random.Random(1)
    names = ["b" + "".join(rng.choice("abcdefghij") for _ in range(127)) for _ in range(6000)]
    words = ["x" + "".join(rng.choice("abcdefghij") for _ in range(127)) for _ in range(10)]
    _closest.cache_clear()
    start = time.perf_counter()
    for word in words:
        did_you_mean(word, names)
    assert time.perf_counter() - start < 2 * FAST
    for typo, meant in ((names[17][:-1] + "z", names[17]), ("z" + names[18][1:], names[18]),
                        (names[19][:60] + "q" + names[19][61:], names[19])):  # a typo at the end, start, middle
        assert did_you_mean(typo, names) == f"did you mean `{meant}`?"


@settings(max_examples=200, deadline=None)
@given(st.text("abcde_", min_size=1, max_size=12), st.lists(st.text("abcde_", min_size=1, max_size=12),
                                                           max_size=30))
def test_did_you_mean_is_difflibs_answer_among_few_names(word, candidates):
    expected = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    assert _closest(word, tuple(candidates)) == (expected[0] if expected else None)


# ---------------------------------------------------------------- diagnostics on long lines


def test_a_hundred_errors_on_a_one_mib_line_print_a_little():
    """Filed: 100 errors on one 1 MiB line printed 105 MB (the whole line under each)."""
    line = "; ".join(["relu"] * 500 + ["bogus"] * 100 + ["relu"] * 170_000)
    spec = "input 8x8x3\n" + line + "\n"
    with pytest.raises(ArchcError) as info:
        archc.check(spec)
    text = info.value.render()
    assert len(text) < 100 * 1024
    assert "bogus" in text and "..." in text


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 3200), st.integers(0, 400))
def test_the_caret_stays_under_the_span_in_a_window(length, column, width):
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    diag = Diagnostic("A101", "x", Span(file="f", line=1, column=column, end_line=1, end_column=column + width))
    out = render_text([diag], {"f": text}).splitlines()
    shown, carets = out[3].split(" | ", 1)[1], out[4].split(" | ", 1)[1]
    assert len(shown) <= 166
    start = carets.index("^")
    clamped = min(max(column, 1), length + 1)
    under = shown[start:start + len(carets.strip())].replace("...", "")
    assert text[clamped - 1:].startswith(under)


# ---------------------------------------------------------------- values every backend builds


@pytest.mark.parametrize("spec, code", [
    ("input 8x8x3\nlrn alpha=1e308\n", "A104"),
    ("input 8x8x3\nelu alpha=1e308\n", "A104"),
    ("input 8x8x3\nlrn size=0\n", "A104"),
    ("input 8x8x3\nlrn size=4\n", "A104"),  # ONNX Runtime refuses an even size
    ("input 8x8x3\nlrn alpha=0\n", "A104"),  # ... and a zero alpha (found by tests/property/test_arg_edges.py)
    ("input 8x8x3\nbatchnorm epsilon=-1\n", "A104"),
    ("input 8x8x3\nbatchnorm momentum=1.5\n", "A104"),
    ("input 8x8x3\nconv 3x3, 4, padding=(1, -1, 0, 0)\n", "A104"),
    ("input 8x8x3\nmaxpool 2x2, padding=9223372036854775807\n", "A104"),
    ("input 8x8x3\nconv 1x1, 4, padding=(1500000000, 1500000000, 0, 0)\n", "A301"),
    (f"input {MAX_DIM + 1}x1x1\nrelu\n", "A301"),
    ("input 2000000x2000000x1\nrelu\n", "A301"),
    ("input 5x7x3\nmaxpool (2147483646, 2147483647), padding=same\n", "A301"),  # padded past int32 (property)
    ("input 8x8x3\nconv 3x3, 3000000000\n", "A104"),
    ("input 8\ndense 0\n", "A104"),
])
def test_values_no_backend_builds_are_refused(spec, code):
    assert code in codes(spec)


def test_json_infinity_is_refused():
    spec = {"input": {"kind": "dims", "dims": [8, 8, 3]},
            "body": [{"kind": "layer", "op": "lrn", "args": [{"name": "alpha", "value": 1e999}]}]}
    assert "A115" in codes(json.dumps(spec).replace("Infinity", "1e999"))


def test_every_size_stays_inside_the_bounds():
    assert MAX_DIM < 2**31 and MAX_ELEMENTS * 2**20 < 2**63  # a batch of a million fits int64


def test_dilated_pooling_padded_beyond_the_kernel_runs_in_onnx_runtime():
    """Filed: `maxpool 2x2, stride=1, dilation=3, padding=2` built an ONNX file ONNX Runtime refused (its pads
    must be below the kernel, not the dilated extent). Average pooling takes the same path."""
    np = pytest.importorskip("numpy")
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    for kind in ("maxpool", "avgpool"):
        spec = f"input 9x7x3\n{kind} 2x2, stride=1, dilation=3, padding=2\n"
        session = ort.InferenceSession(archc.compile(spec, backend="onnx").SerializeToString())
        x = np.random.default_rng(0).standard_normal((2, 3, 9, 7)).astype(np.float32)
        got = session.run(None, {"input": x})[0]
        with torch.no_grad():
            want = archc.compile(spec, backend="torch").eval()(torch.from_numpy(x)).numpy()
        assert np.allclose(got, want, atol=1e-6), kind


def test_onnx_average_pooling_with_padding_allocates_nothing_of_the_input_size():
    """Filed: a zero-parameter average pooling on a 30000x30000 input reached 13 GB (a constant ones-mask)."""
    pytest.importorskip("onnx")
    tracemalloc.start()
    try:
        model = archc.compile("input 30000x30000x1\navgpool 2x2, stride=1, dilation=3, padding=2\n", backend="onnx")
        data = model.SerializeToString()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024 and len(data) < 10_000


def test_an_onnx_model_past_protobufs_limit_is_refused_up_front():
    """Filed: a 540 M-parameter ONNX model failed after 67 s and 6.4 GB inside protobuf."""
    pytest.importorskip("onnx")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ArchcError) as info:
            archc.compile("input 540000000\ndense 1\n", backend="onnx")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.diagnostics[0].code == "A302" and "2 GiB" in info.value.diagnostics[0].message
    assert time.perf_counter() - start < 5 and peak < 64 * 1024 * 1024


def test_pt2_export_does_not_allocate_the_example_input(monkeypatch):
    """Filed: `--format pt2` of a 314-parameter model on a 20000x20000 input allocated 12.3 GB (the example)."""
    torch = pytest.importorskip("torch")
    from archc.backends import get_backend

    seen = {}

    def export(model, args, **kw):
        seen["example"] = args[0]
        raise RuntimeError("stop here")

    monkeypatch.setattr(torch.export, "export", export)
    with pytest.raises(ArchcError):
        get_backend("torch").write(archc.check("input 20000x20000x3\nconv 3x3, 8, stride=2\ngap\ndense 10\n"), "pt2")
    example = seen["example"]
    assert tuple(example.shape) == (2, 3, 20000, 20000)
    assert example.untyped_storage().nbytes() <= 8


def test_an_exported_program_runs_on_real_inputs():
    torch = pytest.importorskip("torch")
    import io

    from archc.backends import get_backend

    plan = archc.check("input 16x16x3\nconv 3x3, 8, stride=2, bn, relu\ngap\ndense 10\n")
    program = torch.export.load(io.BytesIO(get_backend("torch").write(plan, "pt2")))
    model = archc.compile(plan, backend="torch").eval()
    model.load_state_dict(program.state_dict)  # the exported weights; the traced example never mattered
    x = torch.randn(3, 3, 16, 16)
    assert torch.allclose(program.module()(x), model(x), atol=1e-6)


@pytest.mark.parametrize("name", ["__debug__", "__x", "__x__y"])
def test_dunder_names_build_in_torch_and_transfer_to_keras(name):
    """Filed: a scope `__debug__` gave torch source that does not compile; `__x` was name-mangled inside the class,
    so transfer failed. They are registered with add_module and read with `[...]`."""
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    pytest.importorskip("keras")
    spec = f"input 6x6x3\n{name}: conv 3x3, 4, relu\nblock b():\n  {name}: conv 1x1, 2\nb()\n"
    model = archc.compile(spec, backend="torch").eval()
    assert f"{name}.conv.weight" in model.state_dict() and f"b.{name}.conv.weight" in model.state_dict()
    from archc.backends import get_backend

    compile(get_backend("torch").write(archc.check(spec), "py").decode(), "<generated>", "exec")
    keras_model = archc.compile(spec, backend="keras")
    archc.transfer_weights(model, keras_model)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert np.allclose(np.asarray(keras_model(x)), want, atol=1e-5)


# ---------------------------------------------------------------- pictures


def test_a_concat_of_4990_branches_finds_its_skip_edges_in_linear_time():
    """Filed: 30 s to graph, 143 s to report (`_skip_edges` compared every pair of a merge's inputs)."""
    from archc.graph import _skip_edges

    branches = "".join(f"  b{i}: conv 1x1, 1\n" for i in range(4990))
    plan = archc.check("input 8x8x3\nconv 1x1, 3\nconcat:\n" + branches + "  s: identity\n")
    skips, elapsed = timed(_skip_edges, plan)
    assert elapsed < FAST
    assert skips == set()  # parallel branches: none feeds another


def test_skip_edges_are_the_ones_that_feed_another_input():
    from archc.graph import _skip_edges

    plan = archc.check("input 8x8x3\nconv 1x1, 3\nresidual concat:\n  relu\n  relu\nconcat:\n  a: relu\n"
                       "  b: identity\n  c: relu; relu\n")
    assert _skip_edges(plan) == {("conv", "concat1")}


def test_a_stage_picture_of_a_stageless_network_is_capped_and_says_so():
    """Filed: a stage-level picture of a 199k-layer stage-less network crashed Graphviz."""
    from archc.graph import MAX_DRAWN_STAGES, REST, picture, stage_drawing

    plan = archc.check("input 8x8x3\n" + "relu\n" * 3 * MAX_DRAWN_STAGES)
    drawing = stage_drawing(plan)
    assert len(drawing.nodes) == MAX_DRAWN_STAGES + 1  # with the input
    assert drawing.nodes[-1][0] == REST and drawing.output == REST
    assert f"of {3 * MAX_DRAWN_STAGES:,} rows drawn" in drawing.title
    assert f"{2 * MAX_DRAWN_STAGES + 1:,} more rows" in picture(plan, "dot", "stage").decode()


def test_report_pages_of_big_networks_use_archcs_own_svg(monkeypatch):
    from archc import report

    plan = archc.check("input 8x8x3\nconcat:\n" + "".join(f"  b{i}: relu\n" for i in range(1200)))
    monkeypatch.setattr("archc.graph.render", lambda *a, **k: pytest.fail("Graphviz was asked"))
    monkeypatch.setattr("archc.graph.have_dot", lambda: True)
    assert report._svg(plan, "layer") is None


# ---------------------------------------------------------------- warnings


def test_a_stage_named_like_a_layer_kind_warns():
    """Filed: a stage named like a merge (`multiply:` before the kind existed) over two items ran them one after
    the other and checked silently."""
    plan = archc.check("input 8x8x3\nconv:\n  relu\n  sigmoid\n")
    assert [d.code for d in plan.warnings] == ["A119"]
    assert plan.warnings[0].severity == "warning" and "add" in plan.warnings[0].help
    assert not archc.check("input 8x8x3\nadd:\n  relu\n  sigmoid\n").warnings  # branches of a merge
    assert not archc.check("input 8x8x3\nconv1: relu; sigmoid\n").warnings


def test_an_automatic_shortcut_that_skips_most_pixels_warns():
    """Filed: a residual whose body pools to 1x1 got a `shortcut.conv 1x1/56` reading one pixel in 3,136."""
    plan = archc.check("input 56x56x64\nresidual add:\n  conv 3x3, 128, same; maxpool 56x56\n")
    assert [d.code for d in plan.warnings] == ["A208"]
    assert "3,136" in plan.warnings[0].message and "shortcut:" in plan.warnings[0].help
    assert not archc.check("input 56x56x64\nresidual add:\n  conv 3x3, 128, stride=2, same\n").warnings


def test_warnings_print_without_failing(tmp_path):
    spec = tmp_path / "w.arch"
    spec.write_text("input 8x8x3\nconv:\n  relu\n  sigmoid\n")
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 0
    assert "warning[A119]" in result.output  # CliRunner mixes standard error in
    data = json.loads(CliRunner().invoke(main, ["check", str(spec), "--format", "json"]).stdout)
    assert data["ok"] and [w["code"] for w in data["warnings"]] == ["A119"]


def test_the_shipped_specs_have_no_warnings():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.arch")):
        if path.name != "blocks.arch":
            assert not archc.check(str(path)).warnings, path.name

