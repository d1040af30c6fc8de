"""What a new user meets in the first hour (issue 13): stdin, one JSON document, output extensions, missing
frameworks, `--set` errors, help, `ops KIND`, colour, completion, JSON spec errors, tabs, the block library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import archc
from archc.cli import main
from archc.codes import DISTRIBUTION
from archc.diagnostics import ArchcError

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.arch")
RESNET18 = str(ROOT / "specs" / "resnet18.arch")


def run(*args, **kwargs):
    return CliRunner().invoke(main, list(args), **kwargs)


def _subprocess(code: str, *args: str, cwd: Path | None = None, env: dict | None = None):
    environment = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=environment)


# ---------------------------------------------------------------- check: stdin, JSON


def test_check_reads_a_spec_from_standard_input():
    result = run("check", "-", input=Path(LENET).read_text())
    assert result.exit_code == 0, result.output
    assert "61,706" in result.stdout
    broken = run("check", "-", input="input 8x8x3\nconvolution 3x3, 8\n")
    assert broken.exit_code == 1 and "<stdin>:2:1" in broken.stderr


def test_json_is_one_document_and_a_failing_spec_stays_on_stdout(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("input 8x8x3\nconvolution 3x3, 8\n")
    result = run("check", LENET, str(bad), "--format", "json")
    assert result.exit_code == 1
    good, failed = json.loads(result.stdout)  # one valid document, both specs in order
    assert good["name"] == "lenet5" and good["ok"] is True
    assert failed["ok"] is False and failed["file"] == str(bad)
    assert failed["diagnostics"][0]["code"] == "A101"
    alone = json.loads(run("check", str(bad), "--format", "json").stdout)
    assert alone["diagnostics"][0]["code"] == "A101"
    lines = run("check", LENET, str(bad), "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["ok"] for line in lines] == [True, False]


# ---------------------------------------------------------------- --set


def test_a_malformed_set_value_is_a_usage_error_naming_the_option():
    result = run("check", LENET, "--set", "classes=1x")
    assert result.exit_code == 2
    assert "--set NAME=VALUE" in result.output and "classes=1x" in result.output
    assert "param _" not in result.output and "<classes>" not in result.output  # no wrapper text


def test_a_set_value_the_spec_rejects_says_where_it_came_from():
    result = run("check", RESNET18, "--set", "classes=abc")
    assert result.exit_code == 1
    assert "`classes` is `abc` here, from the command line's `--set classes=abc`" in result.stderr


def test_set_input_says_the_stage_sizes_were_not_checked():
    result = run("check", RESNET18, "--set", "input=64x64x3")
    assert result.exit_code == 0
    assert "note: the stage sizes the spec states were not checked: --set input=64x64x3" in result.stderr
    assert "note:" not in run("check", RESNET18, "--set", "classes=10").stderr
    doc = json.loads(run("check", RESNET18, "--set", "input=64x64x3", "--format", "json").stdout)
    assert doc["notes"] and "not checked" in doc["notes"][0]


# ---------------------------------------------------------------- build: extensions, frameworks, counts


def test_build_infers_the_backend_from_the_extension(tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "lenet.onnx"
    result = run("build", LENET, "-o", str(out))
    assert result.exit_code == 0, result.output
    model = onnx.load_from_string(out.read_bytes())  # ONNX, not Python source under an .onnx name
    assert model.graph.input[0].name


@pytest.mark.parametrize("args, message", [
    (["--backend", "torch", "-o", "x.keras"], "is a keras file (.keras), but --backend torch"),
    (["--format", "py", "-o", "x.onnx"], "ends in .onnx but --format py"),
    (["--backend", "keras", "-o", "x.pt2"], "is a torch file (.pt2), but --backend keras"),
    (["-o", "x.txt"], "cannot tell what to write from the extension"),
    (["-o", "x.arch"], "cannot tell what to write from the extension"),
])
def test_build_refuses_contradictions(tmp_path, args, message):
    result = run("build", LENET, *[str(tmp_path / a) if a.startswith("x.") else a for a in args])
    assert result.exit_code == 2 and message in result.output
    assert not list(tmp_path.iterdir())


_WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if not installed
sys.argv = ["archc", *sys.argv[2:]]
from archc.cli import run
run()
"""


@pytest.mark.parametrize("missing, args, extra", [
    ("torch", ["--backend", "torch", "--format", "pt2"], "torch"),
    ("keras,tensorflow", ["--backend", "keras", "--format", "keras"], "keras"),
    ("onnx", ["--backend", "onnx"], "onnx"),
    ("onnx", ["-o", "{tmp}/m.onnx"], "onnx"),
])
def test_a_missing_framework_is_a_diagnostic_with_the_install_line(tmp_path, missing, args, extra):
    args = [a.format(tmp=tmp_path) for a in args]
    done = _subprocess(_WITHOUT, missing, "build", LENET, *args, cwd=tmp_path)
    assert done.returncode in (1, 2), done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert f"pip install '{DISTRIBUTION}[{extra}]'" in done.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("missing, backend", [("torch", "torch"), ("keras,tensorflow", "keras")])
def test_python_source_is_written_without_its_framework(tmp_path, missing, backend):
    """One rule for every backend: the `py` file needs no framework to be written, only to be run."""
    done = _subprocess(_WITHOUT, missing, "build", LENET, "--backend", backend, "-o", str(tmp_path / "m.py"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.py").read_text() == archc.backends.get_backend(backend).source(archc.check(LENET))


def test_build_reports_the_trainable_count_the_framework_reports(tmp_path):
    torch = pytest.importorskip("torch")
    del torch
    result = run("build", RESNET18, "-o", str(tmp_path / "r.py"))
    plan = archc.check(RESNET18)
    model = archc.compile(RESNET18, backend="torch")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == plan.trainable_params
    assert f"{trainable:,} trainable parameters" in result.stderr
    assert f"+ {plan.non_trainable_params:,} non-trainable" in result.stderr


# ---------------------------------------------------------------- graph: extensions


def test_graph_refuses_unknown_and_contradicting_extensions(tmp_path):
    jpg = run("graph", LENET, "-o", str(tmp_path / "x.jpg"))
    assert jpg.exit_code == 2 and "not .jpg" in jpg.output and "dot -Tjpg" in jpg.output
    png_in_svg = run("graph", LENET, "--format", "png", "-o", str(tmp_path / "a.svg"))
    assert png_in_svg.exit_code == 2 and "ends in .svg but --format png" in png_in_svg.output
    assert not list(tmp_path.iterdir())
    assert run("graph", LENET, "-o", str(tmp_path / "a.mmd")).exit_code == 0
    assert (tmp_path / "a.mmd").read_text().startswith("---\ntitle:")


# ---------------------------------------------------------------- help, version, ops, colour, completion


def test_every_command_has_an_example_and_an_uncut_summary():
    listing = run("--help").output
    commands = listing.split("Commands:")[1].split("\n\n")[0]
    assert "..." not in commands  # click cuts long first sentences; every command has a short_help
    for name in main.commands:
        text = run(name, "--help").output
        assert "Example" in text and f"archc {name}" in text, name


def test_version_short_option():
    assert run("-V").output == f"archc {archc.__version__}\n"


def test_ops_shows_one_kind_from_the_ops_table():
    from archc.ops import OPS

    text = run("ops", "conv").output
    for key in OPS["conv"].args.model_fields:
        assert key in text
    assert "same             means padding=same" in text and "default valid" in text
    assert run("ops", "bn").output.startswith("batchnorm:")  # aliases too
    unknown = run("ops", "convv")
    assert unknown.exit_code == 2 and "did you mean `conv`?" in unknown.output


def test_force_color_survives_a_pipe_and_no_color_wins():
    plain = run("check", LENET).stdout
    forced = run("check", LENET, env={"FORCE_COLOR": "1", "NO_COLOR": ""}).stdout
    assert "\x1b[" not in plain and "\x1b[" in forced
    assert "\x1b[" not in run("check", LENET, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout


def test_shell_completion_offers_backends_and_formats():
    code = "from archc.cli import run; run()"
    env = {"_ARCHC_COMPLETE": "bash_complete", "COMP_WORDS": "archc build x.arch --backend ", "COMP_CWORD": "4"}
    done = _subprocess(code, env=env)
    assert {"torch", "keras", "onnx"} <= set(done.stdout.replace("plain,", "").split()), done.stdout
    env["COMP_WORDS"] = "archc graph x.arch --format "
    assert "mermaid" in _subprocess(code, env=env).stdout


# ---------------------------------------------------------------- JSON specs


def _json_spec(tmp_path, edit) -> Path:
    from archc.cli import spec_to_json

    data = json.loads(spec_to_json(archc.load(LENET)))
    edit(data)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["input"].update(dims="32x32"), '`input.dims`: expected a list, found "32x32" (a string)'),
    (lambda d: d["body"][0]["body"][0]["args"][1].update(value="64"),
     '`body[0].body[0].args[1].value`: expected true or false, a number or an object with a `kind`'),
    (lambda d: d["body"][0]["body"][0].pop("op"), "`body[0].body[0]` lacks the field `op`"),
    (lambda d: d["body"][1].update(kind="scop"), '`body[1].kind` is "scop", which is none of'),
    (lambda d: d["body"][0].update(colour=1), "`body[0]`: `colour` is not a field of this object"),
])
def test_json_spec_errors_name_the_field_and_hide_pydantic(tmp_path, edit, message):
    with pytest.raises(ArchcError) as e:
        archc.check(_json_spec(tmp_path, edit))
    text = e.value.render()
    assert message in text
    assert "tagged-union" not in text and "Input should" not in text and "model_attributes" not in text


def test_a_number_written_as_a_string_is_refused_not_coerced(tmp_path):
    with pytest.raises(ArchcError) as e:
        archc.check(_json_spec(tmp_path, lambda d: d["body"][0]["body"][0]["args"][1].update(value="6")))
    assert e.value.diagnostics[0].code == "A005"
    assert "a number is written without quotes" in e.value.diagnostics[0].message


# ---------------------------------------------------------------- text specs


@pytest.mark.parametrize("text", [
    "input 32x32x3\nblock b():\n\tconv 3x3, 8\n    relu\nb()\n",  # a dedent that matches nothing
    "input 32x32x3\nblock b():\n    conv 3x3, 8\n  \trelu\nb()\n",  # deeper than the line before
])
def test_indentation_errors_mention_tabs(text):
    with pytest.raises(ArchcError) as e:
        archc.check(text)
    diag = e.value.diagnostics[0]
    assert "tab" in (diag.help or "") and "spaces" in diag.help


def test_indentation_errors_without_tabs_do_not_mention_them():
    with pytest.raises(ArchcError) as e:
        archc.check("input 32x32x3\nblock b():\n    conv 3x3, 8\n  relu\nb()\n")
    assert "tab" not in (e.value.diagnostics[0].help or "")


def test_the_block_library_imports_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.arch").write_text('import "archc/blocks.arch"\ninput 32x32x3\n'
                                        "conv 3x3, 16, same, bn, relu\nbasic(16)\n")
    assert run("check", "mine.arch").exit_code == 0
    (tmp_path / "escape.arch").write_text('import "archc/../../x.arch"\ninput 8x8x3\nrelu\n')
    with pytest.raises(ArchcError) as e:
        archc.check(tmp_path / "escape.arch")
    assert e.value.diagnostics[0].code == "A107"


def test_the_missing_block_help_names_the_library():
    with pytest.raises(ArchcError) as e:
        archc.check("input 32x32x3\nbottleneck_stage(64, 3)\n")
    assert 'import "archc/blocks.arch"' in e.value.diagnostics[0].help


def test_the_recorded_module_attributes_match_the_installed_torch():
    """torch_names.py stands in for torch when the `py` source is written without it; a torch that adds an
    attribute to nn.Module must show up here (then re-record the list)."""
    torch = pytest.importorskip("torch")
    import types

    from archc.backends.torch_names import MODULE_ATTRIBUTES

    class Probe(torch.nn.Module):
        def __getitem__(self, name):
            return self._modules[str(name)]

    live = set(dir(Probe())) - set(dir(types.SimpleNamespace()))
    assert live <= MODULE_ATTRIBUTES, sorted(live - MODULE_ATTRIBUTES)


def test_long_builds_tick_on_a_terminal_only(monkeypatch, capsys):
    import time

    from archc import cli

    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with cli._progress("building m.keras (keras, keras)", slow=True):
        time.sleep(1.2)
    assert "\rbuilding m.keras (keras, keras)... 1s" in terminal.text and terminal.text.endswith("\x1b[2K")
    piped = Terminal()
    piped.isatty = lambda: False
    monkeypatch.setattr(sys, "stderr", piped)
    with cli._progress("building", slow=True):
        time.sleep(0.7)
    assert piped.text == ""
