"""Executor overhead on long chains of trivial nodes.

For chains of N nodes (default 1,000 and 10,000) this measures, with medians over
repeats in one process:

* validate + plan (parse excluded: the graph is already a document object),
* a cold run (empty cache): per-node overhead = (run time - time spent inside
  ``run`` methods) / N,
* a warm re-run where the last node's input changed (only it runs; the rest is cached),
* a fully cached re-run.

Goals from issue 2: per-node overhead <= 50 us; validate+plan <= 50 ms for 1,000 nodes.
Run: ``python bench/executor_overhead.py [--sizes 1000 10000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import parse_graph
from nodeflow.node import Input, Output, node
from nodeflow.plan import make_plan
from nodeflow.registry import Registry
from nodeflow.validate import check

INSIDE = [0.0]


@node("bench.inc", category="bench")
class Inc:
    """x + 1: about the cheapest node there is."""

    x = Input("INT", default=0)
    out = Output("INT")

    def run(self, ctx, x):
        t0 = time.perf_counter()
        value = x + 1
        INSIDE[0] += time.perf_counter() - t0
        return value


def chain(n: int, start: int = 0) -> dict:
    nodes = {"0": {"type": "bench.inc", "inputs": {"x": start}}}
    for i in range(1, n):
        nodes[str(i)] = {"type": "bench.inc", "inputs": {"x": {"node": str(i - 1), "output": "out"}}}
    return {"format": "nodeflow/graph", "version": 1, "nodes": nodes}


def measure(n: int, repeats: int) -> dict[str, float]:
    registry = Registry()
    registry.add(Inc, "bench")
    doc = parse_graph(chain(n))
    plan_times, cold, cold_inside, one_changed, warm = [], [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        checked = check(doc, registry)
        assert checked.ok
        make_plan(checked, registry)
        plan_times.append(time.perf_counter() - t0)

        executor = Executor(registry, Cache())
        INSIDE[0] = 0.0
        t0 = time.perf_counter()
        result = executor.run(doc)
        cold.append(time.perf_counter() - t0)
        cold_inside.append(INSIDE[0])
        assert result.status == "succeeded" and result.values[str(n - 1)]["out"] == n

        t0 = time.perf_counter()
        result = executor.run(doc, inputs={f"{n - 1}.x": 5})
        one_changed.append(time.perf_counter() - t0)
        assert sum(r.status == "ran" for r in result.nodes.values()) == 1

        t0 = time.perf_counter()
        result = executor.run(doc)
        warm.append(time.perf_counter() - t0)
        assert all(r.status == "cached" for r in result.nodes.values())
    med = statistics.median
    return {
        "validate_plan_ms": med(plan_times) * 1e3,
        "cold_run_ms": med(cold) * 1e3,
        "per_node_overhead_us": med([(c - i) / n for c, i in zip(cold, cold_inside, strict=True)]) * 1e6,
        "one_changed_rerun_ms": med(one_changed) * 1e3,
        "cached_rerun_ms": med(warm) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.setrecursionlimit(200)  # proves there is no recursion proportional to graph size
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, repeats={args.repeats} (medians)")
    print(f"{'nodes':>7} {'validate+plan ms':>17} {'cold run ms':>12} {'overhead us/node':>17} {'1 changed ms':>13} {'cached ms':>10}")
    for n in args.sizes:
        r = measure(n, args.repeats)
        print(f"{n:>7} {r['validate_plan_ms']:>17.1f} {r['cold_run_ms']:>12.1f} {r['per_node_overhead_us']:>17.1f} {r['one_changed_rerun_ms']:>13.1f} {r['cached_rerun_ms']:>10.1f}")


if __name__ == "__main__":
    main()
