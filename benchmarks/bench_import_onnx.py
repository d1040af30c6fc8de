"""How fast an ONNX file is imported (issue 15: importing DenseNet-201 from ONNX takes at most 2x loading it).

torchvision's DenseNet-201 (random weights, batchnorm kept: `do_constant_folding=False`) is exported once with
torch.onnx.export (TorchScript) in a process of its own (the timed process imports neither torch nor
torchvision, as `archc import model.onnx` does not: their millions of objects would slow every garbage collection),
then, interleaved in each run:
  * `onnx.load` of the file (the reference);
  * archc's own load of it (archc.readers.onnx._load: the same ModelProto, parsed from the file mapped into
    memory, without onnx.load's copy of the file into a bytes object first), so that what the import costs
    above loading the file shows apart from what its load saves;
  * `read_flat` of the path (archc's load + reading it into archc's vocabulary);
  * `archc.import_model` of the path (load, read, decompile, and the check that the written spec is the same
    network), with the cyclic garbage collector on, as a library's caller has it;
  * the same as `archc import model.onnx` runs it, the collector off (archc.cli's policy for a one-shot command
    that builds no framework's model): the figure issue 15 sets.
Medians of --runs, of wall-clock and of process CPU time (the machine may be shared: CPU time is steadier); the
ratios are to `onnx.load`'s median of the same run.

    python benchmarks/bench_import_onnx.py [--runs 5] [--model densenet201] [--side 224] [--profile]

`--profile` runs one import as `archc import` runs it (the collector off) under cProfile after the timings and
prints its top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _export(name: str, side: int, path: str) -> None:
    import torch
    from torchvision_zoo import import_torchvision

    model = getattr(import_torchvision().models, name)(weights=None).eval()
    torch.onnx.export(model, torch.randn(1, 3, side, side), path, dynamo=False, do_constant_folding=False)


def _cli(path: Path) -> str:
    """archc.import_model as `archc import model.onnx` runs it: the cyclic collector off (archc.cli)."""
    import archc

    gc.disable()
    try:
        return archc.import_model(path)
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="densenet201")
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--export", metavar="PATH", help=argparse.SUPPRESS)  # the child process's job
    opts = parser.parse_args()

    if opts.export:
        _export(opts.model, opts.side, opts.export)
        return
    import onnx

    import archc
    from archc.readers.onnx import _load, read_flat

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{opts.model}.onnx"
        subprocess.run([sys.executable, __file__, "--model", opts.model, "--side", str(opts.side), "--export",
                        str(path)], check=True, stderr=subprocess.DEVNULL)
        steps = {"onnx.load": lambda: onnx.load(str(path)), "archc's load": lambda: _load(str(path)),
                 "read_flat (+ load)": lambda: read_flat(path),
                 "archc.import_model": lambda: archc.import_model(path), "archc import": lambda: _cli(path)}
        wall: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        results = {}
        for _ in range(opts.runs):
            for name, fn in steps.items():
                w, c, results[name] = _timed(fn)
                wall[name].append(w)
                cpu[name].append(c)
        net, text = results["read_flat (+ load)"], results["archc.import_model"]
        assert results["archc import"] == text and results["archc's load"] == results["onnx.load"]
        print(f"{opts.model} ({path.stat().st_size / 2**20:.1f} MiB, {len(net.layers)} layers, spec of "
              f"{len(text.splitlines())} lines), median of {opts.runs}, interleaved:")
        load_wall, load_cpu = statistics.median(wall["onnx.load"]), statistics.median(cpu["onnx.load"])
        for name in steps:
            w, c = statistics.median(wall[name]), statistics.median(cpu[name])
            print(f"  {name:20} wall {w:.3f} s ({w / load_wall:.2f}x)   cpu {c:.3f} s ({c / load_cpu:.2f}x)")
        print("  target: archc import <= 2x onnx.load")
        if opts.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(_cli, path)  # as the CLI runs it: the collector off (with it on, allocation-heavy
            # lines carry the collections they happen to trigger)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
