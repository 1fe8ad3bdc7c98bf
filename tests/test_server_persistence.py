"""Server: the queue and history survive a stop, a restart and a crash."""

from __future__ import annotations

from server_support import int_graph, serving, slow_graph

from nodeflow.server.store import RunStore


async def test_runs_queued_when_the_server_stops_complete_after_it_starts_again(tmp_path):
    data = tmp_path / "data"
    async with serving(data) as c:
        running = await c.submit(slow_graph(steps=50, delay=0.02))
        queued = [await c.submit(int_graph(i)) for i in range(3)]
        await c.wait(running, until=("running",))
    # stopped: the running run was interrupted, the others never started
    async with serving(data) as c:
        records = [await c.wait(run_id, timeout=30) for run_id in [*queued, running]]
    assert [r["status"] for r in records] == ["succeeded"] * 4


async def test_a_run_interrupted_by_a_stop_goes_back_to_the_front_of_the_queue(tmp_path):
    data = tmp_path / "data"
    async with serving(data) as c:
        running = await c.submit(slow_graph(steps=500, delay=0.02))
        later = await c.submit(int_graph(1))
        await c.wait(running, until=("running",))
    store = RunStore(data / "nodeflow.sqlite3")
    try:
        first = store.claim_next()
    finally:
        store.close()
    assert first is not None and first.id == running
    assert later != running


async def test_history_and_outputs_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    graph = {"nodes": {"w": {"type": "srvtest.write_text", "inputs": {"text": "kept", "name": "k.txt"}}}}
    async with serving(data) as c:
        run_id = await c.submit(graph)
        before = await c.wait(run_id)
    async with serving(data) as c:
        after = await c.run(run_id)
        async with c.session.get(after["outputs"][0]["url"]) as resp:
            text = await resp.text()
    assert after["status"] == "succeeded" and after["outputs"] == before["outputs"]
    assert text == "kept"


async def test_a_run_left_running_by_a_crash_is_queued_again_and_runs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = RunStore(data / "nodeflow.sqlite3")
    record = store.add({"nodes": int_graph(5)["nodes"]})
    store.claim_next()  # the worker took it... and the process died
    store.close()
    async with serving(data) as c:
        final = await c.wait(record.id)
    assert final["status"] == "succeeded" and final["attempts"] == 2


def test_a_run_interrupted_by_crashes_max_attempts_times_is_marked_failed(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    record = store.add({"nodes": {}})
    for _ in range(3):
        store.claim_next()
        store.recover(max_attempts=3)
    final = store.get(record.id)
    store.close()
    assert final is not None and final.status == "failed"
    assert final.errors[0].code == "interrupted"


def test_the_store_hands_out_queued_runs_in_the_order_they_came(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    ids = [store.add({"nodes": {}, "n": i}).id for i in range(4)]
    claimed = []
    while (record := store.claim_next()) is not None:
        claimed.append(record.id)
    store.close()
    assert claimed == ids
