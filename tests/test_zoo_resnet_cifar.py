"""The CIFAR-10 ResNets of He et al. 2015, Sec. 4.2 (specs/resnet20_cifar.arch), against the common PyTorch
reference implementation, written out below (torchvision has none): the same trainable parameters for option A
(zero-padding shortcuts) and option B (projections), n = 3, 5, 7, 9, 18, and after archc.load_weights the same
outputs; Keras and ONNX compute what torch computes; a few optimiser steps in train mode lower the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torchvision_zoo import perturb, relative_difference, trainable

import archc

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

SPEC = Path(__file__).resolve().parent.parent / "specs" / "resnet20_cifar.arch"
DEPTHS = {3: "resnet20", 5: "resnet32", 7: "resnet44", 9: "resnet56", 18: "resnet110"}


# ---------------------------------------------------------------- the reference (Yerlan Idelbayev's
# pytorch_resnet_cifar10, the implementation most CIFAR ResNet figures come from), options A and B


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1, option="A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":  # the identity, every second row and column, planes // 4 zero channels each side
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0))
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                                              nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, n, option="A", num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1, option)
        self.layer2 = self._make_layer(32, n, 2, option)
        self.layer3 = self._make_layer(64, n, 2, option)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes, n, stride, option):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s, option))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).view(out.size(0), -1)
        return self.linear(out)


OPTIONS = {"A": "zeropad", "B": "projection"}


def _pair(n: int, option: str):
    reference = perturb(ResNetCifar(n, option)).eval()
    ours = archc.compile(SPEC, backend="torch", logits=True, n=n, option=OPTIONS[option]).eval()
    archc.load_weights(ours, reference.state_dict())
    return reference, ours


# ---------------------------------------------------------------- counts


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("n", list(DEPTHS))
def test_trainable_parameters_are_the_references(n, option):
    plan = archc.check(SPEC, n=n, option=OPTIONS[option])
    assert plan.trainable_params == trainable(ResNetCifar(n, option))
    # the usual closed form: conv1 and its batchnorm 464, the first block of each stage 4,672 / 13,952 /
    # 55,552, each further block 4,672 / 18,560 / 73,984, the classifier 650; option B adds two projections
    formula = 464 + 4_672 * n + 13_952 + 18_560 * (n - 1) + 55_552 + 73_984 * (n - 1) + 650
    assert formula == 97_216 * n - 21_926
    assert plan.trainable_params == formula + (2_752 if option == "B" else 0)
    # option B: a conv and a batchnorm in place of each of the two zero pads
    assert len(plan.nodes) == len(archc.check(SPEC, n=n).nodes) + (2 if option == "B" else 0)


def test_option_a_has_no_parameter_in_any_shortcut():
    plan = archc.check(SPEC)
    shortcuts = [node for node in plan.nodes if ".shortcut." in node.name]
    assert [(node.name, node.op) for node in shortcuts] == [("stage2.0.shortcut.zeropad", "zeropad"),
                                                           ("stage3.0.shortcut.zeropad", "zeropad")]
    assert all(node.params == 0 for node in shortcuts)
    assert plan.node("stage2.0.shortcut.zeropad").args.stride == (2, 2)


# ---------------------------------------------------------------- the same function


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("n", [3, 5])
def test_same_function_as_the_reference(n, option):
    reference, ours = _pair(n, option)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert relative_difference(ours(x), reference(x)) < 1e-5


@pytest.mark.parametrize("option", list(OPTIONS))
def test_keras_and_onnx_compute_what_torch_computes(option):
    pytest.importorskip("keras")
    onnxruntime = pytest.importorskip("onnxruntime")
    import keras

    _, ours = _pair(3, option)
    x = np.random.default_rng(3).standard_normal((2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        want = ours(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()

    onnx_model = archc.compile(SPEC, backend="onnx", logits=True, option=OPTIONS[option])
    archc.load_weights(onnx_model, ours)
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    got_onnx = session.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    assert relative_difference(got_onnx, want) < 1e-5

    keras_model = archc.compile(SPEC, backend="keras", logits=True, option=OPTIONS[option])
    archc.transfer_weights(ours, keras_model)
    got_keras = np.asarray(keras_model(x, training=False))
    keras.backend.clear_session()
    assert relative_difference(got_keras, want) < 1e-5


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = archc.compile(SPEC, backend="torch", logits=True).train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7, losses
