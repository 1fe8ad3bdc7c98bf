"""Acceptance: ComfyUI's API clients work against ``nodeflow serve`` with no change but the address.

The client functions below are written the way ComfyUI's ``script_examples/
websockets_api_example.py`` writes them (urllib + websocket-client, the same requests,
the same waiting for ``executing`` with ``node: None``); ``server_address`` is the only
thing that differs.
"""

from __future__ import annotations

import io
import json
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest
import websocket  # websocket-client, as ComfyUI's examples use
from comfy_support import deep, default_workflow, make_models_dir, serve_in_thread
from PIL import Image

from nodeflow.files import kind_folders

pytestmark = pytest.mark.usefixtures("sd_one_thread")


@pytest.fixture(scope="module")
def server(tmp_path_factory, sd_registry, sd_models):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("comfy_api")
    models = make_models_dir(root)
    with serve_in_thread(root / "data", registry=sd_registry, model_kinds=kind_folders([models]), models=sd_models,
                         preview_interval=0.0) as running:
        yield running


# -- a ComfyUI API client, as script_examples/websockets_api_example.py writes it ---------------------
class ComfyClient:
    def __init__(self, server_address: str):
        self.server_address = server_address
        self.client_id = str(uuid.uuid4())

    def queue_prompt(self, prompt: dict[str, Any], prompt_id: str | None = None) -> dict[str, Any]:
        p: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if prompt_id is not None:
            p["prompt_id"] = prompt_id
        data = json.dumps(p).encode("utf-8")
        req = urllib.request.Request(f"http://{self.server_address}/prompt", data=data)
        return json.loads(urllib.request.urlopen(req).read())

    def get_image(self, filename: str, subfolder: str, folder_type: str) -> bytes:
        data = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        url_values = urllib.parse.urlencode(data)
        with urllib.request.urlopen(f"http://{self.server_address}/view?{url_values}") as response:
            return response.read()

    def get_history(self, prompt_id: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{self.server_address}/history/{prompt_id}") as response:
            return json.loads(response.read())

    def connect(self) -> websocket.WebSocket:
        ws = websocket.WebSocket()
        ws.connect(f"ws://{self.server_address}/ws?clientId={self.client_id}", timeout=120)
        return ws

    def get_images(self, ws: websocket.WebSocket, prompt: dict[str, Any]) -> tuple[dict[str, list[bytes]], list[Any]]:
        prompt_id = self.queue_prompt(prompt)["prompt_id"]
        output_images: dict[str, list[bytes]] = {}
        seen: list[Any] = []
        while True:
            out = ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                seen.append(message)
                if message["type"] == "executing":
                    data = message["data"]
                    if data["node"] is None and data["prompt_id"] == prompt_id:
                        break  # Execution is done
            else:
                seen.append(out)
                continue  # previews are binary data
        history = self.get_history(prompt_id)[prompt_id]
        for node_id in history["outputs"]:
            node_output = history["outputs"][node_id]
            images_output = []
            if "images" in node_output:
                for image in node_output["images"]:
                    image_data = self.get_image(image["filename"], image["subfolder"], image["type"])
                    images_output.append(image_data)
            output_images[node_id] = images_output
        return output_images, seen


def _client(server: Any) -> ComfyClient:
    return ComfyClient(f"127.0.0.1:{server.port}")


def _post(server: Any, path: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _get(server: Any, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}") as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


# -- the acceptance test ------------------------------------------------------------------------------------------
def test_a_comfyui_script_queues_waits_for_executing_null_reads_history_and_downloads_the_image(server):
    client = _client(server)
    ws = client.connect()
    try:
        images, seen = client.get_images(ws, default_workflow("api"))
    finally:
        ws.close()
    assert list(images) == ["9"]  # the SaveImage node, by its ComfyUI id
    (png,) = images["9"]
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.size == (32, 32)
    kinds = [m["type"] for m in seen if isinstance(m, dict)]
    assert kinds[0] == "status" and "execution_start" in kinds and "execution_success" in kinds
    executing = [m["data"]["node"] for m in seen if isinstance(m, dict) and m["type"] == "executing"]
    assert executing[-1] is None and set(executing[:-1]) <= {"3", "4", "6", "7", "8", "9"} and "3" in executing
    executed = [m["data"] for m in seen if isinstance(m, dict) and m["type"] == "executed"]
    assert executed and executed[0]["node"] == "9" and executed[0]["output"]["images"][0]["filename"].endswith(".png")
    progress = [m["data"] for m in seen if isinstance(m, dict) and m["type"] == "progress"]
    assert progress and all(p["node"] == "3" for p in progress) and progress[-1]["value"] == progress[-1]["max"] == 2


def test_latent_previews_arrive_as_binary_frames_with_comfyuis_8_byte_header(server):
    client = _client(server)
    ws = client.connect()
    try:
        prompt = default_workflow("api")
        prompt["3"]["inputs"]["seed"] = 99  # not cached: the sampler runs and previews
        _, seen = client.get_images(ws, prompt)
    finally:
        ws.close()
    frames = [m for m in seen if isinstance(m, bytes)]
    assert frames, "no preview frame"
    event, image_format = struct.unpack(">II", frames[0][:8])
    assert (event, image_format) == (1, 2)
    with Image.open(io.BytesIO(frames[0][8:])) as picture:
        assert picture.format == "PNG"


def test_a_second_identical_prompt_reports_cached_nodes_runs_only_the_save_and_sends_executed(server):
    client = _client(server)
    prompt = default_workflow("api")
    prompt["3"]["inputs"]["seed"] = 5
    ws = client.connect()
    try:
        client.get_images(ws, prompt)
        images, seen = client.get_images(ws, prompt)
    finally:
        ws.close()
    cached = [n for m in seen if isinstance(m, dict) and m["type"] == "execution_cached" for n in m["data"]["nodes"]]
    executing = [m["data"]["node"] for m in seen if isinstance(m, dict) and m["type"] == "executing"]
    assert "8" in cached and executing == ["9", None]  # the save writes into the new run's folder; the rest is cached
    assert any(isinstance(m, dict) and m["type"] == "executed" and m["data"]["node"] == "9" for m in seen)
    assert len(images["9"]) == 1


def test_a_client_chosen_prompt_id_is_kept_and_reused_ids_are_refused(server):
    client = _client(server)
    chosen = str(uuid.uuid4())
    answer = client.queue_prompt(default_workflow("api"), prompt_id=chosen)
    assert answer["prompt_id"] == chosen and answer["node_errors"] == {} and isinstance(answer["number"], int)
    status, body = _post(server, "/prompt", {"prompt": default_workflow("api"), "prompt_id": chosen})
    assert status == 400 and "already in use" in json.dumps(body)


@pytest.mark.parametrize("change, code", [
    (lambda p: p.__setitem__("10", {"class_type": "IPAdapterApply", "inputs": {}}), "unsupported_comfy_node"),
    (lambda p: p["8"]["inputs"].__setitem__("samples", ["3", 4]), "bad_comfy_link"),
    (lambda p: p["3"]["inputs"].pop("steps"), "missing_comfy_input"),
    (lambda p: p["3"]["inputs"].__setitem__("sampler_name", "dpmpp_3m_sde"), "invalid_value"),
    (lambda p: p["4"]["inputs"].__setitem__("ckpt_name", "../../etc/passwd"), "missing_file"),
    (lambda p: p["3"]["inputs"].__setitem__("steps", ["4", 0]), "unsupported_comfy_value"),
])
def test_an_invalid_prompt_gets_comfyuis_node_errors_and_the_server_stays_up(server, change, code):
    prompt = deep(default_workflow("api"))
    change(prompt)
    status, body = _post(server, "/prompt", {"prompt": prompt})
    assert status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    errors = [e for entry in body["node_errors"].values() for e in entry["errors"]]
    assert code in {e["type"] for e in errors}, body
    assert all(entry["class_type"] for entry in body["node_errors"].values())
    assert _get(server, "/system_stats")[0] == 200  # still up


def test_every_unsupported_node_is_named_at_once(server):
    prompt = default_workflow("api")
    prompt["20"] = {"class_type": "UltimateSDUpscale", "inputs": {}}
    prompt["21"] = {"class_type": "FaceDetailer", "inputs": {}}
    status, body = _post(server, "/prompt", {"prompt": prompt})
    assert status == 400 and set(body["node_errors"]) == {"20", "21"}
    assert {body["node_errors"][n]["class_type"] for n in ("20", "21")} == {"UltimateSDUpscale", "FaceDetailer"}


@pytest.mark.parametrize("body", [{}, {"prompt": {}}, {"prompt": [1, 2]}, "not json {"])
def test_a_body_without_a_prompt_is_refused_in_comfyuis_shape(server, body):
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/prompt", data=data)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req)
    assert caught.value.code == 400


def test_view_never_serves_a_file_outside_the_data_folders(server):
    for query in ("filename=passwd&subfolder=../../../../etc", "filename=../nodeflow.sqlite3", "filename=%2e%2e%2fx",
                  "filename=x.png&type=secret", "filename=/etc/passwd"):
        status, _ = _get(server, f"/view?{query}")
        assert status in (400, 404), query


def test_upload_image_then_queue_and_history_listings(server):
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(picture, format="PNG")
    boundary = "----nodeflowtest"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"red.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + picture.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/upload/image", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    answer = json.loads(urllib.request.urlopen(req).read())
    assert answer["type"] == "input" and answer["name"].startswith("red-") and answer["name"].endswith(".png")
    client = _client(server)
    assert client.get_image(answer["name"], "", "input") == picture.getvalue()
    status, queue = _get(server, "/queue")
    assert status == 200 and set(queue) == {"queue_running", "queue_pending"}
    status, history = _get(server, "/history?max_items=2")
    assert status == 200 and len(history) <= 2
    for prompt_id, entry in history.items():
        assert entry["prompt"][1] == prompt_id and entry["status"]["status_str"] in ("success", "error")


def test_object_info_describes_the_classes_nodeflow_runs(server):
    status, info = _get(server, "/object_info")
    assert status == 200 and {"KSampler", "CheckpointLoaderSimple", "CLIPTextEncode", "SaveImage"} <= set(info)
    ksampler = info["KSampler"]
    assert ksampler["input_order"]["required"][:2] == ["model", "seed"]
    assert "euler" in ksampler["input"]["required"]["sampler_name"][0]
    assert "karras" in ksampler["input"]["required"]["scheduler"][0]
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["v1-5-pruned-emaonly.safetensors"]
    assert _get(server, "/object_info/KSampler")[1].keys() == {"KSampler"}
    assert _get(server, "/object_info/NoSuchNode")[1] == {}
    advanced = info["ControlNetApplyAdvanced"]  # the image-tools classes are served too
    assert advanced["input_order"]["required"] == ["positive", "negative", "control_net", "image", "strength", "start_percent", "end_percent"]
    assert advanced["output_name"] == ["positive", "negative"]
    assert "bislerp" not in info["LatentUpscale"]["input"]["required"]["upscale_method"][0]  # only what nodeflow runs is offered
    assert info["ConditioningSetMask"]["input"]["required"]["set_cond_area"][0] == ["default", "mask bounds"]
    assert {"VAELoader", "VAEEncodeForInpaint", "LoadImageMask", "ConditioningCombine", "ControlNetLoader"} <= set(info)
    sdxl = info["CLIPTextEncodeSDXL"]  # SDXL's encode classes translate (to SDXL Text Encode)
    assert sdxl["input_order"]["required"] == ["clip", "width", "height", "crop_w", "crop_h", "target_width", "target_height",
                                               "text_g", "text_l"]
    assert info["CLIPTextEncodeSDXLRefiner"]["input_order"]["required"] == ["ascore", "width", "height", "text", "clip"]


def test_models_embeddings_and_system_stats_answer_in_comfyuis_shape(server):
    assert "checkpoints" in _get(server, "/models")[1]
    assert _get(server, "/models/checkpoints")[1] == ["v1-5-pruned-emaonly.safetensors"]
    assert _get(server, "/models/not_a_folder")[0] == 404
    assert _get(server, "/embeddings") == (200, [])
    stats = _get(server, "/system_stats")[1]
    assert stats["system"]["argv"] == [] and stats["devices"][0]["type"] in ("cpu", "cuda", "mps")


def test_api_models_lists_the_checkpoint_with_size_and_family(server):
    status, listing = _get(server, "/api/models")
    assert status == 200
    (entry,) = listing["kinds"]["checkpoint"]
    assert entry["name"] == "v1-5-pruned-emaonly.safetensors" and entry["family"] == "sd1" and entry["size"] > 0
    assert "/tmp" not in json.dumps(listing) and listing["folders"]["checkpoint"] == "checkpoints"  # names, never server paths


def test_api_import_comfy_turns_a_ui_workflow_into_a_graph_with_its_problems(server):
    workflow = default_workflow("ui")
    workflow["nodes"][-1]["widgets_values"] = ["missing.safetensors"]
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/import/comfy", data=json.dumps(workflow).encode(),
                                 headers={"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(req).read())
    assert answer["source"] == "ui" and answer["graph"]["nodes"]["3"]["type"] == "sd.denoise"
    assert [(p["code"], p["node"]) for p in answer["problems"]] == [("missing_file", "4")]
