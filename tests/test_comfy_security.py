"""The ComfyUI routes share the native API's guards: token, Origin/Host checks, file containment."""

from __future__ import annotations

import json

import aiohttp
import pytest
from server_support import serving

TOKEN = "s3cret-token"


async def test_with_a_token_the_comfyui_routes_need_it(tmp_path):
    async with serving(tmp_path / "data", token=TOKEN) as client:
        async with client.session.post("/prompt", data=json.dumps({"prompt": {}})) as resp:
            assert resp.status == 401
        async with client.session.get("/history") as resp:
            assert resp.status == 401
        async with client.session.get("/history", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
        async with client.session.get(f"/view?filename=x.png&token={TOKEN}") as resp:
            assert resp.status == 404  # past the guard: the file is not there
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await client.session.ws_connect("/ws?clientId=a")
        ws = await client.session.ws_connect(f"/ws?clientId=a&token={TOKEN}")
        first = await ws.receive_json(timeout=10)
        assert first["type"] == "status" and first["data"]["sid"] == "a"
        await ws.close()


async def test_cross_origin_prompts_and_websockets_are_refused(tmp_path):
    async with serving(tmp_path / "data") as client:
        evil = {"Origin": "http://evil.example"}
        async with client.session.post("/prompt", data=json.dumps({"prompt": {}}), headers=evil) as resp:
            assert resp.status == 403
        async with client.session.post("/prompt", data="{}", headers={"Sec-Fetch-Site": "cross-site"}) as resp:
            assert resp.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await client.session.ws_connect("/ws", headers=evil)
        status, _ = await client.raw("GET /history HTTP/1.1", host="attacker.example:80")
        assert status == 403


async def test_a_prompt_of_classes_nodeflow_lacks_is_refused_and_the_server_answers_on(tmp_path):
    async with serving(tmp_path / "data") as client:  # the small registry: no SD nodes installed
        prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
                  "2": {"class_type": "Foo", "inputs": {"a": ["1", 0]}}}
        async with client.session.post("/prompt", data=json.dumps({"prompt": prompt})) as resp:
            body = await resp.json()
            assert resp.status == 400 and "2" in body["node_errors"]
        async with client.session.get("/queue") as resp:
            assert resp.status == 200 and await resp.json() == {"queue_running": [], "queue_pending": []}
        async with client.session.post("/interrupt") as resp:
            assert resp.status == 200
        async with client.session.post("/queue", data=json.dumps({"clear": True})) as resp:
            assert resp.status == 200
