"""Server: cancelling runs, queued and running."""

from __future__ import annotations

from pathlib import Path

from server_support import int_graph, serving, slow_graph

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


async def _steps_after_cancel(ws, c, run_id: str, node: str) -> list[float]:
    """Wait for ``node``'s first progress, cancel, and return the steps reported after the server set the token."""
    message = await ws.receive_json(timeout=60)
    while not (message["type"] == "progress" and message["node"] == node):
        assert message["type"] in ("queue", "run_started", "node_started", "node_finished", "node_cached", "preview"), message
        message = await ws.receive_json(timeout=60)
    async with c.session.post(f"/api/runs/{run_id}/cancel") as resp:
        assert resp.status == 202
    while message["type"] != "run_cancelling":
        message = await ws.receive_json(timeout=30)
    steps = []
    while message["type"] != "run_cancelled":
        message = await ws.receive_json(timeout=30)
        if message["type"] == "progress":
            steps.append(message["value"])
    return steps


async def test_cancelling_a_run_during_its_loop_ends_it_within_one_step(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.ws_connect("/api/ws") as ws:
            run_id = await c.submit(slow_graph(steps=1000, delay=0.02))
            steps = await _steps_after_cancel(ws, c, run_id, "slow")
        record = await c.wait(run_id)
    assert len(steps) <= 1  # the step that was running when the token was set, and no other
    assert record["status"] == "cancelled"
    assert record["errors"][0]["code"] == "cancelled"


async def test_cancelling_a_running_run_answers_202_with_its_status(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(slow_graph(steps=1000, delay=0.02))
        await c.wait(run_id, until=("running",))
        async with c.session.post(f"/api/runs/{run_id}/cancel") as resp:
            answer = await resp.json()
    assert resp.status == 202 and answer == {"id": run_id, "status": "running"}


async def test_cancelling_a_queued_run_cancels_it_at_once(tmp_path):
    async with serving(tmp_path / "data") as c:
        blocker = await c.submit(slow_graph(steps=200, delay=0.02))
        queued = await c.submit(int_graph(1))
        async with c.session.post(f"/api/runs/{queued}/cancel") as resp:
            answer = await resp.json()
        record = await c.run(queued)
        await c.session.post(f"/api/runs/{blocker}/cancel")
    assert resp.status == 200 and answer["status"] == "cancelled"
    assert record["status"] == "cancelled" and record["started"] is None


async def test_a_cancelled_queued_run_never_starts(tmp_path):
    async with serving(tmp_path / "data") as c:
        blocker = await c.submit(slow_graph(steps=10, delay=0.02))
        queued = await c.submit(int_graph(2))
        await c.session.post(f"/api/runs/{queued}/cancel")
        await c.wait(blocker)
        record = await c.run(queued)
    assert record["status"] == "cancelled" and record["nodes"] == {}


async def test_cancelling_a_finished_run_is_refused_with_409(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(int_graph(1))
        await c.wait(run_id)
        async with c.session.post(f"/api/runs/{run_id}/cancel") as resp:
            body = await resp.json()
    assert resp.status == 409 and body["code"] == "already_finished"


async def test_the_worker_goes_on_with_the_queue_after_a_cancel(tmp_path):
    async with serving(tmp_path / "data") as c:
        first = await c.submit(slow_graph(steps=500, delay=0.02))
        second = await c.submit(int_graph(9))
        await c.wait(first, until=("running",))
        await c.session.post(f"/api/runs/{first}/cancel")
        record = await c.wait(second)
    assert record["status"] == "succeeded"


async def test_cancelling_txt2img_during_the_denoise_loop_ends_it_within_one_step(tmp_path, tiny_sd_dir):
    from nodeflow.registry import build_registry

    inputs = {"prompt": "a blue circle", "model": str(tiny_sd_dir), "steps": 500, "width": 64, "height": 64}
    async with serving(tmp_path / "data", registry=build_registry(), builtin_workflows_dir=WORKFLOWS,
                       allow_read=[tiny_sd_dir]) as c:
        async with c.session.ws_connect("/api/ws") as ws:
            async with c.session.post("/api/runs", json={"workflow": "txt2img", "inputs": inputs}) as resp:
                run_id = (await resp.json())["id"]
            steps = await _steps_after_cancel(ws, c, run_id, "denoise")
        record = await c.wait(run_id)
    assert len(steps) <= 1
    assert record["status"] == "cancelled"
    assert record["nodes"]["denoise"]["status"] == "cancelled"
