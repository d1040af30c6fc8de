"""How fast an ONNX file is read into archc's vocabulary (issue 15: importing DenseNet-201 from ONNX takes at most
2x loading it).

torchvision's DenseNet-201 (random weights, batchnorm kept: `do_constant_folding=False`) is exported once with
torch.onnx.export (TorchScript), then, interleaved: `onnx.load` of the file, and `onnx.load` + `read_flat` (the
whole read, from the path). Medians of --runs; the ratio is read / load.

    python benchmarks/bench_import_onnx.py [--runs 5] [--model densenet201] [--side 224]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="densenet201")
    parser.add_argument("--side", type=int, default=224)
    opts = parser.parse_args()

    import onnx
    import torch
    from torchvision_zoo import import_torchvision

    from archc.readers.onnx import read_flat

    torchvision = import_torchvision()
    model = getattr(torchvision.models, opts.model)(weights=None).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{opts.model}.onnx"
        torch.onnx.export(model, torch.randn(1, 3, opts.side, opts.side), str(path), dynamo=False,
                          do_constant_folding=False)
        del model
        loads, reads = [], []
        for _ in range(opts.runs):
            start = time.perf_counter()
            onnx.load(str(path))
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            net = read_flat(path)
            reads.append(time.perf_counter() - start)
        load, read = statistics.median(loads), statistics.median(reads)
        print(f"{opts.model} ({path.stat().st_size / 2**20:.1f} MiB, {len(net.layers)} layers), median of {opts.runs}:")
        print(f"  onnx.load            {load:.3f} s")
        print(f"  read_flat (+ load)   {read:.3f} s   ratio {read / load:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
