"""Server: cancelling runs, queued and running."""

from __future__ import annotations

from server_support import int_graph, serving, slow_graph


async def test_cancelling_a_run_during_its_loop_ends_it_within_one_step(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.ws_connect("/api/ws") as ws:
            run_id = await c.submit(slow_graph(steps=1000, delay=0.02))
            message = await ws.receive_json(timeout=10)
            while message["type"] != "progress":
                message = await ws.receive_json(timeout=10)
            async with c.session.post(f"/api/runs/{run_id}/cancel") as resp:
                answer = await resp.json()
            step_at_cancel = message["value"]
            later_steps = []
            while message["type"] != "run_cancelled":
                message = await ws.receive_json(timeout=10)
                if message["type"] == "progress":
                    later_steps.append(message["value"])
        record = await c.wait(run_id)
    assert resp.status == 202 and answer["status"] == "running"
    # progress messages already in flight when cancel arrived, plus at most the one step that was running
    assert len(later_steps) <= 2 and max(later_steps, default=step_at_cancel) <= step_at_cancel + 2
    assert record["status"] == "cancelled"
    assert record["errors"][0]["code"] == "cancelled"


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
