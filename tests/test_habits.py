"""Issue 13, "PyTorch habits": the compiled PyTorch module works with `torch.jit.script` (no `*args` in any
forward, numbered scopes reached in a way TorchScript compiles) with the eager model's numbers exactly, and a
model saved whole with `torch.save(model)` loads in a fresh process where archc is installed."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import archc

torch = pytest.importorskip("torch")
from archc.backends import torch as torch_backend  # noqa: E402 - needs torch

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(Path(__file__).resolve().parent / "backends"))
from conformance import OP_CASES  # noqa: E402

THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))


def _example(plan, batch=2):
    s = plan.input_shape
    return torch.randn(batch, *((s[2], s[0], s[1]) if len(s) == 3 else s), generator=torch.Generator().manual_seed(0))


def assert_scripts_like_eager(plan, train=False):
    model = archc.compile(plan).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        scripted = torch.jit.script(model)
    x = _example(plan)
    with torch.no_grad(), torch.jit.optimized_execution(False):  # no profiling runs: the same graph, sooner
        assert torch.equal(scripted(x), model(x))
    if train:  # the training-mode branches run too (dropout, drop path, batchnorm statistics)
        scripted.train()
        with torch.jit.optimized_execution(False):
            assert scripted(x).shape == model(x).shape


def _helpers_of(source: str) -> set[str]:
    return set(re.findall(r"^class (\w+)\(", source, re.M)) & set(torch_backend.HELPERS)


def test_no_forward_takes_varargs():
    """TorchScript compiles no `*args`: neither a helper's forward nor a call site may use them."""
    for name, code in torch_backend.HELPERS.items():
        for signature in re.findall(r"def forward\(([^)]*)\)", code):
            assert "*" not in signature, (name, signature)
    source = torch_backend.TorchBackend().source(archc.check(text=OP_CASES["merges"]))
    assert re.search(r"\.add\d*\(\[x\d*, x\d*\]\)", source) and re.search(r"\.concat\(\[x\d*, x\d*\]\)", source)


def test_every_helper_scripts_and_computes_as_eager():
    """Each helper class the generator can emit, through the first conformance case that uses it."""
    backend = torch_backend.TorchBackend()
    uses = {name: _helpers_of(backend.source(archc.check(text=text))) for name, text in OP_CASES.items()}
    covered: set[str] = set()
    for name, helpers in uses.items():
        if THOROUGH or helpers - covered:
            assert_scripts_like_eager(archc.check(text=OP_CASES[name]), train=True)
            covered |= helpers
    assert covered == set(torch_backend.HELPERS), set(torch_backend.HELPERS) - covered


# TorchScript takes seconds per network (tens of seconds on a busy 2-core machine): two by default
_SPECS = [("resnet50", {"input": "32x32x3"}), ("unet", {"input": "188x188x1", "width": 2})]
_MORE = [("googlenet", {"input": "32x32x3"}), ("densenet121", {"input": "32x32x3"}),
         ("shufflenet_v2_x1_0", {"input": "32x32x3"}), ("convnext_tiny", {"input": "32x32x3"}),
         ("inception_v3", {"input": "75x75x3"}), ("regnet_y_400mf", {"input": "32x32x3"}),
         ("mobilenet_v3_small", {"input": "32x32x3"}), ("squeezenet1_1", {"input": "64x64x3"}),
         ("resnet20_cifar", {}), ("mnasnet1_0", {"input": "32x32x3"})]


@pytest.mark.parametrize("spec, overrides", _SPECS + (_MORE if THOROUGH else []), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_shipped_specs_script(spec, overrides):
    assert_scripts_like_eager(archc.check(SPECS / f"{spec}.arch", **overrides))


RES = "block res(w):\n  residual:\n    conv 3x3, w, same\n\n"


def test_numbered_and_reserved_scopes_are_reached_with_getattr():
    """`conv2_x.0` is fetched once into a local named after it; a scope named like a keyword, a dunder or a
    number at the top level gets a local that is a valid, unused identifier."""
    plan = archc.check(text=RES + "input 8x8x3\nclass:\n  conv 3x3, 4, same\n  relu\n__debug__: relu x 2\n"
                       "stage:\n  conv 3x3, 4, same\n  res(4) x 2\n")
    source = torch_backend.TorchBackend().source(plan)
    forward = source[source.index("    def forward(self, x):"):]
    assert "class_ = getattr(self, 'class')" in forward and "class_.conv(x)" in forward
    assert "scope__debug__ = getattr(self, '__debug__')" in forward  # `__debug__ = ...` does not compile
    assert "stage_0 = getattr(self.stage, '0')" in forward and "stage_0.add([" in forward
    compile(source, "<generated>", "exec")
    assert_scripts_like_eager(plan)


def test_a_model_saved_whole_loads_in_a_fresh_process(tmp_path):
    plan = archc.check(SPECS / "resnet20_cifar.arch")
    model = archc.compile(plan).eval()
    x = _example(plan, batch=1)
    with torch.no_grad():
        expected = model(x)
    torch.save(model, tmp_path / "model.pt")
    torch.save({"x": x, "y": expected}, tmp_path / "io.pt")
    code = ("import sys, torch\n"
            "model = torch.load(sys.argv[1], weights_only=False)\n"
            "io = torch.load(sys.argv[2])\n"
            "with torch.no_grad():\n"
            "    assert torch.equal(model(io['x']), io['y'])\n"
            "assert model.archc_plan.name == 'resnet20_cifar'\n"
            "print(type(model).__module__, type(model.stage1).__name__)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.pt"), str(tmp_path / "io.pt")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("archc_generated_resnet20_cifar_") and run.stdout.split()[1] == "Scope"


def test_the_source_is_saved_once_and_copies_keep_the_class():
    import io
    import pickle

    model = archc.compile(text=RES + "input 8x8x3\nstage: res(3) x 3\n")
    data = pickle.dumps(model)
    source = sys.modules[type(model).__module__].__archc_source__
    assert data.count(source.encode("utf-8")) == 1  # however many objects of the module's classes it holds
    again = pickle.loads(data)
    assert type(again) is type(model) and type(copy.deepcopy(model)) is type(model)
    assert io.BytesIO(data).getbuffer().nbytes < 40_000  # small network, small file: the source is in it once
    with pytest.raises(ValueError, match="not the name of a module archc built"):
        torch_backend.unpickle_generated("os", "print('no')", "path")
