"""CPU threads under contention: the default `nodeflow run txt2img` and a local sweep, idle and beside busy processes.

    python bench/cpu_contention.py [--repeats 5] [--busy 2] [--sweep-jobs 8]

Each measurement is a fresh `nodeflow run txt2img` process (the embedded model, the
workflow's defaults), timed two ways: the run itself (the executor's `seconds` in
`--json`) and the whole process (imports and model load included). Conditions:

* idle, and with `--busy` busy-loop processes (pure Python `while True`) beside it;
* thread policies: nodeflow's default (OMP_WAIT_POLICY=PASSIVE, threads = cores),
  torch's own spinning waits (OMP_WAIT_POLICY=ACTIVE), and one thread.

Then a local seed sweep of `--sweep-jobs` jobs with 1 worker and with 2 workers (each
taking half the cores), idle and loaded. Medians are printed with the load average
seen before each block; the machine's other load is part of the result, so say what
else was running when you quote these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLICIES = {
    "nodeflow default (PASSIVE, all cores)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spinning waits (ACTIVE, all cores)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "PASSIVE, 1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "--threads": "1"},
}


@contextmanager
def busy(count: int) -> Iterator[None]:
    """``count`` processes spinning a Python loop (each takes one core when it can)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def one_run(policy: dict[str, str], out: Path) -> tuple[float, float]:
    """(run seconds, process seconds) of one `nodeflow run txt2img`."""
    env = {**os.environ, **{k: v for k, v in policy.items() if not k.startswith("--")}}
    args = [a for k, v in policy.items() if k.startswith("--") for a in (k, v)]
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nodeflow.cli", "run", "txt2img", "--json", "--out", str(out), *args],
                          capture_output=True, text=True, env=env, check=True)
    total = time.perf_counter() - started
    return json.loads(proc.stdout)["seconds"], total


def sweep(workers: int, jobs: int, out: Path) -> float:
    """Wall seconds of a local seed sweep (the sweep's own timing, models loaded once)."""
    proc = subprocess.run([sys.executable, "-m", "nodeflow.cli", "sweep", "txt2img", "--set", f"seed=0..{jobs - 1}",
                           "--workers", str(workers), "--out", str(out), "--json"],
                          capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, check=True)
    return float(json.loads(proc.stdout)["seconds"])


def median_runs(policy: dict[str, str], repeats: int, out: Path) -> tuple[float, float]:
    runs = [one_run(policy, out) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy", type=int, default=2)
    parser.add_argument("--sweep-jobs", type=int, default=8)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="nodeflow-contention-"))
    print(f"cores {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))}, python {sys.version.split()[0]}")
    print(f"\n{'policy':40} {'idle run':>9} {'loaded run':>11} {'ratio':>6} {'idle proc':>10} {'loaded proc':>12}")
    for name, policy in POLICIES.items():
        load_idle = os.getloadavg()[0]
        idle = median_runs(policy, args.repeats, out)
        with busy(args.busy):
            load_busy = os.getloadavg()[0]
            loaded = median_runs(policy, args.repeats, out)
        print(f"{name:40} {idle[0]:8.2f}s {loaded[0]:10.2f}s {loaded[0] / idle[0]:5.1f}x {idle[1]:9.2f}s {loaded[1]:11.2f}s"
              f"   (load avg before: {load_idle:.1f} idle, {load_busy:.1f} loaded)")
    print(f"\nlocal sweep of {args.sweep_jobs} seeds (sweep seconds, medians of {args.repeats}):")
    for label, context in (("idle", busy(0)), (f"{args.busy} busy", busy(args.busy))):
        with context:
            one = statistics.median(sweep(1, args.sweep_jobs, out / "s1") for _ in range(args.repeats))
            two = statistics.median(sweep(2, args.sweep_jobs, out / "s2") for _ in range(args.repeats))
        print(f"  {label:8} 1 worker {one:6.2f}s   2 workers {two:6.2f}s   speed-up {one / two:4.2f}x")


if __name__ == "__main__":
    main()
