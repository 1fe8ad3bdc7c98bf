"""The browser editor (web/), driven in headless Chromium against a real server.

The server is started the way a user starts it, ``nodeflow serve --port 0 --data-dir
DIR`` in a subprocess bound to 127.0.0.1, once for this module; every test gets a
fresh browser context (its own localStorage, so no draft leaks between tests).
Screenshots of the states the tests reach are written to ``test-artifacts/editor/``.

Skips only when Playwright for Python or ``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "editor"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="Playwright for Python is not installed (pip install playwright)"),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is missing (apt-get install -y chromium)"),
]


# -- the server ------------------------------------------------------------------------------
class Server:
    """A ``nodeflow serve`` subprocess and plain-HTTP helpers to check what it recorded."""

    def __init__(self, url: str, process: subprocess.Popen[str], data_dir: Path):
        self.url = url
        self.process = process
        self.data_dir = data_dir

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            return json.loads(resp.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            return resp.read()

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_run(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/api/runs/{run_id}")
            if run["status"] in ("succeeded", "failed", "cancelled"):
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def start_server(data_dir: Path, *extra: str, log_name: str = "server.log") -> Server:
    """``nodeflow serve --port 0`` on loopback; its log goes to an artefact."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nodeflow.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    found: list[str] = []
    started = threading.Event()

    def follow_log() -> None:
        # the whole log goes to an artefact; reading it to the end also keeps the pipe from filling
        with open(ARTIFACTS / log_name, "w") as log:
            for line in process.stdout:  # type: ignore[union-attr]
                log.write(line)
                log.flush()
                match = re.search(r"nodeflow server on (http://127\.0\.0\.1:\d+)", line)
                if match and not started.is_set():
                    found.append(match.group(1))
                    started.set()
        started.set()  # the process ended: stop waiting

    threading.Thread(target=follow_log, daemon=True).start()
    if not started.wait(90) or not found:
        process.kill()
        raise AssertionError(f"nodeflow serve did not start; see test-artifacts/editor/{log_name}")
    return Server(found[0], process, data_dir)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("editor-data"))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_editor(page, server)
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def open_editor(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    page.wait_for_function("document.body.dataset.ready", timeout=30_000)
    assert page.evaluate("document.body.dataset.ready") == "true", page.inner_text("#toast")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def open_workflow(page: Page, name: str) -> None:
    """Open a workflow the way a user does: choose it in the list, press Open."""
    page.get_by_label("Workflow", exact=True).select_option(name)
    page.get_by_role("button", name="Open", exact=True).click()
    page.wait_for_function("n => nodeflow.openedWorkflow() === n", arg=name)


def drag(page: Page, start: dict[str, float], end: dict[str, float]) -> None:
    """Press at ``start``, move in steps (as a hand does), release at ``end``."""
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(start["x"] + (end["x"] - start["x"]) * k / 10, start["y"] + (end["y"] - start["y"]) * k / 10)
    page.mouse.up()


def normalised(graph: dict[str, Any]) -> dict[str, Any]:
    """A graph as the server stores it (defaults filled in), for comparing documents."""
    from nodeflow.graph import parse_graph

    return parse_graph(graph).model_dump(mode="json")


def core_graph() -> dict[str, Any]:
    """Integer -> Add <- Float, Text -> Join Text, both shown: the core pack only."""
    return {
        "format": "nodeflow/graph",
        "version": 2,
        "nodes": {
            "1": {"type": "core.int", "inputs": {"value": 3}, "ui": {"pos": [40, 40]}},
            "2": {"type": "core.float", "inputs": {"value": 2.5}, "ui": {"pos": [40, 200]}},
            "3": {"type": "core.add", "inputs": {"a": {"node": "1", "output": "out"}}, "ui": {"pos": [360, 60]}},
            "4": {"type": "core.string", "inputs": {"value": "fox"}, "ui": {"pos": [40, 360]}},
            "5": {"type": "core.show", "inputs": {"value": {"node": "3", "output": "total"}}, "ui": {"pos": [680, 60]}},
        },
        "inputs": {"count": {"node": "1", "input": "value", "description": "how many"}},
        "meta": {"name": "core-demo"},
    }


# -- acceptance ----------------------------------------------------------------------------------
def test_txt2img_runs_from_the_editor_and_the_history_records_the_edited_prompt(page: Page, server: Server) -> None:
    open_workflow(page, "txt2img")
    graph = page.evaluate("nodeflow.getGraph()")
    target = graph["inputs"]["prompt"]
    prompt = "a handwritten seven, edited in the editor"

    # Edit the prompt on the canvas: click its widget, type in the editor that opens, apply.
    page.evaluate("id => nodeflow.focusNode(id)", target["node"])
    spot = page.evaluate("([id, name]) => nodeflow.widgetPosition(id, name)", [target["node"], target["input"]])
    page.mouse.click(spot["x"], spot["y"])
    editor = page.locator("#text-editor-area")
    editor.fill(prompt)
    editor.press("Control+Enter")
    assert page.get_by_label("prompt", exact=True).input_value() == prompt  # the side panel follows the canvas

    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_function("nodeflow.lastRun() && nodeflow.lastRun().id", timeout=10_000)
    run_id = page.evaluate("nodeflow.lastRun().id")
    page.locator("#gallery img").first.wait_for(timeout=120_000)
    page.wait_for_function("nodeflow.lastRun().status === 'succeeded'", timeout=120_000)
    save_nodes = [n for n, d in graph["nodes"].items() if d["type"] == "sd.save_image"]
    assert any(page.evaluate("id => nodeflow.nodeState(id).images.length", n) for n in save_nodes)
    page.evaluate("nodeflow.fitView()")
    page.wait_for_timeout(300)  # let the result image load and draw on its node
    shot(page, "txt2img-result")

    # per-node state and progress came over the websocket, with latent previews while denoising
    events = page.evaluate("id => nodeflow.runEvents(id)", run_id)
    kinds = {(e["type"], e["node"]) for e in events}
    denoise = next(n for n, d in graph["nodes"].items() if d["type"] == "sd.denoise")
    assert {("node_started", denoise), ("progress", denoise), ("node_finished", denoise), ("run_succeeded", None)} <= kinds
    assert ("preview", denoise) in kinds
    assert page.evaluate("id => nodeflow.nodeState(id).run.status", denoise) == "done"

    record = server.get(f"/api/runs/{run_id}")
    assert record["status"] == "succeeded"
    assert record["graph"]["nodes"][target["node"]]["inputs"][target["input"]] == prompt
    image = server.get_bytes(record["outputs"][0]["url"])
    assert image.startswith(b"\x89PNG")


def test_dragging_an_output_onto_an_input_of_another_type_does_not_connect(page: Page) -> None:
    page.evaluate("g => nodeflow.loadGraph(g)", core_graph())
    page.evaluate("nodeflow.canvas.ds.scale = 1; nodeflow.canvas.ds.offset = [20, 20]; nodeflow.canvas.setDirty(true, true)")
    add_b = page.evaluate("nodeflow.slotPosition('3', 'b', 'input')")

    # STRING -> FLOAT: the server's table says no, so the drag leaves no link.
    drag(page, page.evaluate("nodeflow.slotPosition('4', 'out', 'output')"), add_b)
    assert page.evaluate("nodeflow.links().filter(l => l.to === '3' && l.input === 'b')") == []
    assert page.evaluate("nodeflow.canConnect('STRING', 'FLOAT')") is False
    shot(page, "refused-connection")

    # The same gesture from a FLOAT output connects: the refusal above was the type rule.
    drag(page, page.evaluate("nodeflow.slotPosition('2', 'out', 'output')"), add_b)
    assert {"from": "2", "output": "out", "to": "3", "input": "b"} in page.evaluate("nodeflow.links()")


def test_a_graph_with_a_missing_input_shows_the_error_on_that_node(page: Page) -> None:
    graph = core_graph()
    del graph["nodes"]["5"]["inputs"]["value"]  # Show Value needs something to show
    page.evaluate("g => nodeflow.loadGraph(g)", graph)

    page.get_by_role("button", name="Run", exact=True).click()
    problem = page.locator("#problems .problem").first
    problem.wait_for()
    assert problem.get_attribute("data-node") == "5"
    assert problem.get_attribute("data-input") == "value"
    assert problem.get_attribute("data-code") == "missing_input"
    assert "Show Value #5 · value" in problem.inner_text()
    errors = page.evaluate("nodeflow.nodeState('5').errors")
    assert [(e["input"], e["code"]) for e in errors] == [("value", "missing_input")]
    assert errors[0]["message"]
    assert page.evaluate("nodeflow.nodeState('3').errors") == []  # only the offending node is marked
    shot(page, "missing-input")

    # Connecting the input clears its mark without another run.
    page.evaluate("nodeflow.canvas.ds.scale = 1; nodeflow.canvas.ds.offset = [20, 20]; nodeflow.canvas.setDirty(true, true)")
    drag(page, page.evaluate("nodeflow.slotPosition('3', 'total', 'output')"), page.evaluate("nodeflow.slotPosition('5', 'value', 'input')"))
    assert page.evaluate("nodeflow.nodeState('5').errors") == []


def test_dropping_a_generated_png_restores_the_graph_that_made_it(page: Page, server: Server) -> None:
    status, created = server.post("/api/runs", {"workflow": "txt2img", "inputs": {"prompt": "dropped digit", "seed": 7, "steps": 4}})
    assert status == 202, created
    run = server.wait_run(created["id"])
    assert run["status"] == "succeeded", run
    png = server.get_bytes(run["outputs"][0]["url"])
    page.evaluate("g => nodeflow.loadGraph(g)", core_graph())  # something else is on the canvas

    page.evaluate(
        """async ({data, name}) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: "image/png"}));
            const canvas = document.getElementById("graph-canvas");
            for (const type of ["dragenter", "dragover", "drop"])
                canvas.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        {"data": base64.b64encode(png).decode(), "name": "result.png"},
    )
    page.get_by_role("alert").filter(has_text="Opened result.png").wait_for()
    restored = page.evaluate("nodeflow.getGraph()")
    assert normalised(restored) == normalised(server.get(f"/api/runs/{run['id']}")["graph"])
    page.evaluate("nodeflow.fitView()")
    shot(page, "png-dropped")


def test_save_reload_reopen_leaves_the_workflow_unchanged(page: Page, server: Server) -> None:
    open_workflow(page, "txt2img")
    page.get_by_label("seed", exact=True).fill("1234")  # an edit, so the saved graph is not the built-in one
    name_box = page.get_by_label("Workflow name")
    name_box.fill("my-digits")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_function("nodeflow.listWorkflows().some(w => w.name === 'my-digits')")
    before = page.evaluate("nodeflow.getGraph()")
    assert before["nodes"][before["inputs"]["seed"]["node"]]["inputs"]["seed"] == 1234

    page.reload()
    page.wait_for_function("document.body.dataset.ready === 'true'")
    page.evaluate("nodeflow.loadGraph({nodes: {}})")  # forget the draft: what comes back must come from the server
    open_workflow(page, "my-digits")
    after = page.evaluate("nodeflow.getGraph()")
    assert after == before
    assert normalised(server.get("/api/workflows/my-digits")) == normalised(before)
    assert page.get_by_label("Workflow name").input_value() == "my-digits"
    shot(page, "reopened")


# -- the rest of the editor -------------------------------------------------------------------
def test_the_node_library_is_built_from_the_catalogue_and_adds_what_you_pick(page: Page, server: Server) -> None:
    catalogue = server.get("/api/nodes")
    entries = page.locator("#node-list .node-entry")
    assert entries.count() == len(catalogue["nodes"])
    page.get_by_label("Search nodes").fill("vae dec")
    assert [e.get_attribute("data-type") for e in entries.all()] == ["sd.vae_decode"]
    page.get_by_role("listitem", name="Add VAE Decode").click()
    graph = page.evaluate("nodeflow.getGraph()")
    assert [n["type"] for n in graph["nodes"].values()] == ["sd.vae_decode"]


def expected_widget(spec: dict[str, Any]) -> str | None:
    """The widget kind the editor draws for a declared input (None: the input takes links only)."""
    if spec["choices"] is not None or spec["widget"] in ("image", "model"):
        return "combo"
    return {"BOOL": "toggle", "INT": "number", "FLOAT": "number",
            "STRING": "multiline" if spec["multiline"] else "text"}.get(spec["type"])


def test_widgets_follow_the_input_declarations(page: Page, server: Server) -> None:
    catalogue = server.get("/api/nodes")["nodes"]
    ids = page.evaluate("types => types.map((t, i) => nodeflow.addNode(t, [0, i * 400]))", list(catalogue))
    for (type_id, schema), node in zip(catalogue.items(), ids, strict=True):
        widgets = {w["name"]: w for w in page.evaluate("id => nodeflow.widgets(id)", node)}
        for spec in schema["inputs"]:
            kind = expected_widget(spec)
            where = f"{type_id}.{spec['name']}"
            if kind is None:
                assert spec["name"] not in widgets, where
                continue
            widget = widgets[spec["name"]]
            assert widget["kind"] == kind, where
            if spec["choices"] is not None:
                assert widget["options"]["values"] == spec["choices"], where
            if kind == "number":
                assert widget["options"].get("min") == spec["min"] and widget["options"].get("max") == spec["max"], where
                assert widget["options"]["step2"] == (spec["step"] or (1 if spec["type"] == "INT" else 0.01)), where
                assert (widget["options"]["precision"] == 0) == (spec["type"] == "INT"), where
            if spec["has_default"] and spec["default"] is not None and kind != "combo":
                assert widget["value"] == spec["default"], where
            if spec["widget"] == "seed":
                assert {f"{spec['name']}:randomise", f"{spec['name']}:each_run"} <= set(widgets), where
            if spec["widget"] == "model":
                assert "default" in widget["options"]["values"], where

    # out-of-range values are clamped by the widget, as the server would refuse them
    node = ids[list(catalogue).index("sd.noise_latents")]
    page.evaluate(
        """id => {
            const widget = nodeflow.graph._nodes.find((n) => n.nf.id === id).widgets.find((w) => w.name === "width");
            widget.setValue(99999, {e: null, node: widget.node, canvas: nodeflow.canvas});
        }""",
        node,
    )
    assert page.evaluate("id => nodeflow.getGraph().nodes[id].inputs.width", node) == 8192


def test_undo_redo_copy_paste_delete_and_multi_select(page: Page) -> None:
    page.evaluate("g => nodeflow.loadGraph(g)", core_graph())
    page.evaluate("nodeflow.canvas.ds.scale = 1; nodeflow.canvas.ds.offset = [20, 20]; nodeflow.canvas.setDirty(true, true)")
    canvas = page.locator("#graph-canvas")
    count = lambda: page.evaluate("Object.keys(nodeflow.getGraph().nodes).length")  # noqa: E731
    assert count() == 5

    canvas.click(position={"x": 900, "y": 700})  # focus the canvas on empty space
    page.keyboard.press("Control+a")  # multi-select: everything
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    assert count() == 10
    pasted = page.evaluate("nodeflow.getGraph()")
    assert len(page.evaluate("nodeflow.links()")) == 4  # links among the copied nodes come along
    assert len(set(pasted["nodes"])) == 10  # pasted nodes get fresh ids

    page.keyboard.press("Delete")  # the pasted nodes are the selection now
    assert count() == 5
    page.keyboard.press("Control+z")
    assert count() == 10
    page.keyboard.press("Control+z")
    assert count() == 5
    page.keyboard.press("Control+Shift+z")
    assert count() == 10
    page.get_by_role("button", name="Undo").click()
    assert page.evaluate("nodeflow.getGraph()") == core_graph()


def test_workflows_rename_delete_download_and_upload(page: Page, server: Server, tmp_path: Path) -> None:
    page.evaluate("g => nodeflow.loadGraph(g)", core_graph())
    page.get_by_label("Workflow name").fill("core-one")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_function("nodeflow.listWorkflows().some(w => w.name === 'core-one')")

    page.get_by_label("Workflow name").fill("core-two")
    page.get_by_role("button", name="Rename").click()
    page.wait_for_function("nodeflow.listWorkflows().some(w => w.name === 'core-two')")
    names = {w["name"] for w in server.get("/api/workflows")["workflows"]}
    assert "core-two" in names and "core-one" not in names

    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    saved = tmp_path / "downloaded.json"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "core-two.json"
    assert json.loads(saved.read_text()) == page.evaluate("nodeflow.getGraph()")

    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("button", name='Delete "core-two"?').click()  # the second click confirms
    page.wait_for_function("!nodeflow.listWorkflows().some(w => w.name === 'core-two')")
    assert "core-two" not in {w["name"] for w in server.get("/api/workflows")["workflows"]}

    page.evaluate("nodeflow.loadGraph({nodes: {}})")
    page.locator("#upload-input").set_input_files(str(saved))
    page.get_by_role("alert").filter(has_text="Opened downloaded.json").wait_for()
    assert normalised(page.evaluate("nodeflow.getGraph()")) == normalised(json.loads(saved.read_text()))


def test_an_image_input_uploads_through_the_server(page: Page, server: Server, tmp_path: Path) -> None:
    from PIL import Image

    picture = tmp_path / "digit.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(picture)
    node = page.evaluate("nodeflow.addNode('sd.load_image', [0, 0])")
    page.evaluate("id => nodeflow.focusNode(id)", node)
    button = page.evaluate("id => nodeflow.widgetPosition(id, 'path:upload')", node)
    choosers: list[Any] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    # Playwright turns file-chooser interception on without waiting for the browser to
    # confirm; a chooser opened in that gap is lost (seen 1 time in 4 with expect_file_chooser).
    page.wait_for_timeout(250)
    page.mouse.click(button["x"], button["y"])
    for _ in range(100):
        if choosers:
            break
        page.wait_for_timeout(50)
    choosers[0].set_files(str(picture))
    page.wait_for_function("id => (nodeflow.getGraph().nodes[id].inputs.path || '').startsWith('digit-')", arg=node)
    name = page.evaluate("id => nodeflow.getGraph().nodes[id].inputs.path", node)
    assert name in {u["name"] for u in server.get("/api/uploads")["uploads"]}
    assert name in page.evaluate("id => nodeflow.widgets(id).find(w => w.name === 'path').options.values", node)

    # dropping a picture on the node uploads it into the same input
    other = tmp_path / "another.png"
    Image.new("RGB", (16, 16), (30, 30, 200)).save(other)
    spot = page.evaluate("id => nodeflow.widgetPosition(id, 'path')", node)
    page.evaluate(
        """async ({data, x, y}) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "another.png", {type: "image/png"}));
            const canvas = document.getElementById("graph-canvas");
            for (const type of ["dragover", "drop"])
                canvas.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true, clientX: x, clientY: y}));
        }""",
        {"data": base64.b64encode(other.read_bytes()).decode(), **spot},
    )
    page.wait_for_function("id => (nodeflow.getGraph().nodes[id].inputs.path || '').startsWith('another-')", arg=node)
    assert page.evaluate("id => nodeflow.nodeState(id).images.length", node) == 1  # the chosen picture shows on the node


def test_opening_and_saving_keeps_what_the_editor_does_not_draw(page: Page) -> None:
    """Node ids, titles, colours, unknown ui keys and inputs, groups, a missing plugin's node: all come back as they were."""
    graph = {
        "format": "nodeflow/graph",
        "version": 2,
        "nodes": {
            "a": {"type": "core.int", "inputs": {"value": 2},
                  "ui": {"pos": [0, 0], "title": "Integer", "color": "#335", "bgcolor": "#223", "collapsed": True, "note": "kept"}},
            "b": {"type": "plugin.not_installed", "inputs": {"x": {"node": "a", "output": "out"}, "mode": "fast"}, "ui": {"pos": [300, 0]}},
            "c": {"type": "core.show", "inputs": {"value": {"node": "b", "output": "result"}}, "ui": {"pos": [600, 0], "size": [300, 120]}},
            "d": {"type": "core.add", "inputs": {"a": 1.5, "old_input": 3}, "mode": "bypassed", "ui": {"pos": [0, 200]}},
            "e": {"type": "sd.noise_latents", "inputs": {"seed": 5}, "ui": {"pos": [0, 400], "randomize": ["seed"]}},
        },
        "inputs": {"n": {"node": "a", "input": "value", "description": ""}},
        "meta": {"name": "round-trip", "editor": {"groups": [
            {"title": "Group", "bounding": [-20, -60, 400, 300], "color": "#3f789e", "font_size": 24, "flags": {}}]}},
    }
    page.evaluate("g => nodeflow.loadGraph(g)", graph)
    assert page.evaluate("nodeflow.getGraph()") == graph
    # the stand-in for the missing type keeps its links drawn
    assert {"from": "b", "output": "result", "to": "c", "input": "value"} in page.evaluate("nodeflow.links()")


def test_a_graph_without_positions_is_laid_out_by_dependency(page: Page) -> None:
    graph = core_graph()
    for node in graph["nodes"].values():
        del node["ui"]
    page.evaluate("g => nodeflow.loadGraph(g)", graph)
    x = {k: n["ui"]["pos"][0] for k, n in page.evaluate("nodeflow.getGraph()")["nodes"].items()}
    assert x["1"] < x["3"] < x["5"]  # sources left of what they feed
    assert x["2"] == x["4"] == x["1"]


def test_a_run_that_ends_before_the_post_returns_still_shows_as_finished(page: Page) -> None:
    """Core nodes finish in microseconds: the websocket often reports the end before POST /api/runs answers."""
    graph = core_graph()
    graph["nodes"]["1"]["inputs"]["value"] = time.time_ns() % 1_000_000_007  # a graph no other test ran
    page.evaluate("g => nodeflow.loadGraph(g)", graph)
    for expected in ("done", "cached", "cached"):  # the first run computes, the next ones hit the cache
        run_id = page.evaluate("nodeflow.queueRun()")
        record = page.evaluate("id => nodeflow.waitForRun(id)", run_id)
        assert record["status"] == "succeeded"
        page.wait_for_function("s => nodeflow.nodeState('5').run?.status === s", arg=expected)
        assert page.evaluate("nodeflow.nodeState('4').run") is None  # Text feeds nothing: not part of the run


def test_the_editor_works_with_a_server_that_requires_a_token(browser: Browser, tmp_path: Path) -> None:
    secured = start_server(tmp_path / "data", "--token", "s3cret-token", log_name="server-token.log")
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = context.new_page()
        page.goto(secured.url + "/?token=s3cret-token")
        page.wait_for_function("document.body.dataset.ready", timeout=30_000)
        assert page.evaluate("document.body.dataset.ready") == "true"
        assert "token" not in page.url  # not left in the address bar, history or screenshots
        page.wait_for_function("document.getElementById('connection').textContent === 'connected'")  # the websocket too
        page.evaluate("g => nodeflow.loadGraph(g)", core_graph())
        run_id = page.evaluate("nodeflow.queueRun()")
        assert page.evaluate("id => nodeflow.waitForRun(id)", run_id)["status"] == "succeeded"
        assert any(w["name"] == "txt2img" for w in page.evaluate("nodeflow.listWorkflows()"))
        with pytest.raises(urllib.error.HTTPError) as refused:
            secured.get("/api/runs")  # the same request without the token
        assert refused.value.code == 401
    finally:
        context.close()
        stop_server(secured)


def test_png_text_chunks_are_read_whatever_pillow_wrote(page: Page) -> None:
    """tEXt for Latin-1, iTXt for other text, compressed when asked: all give back the graph."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    graph = core_graph()
    graph["nodes"]["4"]["inputs"]["value"] = "ein Fuchs, 狐, лиса"
    text = json.dumps(graph)
    for compressed in (False, True):
        info = PngInfo()
        info.add_text("nodeflow_graph", text, zip=compressed)
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
        data = base64.b64encode(buffer.getvalue()).decode()
        read = page.evaluate(
            """async (data) => {
                const { readGraphFromPng } = await import("./js/png.js");
                return readGraphFromPng(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
            }""",
            data,
        )
        assert read == graph


def test_a_700_node_graph_loads_fast_and_pans_smoothly(page: Page) -> None:
    nodes = {
        str(k): {
            "type": "core.add",
            "inputs": {"a": {"node": str(k - 1), "output": "total"}} if k else {},
            "ui": {"pos": [(k % 35) * 260, (k // 35) * 140]},
        }
        for k in range(700)
    }
    graph = {"format": "nodeflow/graph", "version": 2, "nodes": nodes, "inputs": {}, "meta": {}}
    load_ms = page.evaluate("g => { const t = performance.now(); nodeflow.loadGraph(g); return performance.now() - t; }", graph)
    timing = page.evaluate(
        """() => {
            const c = nodeflow.canvas;
            c.ds.scale = 0.6;
            c.ds.offset = [0, 0];
            const frames = [];
            for (let i = 0; i < 60; i++) {  // one pan step per frame, as a drag does
                c.ds.offset[0] -= 40;
                c.ds.offset[1] -= 10;
                const t = performance.now();
                c.draw(true, true);
                frames.push(performance.now() - t);
            }
            frames.sort((a, b) => a - b);
            return {median: frames[30], visible: c.visible_nodes.length};
        }"""
    )
    shot(page, "700-nodes")
    assert len(page.evaluate("nodeflow.getGraph()")["nodes"]) == 700
    assert timing["visible"] > 30  # the frames drew a screenful of nodes, not an empty view
    # Budgets with room for a loaded 2-core CI box; measured here: load ~100 ms, frame ~15 ms.
    assert load_ms < 2000
    assert timing["median"] < 40, timing  # 25+ frames per second while panning
