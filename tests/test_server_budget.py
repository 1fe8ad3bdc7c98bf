"""Server: the run budget (pixels x batch, estimated memory) refuses a graph before it is queued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_support import serving

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    from nodeflow.registry import build_registry

    return build_registry(use_entry_points=False)


async def _post(c, inputs: dict, workflow: str = "txt2img") -> tuple[int, dict]:
    async with c.session.post("/api/runs", json={"workflow": workflow, "inputs": inputs}) as resp:
        return resp.status, await resp.json()


async def _problems(c, doc: dict) -> list[dict]:
    """Validation problems of ``doc`` as the server sees them, without running it (saving a workflow reports them)."""
    async with c.session.put("/api/workflows/probe", json=doc) as resp:
        assert resp.status in (200, 201)
        return (await resp.json())["problems"]


def _txt2img(**noise: int) -> dict:
    doc = json.loads((WORKFLOWS / "txt2img.json").read_text())
    doc["nodes"]["noise"]["inputs"].update(noise)
    return doc


async def test_8192_by_8192_is_refused_with_over_budget_naming_the_node_and_fields(tmp_path, registry):
    async with serving(tmp_path / "data", registry=registry, builtin_workflows_dir=WORKFLOWS) as c:
        status, body = await _post(c, {"width": 8192, "height": 8192, "steps": 1})
        queued = (await (await c.session.get("/api/runs")).json())["total"]
    assert status == 400
    assert body["code"] == "invalid_graph"
    [error] = body["errors"]
    assert error["code"] == "over_budget"
    assert error["node"] == "noise" and error["input"] == "width"
    assert "8192 x 8192 x 1 = 67,108,864 pixels" in error["message"]
    assert "'width' or 'height' or 'batch'" in error["message"]
    assert queued == 0  # refused before anything was stored, let alone run


async def test_512_by_512_is_accepted(tmp_path, registry):
    async with serving(tmp_path / "data", registry=registry, builtin_workflows_dir=WORKFLOWS) as c:
        status, body = await _post(c, {"width": 512, "height": 512, "steps": 1})
        if status == 202:
            await c.session.post(f"/api/runs/{body['id']}/cancel")  # accepted is all this test asks
    assert status == 202, body


async def test_a_batch_over_the_budget_is_refused_though_one_image_of_that_size_fits(tmp_path, registry):
    async with serving(tmp_path / "data", registry=registry, builtin_workflows_dir=WORKFLOWS, max_pixels=2048 * 2048 * 3) as c:
        async with c.session.post("/api/runs", json={"graph": _txt2img(width=2048, height=2048, batch=4)}) as resp:
            status, body = resp.status, await resp.json()
        fits = await _problems(c, _txt2img(width=2048, height=2048, batch=3))
    assert status == 400
    assert [(e["code"], e["node"]) for e in body["errors"]] == [("over_budget", "noise")]
    assert "2048 x 2048 x 4" in body["errors"][0]["message"]
    assert fits == []


async def test_the_budget_is_configurable_and_follows_an_upscale_to_the_node_that_makes_the_size(tmp_path, registry):
    inputs = {"width": 512, "height": 512, "scale": 4.0}
    async with serving(tmp_path / "data", registry=registry, builtin_workflows_dir=WORKFLOWS, max_pixels=1024 * 1024) as c:
        status, body = await _post(c, inputs, workflow="hires_fix")
    async with serving(tmp_path / "data2", registry=registry, builtin_workflows_dir=WORKFLOWS, max_pixels=None) as c:
        unlimited = await _problems(c, _txt2img(width=8192, height=8192))
    assert status == 400
    [error] = body["errors"]
    assert (error["code"], error["node"], error["input"]) == ("over_budget", "hires", "scale_by")
    assert "2048 x 2048 x 1" in error["message"]
    assert unlimited == []


async def test_an_estimated_peak_memory_over_max_memory_is_refused_naming_the_model(tmp_path, registry):
    async with serving(tmp_path / "data", registry=registry, builtin_workflows_dir=WORKFLOWS, max_memory=64 << 20) as c:
        status, body = await _post(c, {"width": 1024, "height": 1024, "steps": 1})
        small = await _problems(c, _txt2img(width=64, height=64))
    assert status == 400
    [error] = body["errors"]
    assert (error["code"], error["node"]) == ("over_budget", "noise")
    assert "default_model" in error["message"] and "estimated" in error["message"] and "max_memory" in error["message"]
    assert small == []
