"""Server: saved workflows (CRUD, read-only built-ins, names) and running one with only its inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_support import int_graph, serving

REPO = Path(__file__).resolve().parent.parent
TXT2IMG = REPO / "workflows" / "txt2img.json"


def _builtin(tmp_path: Path, name: str = "shipped") -> Path:
    folder = tmp_path / "builtin_workflows"
    folder.mkdir(exist_ok=True)
    graph = int_graph(3)
    graph["meta"] = {"description": "a shipped example"}
    (folder / f"{name}.json").write_text(json.dumps(graph))
    return folder


async def test_a_saved_workflow_reads_back_as_the_same_document(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.put("/api/workflows/mine", json=int_graph(4)) as put:
            saved = await put.json()
        async with c.session.get("/api/workflows/mine") as get:
            doc = await get.json()
    assert put.status == 201 and saved["name"] == "mine" and saved["source"] == "user"
    assert doc["nodes"]["n"]["inputs"]["value"] == 4 and doc["inputs"]["value"]["node"] == "n"


async def test_saving_over_a_user_workflow_replaces_it_with_200(tmp_path):
    async with serving(tmp_path / "data") as c:
        await c.session.put("/api/workflows/mine", json=int_graph(1))
        async with c.session.put("/api/workflows/mine", json=int_graph(2)) as again:
            assert again.status == 200
        async with c.session.get("/api/workflows/mine") as get:
            assert (await get.json())["nodes"]["n"]["inputs"]["value"] == 2


async def test_an_incomplete_graph_can_be_saved_and_its_problems_are_reported(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.put("/api/workflows/draft", json={"nodes": {"x": {"type": "no.such"}}}) as resp:
            body = await resp.json()
    assert resp.status == 201
    assert [p["code"] for p in body["problems"]] == ["unknown_node_type"]


async def test_a_body_that_is_not_a_graph_document_is_refused_with_400(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.put("/api/workflows/bad", json={"nodes": [1, 2]}) as resp:
            body = await resp.json()
    assert resp.status == 400 and body["code"] == "invalid_graph" and body["errors"]


async def test_workflows_are_listed_with_user_ones_first_and_builtins_read_only(tmp_path):
    async with serving(tmp_path / "data", builtin_workflows_dir=_builtin(tmp_path)) as c:
        await c.session.put("/api/workflows/zeta", json=int_graph(1))
        async with c.session.get("/api/workflows") as resp:
            listed = (await resp.json())["workflows"]
    assert [(w["name"], w["source"], w["read_only"]) for w in listed] == [("zeta", "user", False), ("shipped", "builtin", True)]
    assert listed[1]["description"] == "a shipped example" and "value" in listed[1]["inputs"]


async def test_a_builtin_workflow_cannot_be_overwritten_or_deleted(tmp_path):
    folder = _builtin(tmp_path)
    before = (folder / "shipped.json").read_text()
    async with serving(tmp_path / "data", builtin_workflows_dir=folder) as c:
        async with c.session.put("/api/workflows/shipped", json=int_graph(9)) as put:
            put_body = await put.json()
        async with c.session.delete("/api/workflows/shipped") as delete:
            pass
    assert put.status == 403 and put_body["code"] == "read_only"
    assert delete.status == 403
    assert (folder / "shipped.json").read_text() == before


async def test_deleting_a_user_workflow_removes_it(tmp_path):
    async with serving(tmp_path / "data") as c:
        await c.session.put("/api/workflows/gone", json=int_graph(1))
        async with c.session.delete("/api/workflows/gone") as resp:
            assert resp.status == 204
        async with c.session.get("/api/workflows/gone") as get:
            assert get.status == 404
    assert not (tmp_path / "data" / "workflows" / "gone.json").exists()


@pytest.mark.parametrize("name", ["a.b", ".hidden", "-dash", "x" * 65, "sp%20ace", "%2e%2e", "..%2fup", "a%00b", "a%5cb", "%252e%252e"])
async def test_workflow_names_that_are_not_plain_words_are_refused_with_400(tmp_path, name):
    async with serving(tmp_path / "data") as c:
        status, body = await c.raw(f"GET /api/workflows/{name} HTTP/1.1")
    assert status == 400 and json.loads(body)["code"] == "bad_name"


async def test_a_saved_workflow_runs_with_only_its_exposed_inputs(tmp_path):
    async with serving(tmp_path / "data") as c:
        await c.session.put("/api/workflows/number", json=int_graph(1))
        async with c.session.post("/api/runs", json={"workflow": "number", "inputs": {"value": 77}}) as resp:
            run_id = (await resp.json())["id"]
        record = await c.wait(run_id)
    assert resp.status == 202
    assert record["status"] == "succeeded" and record["workflow"] == "number"
    assert record["graph"]["nodes"]["n"]["inputs"]["value"] == 77


async def test_running_an_unknown_workflow_is_refused_with_400(tmp_path):
    async with serving(tmp_path / "data") as c:
        async with c.session.post("/api/runs", json={"workflow": "nowhere"}) as resp:
            body = await resp.json()
    assert resp.status == 400 and body["code"] == "unknown_workflow"


async def test_the_txt2img_workflow_runs_with_its_prompt_and_a_tiny_model(tmp_path, tiny_sd_dir):
    from nodeflow.registry import build_registry

    inputs = {"prompt": "a red square", "model": str(tiny_sd_dir), "steps": 2, "width": 64, "height": 64}
    async with serving(tmp_path / "data", registry=build_registry(), builtin_workflows_dir=TXT2IMG.parent,
                       allow_read=[tiny_sd_dir]) as c:
        async with c.session.post("/api/runs", json={"workflow": "txt2img", "inputs": inputs}) as resp:
            body = await resp.json()
        assert resp.status == 202, body
        record = await c.wait(body["id"], timeout=120)
        assert record["status"] == "succeeded", record["errors"]
        images = [o for o in record["outputs"] if o["kind"] == "image"]
        async with c.session.get(images[0]["url"]) as image:
            png = await image.read()
    assert png.startswith(b"\x89PNG")


async def test_the_txt2img_workflow_runs_with_only_a_prompt(tmp_path):
    from nodeflow.registry import build_registry

    async with serving(tmp_path / "data", registry=build_registry(), builtin_workflows_dir=TXT2IMG.parent) as c:
        async with c.session.post("/api/runs", json={"workflow": "txt2img", "inputs": {"prompt": "a handwritten digit three"}}) as resp:
            body = await resp.json()
        assert resp.status == 202, body
        record = await c.wait(body["id"], timeout=120)
        assert record["status"] == "succeeded", record["errors"]
        images = [o for o in record["outputs"] if o["kind"] == "image"]
        async with c.session.get(images[0]["url"]) as image:
            png = await image.read()
    assert png.startswith(b"\x89PNG")


async def test_a_graph_naming_a_file_outside_the_servers_folders_is_refused_without_saying_whether_it_exists(tmp_path, tiny_sd_dir):
    from nodeflow.registry import build_registry

    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not really a png")
    answers = []
    async with serving(tmp_path / "data", registry=build_registry(), builtin_workflows_dir=TXT2IMG.parent) as c:
        for path in (str(secret), str(tmp_path / "absent.png"), "../../secret.png"):
            graph = {"nodes": {"img": {"type": "sd.load_image", "inputs": {"path": path}},
                               "show": {"type": "core.show", "inputs": {"value": {"node": "img", "output": "width"}}}}}
            async with c.session.post("/api/runs", json={"graph": graph}) as resp:
                answers.append((resp.status, await resp.json()))
        async with c.session.post("/api/runs", json={"workflow": "txt2img", "inputs": {"model": str(tiny_sd_dir)}}) as resp:
            model_answer = (resp.status, await resp.json())
    for status, body in answers:
        assert status == 400 and body["errors"][0]["code"] == "missing_file" and body["errors"][0]["input"] == "path"
    existing, absent, dotted = (body["errors"][0]["message"] for _, body in answers)
    assert existing.replace(str(secret), "X") == absent.replace(str(tmp_path / "absent.png"), "X")
    assert "not among this server's files" in dotted
    assert model_answer[0] == 400 and model_answer[1]["errors"][0]["input"] == "model"
