"""Server: submitting runs, their records, history, outputs and websocket events."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from server_support import int_graph, serving, slow_graph, text_graph


async def test_a_valid_graph_is_accepted_with_202_and_a_run_id(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", json={"graph": int_graph(1)}) as resp:
            body = await resp.json()
        assert resp.status == 202
        assert body["status"] == "queued" and len(body["id"]) == 32


async def test_an_invalid_graph_is_refused_with_400_listing_every_problem(tmp_path):
    graph = {"nodes": {"a": {"type": "no.such_node"}, "b": {"type": "core.int", "inputs": {"value": "seven"}}}}
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", json={"graph": graph}) as resp:
            body = await resp.json()
    assert resp.status == 400
    assert body["code"] == "invalid_graph"
    assert {(e["code"], e["node"]) for e in body["errors"]} == {("unknown_node_type", "a"), ("invalid_value", "b")}


async def test_graph_inputs_are_applied_before_validation(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", json={"graph": int_graph(1), "inputs": {"value": "x"}}) as resp:
            bad = await resp.json()
        run_id = await c.submit(int_graph(1), inputs={"value": 42})
        record = await c.wait(run_id)
    assert resp.status == 400 and bad["errors"][0]["code"] == "invalid_value"
    assert record["graph"]["nodes"]["n"]["inputs"]["value"] == 42
    assert record["inputs"] == {"value": 42}


async def test_an_unknown_graph_input_is_refused_with_400(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", json={"graph": int_graph(1), "inputs": {"nope": 1}}) as resp:
            body = await resp.json()
    assert resp.status == 400
    assert body["errors"][0]["code"] == "unknown_graph_input"


async def test_a_body_with_both_graph_and_workflow_is_refused_with_400(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", json={"graph": int_graph(1), "workflow": "x"}) as resp:
            body = await resp.json()
    assert resp.status == 400 and body["code"] == "bad_request"


async def test_a_body_that_is_not_declared_json_is_refused_with_415(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", data='{"graph": {}}', headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 415


async def test_a_finished_run_reports_its_nodes_with_seconds(tmp_path):
    async with serving(tmp_path / "data") as c:
        record = await c.wait(await c.submit(int_graph(5)))
    assert record["status"] == "succeeded"
    assert record["nodes"]["n"]["status"] == "ran" and record["nodes"]["show"]["status"] == "ran"
    assert record["nodes"]["n"]["seconds"] >= 0
    assert record["error"] is None and record["errors"] == []


async def test_output_files_stay_under_the_runs_folder_and_their_url_serves_them(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(text_graph("some words", "words.txt"))
        record = await c.wait(run_id)
        (output,) = record["outputs"]
        async with c.session.get(output["url"]) as resp:
            served = await resp.text()
    assert output["node"] == "w" and output["kind"] == "text"
    assert output["path"] == f"{run_id}/words.txt"
    assert (tmp_path / "data" / "outputs" / run_id / "words.txt").read_text() == "some words"
    assert served == "some words"


async def test_a_cached_output_is_linked_into_the_later_runs_folder(tmp_path):
    async with serving(tmp_path / "data") as c:
        first = await c.wait(await c.submit(text_graph("same", "same.txt")))
        second_id = await c.submit(text_graph("same", "same.txt"))
        second = await c.wait(second_id)
    assert second["nodes"]["w"]["status"] == "cached"
    assert second["outputs"][0]["path"] == f"{second_id}/same.txt"
    assert first["outputs"][0]["path"] != second["outputs"][0]["path"]
    assert (tmp_path / "data" / "outputs" / second_id / "same.txt").read_text() == "same"


async def test_a_failing_node_fails_the_run_with_its_error(tmp_path):
    graph = {"nodes": {"f": {"type": "srvtest.fail", "inputs": {"message": "kaput"}}}}
    async with serving(tmp_path / "data") as c:
        record = await c.wait(await c.submit(graph))
    assert record["status"] == "failed"
    assert record["nodes"]["f"]["status"] == "failed"
    assert record["errors"][0]["node"] == "f" and "kaput" in record["error"]


async def test_history_lists_runs_newest_first_in_pages(tmp_path):
    async with serving(tmp_path / "data") as c:
        ids = [await c.submit(int_graph(i)) for i in range(5)]
        for run_id in ids:
            await c.wait(run_id)
        async with c.session.get("/api/runs", params={"limit": "2", "offset": "1"}) as resp:
            page = await resp.json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [r["id"] for r in page["runs"]] == [ids[3], ids[2]]


async def test_history_can_be_filtered_by_status(tmp_path):
    async with serving(tmp_path / "data") as c:
        ok = await c.submit(int_graph(1))
        bad = await c.submit({"nodes": {"f": {"type": "srvtest.fail"}}})
        await c.wait(ok), await c.wait(bad)
        async with c.session.get("/api/runs", params={"status": "failed"}) as resp:
            page = await resp.json()
    assert [r["id"] for r in page["runs"]] == [bad]


async def test_an_unknown_run_is_404(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.get("/api/runs/" + "0" * 32) as resp:
            body = await resp.json()
    assert resp.status == 404 and body["code"] == "unknown_run"


async def test_deleting_a_run_forgets_it_and_removes_its_outputs(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(text_graph("x", "x.txt"))
        await c.wait(run_id)
        async with c.session.delete(f"/api/runs/{run_id}") as resp:
            assert resp.status == 200
        async with c.session.get(f"/api/runs/{run_id}") as gone:
            assert gone.status == 404
    assert not (tmp_path / "data" / "outputs" / run_id).exists()


async def test_deleting_a_running_run_is_refused_with_409(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(slow_graph(steps=100, delay=0.02))
        await c.wait(run_id, until=("running",))
        async with c.session.delete(f"/api/runs/{run_id}") as resp:
            body = await resp.json()
        await c.session.post(f"/api/runs/{run_id}/cancel")
    assert resp.status == 409 and body["code"] == "run_running"


async def test_a_running_run_reports_live_node_progress(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(slow_graph(steps=200, delay=0.01))
        await c.wait(run_id, until=("running",))
        await asyncio.sleep(0.2)
        record = await c.run(run_id)
        await c.session.post(f"/api/runs/{run_id}/cancel")
    assert record["nodes"]["slow"]["status"] == "running"
    assert record["nodes"]["slow"]["progress"]["max"] == 200


async def test_the_api_answers_quickly_while_a_run_is_going(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(slow_graph(steps=100, delay=0.02))
        await c.wait(run_id, until=("running",))
        started = time.perf_counter()
        async with c.session.get("/api/system") as resp:
            body = await resp.json()
        elapsed = time.perf_counter() - started
        await c.session.post(f"/api/runs/{run_id}/cancel")
    assert resp.status == 200 and body["queue"]["running"] == run_id
    assert elapsed < 1.0


async def test_fifty_concurrent_runs_all_succeed_once_and_the_websocket_sees_each(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.ws_connect("/api/ws") as ws:
            ids = await asyncio.gather(*(c.submit(int_graph(1000 + i)) for i in range(50)))
            started: list[str] = []
            finished: list[str] = []
            while len(finished) < 50:
                message = await ws.receive_json(timeout=30)
                if message["type"] == "run_started":
                    started.append(message["run"])
                elif message["type"].startswith("run_") and message["type"] != "run_started":
                    assert message["type"] == "run_succeeded", message
                    finished.append(message["run"])
        records = [await c.run(run_id) for run_id in ids]
        async with c.session.get("/api/runs", params={"limit": "200"}) as resp:
            history = await resp.json()
    assert len(set(ids)) == 50
    assert sorted(started) == sorted(ids) and sorted(finished) == sorted(ids)  # each once: none lost, none twice
    assert all(r["status"] == "succeeded" for r in records)
    assert history["total"] == 50 and sorted(r["id"] for r in history["runs"]) == sorted(ids)
    assert [r["graph"]["nodes"]["n"]["inputs"]["value"] for r in records] == [1000 + i for i in range(50)]


async def test_websocket_messages_follow_a_run_from_start_to_finish(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.ws_connect("/api/ws") as ws:
            first = await ws.receive_json(timeout=5)
            run_id = await c.submit(slow_graph(steps=3, delay=0.01))
            messages = []
            while not messages or messages[-1]["type"] != "run_succeeded":
                messages.append(await ws.receive_json(timeout=10))
    kinds = [m["type"] for m in messages if m["run"] == run_id]
    assert first["type"] == "queue" and "run" in first
    assert kinds.index("run_started") < kinds.index("node_started") < kinds.index("progress") < kinds.index("node_finished")
    assert [m["value"] for m in messages if m["type"] == "progress"] == [1, 2, 3]
    assert [m["info"]["loss"] for m in messages if m["type"] == "progress"] == [1.0, 0.5, 1.0 / 3]  # extra figures travel too
    finished = [m for m in messages if m["type"] == "node_finished"]
    assert all("seconds" in m and m["node"] for m in finished)
    assert all("type" in m and "run" in m for m in messages)


async def test_websocket_reports_node_cached_on_a_repeat_run(tmp_path):
    async with serving(tmp_path / "data") as c:
        await c.wait(await c.submit(int_graph(7)))
        async with c.session.ws_connect("/api/ws") as ws:
            run_id = await c.submit(int_graph(7))
            messages = []
            while not messages or messages[-1]["type"] != "run_succeeded":
                messages.append(await ws.receive_json(timeout=10))
    assert "show" in {m["node"] for m in messages if m["type"] == "node_cached" and m["run"] == run_id}
    assert not [m for m in messages if m["type"] == "node_started" and m["run"] == run_id]


async def test_websocket_previews_are_png_data_urls_and_throttled(tmp_path):
    async with serving(tmp_path / "data", preview_interval=0.2) as c:
        async with c.session.ws_connect("/api/ws") as ws:
            run_id = await c.submit(slow_graph(steps=40, delay=0.01, previews=True))
            messages = []
            while not messages or messages[-1]["type"] != "run_succeeded":
                messages.append(await ws.receive_json(timeout=10))
        seconds = (await c.run(run_id))["seconds"]
    previews = [m for m in messages if m["type"] == "preview"]
    assert 1 <= len(previews) <= seconds / 0.2 + 1 < 40  # 40 offered, at most one per 0.2 s
    assert previews[0]["image"].startswith("data:image/png;base64,")


async def test_a_websocket_client_may_come_and_go_without_disturbing_runs(tmp_path):
    async with serving(tmp_path / "data") as c:
        ws = await c.session.ws_connect("/api/ws")
        await ws.close()
        record = await c.wait(await c.submit(int_graph(3)))
    assert record["status"] == "succeeded"
    assert isinstance(ws, aiohttp.ClientWebSocketResponse)


async def test_a_body_nested_too_deeply_is_refused_with_400(tmp_path):
    body = '{"graph": ' + "[" * 100_000 + "]" * 100_000 + "}"
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", data=body, headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.json()
    assert resp.status == 400 and answer["code"] == "invalid_json"
