"""How fast `archc import` writes a spec (issue 15: importing ResNet-152 and DenseNet-201 takes at most twice
the time of constructing or loading the source model).

Today: the decompiler alone, on the flat networks of the shipped specs' plans (archc.flat.flat_of_plan), which
are what a reader hands it: ResNet-152 (515 layers) and DenseNet-201 (707 layers). Two figures per model,
medians of interleaved runs: writing the spec (structure, folding, blocks, text) and the whole of
`archc.decompile.decompile`, which also checks the written spec back against the flat network.

`--source torch` adds reading torchvision's model and the time to construct it, and the ratio the issue asks
for: (read + verified) / build src, at most 2x.

    python benchmarks/bench_import.py [--runs 7] [--source spec|torch]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's archc, and the tests' torchvision workaround
MODELS = {"resnet152": "resnet152", "densenet201": "densenet201"}  # spec stem -> torchvision's name


def _time(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _fresh(net):
    from archc.flat import FlatNetwork

    return FlatNetwork(net.input_shape, net.layers, net.output, net.name, net.source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--source", choices=["spec", "torch"], default="spec")
    args = parser.parse_args()

    import archc
    from archc.decompile import decompile, decompile_ir
    from archc.flat import flat_of_plan
    from archc.fmt import format_spec

    print(f"{'model':12} {'layers':>6} {'read':>9} {'build src':>9} {'write':>9} {'verified':>9} {'lines':>5} "
          f"{'ratio':>6}")
    for stem, tv_name in MODELS.items():
        read = build = float("nan")
        if args.source == "torch":
            from torchvision_zoo import import_torchvision

            from archc.readers import read_source

            models = import_torchvision().models
            build, model = _time(lambda m=models, n=tv_name: getattr(m, n)(), args.runs)
            read, flat = _time(lambda m=model: read_source(m, (224, 224, 3)), args.runs)
        else:
            flat = flat_of_plan(archc.check(ROOT / "specs" / f"{stem}.arch"))
        # a fresh network each run (the same layers): what one network has resolved is kept on it (flat.Resolutions)
        write, _ = _time(lambda f=flat: format_spec(decompile_ir(_fresh(f))), args.runs)
        verified, text = _time(lambda f=flat: decompile(_fresh(f)), args.runs)
        def ms(seconds: float) -> str:
            return f"{seconds * 1e3:7.0f}ms" if seconds == seconds else f"{'-':>9}"

        ratio = (read + verified) / build  # the import (read, write, check) over constructing the source; nan
        print(f"{stem:12} {len(flat.layers):6} {ms(read)} {ms(build)} {ms(write)} {ms(verified)} "
              f"{len(text.splitlines()):5} {ratio:5.2f}x")


if __name__ == "__main__":
    main()
