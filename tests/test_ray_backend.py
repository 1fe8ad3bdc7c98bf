"""The Ray backend: same pixels as local, retries after a worker dies, events during a run, the server's queue on it.

Skipped when Ray is not installed (``pip install 'nodeflow[ray]'``). Ray starts once for
the whole test session (2 CPUs, bound to 127.0.0.1, no dashboard) and one pool of two
workers serves every test (servers borrow it), so the module stays near a minute and a
half on two loaded cores.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from contextlib import asynccontextmanager
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
from nodeflow.backends.ray import RayBackend, local_worker_priority, loopback_only  # noqa: E402
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
    local_worker_priority()  # as init_ray does: workers at normal priority, or any busy process starves them
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_backend(ray_session):
    """Two warm workers (one CPU and one torch thread each) with the test plugin pack.

    The tests kill workers six times in all, up to four times the same one: more than Ray's
    default 3 restarts, after which a worker would stay dead for the tests that follow.
    """
    backend = RayBackend(workers=WORKERS, plugin_dirs=[PLUGINS], threads=1, max_restarts=10)
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
    result = ray_backend.submit({"nodes": {"die": {"type": "sweeptest.die", "inputs": {}}}}, {}, tmp_path).result(timeout=180)
    assert result.status == "failed" and result.attempts == 2
    assert result.errors[0].code == "worker_failed" and "died 2 time(s)" in result.errors[0].message


def test_a_job_that_fails_on_its_own_is_not_retried(ray_backend, tmp_path):
    result = ray_backend.submit(paint_graph(fail_on=3), {"value": 3}, tmp_path).result(timeout=180)
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
    result = future.result(timeout=180)
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
    future.result(timeout=180)
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


def wait_until_every_worker_is_up(backend: RayBackend, timeout: float = 180.0) -> None:
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


# -- the server's queue on Ray -------------------------------------------------------------------------------
@asynccontextmanager
async def serving_on_ray(backend: RayBackend, tmp_path: Path, **config: Any):
    """A server on 127.0.0.1 whose runs go to the session's two Ray workers, and a client session."""
    import aiohttp

    wait_until_every_worker_is_up(backend)
    config = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "data", plugin_dirs=[PLUGINS],
                          web_dir=tmp_path / "web", builtin_workflows_dir=tmp_path / "wf", **config)
    server = await start_server(config, registry=build_registry([PLUGINS]), backend=_Borrowed(backend))
    try:
        async with aiohttp.ClientSession(base_url=server.url) as session:
            yield session
    finally:
        await server.close()


async def submit(session: Any, graph: dict[str, Any]) -> str:
    async with session.post("/api/runs", json={"graph": graph}) as resp:
        body = await resp.json()
        assert resp.status == 202, body
        return body["id"]


async def finished(session: Any, run_id: str, timeout: float = 180.0) -> dict[str, Any]:
    """The run's record once it has ended."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        async with session.get(f"/api/runs/{run_id}") as resp:
            record = await resp.json()
        if record["status"] in ("succeeded", "failed", "cancelled"):
            return record
        assert time.monotonic() < deadline, f"run {run_id} still {record['status']}"
        await asyncio.sleep(0.05)


async def test_two_slow_runs_on_two_ray_workers_run_at_the_same_time(ray_backend, tmp_path):
    async with serving_on_ray(ray_backend, tmp_path) as session, session.ws_connect("/api/ws") as ws:
        runs = [await submit(session, paint_graph(steps=10, delay=0.1, value=v, label="overlap")) for v in (1, 2)]
        messages: list[dict[str, Any]] = []
        while sum(m["type"] == "run_succeeded" for m in messages) < 2:
            messages.append(await ws.receive_json(timeout=60))
            assert messages[-1]["type"] != "run_failed", messages[-1]
        records = [await finished(session, run_id) for run_id in runs]

    def at(kind: str, run: str) -> int:
        return next(i for i, m in enumerate(messages) if m["type"] == kind and m["run"] == run and m.get("node") == "paint")

    first, second = runs
    assert at("node_started", first) < at("node_finished", second) and at("node_started", second) < at("node_finished", first)
    assert records[0]["worker"] != records[1]["worker"]  # each on its own actor


def model_graph(model: Path, dtype: str) -> dict[str, Any]:
    """Load ``model`` in ``dtype`` and show its scheduler config, beside a half-second ``paint`` (so two runs overlap)."""
    return {"nodes": {
        "load": {"type": "sd.load_model", "inputs": {"model": str(model), "dtype": dtype}},
        "show": {"type": "core.show", "inputs": {"value": {"node": "load", "output": "scheduler_config"}}},
        "paint": {"type": "sweeptest.paint", "inputs": {"steps": 5, "delay": 0.1}},
    }}


async def test_a_run_goes_to_the_ray_worker_that_already_holds_its_model(ray_backend, tiny_sd_dir, tmp_path):
    async with serving_on_ray(ray_backend, tmp_path, allow_read=[tiny_sd_dir]) as session:
        # two models no other test loads (the store keys on dtype), loaded at once: one on each worker
        first = [await submit(session, model_graph(tiny_sd_dir, dtype)) for dtype in ("bf16", "fp16")]
        loaded_by = {dtype: (await finished(session, run_id))["worker"] for dtype, run_id in zip(("bf16", "fp16"), first, strict=True)}
        again = {}
        for dtype in ("fp16", "bf16"):  # one at a time: both workers idle, each run free to go to either
            again[dtype] = await finished(session, await submit(session, model_graph(tiny_sd_dir, dtype)))
        async with session.get("/api/system") as resp:
            workers = {w["name"]: w for w in (await resp.json())["workers"]}
    assert loaded_by["bf16"] != loaded_by["fp16"]
    assert {dtype: record["worker"] for dtype, record in again.items()} == loaded_by
    assert all(record["status"] == "succeeded" for record in again.values())
    held = {dtype: [m for m in workers[name]["models"] if m["dtype"] == dtype] for dtype, name in loaded_by.items()}
    assert held == {dtype: [{"name": tiny_sd_dir.name, "dtype": dtype, "device": "cpu"}] for dtype in ("bf16", "fp16")}


async def test_a_run_whose_ray_worker_is_killed_is_retried_on_the_other_one_then_failed_with_the_reason(ray_backend,
                                                                                                       tmp_path):
    import asyncio

    async with serving_on_ray(ray_backend, tmp_path) as session:
        run_id = await submit(session, paint_graph(steps=20, delay=0.1, value=3, label="killed"))
        busy: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not busy:
            assert time.monotonic() < deadline, "the run was never seen on a worker"
            async with session.get("/api/system") as resp:
                busy = [w for w in (await resp.json())["workers"] if w["run"] == run_id]
            await asyncio.sleep(0.05)
        ray.kill(ray_backend.actors[busy[0]["index"]], no_restart=False)
        retried = await finished(session, run_id)
        # a run that kills every worker it is given: failed with the reason once two attempts died
        dying = await finished(session, await submit(session, {"nodes": {"die": {"type": "sweeptest.die", "inputs": {}}}}))
        after = await finished(session, await submit(session, paint_graph(value=4, label="after")))  # the server goes on
    assert retried["status"] == "succeeded" and not retried["worker"].startswith(f"{busy[0]['index']}@")
    assert retried["attempts"] == 1  # one server start: the retry happened inside the backend
    assert dying["status"] == "failed" and dying["errors"][0]["code"] == "worker_failed"
    assert "died 2 time(s)" in dying["error"]
    assert after["status"] == "succeeded"


# -- the network ------------------------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc: Ray's GCS, raylet and worker processes started by this one)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and parentheses
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def _bound_addresses(inodes: set[str]) -> list[str]:
    """``ip:port`` of every listening TCP socket and bound UDP socket among ``inodes``."""
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            address, port = local.split(":")
            if inode not in inodes or (table.startswith("tcp") and state != "0A") or int(port, 16) == 0:
                continue
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is little-endian
            found.append(f"{ipaddress.ip_address(raw)}:{int(port, 16)}")
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the sockets of Ray's processes from /proc")
async def test_nothing_the_ray_session_or_a_server_on_it_starts_listens_beyond_loopback(ray_backend, tmp_path):
    async with serving_on_ray(ray_backend, tmp_path) as session:
        async with session.get("/api/system") as resp:
            assert resp.status == 200
        ours = _bound_addresses(_socket_inodes([os.getpid()]))
        ray_processes = _descendants(os.getpid())
        theirs = _bound_addresses(_socket_inodes(ray_processes))
    assert len(ray_processes) >= 3 and theirs, "Ray's processes (GCS, raylet, workers) and their sockets were not found"
    assert ours and all(_is_loopback(a) for a in ours), ours  # the server's own socket
    assert all(_is_loopback(a) for a in theirs), theirs
