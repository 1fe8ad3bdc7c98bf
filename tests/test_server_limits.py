"""Server availability: heavy work off the event loop, compact listings, size limits, read timeouts."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from server_support import int_graph, pairs_graph, serving

from nodeflow.graph import GraphDoc


async def test_system_answers_while_a_graph_is_being_parsed(tmp_path, monkeypatch):
    """Parsing a graph is held up on purpose (as a huge graph would be); the API must answer meanwhile."""
    original = GraphDoc.model_validate.__func__
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    def held(cls, data, *args, **kwargs):
        if isinstance(data, dict) and data.get("meta", {}).get("probe"):
            entered.set()
            release.wait(timeout=10)  # if this blocks the event loop, nothing can answer for 10 s
            returned.set()
        return original(cls, data, *args, **kwargs)

    monkeypatch.setattr(GraphDoc, "model_validate", classmethod(held))
    graph = {**pairs_graph(500), "meta": {"probe": True}}
    async with serving(tmp_path / "data") as c:
        post = asyncio.create_task(c.session.post("/api/runs", json={"graph": graph}))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        async with c.session.get("/api/system") as resp:
            answered_while_held = resp.status == 200 and not returned.is_set()
        release.set()
        async with await post as accepted:
            assert accepted.status == 202
    assert answered_while_held


async def test_history_lists_node_counts_and_one_run_keeps_its_node_map(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(pairs_graph(500))
        record = await c.wait(run_id)
        async with c.session.get("/api/runs") as resp:
            raw = await resp.read()
    (summary,) = json.loads(raw)["runs"]
    assert "nodes" not in summary and "graph" not in summary
    assert summary["node_total"] == 1000
    assert summary["node_counts"] == {"ran": 1000}
    assert len(raw) < 2000  # a page's size does not grow with the graphs' sizes
    assert len(record["nodes"]) == 1000 and record["nodes"]["s0"]["status"] == "ran"


async def test_a_running_run_in_the_history_counts_its_live_nodes(tmp_path):
    from server_support import slow_graph

    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(slow_graph(steps=1000, delay=0.01))
        await c.wait(run_id, until=("running",))
        while True:
            async with c.session.get("/api/runs") as resp:
                (summary,) = (await resp.json())["runs"]
            if summary["node_counts"].get("running"):
                break
            await asyncio.sleep(0.02)
        await c.session.post(f"/api/runs/{run_id}/cancel")
    assert summary["status"] == "running" and summary["node_total"] == 2
    assert summary["node_counts"] == {"running": 1}


async def test_a_graph_over_the_node_limit_is_refused_with_413(tmp_path):
    async with serving(tmp_path / "data", max_graph_nodes=10) as c:
        async with c.session.post("/api/runs", json={"graph": pairs_graph(6)}) as run:
            run_answer = await run.json()
        async with c.session.put("/api/workflows/big", json=pairs_graph(6)) as save:
            save_answer = await save.json()
        fits = await c.submit(pairs_graph(5))
    assert run.status == 413 and run_answer["code"] == "graph_too_large" and "10" in run_answer["error"]
    assert save.status == 413 and save_answer["code"] == "graph_too_large"
    assert fits


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_byte_limit_is_refused_with_413(tmp_path, chunked):
    body = json.dumps({"graph": {**int_graph(1), "meta": {"pad": "x" * 5000}}}).encode()

    async def chunks():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    async with serving(tmp_path / "data", max_json_bytes=4000) as c:
        data = chunks() if chunked else body
        async with c.session.post("/api/runs", data=data, headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.json()
    assert resp.status == 413 and answer["code"] == "too_large" and "4000" in answer["error"]


async def test_a_connection_whose_request_headers_never_finish_is_closed(tmp_path):
    async with serving(tmp_path / "data", header_timeout=0.5) as c:
        reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
        writer.write(f"GET /api/system HTTP/1.1\r\nHost: 127.0.0.1:{c.port}\r\n".encode())  # no blank line, ever
        await writer.drain()
        leftover = await asyncio.wait_for(reader.read(), timeout=30)  # returns at EOF: the server closed it
        writer.close()
        async with c.session.get("/api/system") as resp:
            still_serving = resp.status
    assert leftover == b""
    assert still_serving == 200


async def test_a_request_whose_body_never_finishes_gets_408(tmp_path):
    async with serving(tmp_path / "data", body_timeout=0.5) as c:
        reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
        head = (f"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1:{c.port}\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n{")
        writer.write(head.encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()
        async with c.session.get("/api/runs") as resp:
            runs = (await resp.json())["runs"]
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert runs == []


async def test_a_huge_run_reports_nodes_within_its_message_budget_and_keeps_every_node_in_its_record(tmp_path):
    from nodeflow.server.worker import MessageBudget

    budget = MessageBudget()
    async with serving(tmp_path / "data") as c:
        async with c.session.ws_connect("/api/ws") as ws:
            run_id = await c.submit(pairs_graph(1500))  # 3,000 nodes: 6,000 node messages unthrottled
            node_messages, last = 0, None
            while last is None or last["type"] != "run_succeeded":
                last = await ws.receive_json(timeout=60)
                if last["type"].startswith("node_") and last["run"] == run_id:
                    node_messages += 1
        record = await c.run(run_id)
    assert len(record["nodes"]) == 3000 and record["node_counts"] == {"ran": 3000}
    assert node_messages <= budget.burst + budget.rate * (record["seconds"] + 1)
    assert node_messages < 6000


def test_garbage_collection_pauses_nest_and_restore_the_collector():
    import gc

    from nodeflow.server.storage import gc_paused, loads

    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
        assert loads('{"a": [1, 2]}') == {"a": [1, 2]}
    assert gc.isenabled()
