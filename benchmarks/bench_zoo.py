"""The zoo's compiled models against torchvision's, forward latency (issue 12: within 3%).

    PYTHONPATH=. python benchmarks/bench_zoo.py [--threads 1] [--rounds 15] [--batch 8] [--only efficientnet_b0]

For each spec that has a torchvision counterpart: eval mode, CPU, batch 8 at 224x224. The compiled model
(`archc.compile(..., backend="torch", logits=True)`) holds the torchvision model's weights (perturbed from their
initialisation, copied with `archc.load_weights`), and their outputs are checked equal first. Runs are
interleaved (the order alternates every round) so that load from other processes falls on both alike; the
figures are the medians and the ratio of medians, compiled / torchvision, all measured in the same run, with
the median of each round's own ratio and the minima beside them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import archc

HERE = Path(__file__).resolve().parent
SPECS = HERE.parent / "specs"
sys.path.insert(0, str(HERE.parent / "tests"))
from torchvision_zoo import convnext_state_dict, import_torchvision  # noqa: E402


def module(model):
    """The torchvision module itself: `archc.load_weights` matches its layers through the structure."""
    return model


# spec -> (torchvision builder name, what `archc.load_weights` takes from the torchvision model)
MODELS = {
    "convnext_tiny": ("convnext_tiny", convnext_state_dict),
    "efficientnet_b0": ("efficientnet_b0", module),
}


def interleaved(fns: dict, rounds: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """-> wall-clock times and this thread's CPU times per call. With one thread PyTorch computes on the calling
    thread, so the CPU time leaves out what other processes take from a shared machine."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            start, start_cpu = time.perf_counter(), time.thread_time()
            fns[name]()
            cpu[name].append(time.thread_time() - start_cpu)
            times[name].append(time.perf_counter() - start)
    return times, cpu


def forward_latency(spec: str, batch: int, rounds: int) -> dict:
    builder, weights = MODELS[spec]
    torch.manual_seed(0)
    reference = getattr(import_torchvision().models, builder)(weights=None).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    compiled = archc.compile(SPECS / f"{spec}.arch", backend="torch", logits=True).eval()
    archc.load_weights(compiled, weights(reference))
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        want = reference(x)
        diff = (compiled(x) - want).abs().max().item()
        relative = diff / want.abs().max().item()
        assert relative < 1e-4, f"{spec}: compiled and torchvision outputs differ by {relative:.3g} (relative)"
        times, cpu = interleaved({"archc": lambda: compiled(x), "torchvision": lambda: reference(x)}, rounds,
                                 warmup=2)
    a, t = statistics.median(times["archc"]), statistics.median(times["torchvision"])
    a_cpu, t_cpu = statistics.median(cpu["archc"]), statistics.median(cpu["torchvision"])
    # each round times both models back to back: the median of those paired ratios shrugs off slow spells
    paired = statistics.median(x / y for x, y in zip(times["archc"], times["torchvision"], strict=True))
    return {"archc_ms": a * 1e3, "torchvision_ms": t * 1e3, "ratio": a / t, "paired_ratio": paired,
            "archc_min_ms": min(times["archc"]) * 1e3, "torchvision_min_ms": min(times["torchvision"]) * 1e3,
            "archc_cpu_ms": a_cpu * 1e3, "torchvision_cpu_ms": t_cpu * 1e3, "cpu_ratio": a_cpu / t_cpu,
            "max_abs_diff": diff, "max_rel_diff": relative}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--only", choices=sorted(MODELS), action="append", default=None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict = {"torch": torch.__version__, "threads": args.threads, "batch": args.batch, "rounds": args.rounds}
    for spec in args.only or [s for s in MODELS if (SPECS / f"{s}.arch").exists()]:
        results[spec] = forward_latency(spec, args.batch, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"torch {results['torch']}, {args.threads} thread(s), batch {args.batch}, 224x224, eval; "
          f"medians of {args.rounds} interleaved rounds")
    for spec in MODELS:
        if spec in results:
            r = results[spec]
            print(f"{spec:<16} archc {r['archc_ms']:8.1f} ms   torchvision {r['torchvision_ms']:8.1f} ms   "
                  f"ratio {r['ratio']:.3f} (paired {r['paired_ratio']:.3f}; minima {r['archc_min_ms']:.1f} / "
                  f"{r['torchvision_min_ms']:.1f} ms)   CPU time {r['archc_cpu_ms']:.1f} / "
                  f"{r['torchvision_cpu_ms']:.1f} ms, ratio {r['cpu_ratio']:.3f}   max |diff| {r['max_abs_diff']:.2g}")


if __name__ == "__main__":
    main()
