"""The editor and files, in headless Chromium against a real server: model pickers fed by
``GET /api/models``, the mask painter (saved as an upload), and ComfyUI files opened by
dropping them (converted by ``POST /api/import/comfy``).

The server, browser and page helpers are those of ``test_editor_browser.py`` (one
``nodeflow serve`` subprocess on 127.0.0.1 for this module, here with ``--models-dir``
holding header-only checkpoints of known families). Acts with the mouse and real DOM
events; waits on conditions, never on time.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_headers import header_checkpoint
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from test_editor_browser import (
    ARTIFACTS,
    PLUGINS,
    Server,
    browser,
    editor_page,
    graph_of,
    load,
    start_server,
    stop_server,
)

__all__ = ["browser"]  # the fixture, shared with test_editor_browser.py

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # pragma: no cover - test_editor_browser's marks skip the module
    Browser = Page = Any  # type: ignore[misc,assignment]

from test_editor_browser import pytestmark  # noqa: E402,F401  (the same skips)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("editor-models") / "models"
    header_checkpoint(root / "checkpoints" / "tiny-xl.safetensors", "sdxl")
    header_checkpoint(root / "checkpoints" / "sd15" / "tiny-15.safetensors", "sd1")
    header_checkpoint(root / "loras" / "style.safetensors", "sd1")
    (root / "embeddings").mkdir()
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("editor-files-data"), "--plugins", str(PLUGINS), "--models-dir", str(models_dir),
                           log_name="server-files.log")
    yield running
    stop_server(running)


@pytest.fixture()
def page(browser: Browser, server: Server) -> Iterator[Page]:
    with editor_page(browser, server) as opened:
        yield opened


def widget(page: Page, node: str, name: str) -> dict[str, Any]:
    return next(w for w in page.evaluate("id => nodeflow.widgets(id)", node) if w["name"] == name)


def click_widget(page: Page, node: str, name: str) -> None:
    where = page.evaluate("([id, name]) => nodeflow.widgetPosition(id, name)", [node, name])
    page.mouse.click(where["x"], where["y"])


# -- model pickers ---------------------------------------------------------------------------------
MODEL_GRAPH = {
    "format": "nodeflow/graph", "version": 2,
    "nodes": {"load": {"type": "sd.load_model", "inputs": {"model": "default"}, "ui": {"pos": [60, 60]}},
              "lora": {"type": "sd.lora", "inputs": {"lora": ""}, "ui": {"pos": [420, 60]}}},
}


def test_a_model_is_picked_from_the_servers_folders_with_its_family(page: Page) -> None:
    load(page, MODEL_GRAPH)
    click_widget(page, "load", "model")
    menu = page.locator(".litecontextmenu.nf-model-menu .litemenu-entry")
    menu.first.wait_for(timeout=120_000)
    assert menu.all_inner_texts() == ["default", "sd15/tiny-15.safetensors · SD 1.x", "tiny-xl.safetensors · SDXL"]
    page.screenshot(path=str(ARTIFACTS / "model-menu.png"))
    menu.filter(has_text="tiny-xl.safetensors").click()
    page.wait_for_function("nodeflow.getGraph().nodes.load.inputs.model === 'tiny-xl.safetensors'", timeout=120_000)
    assert widget(page, "load", "model")["shown"] == "tiny-xl.safetensors · SDXL"
    assert page.evaluate("nodeflow.dirty()")  # an edit like any other: undoable, kept
    page.evaluate("nodeflow.undo()")
    assert graph_of(page)["nodes"]["load"]["inputs"]["model"] == "default"


def test_lora_inputs_list_the_lora_folder_and_a_typed_path_stays_possible(page: Page) -> None:
    load(page, MODEL_GRAPH)
    click_widget(page, "lora", "lora")
    menu = page.locator(".litecontextmenu.nf-model-menu .litemenu-entry")
    menu.first.wait_for(timeout=120_000)
    assert menu.all_inner_texts() == ["(none)", "style.safetensors"]  # its default, then the folder
    page.keyboard.press("Escape")
    page.mouse.click(1200, 800)  # close the menu
    menu.first.wait_for(state="detached", timeout=120_000)
    click_widget(page, "lora", "lora:path")
    field = page.locator(".graphdialog input")
    field.wait_for(timeout=120_000)
    field.fill("my/own/lora.safetensors")
    field.press("Enter")
    page.wait_for_function("nodeflow.getGraph().nodes.lora.inputs.lora === 'my/own/lora.safetensors'", timeout=120_000)


# -- the mask painter --------------------------------------------------------------------------------
SIZE = 128  # the picture, in pixels (shown 1:1 in the painter)
ROW = 64  # the stroke runs along this row ...
FROM, TO = 20, 100  # ... between these columns
BRUSH = 16  # pixels across: radius 8


def upload_picture(page: Page, server: Server) -> tuple[str, Image.Image]:
    rng = np.random.default_rng(5)
    picture = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), "RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    answer = page.request.post(server.url + "/api/uploads",
                               multipart={"file": {"name": "photo.png", "mimeType": "image/png", "buffer": buffer.getvalue()}})
    assert answer.status == 201, answer.text()
    return answer.json()["name"], picture


def paint_stroke(page: Page) -> None:
    """Press, drag along ROW from FROM to TO, release: real mouse events on the painter's canvas."""
    canvas = page.locator("#mask-editor canvas[data-role=mask]")
    canvas.wait_for(timeout=120_000)
    page.wait_for_function(f"document.querySelector('#mask-editor canvas[data-role=mask]').width === {SIZE}", timeout=120_000)
    page.locator("#mask-editor [data-role=size]").fill(str(BRUSH))
    box = canvas.bounding_box()
    assert box is not None
    scale = box["width"] / SIZE
    to_page = lambda x, y: (box["x"] + x * scale, box["y"] + y * scale)  # noqa: E731
    page.mouse.move(*to_page(FROM, ROW))
    page.mouse.down()
    page.mouse.move(*to_page(TO, ROW), steps=12)
    page.mouse.up()


def distance_to_stroke() -> np.ndarray:
    """Each pixel centre's distance to the stroke's segment."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    nearest = np.clip(xs, FROM, TO)
    return np.hypot(xs - nearest, ys - ROW)


def saved_upload(page: Page, server: Server, node: str, before: str) -> Image.Image:
    page.wait_for_function(f"nodeflow.getGraph().nodes[{json.dumps(node)}].inputs.path !== {json.dumps(before)}", timeout=120_000)
    name = graph_of(page)["nodes"][node]["inputs"]["path"]
    return Image.open(io.BytesIO(server.get_bytes(f"/api/uploads/{name}")))


def open_painter(page: Page, node: str) -> None:
    click_widget(page, node, "path:paint")
    page.locator("#mask-editor").wait_for(state="visible", timeout=120_000)


def mask_graph(image: str) -> dict[str, Any]:
    return {"format": "nodeflow/graph", "version": 2,
            "nodes": {"image": {"type": "sd.load_image", "inputs": {"path": image}, "ui": {"pos": [60, 60]}},
                      "mask": {"type": "sd.load_mask", "inputs": {"path": ""}, "ui": {"pos": [460, 60]}}}}


def test_a_painted_mask_is_saved_as_a_grayscale_upload_white_under_the_stroke(page: Page, server: Server) -> None:
    image, _ = upload_picture(page, server)
    load(page, mask_graph(image))
    open_painter(page, "mask")
    paint_stroke(page)
    page.screenshot(path=str(ARTIFACTS / "mask-painter.png"))
    page.get_by_role("button", name="Save mask").click()
    saved = saved_upload(page, server, "mask", "")
    assert saved.mode == "L" and saved.size == (SIZE, SIZE)
    pixels = np.asarray(saved)
    distance = distance_to_stroke()
    assert set(np.unique(pixels)) <= {0, 255}
    # the pointer lands within a pixel or so of where it was sent: allow that at the brush's edge
    assert (pixels[distance <= BRUSH / 2 - 1.5] == 255).all()
    assert (pixels[distance > BRUSH / 2 + 1.5] == 0).all()
    assert (pixels == 255).sum() > 0.8 * (distance <= BRUSH / 2).sum()
    # painting again starts from the saved mask; the eraser takes part of it away
    before = graph_of(page)["nodes"]["mask"]["inputs"]["path"]
    open_painter(page, "mask")
    page.get_by_label("Eraser").check()
    paint_stroke(page)
    page.get_by_role("button", name="Save mask").click()
    assert (np.asarray(saved_upload(page, server, "mask", before)) == 0).all()


def test_a_mask_painted_on_an_image_is_its_alpha_and_the_colours_stay(page: Page, server: Server) -> None:
    image, picture = upload_picture(page, server)
    load(page, mask_graph(image))
    open_painter(page, "image")
    paint_stroke(page)
    page.get_by_role("button", name="Save mask").click()
    saved = saved_upload(page, server, "image", image)
    assert saved.mode == "RGBA" and saved.size == (SIZE, SIZE)
    pixels = np.asarray(saved)
    distance = distance_to_stroke()
    assert (pixels[..., 3][distance <= BRUSH / 2 - 1.5] == 0).all()  # transparent = repaint (Load Image's mask)
    assert (pixels[..., 3][distance > BRUSH / 2 + 1.5] == 255).all()
    assert np.array_equal(pixels[..., :3], np.asarray(picture))  # the server kept every colour, under the mask too


def test_cancel_leaves_the_input_as_it_was(page: Page, server: Server) -> None:
    image, _ = upload_picture(page, server)
    load(page, mask_graph(image))
    open_painter(page, "mask")
    paint_stroke(page)
    page.get_by_role("button", name="Cancel").click()
    page.locator("#mask-editor").wait_for(state="hidden", timeout=120_000)
    assert graph_of(page)["nodes"]["mask"]["inputs"]["path"] == ""


# -- ComfyUI files -----------------------------------------------------------------------------------
COMFY_FILES = Path(__file__).resolve().parent / "comfy_files"


def drop_file(page: Page, name: str, data: bytes, mime: str) -> None:
    """Dispatch a real drop event carrying a DataTransfer with the file, on the canvas."""
    page.evaluate(
        """([name, bytes, mime]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, { type: mime }));
            const target = document.getElementById("graph-canvas");
            const box = target.getBoundingClientRect();
            const at = { clientX: box.left + 200, clientY: box.top + 200, bubbles: true, cancelable: true, dataTransfer: transfer };
            target.dispatchEvent(new DragEvent("dragenter", at));
            target.dispatchEvent(new DragEvent("dragover", at));
            target.dispatchEvent(new DragEvent("drop", at));
        }""",
        [name, list(data), mime],
    )


def test_dropping_a_comfyui_workflow_opens_its_graph_and_the_importers_notes(page: Page) -> None:
    workflow = json.loads((COMFY_FILES / "default_ui.json").read_text())
    drop_file(page, "comfy-default.json", json.dumps(workflow).encode(), "application/json")
    notes = page.locator("#import-notes")
    notes.wait_for(state="visible", timeout=120_000)
    expect(notes).to_contain_text("Imported comfy-default.json")
    expect(notes).to_contain_text("Imported from a ComfyUI UI workflow")
    page.screenshot(path=str(ARTIFACTS / "comfy-import.png"))
    notes.get_by_role("button", name="OK").click()
    graph = graph_of(page)
    assert {"sd.load_model", "sd.denoise", "sd.vae_decode", "sd.save_image"} <= {n["type"] for n in graph["nodes"].values()}
    assert graph["meta"]["name"] == "comfy-default" and graph["meta"]["comfy"]["source"] == "ui"
    # the nodes are on the canvas, where ComfyUI had them
    assert page.evaluate("id => nodeflow.nodeState(id)", "3")["type"] == "sd.denoise"
    assert graph["nodes"]["3"]["ui"]["pos"] == [863, 186]


def test_dropping_a_comfyui_png_opens_its_workflow(page: Page) -> None:
    info = PngInfo()
    info.add_text("prompt", (COMFY_FILES / "default_api.json").read_text())
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    drop_file(page, "ComfyUI_00001_.png", buffer.getvalue(), "image/png")
    page.locator("#import-notes").wait_for(state="visible", timeout=120_000)
    expect(page.locator("#import-notes")).to_contain_text("API prompt")
    page.locator("#import-notes").get_by_role("button", name="OK").click()
    assert "sd.denoise" in {n["type"] for n in graph_of(page)["nodes"].values()}


def test_a_file_that_is_not_comfyui_says_why_and_keeps_the_graph(page: Page) -> None:
    load(page, MODEL_GRAPH)
    drop_file(page, "notes.json", b'{"hello": "world"}', "application/json")
    page.get_by_role("alert").filter(has_text="notes.json: the ComfyUI file cannot be imported").wait_for(timeout=120_000)
    assert set(graph_of(page)["nodes"]) == {"load", "lora"}


def test_a_comfyui_api_prompt_opens_from_the_file_dialog(page: Page) -> None:
    with page.expect_file_chooser(timeout=120_000) as chooser:
        page.get_by_role("button", name="Upload…").click()
    chooser.value.set_files(str(COMFY_FILES / "default_api.json"))
    notes = page.locator("#import-notes")
    notes.wait_for(state="visible", timeout=120_000)
    expect(notes).to_contain_text("Imported default_api.json (ComfyUI API prompt)")
    notes.get_by_role("button", name="OK").click()
    graph = graph_of(page)
    assert graph["meta"]["name"] == "default_api" and "sd.denoise" in {n["type"] for n in graph["nodes"].values()}
