"""The test suite itself: the cases of a framework skip where it is not installed, instead of failing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
FRAMEWORKS = ["keras", "tensorflow", "torch", "torchvision", "onnx", "onnxruntime"]


def test_tests_skip_on_the_framework_not_on_archcs_backend_module():
    """`archc.backends.keras` imports without keras (it imports keras when it builds), so skipping on it never
    skips: a test must name the framework itself."""
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in TESTS.rglob("*.py") if path.name != Path(__file__).name
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"importorskip\(f?[\"']archc", line)]
    assert not offenders, offenders


def test_without_the_frameworks_their_tests_skip(tmp_path):
    blocker = tmp_path / "sitecustomize.py"  # imported at start-up: the frameworks are "not installed"
    blocker.write_text(textwrap.dedent(f"""
        import importlib.abc, sys
        class NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {FRAMEWORKS!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, NotInstalled())
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    files = ["tests/backends", "tests/test_injection.py", "tests/property/test_backend_props.py"]
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", "-rs", *files]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "skipped" in summary and "failed" not in summary and "error" not in summary, summary
    assert "No module named 'keras'" in proc.stdout and "No module named 'torch'" in proc.stdout
