"""How fast `archc diff` answers (issue 15: two ResNet-152 specs in under 0.5 s, end to end).

End to end is the command as a user runs it, wall clock, process start included; interleaved with
`archc check` of one of the two specs in the same run, as the reference. Medians of --runs (default 7).

1. `archc diff specs/resnet152.arch specs/resnet152.arch --set-b downsample_at=2` (v1 against v1.5: every layer
   pairs, six strides move);
2. `archc diff specs/resnet101.arch specs/resnet152.arch` (51 blocks inserted: the walk steps over them);
3. `archc check specs/resnet152.arch`, the reference; and the floor every command pays here (Python starting and
   importing pydantic, as bench_check.py measures it);
4. the first again with the parse cache off (`ARCHC_CACHE_DIR=off`): both files parsed and lark imported, as a
   first run or an edited spec has it (1-3 run as a user's second run does, from the parse cache);
then, in this process, the parts of the first diff: checking both sides, their graphs, the match.

    python benchmarks/bench_diff.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_check import FLOOR, NO_CACHE, compile_bytecode  # noqa: E402

V1_V15 = ["diff", "specs/resnet152.arch", "specs/resnet152.arch", "--set-b", "downsample_at=2"]
CASES = {  # name: (arguments, environment)
    "diff resnet152 v1 / v1.5": (V1_V15, None),
    "diff resnet101 / resnet152": (["diff", "specs/resnet101.arch", "specs/resnet152.arch"], None),
    "check resnet152 (reference)": (["check", "specs/resnet152.arch"], None),
    "v1 / v1.5, parse cache off": (V1_V15, NO_CACHE),
}


def wall(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall clock, CPU seconds of the child): on a shared, loaded machine the CPU time says more."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # diff: 0 the same, 1 different; anything else is trouble
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def parts(runs: int) -> dict[str, float]:
    import archc
    from archc.diff import diff, side_of_plan
    from archc.loader import load_path

    times: dict[str, list[float]] = {"load + check both": [], "graphs": [], "match + compare": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        loaded = load_path(ROOT / "specs" / "resnet152.arch")
        a, b = archc.check(loaded), archc.check(loaded, downsample_at=2)
        t1 = time.perf_counter()
        sa, sb = side_of_plan(a), side_of_plan(b)
        t2 = time.perf_counter()
        diff(sa, sb)
        t3 = time.perf_counter()
        times["load + check both"].append(t1 - t0)
        times["graphs"].append(t2 - t1)
        times["match + compare"].append(t3 - t2)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    compile_bytecode()
    # `python -m archc` from the repository root: this checkout's archc, whatever `archc` on PATH is installed from
    cmd = [sys.executable, "-m", "archc"]
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CASES}
    for case, env in CASES.values():  # one warm-up each (it also fills the parse cache)
        wall(cmd + case, env)
    floor: list[tuple[float, float]] = []
    for _ in range(args.runs):
        floor.append(wall(FLOOR))
        for name, (case, env) in CASES.items():
            times[name].append(wall(cmd + case, env))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"end to end, median of {args.runs}: wall clock (min-max), CPU time of the process")
    for name, values in times.items():
        walls = [w for w, _ in values]
        print(f"  {name:<30} {statistics.median(walls):6.3f} s  ({min(walls):.3f}-{max(walls):.3f})  "
              f"cpu {statistics.median(c for _, c in values):.3f} s")
    # what any command pays on this machine before archc's own code runs: machines here differ by 2-3x
    base = statistics.median(w for w, _ in floor)
    print(f"  {'floor: python + pydantic':<30} {base:6.3f} s; above it: "
          + ", ".join(f"{name.split(' (')[0]} {statistics.median(w for w, _ in values) - base:.3f} s"
                      for name, values in times.items()))
    print(f"in process, median of {args.runs}, diff resnet152 v1 / v1.5:")
    for name, value in parts(args.runs).items():
        print(f"  {name:<30} {value:6.3f} s")


if __name__ == "__main__":
    main()
