"""PyTorch backend speed against hand-written models of the same architectures (benchmarks/handwritten.py).

    PYTHONPATH=. python benchmarks/bench_torch.py [--threads 1] [--rounds 15] [--batch 8]

1. Forward latency, eval mode, CPU, batch 8 at 224x224: compiled ResNet-50 and DenseNet-121 against the
   hand-written ones, the compiled model holding the hand-written one's weights (archc.load_weights), their
   outputs checked equal first. Runs are interleaved (the order alternates every round) so that load from
   other processes falls on both alike; the figure is the ratio of medians, compiled / hand-written.
2. `archc.compile` of ResNet-152 (spec to model: parse, inference, code generation, construction) against
   constructing the hand-written ResNet-152. "cold" clears archc's caches (generated modules, parsed block
   files) before every compile, so each one parses, generates and executes afresh; "warm" is a repeated
   compile in one process.

ResNet-152 comes from specs/resnet152.arch when the library has it, else from resnet50.arch with the
3-8-36-3 block counts of He et al.'s Table 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import archc
from archc.loader import clear_cache as clear_block_files

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import handwritten  # noqa: E402

SPECS = HERE.parent / "specs"


def resnet152_spec(workdir: Path) -> Path:
    shipped = SPECS / "resnet152.arch"
    if shipped.exists():
        return shipped
    text = (SPECS / "resnet50.arch").read_text()
    text = text.replace("network resnet50", "network resnet152")
    text = text.replace("bottleneck(128, at=downsample_at) x 3", "bottleneck(128, at=downsample_at) x 7")
    text = text.replace("bottleneck(256, at=downsample_at) x 5", "bottleneck(256, at=downsample_at) x 35")
    shutil.copy(SPECS / "blocks.arch", workdir / "blocks.arch")
    path = workdir / "resnet152.arch"
    path.write_text(text)
    return path


def clear_generated() -> None:
    for name in [n for n in sys.modules if n.startswith("archc_generated_")]:
        del sys.modules[name]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, callable], rounds: int, warmup: int) -> dict[str, list[float]]:
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timed(fns[name]))
    return times


def forward_latency(spec: str, hand_model: torch.nn.Module, batch: int, rounds: int) -> dict:
    compiled = archc.compile(SPECS / spec, logits=True)
    archc.load_weights(compiled, hand_model)
    compiled.eval()
    hand_model.eval()
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        diff = (compiled(x) - hand_model(x)).abs().max().item()
        assert diff < 1e-3, f"{spec}: compiled and hand-written outputs differ by {diff}"

        def run(model):
            return lambda: model(x)

        times = interleaved({"archc": run(compiled), "hand": run(hand_model)}, rounds, warmup=2)
    a, h = statistics.median(times["archc"]), statistics.median(times["hand"])
    return {"archc_ms": a * 1e3, "hand_ms": h * 1e3, "ratio": a / h, "max_abs_diff": diff}


def compile_time(spec: Path, rounds: int) -> dict:
    def cold():
        clear_generated()
        clear_block_files()
        archc.compile(spec, logits=True)

    times = interleaved({"cold": cold, "warm": lambda: archc.compile(spec, logits=True),
                         "hand": handwritten.resnet152}, rounds, warmup=1)
    c, w, h = (statistics.median(times[k]) for k in ("cold", "warm", "hand"))
    return {"archc_cold_ms": c * 1e3, "archc_warm_ms": w * 1e3, "hand_ms": h * 1e3,
            "ratio_cold": c / h, "ratio_warm": w / h}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--only", choices=["forward", "compile"], default=None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict = {"torch": torch.__version__, "threads": args.threads, "batch": args.batch,
                     "rounds": args.rounds}
    if args.only in (None, "forward"):
        results["resnet50_forward"] = forward_latency("resnet50.arch", handwritten.resnet50(), args.batch,
                                                      args.rounds)
        results["densenet121_forward"] = forward_latency("densenet121.arch", handwritten.densenet121(),
                                                         args.batch, args.rounds)
    if args.only in (None, "compile"):
        with tempfile.TemporaryDirectory() as tmp:
            results["resnet152_compile"] = compile_time(resnet152_spec(Path(tmp)), max(args.rounds, 15))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"torch {results['torch']}, {args.threads} thread(s), medians of {args.rounds} interleaved rounds")
    for key in ("resnet50_forward", "densenet121_forward"):
        if key in results:
            r = results[key]
            print(f"{key:<22} archc {r['archc_ms']:8.1f} ms   hand-written {r['hand_ms']:8.1f} ms   "
                  f"ratio {r['ratio']:.3f}")
    if "resnet152_compile" in results:
        r = results["resnet152_compile"]
        print(f"{'resnet152 compile':<22} archc {r['archc_cold_ms']:8.1f} ms cold, {r['archc_warm_ms']:.1f} ms warm"
              f"   hand-written construction {r['hand_ms']:8.1f} ms   ratio {r['ratio_cold']:.3f} cold, "
              f"{r['ratio_warm']:.3f} warm")


if __name__ == "__main__":
    main()
