"""The editor's pure modules (web/js): ``node --test tests/web/`` must pass.

Document conversion, subgraphs and node modes, PNG text chunks, undo history, search,
the run book, the browser session store, the vocabulary, menus and the type table are
tested in Node without a browser (tests/web/*.test.mjs). Here too: the graph format's
spellings the editor keeps are the engine's, and a subgraph the editor makes flattens,
in the engine, back to the graph it was made from. Skips, saying so, only when ``node``
is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nodeflow.events import NodeStatus
from nodeflow.expand import prepare
from nodeflow.graph import SUBGRAPH_PREFIX, GraphDoc, NodeMode, apply_inputs, is_link, parse_graph
from nodeflow.registry import build_registry

REPO = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the editor's unit tests (tests/web/*.test.mjs) need `node` >= 20")
def test_the_editor_unit_tests_pass_in_node() -> None:
    files = sorted(str(f.relative_to(REPO)) for f in (REPO / "tests" / "web").glob("*.test.mjs"))
    assert files, "no tests/web/*.test.mjs found"
    result = subprocess.run([NODE, "--test", *files], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("# ") or "not ok" in line)
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert "# pass" in summary and "# fail 0" in summary, summary


def _js_const(path: Path, name: str) -> str:
    match = re.search(rf'export const {name} = "([^"]*)";', path.read_text(encoding="utf-8"))
    assert match, f"{path.name} has no string constant {name}"
    return match.group(1)


def test_the_editor_spells_node_modes_and_subgraph_types_as_the_graph_format_does() -> None:
    """web/js keeps the format's spellings in one place each; they must be the engine's."""
    web = REPO / "web" / "js"
    assert _js_const(web / "subgraphs.js", "SUBGRAPH_PREFIX") == SUBGRAPH_PREFIX
    assert [_js_const(web / "modes.js", name) for name in ("ACTIVE", "MUTED", "BYPASSED")] == [m.value for m in NodeMode]
    assert {m.value for m in NodeMode} <= {s.value for s in NodeStatus} | {"active"}  # the run statuses the editor draws them with


def _run_node(script: str) -> Any:
    result = subprocess.run([NODE, "--input-type=module", "-e", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _renamed(doc: GraphDoc, outer: str) -> dict[str, Any]:
    """The flat nodes with ``outer/`` taken off the ids (and the links) of the nodes inside ``outer``."""
    def strip(node_id: str) -> str:
        return node_id.removeprefix(outer + "/") if outer else node_id

    nodes = {}
    for node_id, node in doc.nodes.items():
        inputs = {k: {"node": strip(v["node"]), "output": v["output"]} if is_link(v) else v for k, v in node.inputs.items()}
        nodes[strip(node_id)] = {"type": node.type, "inputs": inputs, "mode": node.mode.value}
    return nodes


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the editor's conversion runs in `node`")
@pytest.mark.parametrize("mode", ["active", "bypassed"])
def test_a_selection_the_editor_makes_a_subgraph_of_runs_as_the_graph_it_came_from(mode: str) -> None:
    """convertToSubgraph (web/js/subgraphs.js) on txt2img: the engine flattens the result back to the same graph, inputs and modes included."""
    original = json.loads((REPO / "workflows" / "txt2img.json").read_text(encoding="utf-8"))
    if mode != "active":
        original["nodes"]["encode_negative"]["mode"] = mode  # a mode travels inside with its node
    converted = _run_node(
        "import { convertToSubgraph, flatNodeIds } from './web/js/subgraphs.js';"
        f"const doc = {json.dumps(original)};"
        "const out = convertToSubgraph(doc, ['prompt', 'negative', 'encode_negative', 'scheduler'], { instanceId: 'sg' });"
        "console.log(JSON.stringify({ doc: out.doc, ids: flatNodeIds(out.doc) }));"
    )
    doc = parse_graph(converted["doc"])  # a valid document for the engine
    assert set(doc.nodes) == {"sg", "load", "noise", "encode_prompt", "denoise", "decode", "save"}
    assert doc.nodes["sg"].subgraph == "subgraph"
    settings = {"prompt": "a handwritten three", "negative_prompt": "blurry", "steps": 3, "seed": 5}
    registry = build_registry()
    before = prepare(apply_inputs(parse_graph(original), settings), registry)
    after = prepare(apply_inputs(doc, settings), registry)
    assert not before.errors and not after.errors, after.errors
    assert _renamed(after.doc, "sg") == _renamed(before.doc, "")
    assert {k.removeprefix("sg/"): v for k, v in after.removed.items()} == before.removed
    assert bool(after.removed) == (mode != "active")
    # the ids the editor expects runs to report: the engine's, less the nodes whose own mode takes them out
    own = {"sg/encode_negative"} if mode != "active" else set()
    assert set(converted["ids"]) == (set(after.doc.nodes) | set(after.removed)) - own
