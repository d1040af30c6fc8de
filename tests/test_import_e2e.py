"""`archc import`, end to end (issue 15): a torchvision model read, written back as a spec, and that spec compiled
is the same model: `archc check` gives the source's exact trainable and non-trainable counts, the spec is as short
as a paper's table, and `archc.load_weights(compiled, source)` gives outputs equal to the source's within 1e-5
(eval mode, every tensor and batchnorm statistic perturbed).

By default a handful of families that between them use every construct (residuals, running concatenation,
inverted residuals with squeeze-excitation, channel split and shuffle, inception rows, layer scale); every
classification model torchvision ships with ARCHC_THOROUGH=1. Outputs are compared at a reduced input
(`--set input=`) where the full size would only cost time: the weights and the structure are the full model's.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from torchvision_zoo import perturb, torchvision_or_skip

import archc

torch = pytest.importorskip("torch")

THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "backends"))  # conformance.numeric_plan: the backend tests' sizes

# model -> (constructor arguments, input size for counts, smaller input for the outputs, at most this many lines)
DEFAULT = {
    "resnet50": ({}, (224, 224, 3), (64, 64, 3), 25),
    "densenet121": ({}, (224, 224, 3), (64, 64, 3), 30),
    "mobilenet_v2": ({}, (224, 224, 3), (64, 64, 3), 40),
    "vgg16": ({}, (224, 224, 3), (224, 224, 3), 15),  # its classifier reads 7x7x512: the full size
    "shufflenet_v2_x1_0": ({}, (224, 224, 3), (64, 64, 3), None),
    "googlenet": ({"aux_logits": False, "init_weights": False}, (224, 224, 3), (96, 96, 3), None),
    "convnext_tiny": ({}, (224, 224, 3), (64, 64, 3), None),
    "efficientnet_b0": ({}, (224, 224, 3), (64, 64, 3), 40),  # 31: drop-path rates from call_index
}
EVERY = ["alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16_bn", "vgg19", "vgg19_bn", "resnet18",
         "resnet34", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
         "wide_resnet50_2", "wide_resnet101_2", "squeezenet1_0", "squeezenet1_1", "densenet161", "densenet169",
         "densenet201", "inception_v3", "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet0_5", "mnasnet0_75",
         "mnasnet1_0", "mnasnet1_3", "shufflenet_v2_x0_5", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
         "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5",
         "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
         "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_x_400mf",
         "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "convnext_small", "convnext_base", "convnext_large"]
SPECIAL = {"inception_v3": ({"aux_logits": False, "init_weights": False}, (299, 299, 3), (96, 96, 3), None),
           "alexnet": ({}, (224, 224, 3), (224, 224, 3), None),
           # the VGGs' classifiers read 7x7x512: an adaptive pooling to 7x7 that is the identity at 224, where
           # it was read, and so is left out of the spec
           **{name: ({}, (224, 224, 3), (224, 224, 3), None) for name in EVERY if name.startswith("vgg")}}
# by default these are read, written and counted; their outputs are compared with ARCHC_THOROUGH=1 (the largest
# models: building, perturbing and loading two copies is most of this file's time)
COUNTS_ONLY = {"vgg16", "densenet121", "convnext_tiny"}
CASES = dict(DEFAULT)
if THOROUGH:
    CASES.update({name: SPECIAL.get(name, ({}, (224, 224, 3), (64, 64, 3), None)) for name in EVERY})


def _source_counts(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    return trainable, buffers


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_torchvision_model_imports_as_the_same_model(name):
    torchvision = torchvision_or_skip()
    kwargs, size, small, max_lines = CASES[name]
    counts_only = name in COUNTS_ONLY and not THOROUGH
    if counts_only:  # no tensor is needed to read, write and count: the meta device allocates none (VGG-16: 0.5 GB)
        with torch.device("meta"):
            source = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    else:
        source = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
        perturb(source)
    text = archc.import_model(source, size)
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if max_lines is not None:
        assert len(lines) <= max_lines, text

    plan = archc.check(text=text)
    assert (plan.trainable_params, plan.non_trainable_params) == _source_counts(source), text
    if counts_only:
        return

    compiled = archc.compile(text=text, backend="torch", input=small).eval()
    archc.load_weights(compiled, source)
    x = torch.randn(2, small[2], small[0], small[1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = source(x), compiled(x)
    scale = want.abs().max().item()
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, scale), name
    del source, compiled
    gc.collect()


# ---------------------------------------------------------------- ONNX sources


def _export(model, shape, path) -> None:
    # batchnorm kept apart from the conv (constant folding would fuse them): the file is the source
    torch.onnx.export(model.eval(), torch.randn(*shape), str(path), dynamo=False, do_constant_folding=False)


def test_a_torch_onnx_export_imports_as_the_same_model(tmp_path):
    """An ONNX file written by torch.onnx.export: the imported spec holds the file's initializers exactly and,
    loaded with them (archc.load_weights from the file), computes what onnxruntime computes on the file."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    torchvision = torchvision_or_skip()
    source = torchvision.models.resnet18(weights=None).eval()
    perturb(source)
    path = tmp_path / "resnet18.onnx"
    _export(source, (1, 3, 64, 64), path)
    text = archc.import_model(str(path))
    plan = archc.check(text=text)
    sizes = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    assert plan.total_params == sizes == sum(_source_counts(source))
    compiled = archc.compile(text=text, backend="torch").eval()
    archc.load_weights(compiled, str(path))
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(2)])
    with torch.no_grad():
        got = compiled(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("spec", ["resnet18", "densenet121", "googlenet", "shufflenet_v2_x1_0", "unet"])
def test_an_onnx_file_archc_wrote_imports_as_its_spec(spec, tmp_path):
    """The round trip through a file: spec -> archc's ONNX backend -> archc import -> the same network."""
    pytest.importorskip("onnx")
    from conformance import numeric_plan

    from archc.backends import get_backend
    from archc.flat import flat_of_plan, same_network

    spec_path = ROOT / "specs" / f"{spec}.arch"
    plan = numeric_plan(spec_path, archc.check(spec_path))
    path = tmp_path / f"{spec}.onnx"
    path.write_bytes(get_backend("onnx").write(plan, "onnx"))
    again = archc.check(text=archc.import_model(str(path)))
    assert same_network(flat_of_plan(again), flat_of_plan(plan)) is None
    assert (again.trainable_params, again.non_trainable_params) == (plan.trainable_params, plan.non_trainable_params)
