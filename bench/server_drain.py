"""Drain time of the server's queue: N queued runs with 1 worker and with 2, on the local backend and on Ray.

    OMP_WAIT_POLICY=PASSIVE RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 \\
        python bench/server_drain.py [--runs 8] [--backends local,ray] [--workloads wait,txt2img] [--repeats 1]

For each backend, workload and worker count, a server is started in this process
(127.0.0.1, an ephemeral port, a scratch data dir), warmed up with one run per worker
(so models are loaded and the workers are up: drain time is queue time, not start-up
time), then ``--runs`` runs are posted at once and the drain time is measured from the
first POST to the latest ``finished`` time among their records. Workloads:

* ``wait``: one ``sweeptest.paint`` node that waits 10 x 0.1 s and writes a 4x4 PNG
  (tests/sweep_plugins): a run whose time is spent waiting, as a run whose work is on
  a GPU mostly is from the CPU's point of view. Shows what the queue's concurrency gives
  when the cores are not the limit.
* ``txt2img``: ``workflows/txt2img.json`` with the embedded default model and its
  default settings, one seed per run: CPU-bound work. Each worker gets
  ``cores // workers`` torch threads (on Ray too), so 2 workers split the cores
  rather than add to them.

Ray runs on a private loopback Ray started here with ``num_cpus`` = the cores. The load
average is printed before each block: on a shared machine it is part of the result.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "tests" / "sweep_plugins"


def graph_for(workload: str, seed: int) -> dict[str, Any]:
    """The run request body for one run of ``workload``."""
    if workload == "wait":
        return {"graph": {"nodes": {"paint": {"type": "sweeptest.paint", "inputs": {"value": seed, "steps": 10, "delay": 0.1}}}}}
    return {"workflow": "txt2img", "inputs": {"seed": seed, "model": "default"}}


def make_backend(name: str, workers: int, registry: Any) -> Any:
    """A backend with ``workers`` workers, each with ``cores // workers`` torch threads."""
    from nodeflow import threads

    per_worker = max(1, threads.available_cores() // workers)
    if name == "local":
        from nodeflow.backends import LocalBackend

        return LocalBackend(registry, workers=workers, threads=per_worker)
    from nodeflow.backends.ray import RayBackend

    return RayBackend(workers=workers, plugin_dirs=[PLUGINS], threads=per_worker)


async def post(session: Any, body: dict[str, Any]) -> str:
    async with session.post("/api/runs", json=body) as resp:
        answer = await resp.json()
        assert resp.status == 202, answer
        return str(answer["id"])


async def wait_all(session: Any, ids: list[str]) -> list[dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    while len(records) < len(ids):
        for run_id in ids:
            if run_id in records:
                continue
            async with session.get(f"/api/runs/{run_id}") as resp:
                record = await resp.json()
            if record["status"] in ("succeeded", "failed", "cancelled"):
                records[run_id] = record
        await asyncio.sleep(0.05)
    return [records[i] for i in ids]


async def drain(backend: Any, workload: str, runs: int, registry: Any) -> float:
    """Seconds to drain ``runs`` queued runs on a warm server using ``backend``."""
    import aiohttp

    from nodeflow.server import ServerConfig, start_server

    with tempfile.TemporaryDirectory(prefix="nodeflow-drain-") as scratch:
        config = ServerConfig(host="127.0.0.1", port=0, data_dir=Path(scratch) / "data", plugin_dirs=[PLUGINS])
        server = await start_server(config, registry=registry, backend=backend)
        try:
            async with aiohttp.ClientSession(base_url=server.url) as session:
                warm = [await post(session, graph_for(workload, 1000 + i)) for i in range(backend.capacity)]
                await wait_all(session, warm)
                started = time.time()
                ids = [await post(session, graph_for(workload, i)) for i in range(runs)]
                records = await wait_all(session, ids)
        finally:
            await server.close()
    failed = [r for r in records if r["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) did not succeed: {failed[0]['error']}")
    return max(r["finished"] for r in records) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--backends", default="local,ray")
    parser.add_argument("--workloads", default="wait,txt2img")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from nodeflow import threads
    from nodeflow.registry import build_registry

    threads.prepare_process()
    registry = build_registry([PLUGINS])
    print(f"{args.runs} queued runs; {threads.available_cores()} cores; python {sys.version.split()[0]}")
    for name in args.backends.split(","):
        if name == "ray":
            from nodeflow.backends.ray import init_ray

            init_ray(num_cpus=threads.available_cores())
        for workload in args.workloads.split(","):
            print(f"\n{name} / {workload} (load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())})")
            medians = {}
            for workers in (1, 2):
                times = []
                for _ in range(args.repeats):
                    backend = make_backend(name, workers, registry)
                    try:
                        times.append(asyncio.run(drain(backend, workload, args.runs, registry)))
                    finally:
                        backend.close()
                medians[workers] = statistics.median(times)
                print(f"  {workers} worker(s): drain {medians[workers]:.2f} s (median of {len(times)}: "
                      f"{', '.join(f'{t:.2f}' for t in times)})")
            print(f"  1 worker / 2 workers: {medians[1] / medians[2]:.2f}x")


if __name__ == "__main__":
    main()
