"""The Ray backend: same pixels as local, retries after a worker dies, events during a run, the server.

Skipped when Ray is not installed (``pip install 'nodeflow[ray]'``). Ray starts once for
the whole test session (2 CPUs, bound to 127.0.0.1, no dashboard) and one pool of two
workers serves every test, so the module stays well under a minute on two cores.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Ray reads this once, at import: without it a local Ray listens on the machine's own address.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nodeflow[ray]'); the Ray backend tests need it")

from PIL import Image  # noqa: E402

from nodeflow.backends import (
    Backend,  # noqa: E402
    LocalBackend,  # noqa: E402
)
from nodeflow.backends.ray import RayBackend, loopback_only  # noqa: E402
from nodeflow.cli import resolve_graph_path  # noqa: E402
from nodeflow.graph import load_graph, parse_graph  # noqa: E402
from nodeflow.node import CancelToken, Event  # noqa: E402
from nodeflow.registry import build_registry  # noqa: E402
from nodeflow.server import ServerConfig, start_server  # noqa: E402
from nodeflow.sweep import expand, run_sweep  # noqa: E402

PLUGINS = Path(__file__).resolve().parent / "sweep_plugins"
WORKERS = 2


@pytest.fixture(scope="session")
def ray_session():
    """One loopback-only Ray for the session, shut down at the end."""
    if ray.is_initialized():  # another module owns it; use it as it is
        yield ray
        return
    if not loopback_only(ray):
        pytest.fail("Ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set; it would not bind to loopback")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_backend(ray_session):
    """Two warm workers (one CPU and one torch thread each) with the test plugin pack."""
    backend = RayBackend(workers=WORKERS, plugin_dirs=[PLUGINS], threads=1)
    yield backend
    backend.close()


def paint_graph(**literals: Any) -> dict[str, Any]:
    """One ``sweeptest.paint`` node with ``value`` exposed."""
    return {"nodes": {"paint": {"type": "sweeptest.paint", "inputs": {"value": 0, **literals}}},
            "inputs": {"value": {"node": "paint", "input": "value"}}}


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


# -- acceptance ---------------------------------------------------------------------------------------
def test_a_16_job_seed_sweep_on_ray_writes_the_same_images_pixel_for_pixel_as_local(ray_backend, tiny_sd_dir, tmp_path):
    import torch

    graph = load_graph(resolve_graph_path("txt2img"))
    jobs = expand({"seed": list(range(16)), "model": [str(tiny_sd_dir)], "steps": [2], "width": [32], "height": [32]})
    threads = torch.get_num_threads()
    local = LocalBackend(build_registry(), threads=1)  # the Ray workers run one torch thread each too
    try:
        local_manifest = run_sweep(graph, jobs, local, tmp_path / "local", progress=False)
    finally:
        local.close()
        torch.set_num_threads(threads)
    ray_manifest = run_sweep(graph, jobs, ray_backend, tmp_path / "ray", progress=False)

    assert local_manifest["status"] == ray_manifest["status"] == "succeeded"
    on_local, on_ray = pixels(tmp_path / "local"), pixels(tmp_path / "ray")
    assert sorted(on_ray) == sorted(on_local) == sorted(f"seed={s}.png" for s in range(16))
    assert all(np.array_equal(on_ray[name], on_local[name]) for name in on_local)
    assert len({a.tobytes() for a in on_ray.values()}) == 16  # sixteen different images, not one sixteen times
    assert {j["worker"].split("@")[0] for j in ray_manifest["jobs"]} == {"0", "1"}  # both workers took jobs


def test_a_worker_killed_mid_sweep_has_its_job_retried_and_every_image_is_written(ray_backend, tmp_path):
    killed: list[int] = []

    def kill_a_busy_worker_once(entry: dict[str, Any]) -> None:
        deadline = time.monotonic() + 5
        while not killed and time.monotonic() < deadline:
            busy = [w["index"] for w in ray_backend.worker_states() if w["state"] == "busy" and w["busy_seconds"] < 0.5]
            if busy:  # at least half of its 1-second job is still to run
                ray.kill(ray_backend.actors[busy[0]], no_restart=False)
                killed.append(busy[0])
            time.sleep(0.01)

    jobs = expand({"value": list(range(6))})
    manifest = run_sweep(parse_graph(paint_graph(steps=10, delay=0.1)), jobs, ray_backend, tmp_path, progress=False,
                         on_job=kill_a_busy_worker_once)
    assert killed and manifest["status"] == "succeeded"
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"value={v}.png" for v in range(6)]
    retried = [j for j in manifest["jobs"] if j["attempts"] == 2]
    assert len(retried) == 1 and not retried[0]["worker"].startswith(f"{killed[0]}@")  # on the other worker
    assert all(int(np.asarray(Image.open(tmp_path / f"value={v}.png"))[0, 0]) == v for v in range(6))


# -- failures and cancellation --------------------------------------------------------------------------
def test_a_job_whose_worker_dies_on_every_attempt_is_reported_as_worker_failed(ray_backend, tmp_path):
    result = ray_backend.submit({"nodes": {"die": {"type": "sweeptest.die", "inputs": {}}}}, {}, tmp_path).result(timeout=60)
    assert result.status == "failed" and result.attempts == 2
    assert result.errors[0].code == "worker_failed" and "died 2 time(s)" in result.errors[0].message


def test_a_job_that_fails_on_its_own_is_not_retried(ray_backend, tmp_path):
    result = ray_backend.submit(paint_graph(fail_on=3), {"value": 3}, tmp_path).result(timeout=60)
    assert (result.status, result.attempts) == ("failed", 1)
    assert result.errors[0].code == "node_failed" and "the one that fails" in result.errors[0].message


def test_cancelling_a_running_job_stops_it_on_the_worker(ray_backend, tmp_path):
    token = CancelToken()
    steps: list[float] = []

    def on_event(event: Event) -> None:
        if event.type == "progress":
            steps.append(event.data["value"])
            token.cancel()  # cancel as soon as the job is seen running on its worker

    future = ray_backend.submit(paint_graph(steps=100, delay=0.05), {"value": 1}, tmp_path, on_event, token)
    result = future.result(timeout=60)
    assert result.status == "cancelled" and result.errors[0].code == "cancelled"
    assert steps and max(steps) < 100  # the 100-step job did not run to its end


# -- events and files ---------------------------------------------------------------------------------
def test_progress_events_arrive_while_the_job_is_still_running(ray_backend, tmp_path):
    seen: list[str] = []
    done_when_seen: list[bool] = []
    holder: list = []

    def on_event(event: Event) -> None:
        seen.append(event.type)
        if event.type == "progress" and holder:
            done_when_seen.append(holder[0].done())

    future = ray_backend.submit(paint_graph(steps=10, delay=0.1), {"value": 1}, tmp_path, on_event)
    holder.append(future)
    future.result(timeout=60)
    assert seen.count("progress") == 10
    assert done_when_seen and not done_when_seen[0]  # the first step was delivered while the job still ran
    assert seen.index("run_started") < seen.index("node_started") < seen.index("progress") < seen.index("run_finished")


def test_output_files_are_on_this_machine_when_their_event_arrives(ray_backend, tmp_path):
    present: list[bool] = []

    def on_event(event: Event) -> None:
        if event.type == "output":
            present.append(Path(event.data["path"]).parent == tmp_path and Path(event.data["path"]).is_file())

    result = ray_backend.run(paint_graph(), {"value": 9}, tmp_path, on_event, CancelToken())
    assert present == [True]
    assert [Path(o["path"]) for o in result.outputs] == [tmp_path / "paint_paint.png"]


def wait_until_every_worker_is_up(backend: RayBackend, timeout: float = 30.0) -> None:
    """Earlier tests kill workers; Ray restarts them in the background."""
    deadline = time.monotonic() + timeout
    while any(w["state"] not in ("idle", "busy") for w in backend.worker_states()):
        assert time.monotonic() < deadline, backend.worker_states()
        time.sleep(0.1)


def test_the_ray_backend_is_a_server_execution_backend_reporting_every_worker(ray_backend):
    wait_until_every_worker_is_up(ray_backend)
    assert isinstance(ray_backend, Backend)
    assert ray_backend.device_info()["type"] == "ray"
    assert len(ray_backend.cache_stats()["workers"]) == WORKERS


class _Borrowed:
    """The session's backend lent to a server, which must not close it."""

    name = "ray"

    def __init__(self, backend: RayBackend):
        self._backend = backend

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._backend, attr)

    def close(self) -> None:
        pass


async def test_a_server_on_the_ray_backend_streams_progress_to_the_websocket_during_the_run(ray_backend, tmp_path):
    import aiohttp

    config = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "data", plugin_dirs=[PLUGINS],
                          web_dir=tmp_path / "web", builtin_workflows_dir=tmp_path / "wf")
    server = await start_server(config, registry=build_registry([PLUGINS]), backend=_Borrowed(ray_backend))
    try:
        async with aiohttp.ClientSession(base_url=server.url) as session, session.ws_connect("/api/ws") as ws:
            async with session.post("/api/runs", json={"graph": paint_graph(steps=10, delay=0.1, value=4)}) as resp:
                assert resp.status == 202
                run_id = (await resp.json())["id"]
            arrivals: list[tuple[float, dict[str, Any]]] = []
            while not arrivals or arrivals[-1][1]["type"] not in ("run_succeeded", "run_failed"):
                arrivals.append((time.monotonic(), await ws.receive_json(timeout=30)))
            async with session.get(f"/api/runs/{run_id}") as resp:
                record = await resp.json()
            async with session.get(record["outputs"][0]["url"]) as resp:
                image = await resp.read()
    finally:
        await server.close()
    finished_at, finished = arrivals[-1]
    progress = [t for t, m in arrivals if m["type"] == "progress" and m["run"] == run_id]
    assert finished["type"] == "run_succeeded"
    assert len(progress) == 10 and finished_at - progress[0] > 0.5
    assert image.startswith(b"\x89PNG")


# -- the network ------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("ss") is None, reason="needs the ss tool to list listening sockets")
def test_ray_listens_on_loopback_only(ray_backend):
    listing = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ray_lines = [line for line in listing.splitlines() if re.search(r'"(gcs_server|raylet|ray::[^"]*)"', line)]
    assert ray_lines, "no Ray process found listening"
    local_addresses = [line.split()[3] for line in ray_lines]
    assert all(re.match(r"^(127\.|\[::ffff:127\.|\[::1\])", a) for a in local_addresses), local_addresses
