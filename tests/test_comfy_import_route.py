"""``POST /api/import/comfy``: the editor's way in for ComfyUI files (UI JSON, API JSON, PNG).

A real server on 127.0.0.1 with small body limits; the checkpoint the default workflow
names is an empty file in a ComfyUI ``models/`` layout (validation only looks for it,
nothing runs here).
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from comfy_support import CKPT, default_workflow, serve_in_thread
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nodeflow.files import kind_folders

MAX_JSON = 64 * 1024
MAX_UPLOAD = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, sd_registry):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("comfy_import")
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "models" / "checkpoints" / CKPT).write_bytes(b"")
    with serve_in_thread(root / "data", registry=sd_registry, model_kinds=kind_folders([root / "models"]),
                         max_json_bytes=MAX_JSON, max_upload_bytes=MAX_UPLOAD) as running:
        yield running


def post(server: Any, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/import/comfy", data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def png_with(chunks: dict[str, str], size: tuple[int, int] = (8, 8), noise: bool = False) -> bytes:
    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    picture = Image.frombytes("RGB", size, bytes(range(256)) * (size[0] * size[1] * 3 // 256 + 1)) if noise else Image.new("RGB", size)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=info, compress_level=0)
    return buffer.getvalue()


def node_types(graph: dict[str, Any]) -> set[str]:
    return {node["type"] for node in graph["nodes"].values()}


def test_a_ui_workflow_becomes_a_graph_with_its_layout_and_a_note_on_where_it_came_from(server):
    status, answer = post(server, json.dumps(default_workflow("ui")).encode(), "application/json")
    assert status == 200, answer
    assert answer["source"] == "ui" and answer["problems"] == []
    assert {"sd.load_model", "sd.denoise", "sd.vae_decode", "sd.save_image"} <= node_types(answer["graph"])
    assert answer["graph"]["nodes"]["3"]["ui"]["pos"] == [863, 186]  # positions survive
    assert answer["notes"][0].startswith("Imported from a ComfyUI UI workflow")


def test_an_api_prompt_becomes_the_same_nodes(server):
    status, answer = post(server, json.dumps(default_workflow("api")).encode())
    assert status == 200, answer
    assert answer["source"] == "api" and answer["notes"] == ["Imported from a ComfyUI API prompt."]
    ui = post(server, json.dumps(default_workflow("ui")).encode())[1]
    assert node_types(answer["graph"]) == node_types(ui["graph"])


def test_a_comfyui_png_is_read_from_its_workflow_chunk(server):
    data = png_with({"prompt": json.dumps(default_workflow("api")), "workflow": json.dumps(default_workflow("ui"))})
    status, answer = post(server, data, "image/png")
    assert status == 200, answer
    assert answer["source"] == "ui" and "sd.denoise" in node_types(answer["graph"])


def test_notes_and_muted_nodes_are_told_in_the_notes(server):
    workflow = default_workflow("ui")
    workflow["nodes"].append({"id": 20, "type": "Note", "pos": [0, 0], "size": [200, 80], "flags": {}, "order": 7, "mode": 0,
                              "title": "Read me", "widgets_values": ["use a 1.5 checkpoint"]})
    status, answer = post(server, json.dumps(workflow).encode())
    assert status == 200, answer
    assert "Read me: use a 1.5 checkpoint" in answer["notes"]


def test_validation_problems_come_back_with_comfyuis_ids(server):
    workflow = default_workflow("ui")
    next(n for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple")["widgets_values"] = ["missing.safetensors"]
    status, answer = post(server, json.dumps(workflow).encode())
    assert status == 200 and [(p["code"], p["node"]) for p in answer["problems"]] == [("missing_file", "4")]


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", "not JSON"),
    (b'{"format": "nodeflow/graph", "nodes": {}}', "not a ComfyUI workflow, prompt or PNG"),
    (png_with({}), "carries no ComfyUI 'workflow' or 'prompt' text chunk"),
    (png_with({"workflow": "{oops"}), "'workflow' chunk is not JSON"),
    (b"\x89PNG\r\n\x1a\nbroken", "not a readable image"),
])
def test_a_file_that_is_not_comfyui_is_a_400_that_says_why(server, body, words):
    status, answer = post(server, body)
    assert status == 400 and answer["code"] == "invalid_comfy_file"
    assert words in answer["error"] and answer["error"].startswith("the ComfyUI file cannot be imported: ")


def test_an_unsupported_node_is_named_in_the_400(server):
    prompt = default_workflow("api")
    prompt["99"] = {"class_type": "SomeCustomNode", "inputs": {}}
    status, answer = post(server, json.dumps(prompt).encode())
    assert status == 400
    assert [(e["code"], e["node"]) for e in answer["errors"]] == [("unsupported_comfy_node", "99")]
    assert "SomeCustomNode" in answer["error"]


def test_an_empty_body_is_a_400(server):
    status, answer = post(server, b"")
    assert status == 400 and "send the ComfyUI file" in answer["error"]


def test_json_past_the_json_limit_and_pngs_past_the_upload_limit_are_413(server):
    padded = default_workflow("api")
    padded["3"]["_meta"] = {"title": "x" * MAX_JSON}
    status, answer = post(server, json.dumps(padded).encode())
    assert status == 413 and answer["code"] == "too_large" and str(MAX_JSON) in answer["error"]
    # a PNG may be larger than a JSON body (it is an upload) ...
    big = png_with({"workflow": json.dumps(default_workflow("ui"))}, size=(200, 200), noise=True)
    assert MAX_JSON < len(big) < MAX_UPLOAD
    assert post(server, big, "image/png")[0] == 200
    # ... but not larger than an upload
    huge = png_with({"workflow": json.dumps(default_workflow("ui"))}, size=(400, 400), noise=True)
    status, answer = post(server, huge, "image/png")
    assert status == 413 and str(MAX_UPLOAD) in answer["error"]
