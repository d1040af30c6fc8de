"""The PyTorch backend: conformance with inference and the language, the generated file, training, and the
ways users run models (eval/train, logits, torch.compile, channels_last, CUDA, DDP), load_weights, the CLI."""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

import archc  # noqa: E402
from archc.backends import get_backend  # noqa: E402
from archc.backends.torch import TorchBackend  # noqa: E402
from archc.cli import main as cli  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import conformance  # noqa: E402

THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))
SMALL = """network small "a small CNN for tests"
input 16x16x3
param classes=5
features: conv 3x3, 8, same, bn, relu; maxpool 2x2; conv 3x3, 16, same, bn, relu; dropout 0.25
head: globalavgpool; dense classes, softmax
"""


class TorchHarness:
    name = "torch"

    def build(self, plan, logits=False):
        return get_backend("torch").build(plan, logits=logits)

    def counts(self, model):
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        non_trainable = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
        return trainable, non_trainable

    def layer_shapes(self, model, plan, batch):
        shapes, handles = {}, []
        for node in plan.nodes:
            module = model.get_submodule(node.name)

            def hook(module, inputs, output, name=node.name):
                shapes[name] = hwc(tuple(output.shape))

            handles.append(module.register_forward_hook(hook))
        model.eval()
        with torch.no_grad():
            model(torch.randn(batch, *nchw(plan.input_shape)))
        for h in handles:
            h.remove()
        return {name: s[1:] for name, s in shapes.items()}

    def forward_nhwc(self, model, x):
        model.eval()
        with torch.no_grad():
            y = model(torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x))
        return (y.permute(0, 2, 3, 1) if y.dim() == 4 else y).numpy()

    def conv_kernel(self, model, name):
        conv = model.get_submodule(name)
        kernel = conv.weight.detach().permute(2, 3, 1, 0).numpy()  # OIHW -> HWIO
        return kernel, None if conv.bias is None else conv.bias.detach().numpy()


def nchw(shape):
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def hwc(shape):
    """A torch output shape N x C x H x W -> N x H x W x C (flat N x C unchanged)."""
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape


H = TorchHarness()


def small_plan(**overrides):
    return archc.check(SMALL, **overrides)


# ---------------------------------------------------------------- conformance


def test_every_op_has_an_emitter():
    assert TorchBackend.missing_emitters() == []


def test_cases_use_every_op():
    assert conformance.missing_ops() == set()


@pytest.mark.parametrize("case", list(conformance.OP_CASES))
def test_op_case_counts_and_shapes(case):
    plan = conformance.plan_of(case)
    model = H.build(plan)
    conformance.check_counts(H, model, plan)
    conformance.check_layer_shapes(H, model, plan, batch=2)


@pytest.mark.parametrize("case", conformance.NUMERIC_CASES)
def test_op_case_computes_the_language(case):
    conformance.check_numerics(H, case)


@pytest.mark.parametrize("spec", conformance.network_specs(), ids=lambda p: p.stem)
def test_spec_library_matches_inference(spec):
    torch.manual_seed(0)
    plan = archc.check(spec)
    model = H.build(plan)
    conformance.check_counts(H, model, plan)
    numeric = conformance.numeric_plan(spec, plan)
    conformance.check_layer_shapes(H, model if numeric is plan else H.build(numeric), numeric, batch=1)
    keys = list(model.state_dict())
    assert all(not k.startswith("layers.") for k in keys)
    # every parameter's key is a plan node's name plus the tensor's
    assert {k.rsplit(".", 1)[0] for k in keys} <= {n.name for n in plan.nodes}


def test_state_dict_keys_follow_the_spec():
    model = archc.compile(conformance.SPECS / "resnet50.arch")
    keys = list(model.state_dict())
    assert "conv3_x.0.conv2.weight" in keys
    assert "conv2_x.0.shortcut.conv.weight" in keys
    assert keys[0] == "conv1.conv.weight" and keys[-1] == "head.fc.bias"


def test_batchnorm_momentum_eps_and_partial_affine():
    model = H.build(conformance.plan_of("batchnorm_variants"))
    bn1, bn2, bn3, bn4 = (model.get_submodule(f"bn{i}") for i in range(1, 5))
    assert bn1.eps == pytest.approx(1e-3) and bn1.momentum == pytest.approx(0.01)
    assert bn2.weight is None and bn2.bias is not None
    assert bn3.weight is not None and bn3.bias is None
    assert not bn4.affine


# ---------------------------------------------------------------- the generated file


def _import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_file_equals_compile(tmp_path):
    spec = conformance.SPECS / "resnet50.arch"
    out = tmp_path / "resnet50_torch.py"
    result = CliRunner().invoke(cli, ["build", str(spec), "--backend", "torch", "-o", str(out), "--set", "classes=10"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# resnet50: a PyTorch model generated by archc") and str(spec) in text.splitlines()[0]
    module = _import_file(out, "generated_resnet50")
    torch.manual_seed(7)
    from_file = module.Resnet50()
    torch.manual_seed(7)
    compiled = archc.compile(spec, classes=10)
    assert [(n, type(m).__name__) for n, m in from_file.named_modules()] == \
        [(n, type(m).__name__) for n, m in compiled.named_modules()]
    a, b = from_file.state_dict(), compiled.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generated_file_is_standalone(tmp_path):
    out = tmp_path / "small_torch.py"
    (tmp_path / "small.arch").write_text(SMALL)
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "small.arch"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    tree = ast.parse(out.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"torch"}
    # Run it as a script with archc made unimportable.
    runner = ("import sys, runpy; sys.modules['archc'] = None; "
              f"runpy.run_path({str(out)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-I", "-c", runner], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(1, 5)"


def test_pt2_export_runs(tmp_path):
    out = tmp_path / "small.pt2"
    (tmp_path / "small.arch").write_text(SMALL)
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "small.arch"), "--format", "pt2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    program = torch.export.load(str(out))
    x = torch.randn(3, 3, 16, 16)
    y = program.module()(x)
    assert y.shape == (3, 5)
    assert torch.allclose(y.sum(1), torch.ones(3))


def test_failed_build_writes_nothing(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("input 8x8x3\nconv 9x9, 4\n")
    out = tmp_path / "bad_torch.py"
    result = CliRunner().invoke(cli, ["build", str(bad), "-o", str(out)])
    assert result.exit_code == 1
    assert "A201" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == [bad]


def test_build_refuses_to_overwrite_its_input(tmp_path):
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    result = CliRunner().invoke(cli, ["build", str(spec), "-o", str(spec), "--format", "py"])
    assert result.exit_code == 1 and "A401" in result.output
    assert spec.read_text() == SMALL
    # without --format, `.arch` names no output format: a usage error before anything is written
    result = CliRunner().invoke(cli, ["build", str(spec), "-o", str(spec)])
    assert result.exit_code == 2 and ".arch" in result.output
    assert spec.read_text() == SMALL


# ---------------------------------------------------------------- names that reach generated code


def _renamed(text: str, description: str | None = None, **names: str):
    """The spec's IR with scopes renamed past the loader's checks (model_copy does not validate): what a
    hostile program could hand the backend directly. The backend must hold its own line."""
    from archc.loader import load

    def rename(items):
        out = []
        for item in items:
            if item.kind == "scope":
                item = item.model_copy(update={"name": names.get(item.name, item.name), "body": rename(item.body)})
            out.append(item)
        return out

    spec = load(text).spec
    update = {"body": rename(spec.body)}
    if description is not None:
        update["description"] = description
    return spec.model_copy(update=update)


@pytest.mark.parametrize("name", ["x = __import__('os')", "a-b", "conv1\nimport os", "train", "forward", "_modules"])
def test_unusable_names_are_diagnostics(name):
    with pytest.raises(archc.ArchcError) as err:
        archc.compile(_renamed("network n\ninput 8x8x3\nstage1: conv 3x3, 4\n", stage1=name))
    assert err.value.diagnostics[0].code in ("A404", "A105")


def test_json_specs_with_unusable_names_are_refused_at_load():
    from archc.cli import spec_to_json

    text = spec_to_json(_renamed("network n\ninput 8x8x3\nstage1: conv 3x3, 4\n", stage1="x = __import__('os')"))
    with pytest.raises(archc.ArchcError) as err:
        archc.compile(text)
    assert err.value.diagnostics[0].code == "A005"


def test_colliding_dotted_names_are_a_diagnostic():
    spec = _renamed("network n\ninput 8x8x3\nstage1: conv 3x3, 4\na:\n  b: conv 3x3, 4\n", stage1="a.b")
    with pytest.raises(archc.ArchcError) as err:
        archc.compile(spec)
    assert "two layers are named `a.b.conv`" in err.value.diagnostics[0].message


def test_repeated_blocks_are_built_in_a_loop_with_the_same_modules():
    spec = ("network n\ninput 8x8x3\nblock unit(w):\n  residual: conv 3x3, w, same, bn, relu\n"
            "stage1: unit(3) x 4\nstage2: unit(3); conv 1x1, 4; unit(4) x 2\nstage3: unit(4)\n")
    plan = archc.check(spec)
    source = get_backend("torch").source(plan)
    loops = [line.strip() for line in source.splitlines() if line.strip().startswith("for i in range(")]
    # four equal units fold; in stage2 the two unit(4) fold but not unit(3), which differs; stage3 has one
    assert loops == ["for i in range(0, 4):  # stage1.0 to stage1.3: the same layers",
                     "for i in range(1, 3):  # stage2.1 to stage2.2: the same layers"], source
    torch.manual_seed(0)
    model = archc.compile(plan)
    # modules are registered in the plan's order, as without the loop (weights load by position)
    position = {node.name: i for i, node in enumerate(plan.nodes)}
    owners = [position[key.rsplit(".", 1)[0]] for key in model.state_dict()]
    assert owners == sorted(owners) and len(set(owners)) == sum(1 for n in plan.nodes if n.params)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4, 8, 8)


def test_keyword_names_and_hostile_descriptions_are_safe():
    spec = _renamed('network n "d"\ninput 8x8x3\nstage1: conv 3x3, 4\n', stage1="lambda",
                    description='x"""\nimport os; os.exit(1)\r\u2028raise SystemExit')
    plan = archc.check(spec)
    source = get_backend("torch").source(plan)
    assert not any(line.lstrip().startswith(("import os", "raise")) for line in source.splitlines())
    model = archc.compile(plan)
    assert "lambda.conv.weight" in model.state_dict()
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4, 6, 6)


# ---------------------------------------------------------------- behaviour users expect


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    model = archc.compile(small_plan(), logits=True)
    x = torch.randn(64, 3, 16, 16)
    y = torch.randint(0, 5, (64,))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_train_and_eval_switch_dropout_and_batchnorm():
    torch.manual_seed(0)
    model = archc.compile(small_plan())
    x = torch.randn(8, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    bn = model.features.bn1
    before = bn.running_mean.clone()
    model.train()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert not torch.equal(a, b)  # dropout
    assert not torch.equal(bn.running_mean, before)  # running statistics updated in training only
    model.eval()
    frozen = bn.running_mean.clone()
    with torch.no_grad():
        model(x)
    assert torch.equal(bn.running_mean, frozen)


def test_logits_drop_the_final_softmax():
    plan = small_plan()
    torch.manual_seed(0)
    probs_model = archc.compile(plan).eval()
    logits_model = archc.compile(plan, logits=True).eval()
    archc.load_weights(logits_model, probs_model)
    assert not any(isinstance(m, nn.Softmax) for m in logits_model.modules())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        probs, logits = probs_model(x), logits_model(x)
    assert torch.allclose(probs.sum(1), torch.ones(4))
    assert torch.allclose(torch.softmax(logits, 1), probs, atol=1e-6)


def test_torch_compile_captures_one_graph():
    model = archc.compile(conformance.OP_CASES["merges"]).eval()
    x = torch.randn(2, 4, 8, 8)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


@pytest.mark.skipif(not THOROUGH, reason="inductor compiles C++: slow; ARCHC_THOROUGH=1 runs it")
def test_torch_compile_inductor():
    model = archc.compile(small_plan(), logits=True).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(torch.compile(model)(x), model(x), atol=1e-4)


def test_channels_last_gives_the_same_result():
    torch.manual_seed(0)
    model = archc.compile(conformance.OP_CASES["merges"]).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        want = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    model = archc.compile(conformance.SPECS / "resnet50.arch", input="64x64x3").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        got = model.cuda()(x.cuda()).cpu()
    assert torch.allclose(got, want, atol=1e-4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, spec: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = DistributedDataParallel(archc.compile(spec, logits=True))
        optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(rank)  # each rank its own data
        x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 5, (4,))
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        # parameters only: batchnorm running statistics are each rank's own until the next forward broadcasts them
        torch.save({k: v.detach().clone() for k, v in model.module.named_parameters()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_data_parallel_step(tmp_path):
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    initial = archc.compile(SMALL, logits=True).state_dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), SMALL, str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)  # gradients were averaged across the ranks
    assert not torch.equal(a["head.fc.weight"], initial["head.fc.weight"])  # and a step was taken


# ---------------------------------------------------------------- load_weights


def test_load_weights_from_module_and_state_dict():
    plan = small_plan()
    torch.manual_seed(1)
    source = archc.compile(plan)
    torch.manual_seed(2)
    target = archc.compile(plan)
    assert archc.load_weights(target, source) is target
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())
    # A reference implementation's state dict: other names, same order, no num_batches_tracked.
    renamed = {f"ref{i}": v + 1 for i, (k, v) in enumerate(source.state_dict().items())
               if not k.endswith("num_batches_tracked")}
    archc.load_weights(target, renamed)
    assert torch.equal(target.head.fc.weight, source.head.fc.weight + 1)


def test_load_weights_reports_the_first_mismatch():
    target = archc.compile(small_plan(classes=10))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(target, archc.compile(small_plan()))
    message = err.value.diagnostics[0].message
    assert "`head.fc.weight`" in message and "10x16" in message and "5x16" in message
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing copied


def test_load_weights_reports_a_count_mismatch():
    target = archc.compile(small_plan())
    source = dict(target.state_dict())
    source.pop("head.fc.bias")
    with pytest.raises(archc.ArchcError) as err:
        archc.load_weights(target, source)
    assert "`head.fc.bias`" in err.value.diagnostics[0].message


def test_load_weights_rejects_non_tensors():
    with pytest.raises(archc.ArchcError):
        archc.load_weights(archc.compile(small_plan()), {"a": np.zeros(3)})


def test_load_weights_from_a_saved_state_dict(tmp_path):
    plan = small_plan()
    torch.manual_seed(3)
    source = archc.compile(plan)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    target = archc.compile(plan)
    archc.load_weights(target, tmp_path / "weights.pt")
    assert torch.equal(target.features.conv1.weight, source.features.conv1.weight)
    with pytest.raises(archc.ArchcError):
        archc.load_weights(target, tmp_path / "missing.pt")
