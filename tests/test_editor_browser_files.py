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

import pytest
from model_headers import header_checkpoint
from test_editor_browser import ARTIFACTS, PLUGINS, Server, browser, graph_of, load, open_editor, start_server, stop_server

__all__ = ["browser"]  # the fixture, shared with test_editor_browser.py

try:
    from playwright.sync_api import Browser, Page
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
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_editor(page, server)
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


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
    menu.first.wait_for(timeout=10_000)
    assert menu.all_inner_texts() == ["default", "sd15/tiny-15.safetensors · SD 1.x", "tiny-xl.safetensors · SDXL"]
    page.screenshot(path=str(ARTIFACTS / "model-menu.png"))
    menu.filter(has_text="tiny-xl.safetensors").click()
    page.wait_for_function("nodeflow.getGraph().nodes.load.inputs.model === 'tiny-xl.safetensors'", timeout=10_000)
    assert widget(page, "load", "model")["shown"] == "tiny-xl.safetensors · SDXL"
    assert page.evaluate("nodeflow.dirty()")  # an edit like any other: undoable, kept
    page.evaluate("nodeflow.undo()")
    assert graph_of(page)["nodes"]["load"]["inputs"]["model"] == "default"


def test_lora_inputs_list_the_lora_folder_and_a_typed_path_stays_possible(page: Page) -> None:
    load(page, MODEL_GRAPH)
    click_widget(page, "lora", "lora")
    menu = page.locator(".litecontextmenu.nf-model-menu .litemenu-entry")
    menu.first.wait_for(timeout=10_000)
    assert menu.all_inner_texts() == ["(none)", "style.safetensors"]  # its default, then the folder
    page.keyboard.press("Escape")
    page.mouse.click(1200, 800)  # close the menu
    menu.first.wait_for(state="detached", timeout=10_000)
    click_widget(page, "lora", "lora:path")
    field = page.locator(".graphdialog input")
    field.wait_for(timeout=10_000)
    field.fill("my/own/lora.safetensors")
    field.press("Enter")
    page.wait_for_function("nodeflow.getGraph().nodes.lora.inputs.lora === 'my/own/lora.safetensors'", timeout=10_000)
