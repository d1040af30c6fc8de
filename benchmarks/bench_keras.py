"""The Keras backend against a hand-written Keras model of ResNet-50 (He et al. 2015, Table 1).

Two figures, each the median of interleaved repeats (archc, hand-written, archc, ...) so that drifts of a
shared machine hit both alike:
  * construction: `archc.compile("specs/resnet50.arch", backend="keras")` (parse, inference, source, model)
    against calling the hand-written builder;
  * inference latency: one batch of 8 224x224x3 images on the CPU (`predict_on_batch`, after warm-up).
Before timing, the hand-written model gets the archc model's weights and must give the same outputs, so
that both compute one function.

    python benchmarks/bench_keras.py [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU figures the issue asks for

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import archc  # noqa: E402

SPEC = ROOT / "specs" / "resnet50.arch"
BN = dict(momentum=0.9, epsilon=1e-5)


def conv_bn(x, filters, kernel, stride=1, relu=True):
    """Conv (no bias: batchnorm follows) + batchnorm (+ ReLU); 'same' padding spelt out where strided."""
    if kernel > 1 and stride > 1:
        x = layers.ZeroPadding2D(kernel // 2)(x)
        x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False)(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(**BN)(x)
    return layers.ReLU()(x) if relu else x


def bottleneck(x, width, stride=1):
    """Fig. 5 right: 1x1 (carrying the stride, as in the paper), 3x3, 1x1 to 4*width; projection shortcut
    where the shape changes."""
    y = conv_bn(x, width, 1, stride)
    y = conv_bn(y, width, 3)
    y = conv_bn(y, 4 * width, 1, relu=False)
    if stride != 1 or x.shape[-1] != 4 * width:
        x = conv_bn(x, 4 * width, 1, stride, relu=False)
    return layers.ReLU()(layers.Add()([y, x]))


def hand_written_resnet50(classes=1000):
    inputs = keras.Input((224, 224, 3))
    x = conv_bn(inputs, 64, 7, 2)  # conv1, 112x112
    x = layers.ZeroPadding2D(1)(x)  # zeros are safe after the ReLU
    x = layers.MaxPooling2D(3, strides=2)(x)
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        x = bottleneck(x, width, stride)
        for _ in range(blocks - 1):
            x = bottleneck(x, width)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet50_by_hand")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    # warm both paths (imports, TensorFlow's first-use setup), then check they are one function
    ours = archc.compile(SPEC, backend="keras")
    theirs = hand_written_resnet50()
    assert ours.count_params() == theirs.count_params()
    theirs.set_weights(ours.get_weights())
    x = np.random.RandomState(0).rand(args.batch, 224, 224, 3).astype("float32")
    difference = float(np.abs(ours.predict_on_batch(x) - theirs.predict_on_batch(x)).max())
    assert difference < 1e-5, difference

    build = {"archc": [], "hand": []}
    for _ in range(args.repeats):
        for who, make in (("archc", lambda: archc.compile(SPEC, backend="keras")), ("hand", hand_written_resnet50)):
            keras.backend.clear_session()
            build[who].append(timed(make)[0])

    latency = {"archc": [], "hand": []}
    for model in (ours, theirs):
        model.predict_on_batch(x)  # trace and warm
    for _ in range(args.repeats * 2):
        for who, model in (("archc", ours), ("hand", theirs)):
            latency[who].append(timed(lambda m=model: m.predict_on_batch(x))[0])

    result = {
        "construction_s": {k: statistics.median(v) for k, v in build.items()},
        "latency_s": {k: statistics.median(v) for k, v in latency.items()},
        "repeats": args.repeats,
        "batch": args.batch,
        "max_output_difference": difference,
        "keras": keras.__version__,
        "cpu_threads": os.cpu_count(),
    }
    result["construction_ratio"] = result["construction_s"]["archc"] / result["construction_s"]["hand"]
    result["latency_ratio"] = result["latency_s"]["archc"] / result["latency_s"]["hand"]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
