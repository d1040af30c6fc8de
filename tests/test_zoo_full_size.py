"""Issue 12: Keras and ONNX build every zoo spec at its full input size and compute what archc's PyTorch model
computes on the same weights (`archc.transfer_weights` into Keras, `archc.load_weights` into ONNX, run by ONNX
Runtime). The other zoo tests check the same at reduced sizes by default; this one is the full-size proof, and runs
with ARCHC_THOROUGH=1 only (tens of minutes on two cores, a few GB for VGG-16-BN).

Weights: every tensor of the PyTorch model drawn afresh (tests/torchvision_zoo.py's `perturb`), batchnorm
statistics included, so a transfer that swaps or skips one shows. Eval mode, logits (a softmax would hide
differences). The measure is max |got - want| over max |want|.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import numpy as np
import pytest
from torchvision_zoo import perturb, relative_difference

import archc

pytestmark = pytest.mark.skipif(os.environ.get("ARCHC_THOROUGH") != "1",
                                reason="every zoo spec at full size in Keras and ONNX: ARCHC_THOROUGH=1")

SPECS = Path(__file__).resolve().parent.parent / "specs"

# Issue 12's zoo, each at the input size its spec declares.
ZOO = ["convnext_tiny", "efficientnet_b0", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet1_0",
       "regnet_y_400mf", "resnext50_32x4d", "wide_resnet50_2", "shufflenet_v2_x1_0", "squeezenet1_1", "vgg16_bn",
       "inception_v3", "unet", "resnet20_cifar"]

# Other frameworks sum in other orders: float32 rounding alone moves a deep network's outputs by up to a few 1e-5 of
# their scale at full size (tests/test_zoo_mobile.py measured MobileNet v3 Large in float32 against float64: 2.2e-5
# at 224x224). A transfer that misplaces a tensor gives differences of order 1. Measured here: every spec under 6e-6
# in both but MobileNet v3 Large (Keras 7.3e-5, ONNX 4.6e-5) and RegNetY-400MF (Keras 2.0e-5, ONNX 9.5e-6).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def backends():
    return pytest.importorskip("keras"), pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("spec", ZOO)
def test_keras_and_onnx_compute_torchs_function_at_full_size(spec, backends, record_property):
    torch = pytest.importorskip("torch")
    keras, onnxruntime = backends
    start = time.perf_counter()
    torch.manual_seed(0)
    model = perturb(archc.compile(SPECS / f"{spec}.arch", backend="torch", logits=True), seed=1).eval()
    plan = model.archc_plan
    x = np.random.default_rng(0).standard_normal((1, *plan.input_shape)).astype(np.float32)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        want = model(torch.from_numpy(nchw)).numpy()
    assert np.isfinite(want).all() and np.abs(want).max() > 0

    onnx_model = archc.load_weights(archc.compile(plan, backend="onnx", logits=True), model)
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_diff = relative_difference(session.run(None, {"input": nchw})[0], want)
    del onnx_model, session
    gc.collect()

    keras_model = archc.compile(plan, backend="keras", logits=True)
    archc.transfer_weights(model, keras_model)
    got = np.asarray(keras_model(x, training=False))
    keras_diff = relative_difference(got.transpose(0, 3, 1, 2) if got.ndim == 4 else got, want)
    del keras_model, model
    keras.backend.clear_session()
    gc.collect()

    seconds = time.perf_counter() - start
    record_property("keras_relative_difference", keras_diff)
    record_property("onnx_relative_difference", onnx_diff)
    print(f"\n{spec} {'x'.join(map(str, plan.input_shape))}: keras {keras_diff:.2e}, onnx {onnx_diff:.2e}, "
          f"{seconds:.1f} s")
    assert keras_diff <= TOLERANCE and onnx_diff <= TOLERANCE, (keras_diff, onnx_diff)


@pytest.mark.parametrize("spec", ["mobilenet_v3_large", "regnet_y_400mf"])
def test_the_float32_gaps_are_rounding_keras_in_float64_is_torchs_function(spec, backends):
    """The two specs whose float32 gap exceeds 1e-5: in float64, Keras and PyTorch agree to about 1e-13 of the
    output's scale (measured: 2.9e-14 and 1.6e-13), so the same function; in float32, TensorFlow's own rounding
    moves MobileNet v3 Large 4.2e-5 from the float64 result (PyTorch's: 3.9e-6)."""
    torch = pytest.importorskip("torch")
    keras, _ = backends
    keras.config.set_floatx("float64")
    try:
        model = perturb(archc.compile(SPECS / f"{spec}.arch", backend="torch", logits=True)).eval().double()
        reference = archc.compile(SPECS / f"{spec}.arch", backend="keras", logits=True)
        archc.transfer_weights(model, reference)
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        with torch.no_grad():
            want = model(x).numpy()
        got = np.asarray(reference(x.permute(0, 2, 3, 1).numpy(), training=False))
        assert got.dtype == np.float64
        assert relative_difference(got, want) < 1e-11
    finally:
        keras.config.set_floatx("float32")
        keras.backend.clear_session()
        gc.collect()
