"""ShuffleNet v2 (specs/shufflenet_v2_x1_0.arch) is torchvision's ShuffleNetV2: the same trainable parameters for
every width, and after archc.load_weights the same outputs (eval mode, batchnorm statistics perturbed); Keras and
ONNX compute what torch computes; a few optimiser steps in train mode lower the loss."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from torchvision_zoo import perturb, relative_difference, torchvision_models, trainable

import archc

torch = pytest.importorskip("torch")

SPEC = Path(__file__).resolve().parent.parent / "specs" / "shufflenet_v2_x1_0.arch"
THOROUGH = bool(os.environ.get("ARCHC_THOROUGH"))
WIDTHS = {"0.5": "shufflenet_v2_x0_5", "1.0": "shufflenet_v2_x1_0", "1.5": "shufflenet_v2_x1_5",
          "2.0": "shufflenet_v2_x2_0"}
SIDE = 64  # ShuffleNet v2 takes any size its five halvings leave at least 1x1; 224 only in thorough runs


def _pair(width: str, side: int = SIDE):
    """torchvision's model (perturbed, eval) and archc's, its weights loaded from torchvision's by position."""
    reference = perturb(getattr(torchvision_models(), WIDTHS[width])(weights=None)).eval()
    ours = archc.compile(SPEC, backend="torch", logits=True, width=width, input=f"{side}x{side}x3").eval()
    archc.load_weights(ours, reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("width", list(WIDTHS))
def test_trainable_parameters_are_torchvisions(width):
    reference = getattr(torchvision_models(), WIDTHS[width])(weights=None)
    plan = archc.check(SPEC, width=width)
    assert plan.trainable_params == trainable(reference)
    model = archc.compile(plan, backend="torch")
    assert trainable(model) == trainable(reference)
    # every tensor, running statistics included, in torchvision's order: archc.load_weights copies by position
    ours = [tuple(t.shape) for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    theirs = [tuple(t.shape) for k, t in reference.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert ours == theirs


@pytest.mark.parametrize("width", list(WIDTHS) if THOROUGH else ["0.5", "1.0"])
def test_same_function_as_torchvision(width):
    reference, ours = _pair(width)
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(x), ours(x)
    assert relative_difference(got, want) < 1e-5


@pytest.mark.skipif(not THOROUGH, reason="224x224: ARCHC_THOROUGH=1")
def test_same_function_as_torchvision_at_224():
    reference, ours = _pair("1.0", side=224)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert relative_difference(ours(x), reference(x)) < 1e-5


def test_keras_and_onnx_compute_what_torch_computes():
    pytest.importorskip("keras")
    onnxruntime = pytest.importorskip("onnxruntime")
    import keras

    _, ours = _pair("1.0")
    x = np.random.default_rng(3).standard_normal((2, SIDE, SIDE, 3)).astype(np.float32)
    with torch.no_grad():
        want = ours(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()

    onnx_model = archc.compile(SPEC, backend="onnx", logits=True, input=f"{SIDE}x{SIDE}x3")
    archc.load_weights(onnx_model, ours)
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    got_onnx = session.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    assert relative_difference(got_onnx, want) < 1e-5

    keras_model = archc.compile(SPEC, backend="keras", logits=True, input=f"{SIDE}x{SIDE}x3")
    archc.transfer_weights(ours, keras_model)
    got_keras = np.asarray(keras_model(x, training=False))
    keras.backend.clear_session()
    assert relative_difference(got_keras, want) < 1e-5


def test_a_few_steps_lower_the_loss():
    """Train mode at a small size: batchnorm updates its statistics, and Adam on one batch lowers the loss."""
    torch.manual_seed(0)
    model = archc.compile(SPEC, backend="torch", logits=True, width="0.5", classes=10, input="32x32x3").train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    statistics = model.state_dict()["conv1.bn.running_mean"].clone()
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7, losses
    assert not torch.equal(model.state_dict()["conv1.bn.running_mean"], statistics)
