"""The small CNNs of the lecture and ResNet-50: the counts the issue names."""

from pathlib import Path

import pytest

import archc

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_resnet50_table1():
    plan = archc.check(SPECS / "resnet50.arch")
    assert plan.trainable_params == 25_557_032
    assert plan.non_trainable_params == 53_120
    assert plan.macs == 3_857_973_248
    stages = {name: nodes[-1].shape for name, nodes in plan.stages()}
    assert stages["conv1"] == (112, 112, 64)
    assert stages["conv2_x"] == (56, 56, 256)
    assert stages["conv3_x"] == (28, 28, 512)
    assert stages["conv4_x"] == (14, 14, 1024)
    assert stages["conv5_x"] == (7, 7, 2048)


def test_resnet50_v15_stride_on_3x3():
    plan = archc.check(SPECS / "resnet50.arch", downsample_at=2)
    assert plan.trainable_params == 25_557_032
    assert plan.macs == 4_089_184_256


@pytest.mark.parametrize("classes", [10, 100])
def test_resnet50_classes_override(classes):
    plan = archc.check(SPECS / "resnet50.arch", classes=classes, input="32x32x3")
    assert plan.output_shape == (classes,)
