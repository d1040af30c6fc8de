"""How fast `archc check` answers.

1. `archc check specs/resnet50.arch`, wall clock, against the floor every command pays: starting the same Python
   and importing pydantic. Twice: as a user's second run has it (its files' parse in the parse cache, lark never
   imported), and with the parse cache off (`ARCHC_CACHE_DIR=off`: every file parsed, lark imported), as a first
   run or an edited spec has it. Interleaved runs, medians.
2. Checking generated specs of 1,250 to 20,000 layers (written out line by line, so the parser sees
   every layer; the parse cache off), to show the time grows linearly: the time per layer should stay flat.

    python benchmarks/bench_check.py [--runs 21]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = [sys.executable, "-c", "import pydantic; from pydantic import BaseModel"]
NO_CACHE = dict(os.environ, ARCHC_CACHE_DIR="off")


def archc_cmd() -> list[str]:
    """The console script of this interpreter's install (not a shim earlier on PATH, such as pyenv's)."""
    exe = Path(sys.executable).with_name("archc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "archc"]


def compile_bytecode() -> None:
    """`pip install .` compiles the package to bytecode; an editable install writes it on first import unless
    PYTHONDONTWRITEBYTECODE is set (as on these machines), which would time the compiler on every run."""
    import archc

    compileall.compile_dir(Path(archc.__file__).parent, quiet=1)


def wall(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT, env=env)
    return time.perf_counter() - start


def generated_spec(layers: int) -> str:
    """Stages of ten residual units (conv-bn-relu-conv-bn-add-relu = 7 layers each) plus a head."""
    lines = ["network generated", "input 32x32x16"]
    count, stage = 0, 0
    while count < layers - 3:
        stage += 1
        lines.append(f"stage{stage}:")
        for _ in range(10):
            lines += ["  residual:", "    conv 3x3, 16, same, bn, relu", "    conv 3x3, 16, same, bn", "  relu"]
            count += 7
    lines += ["globalavgpool", "dense 10, softmax"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()

    compile_bytecode()
    check = archc_cmd() + ["check", "specs/resnet50.arch"]
    wall(check), wall(check, NO_CACHE), wall(FLOOR)  # warm the file cache, .pyc files and the parse cache
    floor_t, check_t, cold_t = [], [], []
    for _ in range(args.runs):
        floor_t.append(wall(FLOOR))
        check_t.append(wall(check))
        cold_t.append(wall(check, NO_CACHE))
    f, c, n = (statistics.median(t) * 1000 for t in (floor_t, check_t, cold_t))
    print(f"python + import pydantic (floor):           {f:7.1f} ms median of {args.runs}")
    print(f"archc check specs/resnet50.arch:            {c:7.1f} ms   above the floor {c - f:6.1f} ms")
    print(f"the same, parse cache off (every file parsed): {n:7.1f} ms   above the floor {n - f:6.1f} ms")

    sys.path.insert(0, str(ROOT))
    os.environ["ARCHC_CACHE_DIR"] = "off"  # what is timed below is parsing too
    import archc

    archc.check(ROOT / "specs" / "resnet50.arch")  # warm the grammar cache and pydantic schemas
    print("\ngenerated specs, in-process archc.check (parse + expand + infer), median of 5:")
    with tempfile.TemporaryDirectory() as tmp:
        for layers in (1250, 2500, 5000, 10000, 20000):
            path = Path(tmp) / f"gen{layers}.arch"
            path.write_text(generated_spec(layers))
            times = []
            for _ in range(5):
                start = time.perf_counter()
                plan = archc.check(path)
                times.append(time.perf_counter() - start)
            t = statistics.median(times)
            print(f"  {len(plan.nodes):6d} layers: {t * 1000:8.1f} ms   {t / len(plan.nodes) * 1e6:6.1f} us/layer")
        path = Path(tmp) / "gen10000.arch"
        path.write_text(generated_spec(10000))
        cli = statistics.median(wall(archc_cmd() + ["check", str(path)], NO_CACHE) for _ in range(5))
        print(f"  `archc check` of the 10,000-layer spec, whole process: {cli * 1000:.1f} ms")


if __name__ == "__main__":
    main()
