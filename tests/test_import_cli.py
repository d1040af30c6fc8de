"""`archc import` and `archc.import_model`: sources, the dispatcher's diagnostics, --partial, atomic output."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import archc
from archc.cli import main
from archc.diagnostics import ArchcError
from archc.fmt import format_text

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

MODELS = '''
from archc.flat import INPUT, FlatLayer, FlatNetwork, Unsupported


def _conv(i, path):
    return FlatLayer("conv", {"kernel": 3, "filters": 8, "padding": "same"}, (i,), path)


def stem():
    return FlatNetwork((8, 8, 3), [_conv(INPUT, "stem.conv"), FlatLayer("relu", {}, (0,), "stem.relu")], 1,
                       "tiny", "models:stem")


def crossed():
    layers = [_conv(INPUT, "a"), _conv(0, "b"), FlatLayer("add", {}, (0, 1), "c"), FlatLayer("add", {}, (1, 2), "d")]
    return FlatNetwork((8, 8, 3), layers, 3, "crossed")


def gap():
    partial = FlatNetwork((8, 8, 3), [_conv(INPUT, "features.0"), FlatLayer("relu", {}, (0,), "features.1")], 1)
    raise Unsupported("torch.nn.functional.interpolate(mode='area')", "features.2",
                      help="only nearest and bilinear resizing", partial=partial)


def nothing():
    return object()


def broken():
    raise ValueError("needs weights")
'''


@pytest.fixture
def models(tmp_path, monkeypatch):
    (tmp_path / "models.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("models", None)
    yield tmp_path
    sys.modules.pop("models", None)


def _run(*args):
    return CliRunner().invoke(main, ["import", *args])


def test_a_spec_file_imports_to_standard_output():
    result = _run(str(SPECS / "resnet18.arch"))
    assert result.exit_code == 0, result.output
    assert "block basic(w, stride=1):" in result.stdout
    assert format_text(result.stdout) == result.stdout
    plan = archc.check(text=result.stdout)
    assert plan.trainable_params == archc.check(SPECS / "resnet18.arch").trainable_params


def test_output_is_written_atomically_and_checks(tmp_path):
    target = tmp_path / "r.arch"
    result = _run(str(SPECS / "densenet121.arch"), "-o", str(target), "--input", "112x112x3")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr
    text = target.read_text()
    assert "input 112x112x3" in text
    assert archc.check(target).input_shape == (112, 112, 3)


def test_a_callable_is_imported_and_called(models):
    result = _run("models:stem")
    assert result.exit_code == 0, result.output
    assert "conv 3x3, 8, same, relu" in result.stdout and "models:stem" in result.stdout


def test_a_structure_the_language_cannot_write_is_a_diagnostic_and_writes_nothing(models):
    result = _run("models:crossed", "-o", "out.arch")
    assert result.exit_code == 1
    assert "error[A504]" in result.stderr and "series-parallel" in result.stderr
    assert not (models / "out.arch").exists()


def test_an_unsupported_operation_names_itself_and_where_it_sits(models):
    result = _run("models:gap", "-o", "out.arch")
    assert result.exit_code == 1
    assert "error[A501]" in result.stderr
    assert "interpolate(mode='area')" in result.stderr and "`features.2`" in result.stderr
    assert "--partial" in result.stderr and "only nearest and bilinear" in result.stderr
    assert not (models / "out.arch").exists()


def test_partial_writes_the_layers_before_the_gap_with_a_comment(models):
    result = _run("models:gap", "--partial", "-o", "out.arch")
    assert result.exit_code == 0, result.output
    text = (models / "out.arch").read_text()
    assert text.rstrip().splitlines()[-1].startswith("# archc import stopped here: `torch.nn.functional.interp")
    assert len(archc.check(models / "out.arch").nodes) == 2


@pytest.mark.parametrize("source, code, words", [
    ("models:nothing", "A502", "cannot read a `builtins.object`"),
    ("models:broken", "A503", "calling `models:broken()` failed: ValueError: needs weights"),
    ("models:absent", "A503", "has no `absent`"),
    ("no_such_module_xyz:f", "A503", "cannot import `no_such_module_xyz`"),
    ("just_a_word", "A503", "neither a file nor `module:callable`"),
    ("missing.onnx", "A004", "no such file"),
])
def test_bad_sources_are_diagnostics(models, source, code, words):
    (models / "model.txt").write_text("")
    result = _run(source)
    assert result.exit_code == 1, result.output
    assert f"error[{code}]" in result.stderr and words in result.stderr


def test_an_unknown_extension_is_a_diagnostic(models):
    (models / "model.pb").write_text("")
    result = _run("model.pb")
    assert result.exit_code == 1 and "error[A502]" in result.stderr


def test_a_reader_that_is_missing_or_whose_framework_is_missing_is_a_diagnostic(models, monkeypatch):
    from archc import readers

    (models / "model.onnx").write_bytes(b"")
    monkeypatch.setitem(readers.READERS, "onnx", ("archc.readers._not_there", "onnx"))
    result = _run("model.onnx")
    assert result.exit_code == 1 and "error[A502]" in result.stderr and "cannot read onnx models yet" in result.stderr
    (models / "fake_reader.py").write_text("import no_such_framework_xyz\n")
    monkeypatch.setitem(readers.READERS, "onnx", ("fake_reader", "onnx"))
    result = _run("model.onnx")
    assert result.exit_code == 1 and "error[A403]" in result.stderr
    assert "pip install 'archc-cnn[onnx]'" in result.stderr


def test_a_bad_input_size_is_a_usage_error():
    result = _run(str(SPECS / "resnet18.arch"), "--input", "big")
    assert result.exit_code == 2 and "--input" in result.output


def test_the_api_takes_objects_paths_and_sizes():
    plan = archc.check(SPECS / "vgg16.arch")
    text = archc.import_model(plan)
    assert archc.check(text=text).trainable_params == plan.trainable_params
    assert "input 64x64x3" in archc.import_model(str(SPECS / "resnet18.arch"), input_shape="64x64x3")
    assert "input 64x64x3" in archc.import_model(SPECS / "resnet18.arch", input_shape=(64, 64, 3))
    with pytest.raises(ArchcError) as err:
        archc.import_model(object())
    assert err.value.diagnostics[0].code == "A502"


def test_importing_a_spec_loads_no_framework():
    code = ("import sys; from click.testing import CliRunner; from archc.cli import main; "
            f"r = CliRunner().invoke(main, ['import', {str(SPECS / 'resnet18.arch')!r}]); assert r.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_output_never_replaces_the_source(tmp_path):
    source = tmp_path / "net.arch"
    source.write_text("input 8x8x3\nconv 3x3, 4, same, relu\n")
    before = source.read_text()
    result = _run(str(source), "-o", str(source))
    assert result.exit_code == 1 and "error[A401]" in result.stderr
    assert source.read_text() == before


def _onnx_with_lonely_max(path: Path) -> Path:
    """A valid ONNX graph (Max takes one input or more) that the reader did not expect: it broke with a ValueError."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]),
                               helper.make_node("Max", ["r"], ["y"], name="lonely_max")], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("make", ["garbage", "empty", "lonely_max"])
def test_sources_that_break_a_reader_are_diagnostics(tmp_path, make):
    """Whatever bytes or graph a source holds, `archc import` answers with a diagnostic and exit 1, never a
    traceback and never a file."""
    pytest.importorskip("onnx")
    path = tmp_path / f"{make}.onnx"
    if make == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif make == "empty":
        path.write_bytes(b"")
    else:
        _onnx_with_lonely_max(path)
    out = tmp_path / "out.arch"
    result = _run(str(path), "-o", str(out))
    assert result.exit_code == 1, result.output
    assert "error[A5" in result.output and "Traceback" not in result.output
    assert not out.exists()
