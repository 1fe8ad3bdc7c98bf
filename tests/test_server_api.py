"""Server: the OpenAPI document, the node catalogue, system status, the cache, the editor's files."""

from __future__ import annotations

from server_support import int_graph, serving, small_registry

from nodeflow.graph import FORMAT, VERSION
from nodeflow.server.openapi import openapi_path
from nodeflow.server.schemas import FINISHED, WS_MESSAGES, Catalogue, RunDetail, SystemInfo
from nodeflow.types import LITERAL_TYPES


def _router_operations(c) -> set[tuple[str, str]]:
    app = c.server.runner.app
    return {
        (route.method.lower(), openapi_path(route.resource.canonical))
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


async def test_the_openapi_document_describes_every_route(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.get("/api/openapi.json") as resp:
            doc = await resp.json()
        served = _router_operations(c)
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert doc["openapi"].startswith("3.")
    assert served == described


async def test_every_schema_reference_in_the_openapi_document_resolves(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.get("/api/openapi.json") as resp:
            doc = await resp.json()
    refs: set[str] = set()
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("$ref"), str):
                refs.add(item["$ref"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    names = {r.rsplit("/", 1)[1] for r in refs}
    assert names and names <= set(doc["components"]["schemas"])


async def test_the_nodes_endpoint_returns_the_registry_catalogue(tmp_path):
    registry = small_registry()
    async with serving(tmp_path / "data", registry=registry) as c:
        async with c.session.get("/api/nodes") as resp:
            body = await resp.json()
    Catalogue.model_validate(body)
    assert set(body["nodes"]) == set(registry.ids())
    expected = registry.catalogue()
    assert {k: v for k, v in body["vocabulary"].items() if k in expected["vocabulary"]} == expected["vocabulary"]
    assert body["types"]["matrix"] == expected["types"]["matrix"]
    for name, info in expected["types"]["types"].items():
        assert body["types"]["types"][name]["description"] == info["description"]
        assert body["types"]["types"][name]["color"]  # the editor's colour, added by the server


async def test_the_nodes_endpoint_publishes_what_clients_share_with_the_server(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.get("/api/nodes") as resp:
            body = await resp.json()
    assert body["graph"] == {"format": FORMAT, "version": VERSION}
    vocabulary = body["vocabulary"]
    assert set(vocabulary["literal_types"]) == LITERAL_TYPES
    assert set(vocabulary["final_run_statuses"]) == FINISHED <= set(vocabulary["run_statuses"])
    assert {"run_started", "node_finished", "progress", "run_succeeded", "run_cancelled", "queue"} <= set(vocabulary["messages"])
    assert len(vocabulary["messages"]) >= len(WS_MESSAGES)


async def test_a_run_record_names_the_graph_it_ran(tmp_path):
    graph = int_graph(1)
    graph["meta"] = {"name": "my numbers"}
    async with serving(tmp_path / "data") as c:
        record = await c.wait(await c.submit(graph))
        async with c.session.get("/api/runs") as resp:
            listed = (await resp.json())["runs"]
    assert record["name"] == "my numbers"
    assert [r["name"] for r in listed if r["id"] == record["id"]] == ["my numbers"]


async def test_a_run_record_and_its_end_message_carry_the_values_of_show_nodes(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.ws_connect("/api/ws") as ws:
            run_id = await c.submit(int_graph(41))
            while True:
                message = await ws.receive_json(timeout=60)
                if message["type"].startswith("run_") and message["run"] == run_id and message["type"] != "run_started":
                    break
        record = await c.wait(run_id)
    assert message["type"] == "run_succeeded" and message["values"] == {"show": {"text": "41"}}
    assert record["values"] == {"show": {"text": "41"}}


async def test_a_run_record_matches_its_documented_model(tmp_path):
    async with serving(tmp_path / "data") as c:
        record = await c.wait(await c.submit(int_graph(1)))
    assert RunDetail.model_validate(record).model_dump(mode="json") == record


async def test_system_reports_versions_device_memory_queue_and_cache(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.get("/api/system") as resp:
            body = await resp.json()
    info = SystemInfo.model_validate(body)
    assert info.versions["nodeflow"] and info.versions["torch"]
    assert info.device["type"] in ("cpu", "cuda", "mps")
    assert info.queue.queued == 0 and "entries" in info.cache


async def test_clearing_the_cache_empties_it(tmp_path):
    async with serving(tmp_path / "data") as c:
        await c.wait(await c.submit(int_graph(1)))
        async with c.session.get("/api/system") as before:
            entries_before = (await before.json())["cache"]["entries"]
        async with c.session.post("/api/cache/clear") as resp:
            after = await resp.json()
    assert entries_before > 0
    assert resp.status == 200 and after["cache"]["entries"] == 0


async def test_the_cache_stays_warm_between_runs(tmp_path):
    async with serving(tmp_path / "data") as c:
        await c.wait(await c.submit(int_graph(5)))
        again = await c.wait(await c.submit(int_graph(5)))
    assert again["nodes"]["show"]["status"] == "cached"


async def test_the_editor_index_is_served_at_the_root(tmp_path):
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<h1>editor</h1>")
    (web / "js" / "app.js").write_text("export const x = 1;")
    async with serving(tmp_path / "data", web_dir=web) as c:
        async with c.session.get("/") as index:
            html = await index.text()
        async with c.session.get("/js/app.js") as script:
            js = await script.text()
    assert index.status == 200 and html == "<h1>editor</h1>"
    assert script.status == 200 and js == "export const x = 1;"


async def test_an_unknown_api_path_is_a_json_404(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.get("/api/nothing/here") as resp:
            body = await resp.json()
    assert resp.status == 404 and body["code"] == "not_found"


async def test_a_wrong_method_is_a_json_405(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.delete("/api/system") as resp:
            body = await resp.json()
    assert resp.status == 405 and body["code"] == "method_not_allowed"


async def test_the_repository_editor_is_served_by_default(tmp_path):
    from nodeflow.server import ServerConfig

    web_dir = ServerConfig().web_dir
    assert web_dir is not None
    async with serving(tmp_path / "data", web_dir=web_dir) as c:
        async with c.session.get("/") as resp:
            status = resp.status
    assert status == 200
    assert (web_dir / "index.html").is_file()
