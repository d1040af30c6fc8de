"""Hostile input: resource bombs fail fast with a clear error and bounded memory; imports stay where the user
allows; `build` writes atomically and never over its input. The limits are listed in docs/testing.md."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

import archc
from archc import backends
from archc import loader as load_module
from archc.backends.base import Backend
from archc.cli import MAX_BUILD_PARAMS, main
from archc.diagnostics import ArchcError
from archc.infer import MAX_CALL_DEPTH, MAX_DIAGNOSTICS, MAX_EXPANSION_DEPTH, MAX_LAYERS
from archc.ir import MAX_INT, MAX_NAME_LENGTH
from archc.loader import MAX_IMPORT_DEPTH, MAX_JSON_DEPTH, MAX_SPEC_BYTES, MAX_TOTAL_BYTES
from archc.parser import MAX_NESTING_DEPTH

ROOT = Path(__file__).resolve().parent.parent
FAST = 5.0  # seconds: every refusal here takes milliseconds; the margin absorbs a loaded CI machine
SMALL = 64 * 1024 * 1024  # bytes of Python allocations a refusal may peak at


def refused(spec, code: str, *, seconds: float = FAST, memory: int = SMALL, **kw) -> ArchcError:
    """Check `spec`, expecting diagnostic `code`; assert it comes fast, then (traced) with bounded memory."""
    start = time.perf_counter()
    with pytest.raises(ArchcError) as info:
        archc.check(spec, **kw)
    elapsed = time.perf_counter() - start
    codes = [d.code for d in info.value.diagnostics]
    assert code in codes, info.value.render()
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    tracemalloc.start()  # a second run: tracing slows Python down several times, so it is not timed
    try:
        with pytest.raises(ArchcError):
            archc.check(spec, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < memory, f"peaked at {peak:,} bytes"
    info.value.render()  # renders without trouble
    return info.value


# ---------------------------------------------------------------- size bombs


def test_a_billion_repetitions_are_refused_before_expanding():
    error = refused("input 8x8x3\nconv 3x3, 4, same x 1000000000\n", "A301")
    assert "1,000,000,000" in error.diagnostics[0].message
    assert error.diagnostics[0].span.line == 2


def test_repetition_through_a_parameter_and_a_block():
    refused("input 8x8x3\nparam n=1000000*1000\nblock b():\n  relu x n\nb()\n", "A301")


def test_many_layers_stop_at_the_layer_limit():
    assert archc.check("input 8x8x3\nrelu x 10\n", max_layers=10)
    refused("input 8x8x3\nrelu x 11\n", "A301", max_layers=10)
    # Each repetition count is below the limit, so this expands the limit's worth of layers before it stops:
    # time and memory grow with the limit and stop there (about 12 us and 850 bytes a layer).
    error = refused("input 8x8x3\n(relu x 1000) x 1000\n", "A301", max_layers=20_000, memory=40 * 1024 * 1024)
    assert "20,000" in error.diagnostics[0].message


@pytest.mark.skipif(not os.environ.get("ARCHC_THOROUGH"), reason="the full-size bomb takes ~10 s; thorough runs")
def test_the_default_layer_limit_bounds_time_and_memory():
    error = refused("input 8x8x3\n(relu x 1000) x 1000\n", "A301", seconds=20, memory=400 * 1024 * 1024)
    assert f"{MAX_LAYERS:,}" in error.diagnostics[0].message


def test_a_trillion_parameters_are_reported_without_allocating():
    spec = "input 8x8x3\nconv 3x3, 1000000; conv 3x3, 1000000\n"
    tracemalloc.start()
    start = time.perf_counter()
    plan = archc.check(spec)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert plan.total_params == 3 * 9 * 1_000_000 + 1_000_000 + 9 * 1_000_000 * 1_000_000 + 1_000_000
    assert plan.total_params > 10**12
    assert elapsed < FAST and peak < SMALL


def test_numbers_past_int64_are_refused():
    refused("input 8x8x3\nconv 3x3, 99999999999999999999\n", "A301")  # a literal
    refused("input 8x8x3\nconv 3x3, " + "9" * 5000 + "\n", "A301")  # past int()'s 4,300-digit limit
    refused("input 8x8x3\nparam a=3037000500*3037000500\nrelu\n", "A115")  # computed
    refused("input 8x8x3\nparam a=1e999\nrelu\n", "A301")  # a float literal that is infinite
    refused("input 8x8x3\nparam a=1e300*1e300\nrelu\n", "A115")
    assert archc.check(f"input 8x8x3\nparam a={MAX_INT}\nrelu\n").params["a"] == MAX_INT


def test_chained_products_cannot_grow_without_end():
    # Each parameter squares the previous: without a bound the fifth would have billions of digits.
    params = "".join(f"param p{i + 1}=p{i}*p{i}*p{i}*p{i}\n" for i in range(6))
    refused("input 8x8x3\nparam p0=99999\n" + params + "relu\n", "A115")


def test_overrides_are_held_to_the_same_limits():
    spec = "input 8x8x3\nparam classes=10\nglobalavgpool; dense classes\n"
    refused(spec, "A115", classes=10**40)
    refused(spec, "A115", input=(8, 10**30, 3))


# ---------------------------------------------------------------- nesting bombs


@pytest.mark.parametrize("spec", [
    "input 8x8x3\n" + "(" * 10_000 + "relu" + ")" * 10_000 + "\n",
    "input 8x8x3\n" + "(" * 300 + "relu" + ") x 2" * 300 + "\n",
    "input 8x8x3\n" + "".join(" " * i + f"s{i}:\n" for i in range(1_000)) + " " * 1_000 + "relu\n",
    "input 8x8x3\n" + "".join(" " * i + "residual:\n" for i in range(1_000)) + " " * 1_000 + "relu\n",
    "input 8x8x3\nparam a=" + "-" * 10_000 + "1\nrelu\n",
    "input 8x8x3\nparam a=" + "+".join(["1"] * 10_000) + "\nrelu\n",
    "input 8x8x3\nparam a=" + "not " * 10_000 + "true\nrelu\n",
    "input 8x8x3\nparam a=" + "1 if true else " * 5_000 + "1\nrelu\n",
], ids=["parentheses", "repeated-groups", "indentation", "residuals", "unary-minus", "sum", "not", "conditional"])
def test_deep_nesting_is_refused_with_a_position(spec):
    error = refused(spec, "A301")
    assert error.diagnostics[0].span is not None
    assert f"{MAX_NESTING_DEPTH}" in error.diagnostics[0].message


def test_nesting_just_inside_the_limit_checks_and_converts():
    """The deepest specs the grammar accepts still check, convert to JSON and load back."""
    from archc.cli import spec_to_json

    accepted = 0
    for depth in range(1, MAX_NESTING_DEPTH):
        spec = "input 8x8x3\n" + "(" * depth + "relu" + ")" * depth + "\n"
        try:
            archc.check(spec)
        except ArchcError:
            break
        accepted = depth
        assert archc.check(spec_to_json(archc.load(spec))).total_params == 0
    assert accepted >= 40  # real specs nest under 15


def test_recursive_blocks():
    refused("input 8x8x3\nblock a():\n  a()\na()\n", "A109")
    refused("input 8x8x3\nblock a():\n  b()\nblock b():\n  c()\nblock c():\n  a()\na()\n", "A109")


def test_block_chains_hit_the_call_depth_limit():
    n = MAX_CALL_DEPTH + 5
    blocks = "".join(f"block b{i}():\n  b{i + 1}()\n" for i in range(n)) + f"block b{n}():\n  relu\n"
    refused("input 8x8x3\n" + blocks + "b0()\n", "A301")


def test_blocks_with_deep_bodies_hit_the_expansion_limit():
    blocks = "".join(f"block b{i}():\n  " + "(" * 40 + f"relu; b{i + 1}()" + ")" * 40 + "\n" for i in range(10))
    blocks += "block b10():\n  relu\n"
    error = refused("input 8x8x3\n" + blocks + "b0()\n", "A301")
    assert str(MAX_EXPANSION_DEPTH) in error.diagnostics[0].message


def test_a_flood_of_errors_stops_at_the_diagnostic_limit():
    branches = "".join("  conv 9x9, 1\n" for _ in range(500))
    error = refused("input 8x8x3\nrelu x 5000\nconcat:\n" + branches, "A201")
    assert len(error.diagnostics) == MAX_DIAGNOSTICS + 1
    assert error.diagnostics[-1].code == "A301"


# ---------------------------------------------------------------- size of the input itself


def test_a_100_mb_spec_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.arch"
    with open(big, "wb") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: the test writes nothing, the loader must not read it
    error = refused(big, "A301")
    assert f"{MAX_SPEC_BYTES:,}" in error.diagnostics[0].message
    result = CliRunner().invoke(main, ["check", str(big)])
    assert result.exit_code == 1 and "error[A301]" in result.stderr


def test_spec_text_over_the_size_limit_is_refused():
    refused("input 8x8x3\n" + "# padding\n" * (MAX_SPEC_BYTES // 10 + 1), "A301")


def test_a_fifo_is_not_read(tmp_path):
    fifo = tmp_path / "pipe.arch"
    os.mkfifo(fifo)
    refused(fifo, "A004")
    spec = tmp_path / "net.arch"
    spec.write_text('import "pipe.arch"\ninput 8x8x3\nrelu\n')
    refused(spec, "A004")


@pytest.mark.parametrize("spec", [
    "input 8x8x3\n{name}: relu\n",  # scope
    "input 8x8x3\n{name}\n",  # layer kind
    "input 8x8x3\nparam {name}=1\nrelu\n",  # network parameter
    "input 8x8x3\nblock {name}():\n  relu\n",  # block
    "input 8x8x3\nblock b({name}=1):\n  relu\nb()\n",  # block parameter
    "input 8x8x3\n{name}()\n",  # call
    "input 8x8x3\nconv 3x3, 4, {name}=1\n",  # keyword argument
    "input 8x8x3\nconv 3x3, in.{name}\n",  # attribute
    "input 8x8x3\nconv 3x3, {name}(2)\n",  # function
    "network {name}\ninput 8x8x3\nrelu\n",  # network name
    "input 8x8x3\nconcat:\n  {name}: relu\n  relu\n",  # branch
], ids=["scope", "layer", "param", "block", "block-param", "call", "kwarg", "attr", "func", "network", "branch"])
def test_a_10000_character_identifier_is_refused_wherever_it_stands(spec):
    error = refused(spec.format(name="a" * 10_000), "A301")
    assert f"at most {MAX_NAME_LENGTH}" in error.diagnostics[0].message
    assert error.diagnostics[0].span is not None


def test_names_at_the_limit_are_fine():
    name = "a" * MAX_NAME_LENGTH
    plan = archc.check(f"network {name}\ninput 8x8x3\nparam {name}=4\nblock {name}({name}):\n  conv 1x1, {name}\n"
                       f"{name}: {name}({name})\n")
    assert plan.name == name and plan.nodes[0].name.startswith(name)


# ---------------------------------------------------------------- hostile JSON


def test_json_nesting_is_refused():
    refused('{"body": ' + "[" * 100_000 + "]" * 100_000 + "}", "A301")
    refused('{"body": ' + "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5) + "}", "A301")
    item: dict = {"kind": "layer", "op": "relu"}
    for _ in range(MAX_JSON_DEPTH):
        item = {"kind": "group", "body": [item]}
    refused(json.dumps({"input": 4, "body": [item]}), "A301")


@pytest.mark.parametrize("text", [
    '{"input": NaN, "body": []}',
    '{"input": {"kind": "dims", "dims": [Infinity, 8, 3]}, "body": []}',
    '{"input": -Infinity}',
])
def test_json_non_numbers_are_refused(text):
    refused(text, "A005")


def test_json_huge_numbers_are_refused():
    refused('{"input": {"kind": "dims", "dims": [8, 8, ' + "9" * 5_000 + "]}}", "A301")
    refused('{"input": {"kind": "dims", "dims": [8, 8, ' + "9" * 40 + "]}}", "A301")
    refused('{"input": 1e999}', "A115")  # decodes to inf: refused as the input size


def test_json_spans_cannot_blow_up_rendering():
    """Positions are data in a JSON spec; a column of 10**15 must not become 10**15 spaces."""
    span = {"line": 1, "column": 10**15, "end_line": 1, "end_column": 10**15 + 1}
    spec = {"input": {"kind": "dims", "dims": [4, 4, 3]},
            "body": [{"kind": "layer", "op": "conv", "args": [{"value": {"kind": "dims", "dims": [9, 9]}},
                                                             {"value": 4}], "span": span}]}
    error = refused(json.dumps(spec), "A201")
    assert len(error.render()) < 10_000


# ---------------------------------------------------------------- imports


def _tree(tmp_path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "outside.arch").write_text("block evil():\n  relu\n")
    (project / "lib").mkdir()
    (project / "lib" / "ok.arch").write_text("block fine():\n  relu\n")
    return project


@pytest.mark.parametrize("target", ["../outside.arch", "/etc/passwd", "lib/../../outside.arch", "escape.arch"])
def test_imports_cannot_escape_the_spec_directory(tmp_path, target):
    project = _tree(tmp_path)
    (project / "escape.arch").symlink_to(tmp_path / "outside.arch")
    spec = project / "net.arch"
    spec.write_text(f'import "{target}"\ninput 8x8x3\nevil()\n')
    error = refused(spec, "A107")
    assert "outside" in error.diagnostics[0].message
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 1 and "error[A107]" in result.stderr


def test_imports_from_an_allowed_directory(tmp_path):
    project = _tree(tmp_path)
    spec = project / "net.arch"
    spec.write_text('import "lib/ok.arch"\nimport "../outside.arch"\ninput 8x8x3\nfine(); evil()\n')
    assert len(archc.check(spec, allow=[tmp_path]).nodes) == 2
    result = CliRunner().invoke(main, ["check", str(spec), "--allow-import", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_import_cycles(tmp_path):
    (tmp_path / "a.arch").write_text('import "b.arch"\nblock a():\n  relu\n')
    (tmp_path / "b.arch").write_text('import "a.arch"\nblock b():\n  relu\n')
    (tmp_path / "self.arch").write_text('import "self.arch"\nblock s():\n  relu\n')
    spec = tmp_path / "net.arch"
    spec.write_text('import "a.arch"\ninput 8x8x3\na()\n')
    refused(spec, "A107")
    spec.write_text('import "self.arch"\ninput 8x8x3\ns()\n')
    refused(spec, "A107")
    spec.write_text('import "net.arch"\ninput 8x8x3\nrelu\n')
    refused(spec, "A107")


# ---------------------------------------------------------------- build: limits, atomic writes, inputs kept


class _FakeBackend(Backend):
    """A plug-in backend that writes the plan's layer names: lets the CLI's file handling be tested alone."""

    name = "fake"

    def __init__(self, fail: bool = False):
        self.fail = fail

    def write(self, plan, fmt, logits=False):
        if self.fail:
            raise ArchcError([archc.Diagnostic("A499", "the fake backend fails on purpose")])
        return "\n".join(n.name for n in plan.nodes).encode()


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setitem(backends._loaded, "fake", _FakeBackend())
    monkeypatch.setitem(backends._loaded, "failing", _FakeBackend(fail=True))


def test_build_refuses_models_over_the_parameter_limit_before_loading_a_backend(tmp_path, monkeypatch):
    spec = tmp_path / "huge.arch"
    spec.write_text("input 8x8x3\nconv 3x3, 1000000; conv 3x3, 1000000; conv 3x3, 1000000\n")
    loaded = []
    monkeypatch.setattr(backends, "get_backend", lambda name: loaded.append(name))
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", "torch", "-o", str(tmp_path / "m.py")])
    assert result.exit_code == 1 and "error[A302]" in result.stderr and "--max-params" in result.stderr
    assert f"{MAX_BUILD_PARAMS:,}" in result.stderr
    assert loaded == [] and not (tmp_path / "m.py").exists()


def test_max_params_raises_the_limit(tmp_path, fake_backend):
    spec = tmp_path / "big.arch"
    spec.write_text("input 8x8x3\nconv 3x3, 1000\n")  # 28,000 parameters
    out = tmp_path / "m.txt"
    args = ["build", str(spec), "--backend", "fake", "--format", "py", "-o", str(out)]
    assert CliRunner().invoke(main, args + ["--max-params", "1000"]).exit_code == 1
    assert not out.exists()
    result = CliRunner().invoke(main, args + ["--max-params", "100000"])
    assert result.exit_code == 0, result.output
    assert out.read_text() == "conv"


@pytest.mark.parametrize("how", ["same-path", "relative", "symlink"])
def test_build_never_overwrites_its_input(tmp_path, fake_backend, how, monkeypatch):
    spec = tmp_path / "net.arch"
    text = "input 8x8x3\nconv 3x3, 4\n"
    spec.write_text(text)
    monkeypatch.chdir(tmp_path)
    target = {"same-path": str(spec), "relative": "./net.arch", "symlink": "link.arch"}[how]
    if how == "symlink":
        (tmp_path / "link.arch").symlink_to(spec)
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", "fake", "--format", "py", "-o", target])
    assert result.exit_code == 1 and "error[A401]" in result.stderr
    assert spec.read_text() == text


def test_build_leaves_nothing_behind_when_writing_fails(tmp_path, fake_backend, monkeypatch):
    spec = tmp_path / "net.arch"
    spec.write_text("input 8x8x3\nconv 3x3, 4\n")
    out = tmp_path / "model.py"
    out.write_text("the previous model")
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", "failing", "-o", str(out)])
    assert result.exit_code == 1 and "A499" in result.stderr

    def interrupted(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", interrupted)
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", "fake", "-o", str(out)])
    assert result.exit_code != 0
    assert out.read_text() == "the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py", "net.arch"]  # no temporary file left


# ---------------------------------------------------------------- real processes


@pytest.mark.parametrize("content", [
    b"\xff\xfe\x00garbage",
    ("input 8x8x3\n" + "(" * 5_000 + "relu" + ")" * 5_000 + "\n").encode(),
    b"input 8x8x3\nconv 3x3, 4 x 1000000000\n",
    b'{"body": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
], ids=["bytes", "nesting", "repetition", "json"])
def test_the_installed_command_reports_without_a_traceback(tmp_path, content):
    spec = tmp_path / ("spec.json" if content.startswith(b"{") else "spec.arch")
    spec.write_bytes(content)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "archc", "check", str(spec)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "error[A" in proc.stderr


# ---------------------------------------------------------------- outputs: what is not a regular file, OS errors

SPEC = "network net\ninput 8x8x3\nconv 3x3, 4\n"


SUFFIX = {"build": ".py", "graph": ".dot", "convert": ".json", "report": ".html"}


def _writers(spec: Path, out: Path) -> dict[str, list[str]]:
    """Every command that writes a file, writing `out` (with the command's suffix unless it has one)."""
    def target(command: str) -> str:
        return str(out) if out.suffix else str(out) + SUFFIX[command]

    return {
        "build": ["build", str(spec), "--backend", "fake", "--format", "py", "-o", target("build")],
        "graph": ["graph", str(spec), "--format", "dot", "-o", target("graph")],
        "convert": ["convert", str(spec), "--to", "json", "-o", target("convert")],
        "report": ["report", str(spec), "-o", target("report")],
    }


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    spec = tmp_path / "net.arch"
    spec.write_text(text)
    return spec


@pytest.mark.parametrize("command", ["build", "graph", "convert", "report"])
def test_a_character_device_is_written_to_never_replaced(tmp_path, fake_backend, command):
    spec = _spec(tmp_path)
    target = tmp_path / f"null{SUFFIX[command]}"  # a second /dev/null: the real one is never at stake in a test
    os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    result = CliRunner().invoke(main, _writers(spec, target)[command])
    assert result.exit_code == 0, result.output
    info = os.stat(target)
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.arch", target.name]  # no temporary file


def test_a_full_device_is_a_diagnostic_with_the_os_reason(tmp_path, fake_backend):
    spec = _spec(tmp_path)
    full = tmp_path / "full.py"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full: every write fails with ENOSPC
    result = CliRunner().invoke(main, _writers(spec, full)["build"])
    assert result.exit_code == 1, result.output
    assert f"error[A401]: cannot write `{full}`: No space left on device" in result.stderr
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_a_fifo_is_written_to_when_read_and_refused_when_not(tmp_path, fake_backend):
    spec = _spec(tmp_path)
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    start = time.perf_counter()
    result = CliRunner().invoke(main, _writers(spec, fifo)["build"])  # nobody reads: refused, never waited on
    assert time.perf_counter() - start < FAST
    assert result.exit_code == 1 and "no process is reading" in result.stderr and str(fifo) in result.stderr
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(Path(fifo).read_bytes()))
    reader.start()
    for _ in range(500):  # the reader opens the FIFO in its own time
        result = CliRunner().invoke(main, _writers(spec, fifo)["build"])
        if result.exit_code == 0:
            break
        time.sleep(0.01)
    reader.join(FAST)
    assert result.exit_code == 0, result.output
    assert got == [b"conv"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_other_file_kinds_are_refused(tmp_path):
    from archc.files import write_atomic

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        for target in (tmp_path / "sock", tmp_path):
            with pytest.raises(ArchcError) as e:
                write_atomic(target, b"data")
            assert e.value.diagnostics[0].code == "A401" and str(target) in e.value.diagnostics[0].message
        assert stat.S_ISSOCK(os.stat(tmp_path / "sock").st_mode)
    finally:
        sock.close()


def test_writing_into_a_closed_pipe_is_a_diagnostic(tmp_path):
    spec = _spec(tmp_path)
    read, write = os.pipe()
    os.close(read)  # the reader is gone
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, "-m", "archc", "graph", str(spec), "--format", "dot", "-o",
                               "/dev/stdout"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    finally:
        os.close(write)
    assert proc.returncode == 1, proc.stderr
    assert "cannot write `/dev/stdout`: Broken pipe" in proc.stderr and "internal error" not in proc.stderr


@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EIO])
@pytest.mark.parametrize("where", ["mkstemp", "replace", "chmod"])
def test_os_errors_on_output_are_diagnostics_not_bugs(tmp_path, fake_backend, monkeypatch, errno_, where):
    from archc import files

    spec = _spec(tmp_path)
    out = tmp_path / "model"

    def fail(*args, **kwargs):
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(files.tempfile if where == "mkstemp" else files.os, where, fail)
    for command, args in _writers(spec, out).items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (command, result.output)
        assert "error[A401]: cannot write" in result.stderr and os.strerror(errno_) in result.stderr, command
        assert "internal error" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.arch"]  # no temporary file left


@pytest.mark.parametrize("output", ["/proc/version", "/proc/archc-test/model.py", "{tmp}/net.arch/model.py",
                                    "{tmp}/readonly.py"])
def test_unwritable_places_are_diagnostics(tmp_path, fake_backend, output):
    spec = _spec(tmp_path)
    readonly = tmp_path / "readonly.py"
    readonly.write_text("kept")
    readonly.chmod(0o444)
    output = output.format(tmp=tmp_path)
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", "fake", "-o", output])
    assert result.exit_code == 1, result.output
    assert f"error[A401]: cannot write `{output}`" in result.stderr
    assert readonly.read_text() == "kept"


def test_an_os_error_anywhere_is_never_an_internal_error(tmp_path, monkeypatch):
    import archc.cli as cli

    spec = _spec(tmp_path)

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(spec))

    monkeypatch.setattr(cli, "_check", broken)
    result = CliRunner().invoke(main, ["graph", str(spec)])
    assert result.exit_code == 1 and f"`{spec}`: Input/output error" in result.stderr


# ---------------------------------------------------------------- outputs never go over what the spec reads


@pytest.mark.parametrize("command", ["build", "graph", "convert", "report"])
@pytest.mark.parametrize("name", ["itself", "hard-link", "symlink"])
@pytest.mark.parametrize("which", ["imported", "nested-import"])
def test_no_output_overwrites_a_file_the_spec_reads(tmp_path, fake_backend, command, name, which):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "inner.arch").write_text("block inner():\n  relu\n")
    (tmp_path / "blocks.arch").write_text('import "lib/inner.arch"\nblock outer():\n  inner()\n')
    spec = _spec(tmp_path, 'import "blocks.arch"\ninput 8x8x3\nouter()\n')
    read = {"imported": tmp_path / "blocks.arch", "nested-import": tmp_path / "lib" / "inner.arch"}[which]
    target = tmp_path / f"alias{SUFFIX[command]}"  # an output name the command accepts
    if name == "itself":
        if command in ("graph", "report"):
            pytest.skip("they refuse an `.arch` output by its name before anything else")
        target = read
    elif name == "hard-link":
        os.link(read, target)
    else:
        target.symlink_to(read)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.arch")}
    result = CliRunner().invoke(main, _writers(spec, target)[command])
    assert result.exit_code == 1 and "error[A401]: refusing to overwrite the input" in result.stderr, result.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.arch")} == before


def test_report_of_two_specs_of_one_name_overwrites_neither(tmp_path, monkeypatch):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _spec(tmp_path / folder, f"network {folder}\ninput 8x8x3\nrelu\n")
    monkeypatch.chdir(tmp_path)
    for args in (["report", "a/net.arch", "b/net.arch", "-o", "out"], ["check", "--format", "html", "a/net.arch",
                                                                      "b/net.arch"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "would both write" in result.stderr, result.output
        assert not list(tmp_path.rglob("*.html"))  # refused before anything is written
    result = CliRunner().invoke(main, ["report", "a/net.arch", "a/./net.arch", "-o", "out"])  # one file, twice
    assert result.exit_code == 0, result.output


def test_report_of_a_file_name_that_is_not_utf8(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = os.fsdecode(b"caf\xe9.arch")
    Path(name).write_text("input 8x8x3\nrelu\n")
    result = CliRunner().invoke(main, ["report", name, "-o", "out"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / os.fsdecode(b"caf\xe9.html")).read_text(encoding="utf-8")
    assert "caf\ufffd.arch" in page


# ---------------------------------------------------------------- a path is a path


def test_a_file_name_that_reads_like_a_spec_is_still_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "network trick\ninput 8x8x3\nrelu"
    Path(name).write_text("network real\ninput 4x4x3\nconv 1x1, 2\n")
    for spec in (name, Path(name), str(tmp_path / name)):
        assert archc.check(spec).name == "real"
    from archc.loader import load_path, load_text

    assert load_path(name).spec.name == "real"
    assert load_text(name).spec.name == "trick"  # text is text
    assert archc.check(text=name).name == "trick"
    result = CliRunner().invoke(main, ["check", name, "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["name"] == "real"
    for command in (["graph", name], ["convert", name]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0 and "real" in result.stdout and "trick" not in result.stdout, command
    result = CliRunner().invoke(main, ["report", name, "-o", "page.html"])
    assert result.exit_code == 0 and "<h1>real</h1>" in (tmp_path / "page.html").read_text()


def test_text_and_a_spec_together_are_refused():
    with pytest.raises(TypeError):
        archc.check("input 8x8x3\nrelu\n", text="input 8x8x3\nrelu\n")


# ---------------------------------------------------------------- imports read spec files only


@pytest.mark.parametrize("name", [".env", "secrets.txt", "id_rsa", "notes.arch.bak", "link.arch"])
def test_imports_read_only_spec_files(tmp_path, name):
    secret = "API_KEY=hunter2-do-not-print"
    (tmp_path / ".env").write_text(secret + "\n")
    if name == "link.arch":
        (tmp_path / name).symlink_to(tmp_path / ".env")  # a spec's name on the outside, the secret inside
    elif name != ".env":
        (tmp_path / name).write_text(secret + "\n")
    spec = _spec(tmp_path, f'import "{name}"\ninput 8x8x3\nrelu\n')
    reads: list[Path] = []
    original = load_module._read
    with pytest.MonkeyPatch.context() as m:
        m.setattr(load_module, "_read", lambda path, *a: reads.append(Path(path)) or original(path, *a))
        error = refused(spec, "A107")
    assert "is not a spec file" in error.diagnostics[0].message
    assert set(reads) == {spec}  # the import was never opened
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 1 and "hunter2" not in result.output


# ---------------------------------------------------------------- imports: each file once, bounded in all


def _diamond(tmp_path: Path, depth: int) -> Path:
    """f0 imports f1 twice, f1 imports f2 twice, ...: 2**depth paths to the last file."""
    for level in range(depth):
        (tmp_path / f"f{level}.arch").write_text(f'import "f{level + 1}.arch"\nimport "./f{level + 1}.arch"\n'
                                                 f"block b{level}():\n  b{level + 1}()\n")
    (tmp_path / f"f{depth}.arch").write_text(f"block b{depth}():\n  relu\n")
    return _spec(tmp_path, 'import "f0.arch"\nimport "f0.arch"\ninput 8x8x3\nb0()\n')


def test_a_diamond_of_imports_reads_each_file_once(tmp_path, monkeypatch):
    spec = _diamond(tmp_path, 24)
    reads: list[Path] = []
    original = load_module._read
    monkeypatch.setattr(load_module, "_read", lambda path, *a: reads.append(Path(path)) or original(path, *a))
    start = time.perf_counter()
    plan = archc.check(spec)
    assert time.perf_counter() - start < 1.0
    assert [n.op for n in plan.nodes] == ["relu"]
    assert len(reads) == len(set(reads)) == 26  # the spec and each of its 25 imports, once


def test_a_file_imported_again_gives_the_blocks_it_gave_first(tmp_path):
    """Reading a file once must not change which block wins: the last import of a name still wins."""
    (tmp_path / "a.arch").write_text("block x():\n  relu\n")
    (tmp_path / "b.arch").write_text('import "a.arch"\nblock x():\n  tanh\n')
    spec = _spec(tmp_path, 'import "b.arch"\nimport "a.arch"\ninput 8x8x3\nx()\n')
    assert [n.op for n in archc.check(spec).nodes] == ["relu"]  # a.arch, imported last, wins
    spec.write_text('import "a.arch"\nimport "b.arch"\ninput 8x8x3\nx()\n')
    assert [n.op for n in archc.check(spec).nodes] == ["tanh"]


def test_imports_together_are_held_to_one_size_limit(tmp_path):
    block = "block b{}():\n  relu\n" + "# padding\n" * (MAX_TOTAL_BYTES // 30)
    for i in range(6):  # each well under the per-file limit; together six times the total
        (tmp_path / f"big{i}.arch").write_text(block.format(i))
    spec = _spec(tmp_path, "".join(f'import "big{i}.arch"\n' for i in range(6)) + "input 8x8x3\nb0()\n")
    error = refused(spec, "A301")
    assert f"{MAX_TOTAL_BYTES:,}" in error.diagnostics[0].message and error.diagnostics[0].span.line == 3


def test_a_3000_deep_import_chain_is_a_diagnostic_through_the_api(tmp_path):
    depth = 3000
    for level in range(depth):
        (tmp_path / f"c{level}.arch").write_text(f'import "c{level + 1}.arch"\nblock c{level}():\n  relu\n')
    (tmp_path / f"c{depth}.arch").write_text(f"block c{depth}():\n  relu\n")
    spec = _spec(tmp_path, 'import "c0.arch"\ninput 8x8x3\nc0()\n')
    error = refused(spec, "A301")
    assert f"{MAX_IMPORT_DEPTH}" in error.diagnostics[0].message
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 1 and "error[A301]" in result.stderr


def test_an_import_chain_at_the_depth_limit_loads(tmp_path):
    last = MAX_IMPORT_DEPTH - 1  # the spec imports c0, which imports c1, ...: MAX_IMPORT_DEPTH files deep
    for level in range(last):
        (tmp_path / f"c{level}.arch").write_text(f'import "c{level + 1}.arch"\nblock c{level}():\n  c{level + 1}()\n')
    (tmp_path / f"c{last}.arch").write_text(f"block c{last}():\n  relu\n")
    spec = _spec(tmp_path, 'import "c0.arch"\ninput 8x8x3\nc0()\n')
    assert [n.op for n in archc.check(spec).nodes] == ["relu"]
    (tmp_path / f"c{last}.arch").write_text(f'import "more.arch"\nblock c{last}():\n  relu\n')
    (tmp_path / "more.arch").write_text("block more():\n  relu\n")
    refused(spec, "A301")


def test_deep_recursion_anywhere_in_the_api_is_a_diagnostic(monkeypatch):
    import archc.infer

    def deep(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(archc.infer, "infer", deep)
    with pytest.raises(ArchcError) as e:
        archc.check("input 8x8x3\nrelu\n")
    assert e.value.diagnostics[0].code == "A301"


# ---------------------------------------------------------------- one size limit for every way in


@pytest.mark.parametrize("command", [["fmt", "-"], ["check", "-"]], ids=["fmt", "check"])
def test_standard_input_is_held_to_the_file_size_limit(tmp_path, command):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    with open("/dev/zero", "rb") as endless:  # an input without end: only the limit and one byte may be read
        proc = subprocess.run([sys.executable, "-m", "archc", *command], stdin=endless, capture_output=True,
                              text=True, timeout=60, env=env)
    assert time.perf_counter() - start < 10
    assert proc.returncode == 1 and "error[A301]" in proc.stderr and f"{MAX_SPEC_BYTES:,}" in proc.stderr
    result = CliRunner().invoke(main, command, input=b"input 8x8x3\n" + b"# padding\n" * (MAX_SPEC_BYTES // 10))
    assert result.exit_code == 1 and "error[A301]" in result.stderr
    result = CliRunner().invoke(main, command, input=b"input 8x8x3\n\xff\n")
    assert result.exit_code == 1 and "error[A002]" in result.stderr


# ---------------------------------------------------------------- --set values


@pytest.mark.parametrize("value", ["in.c", "in.h * 2", "1/0", "nosuch(3)", "99999999999999999999", "1e999",
                                   "3037000500*3037000500", "classes if in.n else 2"])
def test_bad_set_values_are_diagnostics(tmp_path, value):
    spec = _spec(tmp_path, "input 8x8x3\nparam classes=10\nglobalavgpool; dense classes\n")
    result = CliRunner().invoke(main, ["check", str(spec), "--set", f"classes={value}"])
    assert result.exit_code in (1, 2), result.output
    assert "error" in result.output.lower() and "internal error" not in result.output
