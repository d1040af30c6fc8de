"""The `archc` command: exit statuses, JSON output, conversions, and that `check` imports no framework."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import archc
from archc.cli import main

ROOT = Path(__file__).resolve().parent.parent
RESNET = str(ROOT / "specs" / "resnet50.arch")


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_check_table_and_exit_zero():
    result = run("check", RESNET)
    assert result.exit_code == 0, result.output
    assert "conv3_x" in result.stdout and "28x28x512" in result.stdout
    assert "trainable 25,557,032" in result.stdout


def test_check_layer_level():
    result = run("check", RESNET, "--level", "layer")
    assert "conv3_x.0.conv2" in result.stdout


def test_check_json_contract():
    result = run("check", RESNET, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["name"] == "resnet50"
    assert data["input"] == [224, 224, 3] and data["output"] == [1000]
    assert data["trainable_params"] == 25_557_032 and data["params"] == 25_610_152
    assert data["macs"] == 3_857_973_248
    first = data["layers"][0]
    assert set(first) >= {"name", "op", "shape", "params", "macs"}
    assert first["shape"] == [112, 112, 64]


def test_check_several_specs_json_is_one_document_and_jsonl_one_line_each():
    specs = [RESNET, str(ROOT / "specs" / "densenet121.arch")]
    result = run("check", *specs, "--format", "json")
    assert [doc["name"] for doc in json.loads(result.stdout)] == ["resnet50", "densenet121"]
    lines = run("check", *specs, "--format", "jsonl").stdout.strip().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["resnet50", "densenet121"]


def test_set_overrides():
    result = run("check", RESNET, "--set", "classes=10", "--set", "input=32x32x3", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["output"] == [10] and data["input"] == [32, 32, 3]


def test_usage_errors_exit_2():
    assert run("check", RESNET, "--set", "clases=10").exit_code == 2
    assert run("check", RESNET, "--set", "oops").exit_code == 2
    assert run("check", "no/such/file.arch").exit_code == 2
    assert run("check").exit_code == 2
    assert run("check", RESNET, "--level", "row").exit_code == 2


def test_spec_errors_exit_1(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("input 8x8x3\nconv 9x9, 4\n")
    result = run("check", str(bad))
    assert result.exit_code == 1
    assert "error[A201]" in result.stderr and "Traceback" not in result.output


def test_one_bad_spec_does_not_hide_the_others(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("input 8x8x3\nconv 9x9, 4\n")
    result = run("check", str(bad), RESNET)
    assert result.exit_code == 1 and "resnet50" in result.stdout


def test_convert_to_json_loads_as_the_same_network(tmp_path):
    out = tmp_path / "resnet50.json"
    result = run("convert", RESNET, "--to", "json", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["blocks"] == [] and data["imports"] == [{"path": "blocks.arch"}]
    assert data["body"][1]["kind"] == "scope"  # the structure, not the expanded graph
    # the JSON imports blocks.arch relative to itself: put it beside the spec's blocks
    twin = ROOT / "specs" / ".twin_resnet50.json"
    try:
        twin.write_text(out.read_text())
        a, b = archc.check(RESNET), archc.check(str(twin))
        assert [(n.name, n.shape, n.params, n.macs) for n in a.nodes] == \
               [(n.name, n.shape, n.params, n.macs) for n in b.nodes]
    finally:
        twin.unlink()


def test_convert_refuses_to_overwrite_its_input(tmp_path):
    spec = tmp_path / "s.arch"
    spec.write_text("input 4x4x1\nrelu\n")
    result = run("convert", str(spec), "-o", str(spec))
    assert result.exit_code == 1 and spec.read_text() == "input 4x4x1\nrelu\n"


def test_schema_is_json_schema():
    result = run("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "Spec" and "$defs" in schema and "Layer" in schema["$defs"]


def test_ops_lists_every_kind():
    result = run("ops")
    for kind in ("conv", "maxpool", "dense", "batchnorm", "lrn", "concat"):
        assert kind in result.stdout


def test_check_imports_no_framework():
    code = (f"import sys, archc.cli; sys.argv=['archc','check',{RESNET!r}]\n"
            "try:\n    archc.cli.run()\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]\n"
            "print('FRAMEWORKS', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "FRAMEWORKS []" in out


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "archc", "check", RESNET, "--format", "json"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and json.loads(result.stdout)["name"] == "resnet50"


def test_internal_errors_say_they_are_bugs(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr("archc.infer.infer", broken)
    result = run("check", RESNET)
    assert result.exit_code == 3
    assert "bug in archc" in result.stderr and "Traceback" not in result.output


def test_block_files_are_recognised():
    result = run("check", str(ROOT / "specs" / "blocks.arch"), RESNET)
    assert result.exit_code == 0, result.output
    assert "a block file (basic, bottleneck" in result.stdout and "resnet50" in result.stdout
    result = run("check", str(ROOT / "specs" / "blocks.arch"), "--format", "json")
    assert "bottleneck" in json.loads(result.stdout)["blocks"]


def test_outputs_are_ordinary_files(tmp_path):
    import os
    import stat

    out = tmp_path / "r.json"
    assert run("convert", RESNET, "-o", str(out)).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
