"""Server: several runs at once (``workers=2`` on the local backend), with the queue's guarantees kept."""

from __future__ import annotations

import threading
from typing import Any

from server_support import int_graph, serving, slow_graph, small_registry

from nodeflow.server import LocalBackend
from nodeflow.server.store import RunStore


async def _messages_until_both_end(ws, runs: set[str]) -> list[dict[str, Any]]:
    """Every websocket message until each of ``runs`` has ended."""
    messages, ended = [], set()
    while ended != runs:
        message = await ws.receive_json(timeout=60)
        messages.append(message)
        if message["type"] in ("run_succeeded", "run_failed", "run_cancelled") and message["run"] in runs:
            ended.add(message["run"])
    return messages


def _index(messages: list[dict[str, Any]], kind: str, run: str, node: str = "slow") -> int:
    return next(i for i, m in enumerate(messages) if m["type"] == kind and m["run"] == run and m.get("node") == node)


async def test_two_slow_runs_on_two_workers_run_at_the_same_time(tmp_path):
    async with serving(tmp_path / "data", workers=2) as c:
        async with c.session.ws_connect("/api/ws") as ws:
            first = await c.submit(slow_graph(steps=20, delay=0.05))
            second = await c.submit(slow_graph(steps=30, delay=0.05))
            messages = await _messages_until_both_end(ws, {first, second})
        records = [await c.wait(first), await c.wait(second)]
    # each run's loop started before the other's ended: they overlapped
    assert _index(messages, "node_started", first) < _index(messages, "node_finished", second)
    assert _index(messages, "node_started", second) < _index(messages, "node_finished", first)
    assert [r["status"] for r in records] == ["succeeded", "succeeded"]


async def test_events_of_concurrent_runs_never_mix(tmp_path):
    async with serving(tmp_path / "data", workers=2) as c:
        async with c.session.ws_connect("/api/ws") as ws:
            first = await c.submit(slow_graph(steps=20, delay=0.03))
            second = await c.submit(slow_graph(steps=30, delay=0.03))
            messages = await _messages_until_both_end(ws, {first, second})
    assert all("run" in m for m in messages)
    progress = {run: [m for m in messages if m["type"] == "progress" and m["run"] == run] for run in (first, second)}
    assert {m["max"] for m in progress[first]} == {20} and {m["max"] for m in progress[second]} == {30}
    assert [m["value"] for m in progress[first]] == list(range(1, 21))
    assert [m["value"] for m in progress[second]] == list(range(1, 31))


async def test_cancelling_one_of_two_running_runs_stops_only_that_one(tmp_path):
    async with serving(tmp_path / "data", workers=2) as c:
        doomed = await c.submit(slow_graph(steps=1000, delay=0.02))
        kept = await c.submit(slow_graph(steps=40, delay=0.02, value=7))
        await c.wait(doomed, until=("running",))
        await c.wait(kept, until=("running",))
        async with c.session.post(f"/api/runs/{doomed}/cancel") as resp:
            assert resp.status == 202
        cancelled, finished = await c.wait(doomed), await c.wait(kept, timeout=60)
    assert cancelled["status"] == "cancelled" and cancelled["errors"][0]["code"] == "cancelled"
    assert finished["status"] == "succeeded" and finished["values"]["show"]["text"] == "7"


async def test_runs_start_in_the_order_they_were_queued_and_each_is_recorded_once(tmp_path):
    async with serving(tmp_path / "data", workers=2) as c:
        ids = [await c.submit(slow_graph(steps=5, delay=0.02, value=i)) for i in range(5)]
        records = [await c.wait(run_id, timeout=60) for run_id in ids]
        async with c.session.get("/api/runs") as resp:
            listed = (await resp.json())["runs"]
    started = [r["started"] for r in records]
    assert started == sorted(started)
    assert [r["attempts"] for r in records] == [1] * 5 and all(r["status"] == "succeeded" for r in records)
    assert sorted(r["id"] for r in listed) == sorted(ids)  # one row per run


async def test_the_system_status_shows_every_running_run_and_the_worker_running_it(tmp_path):
    async with serving(tmp_path / "data", workers=2) as c:
        first = await c.submit(slow_graph(steps=1000, delay=0.02))
        second = await c.submit(slow_graph(steps=1000, delay=0.02))
        third = await c.submit(int_graph(3))
        await c.wait(first, until=("running",))
        await c.wait(second, until=("running",))
        async with c.session.get("/api/system") as resp:
            system = await resp.json()
        async with c.session.get("/api/runs") as resp:
            statuses = {r["id"]: r["status"] for r in (await resp.json())["runs"]}
        for run_id in (first, second):
            await c.session.post(f"/api/runs/{run_id}/cancel")
        last = await c.wait(third)
    queue = system["queue"]
    assert queue["capacity"] == 2 and queue["queued"] == 1 and queue["running_ids"] == [first, second]
    assert queue["running"] == first and queue["waiting"] is None
    assert sorted(w["run"] for w in system["workers"]) == sorted([first, second])
    assert all(w["state"] == "busy" and w["memory"]["rss"] for w in system["workers"])
    assert statuses == {first: "running", second: "running", third: "queued"}
    assert last["status"] == "succeeded" and last["worker"] == "local"


async def test_a_stop_puts_every_running_run_back_in_the_queue(tmp_path):
    async with serving(tmp_path / "data", workers=2) as c:
        ids = [await c.submit(slow_graph(steps=1000, delay=0.02)) for _ in range(2)]
        for run_id in ids:
            await c.wait(run_id, until=("running",))
    store = RunStore(tmp_path / "data" / "nodeflow.sqlite3")
    try:
        records = [store.get(run_id) for run_id in ids]
    finally:
        store.close()
    assert [(r.status, r.attempts) for r in records] == [("queued", 0), ("queued", 0)]


class _Starting(LocalBackend):
    """A local backend whose workers are all still ``starting`` until ``release`` is set (as Ray workers with no room)."""

    def __init__(self) -> None:
        super().__init__(small_registry(), workers=2)
        self.release = threading.Event()

    def worker_states(self) -> list[dict[str, Any]]:
        states = super().worker_states()
        if not self.release.is_set():
            for state in states:
                state.update(state="starting", detail="waiting for room in the cluster")
        return states


async def test_a_run_no_worker_can_take_yet_stays_queued_with_the_reason_and_runs_once_one_can(tmp_path):
    backend = _Starting()
    async with serving(tmp_path / "data", backend=backend) as c:
        run_id = await c.submit(int_graph(5))
        async with c.session.get("/api/system") as resp:
            system = await resp.json()
        waiting = await c.run(run_id)
        backend.release.set()
        record = await c.wait(run_id)
    assert waiting["status"] == "queued" and waiting["position"] == 0
    assert "no worker can take a run yet" in system["queue"]["waiting"]
    assert "waiting for room in the cluster" in system["queue"]["waiting"]
    assert {w["state"] for w in system["workers"]} == {"starting"}
    assert record["status"] == "succeeded" and record["attempts"] == 1
