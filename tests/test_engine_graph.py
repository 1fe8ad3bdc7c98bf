"""The graph document: byte-stable round trips, versions, migrations, graph inputs."""

from __future__ import annotations

import json

import pytest

from nodeflow.errors import GraphInvalid
from nodeflow.graph import MIGRATIONS, VERSION, apply_inputs, dump_graph, is_link, parse_graph

DOC = {
    "format": "nodeflow/graph",
    "version": 1,
    "nodes": {
        "2": {"type": "core.string", "inputs": {"value": "a cat"}, "ui": {"pos": [10, 20]}},
        "10": {"type": "core.join_text", "inputs": {"a": {"node": "2", "output": "out"}, "b": "oil painting"}},
    },
    "inputs": {"prompt": {"node": "2", "input": "value", "description": "what to draw"}},
    "meta": {"name": "demo", "unicode": "café"},
}


def test_dump_parse_dump_is_byte_stable():
    text = dump_graph(parse_graph(DOC))
    assert dump_graph(parse_graph(text)) == text
    assert text.endswith("\n") and json.loads(text)["meta"]["unicode"] == "café"


def test_dump_sorts_keys_whatever_the_input_order():
    shuffled = dict(reversed(list(DOC.items())))
    assert dump_graph(parse_graph(shuffled)) == dump_graph(parse_graph(DOC))


def test_missing_format_and_version_default_to_current():
    doc = parse_graph({"nodes": {}})
    assert doc.version == VERSION and doc.format == "nodeflow/graph"


def test_unknown_version_raises_clear_error():
    with pytest.raises(GraphInvalid) as info:
        parse_graph({"version": 7, "nodes": {}})
    assert info.value.errors[0].code == "unsupported_version"


def test_migration_hook_upgrades_older_documents():
    def v0_to_v1(raw):
        # a hypothetical v0 kept nodes as a list with ids inside
        return {**raw, "nodes": {n["id"]: {"type": n["type"]} for n in raw["nodes"]}}

    doc = parse_graph({"version": 0, "nodes": [{"id": "1", "type": "core.int"}]}, migrations={**MIGRATIONS, 0: v0_to_v1})
    assert doc.version == VERSION and doc.nodes["1"].type == "core.int"


def test_wrong_format_name_is_rejected():
    with pytest.raises(GraphInvalid):
        parse_graph({"format": "comfyui", "nodes": {}})


def test_links_are_exactly_node_and_output():
    assert is_link({"node": "1", "output": "x"})
    assert not is_link({"node": "1", "output": "x", "extra": 1})
    assert not is_link({"node": 1, "output": "x"})


def test_apply_inputs_sets_named_and_dotted_inputs_without_touching_original():
    doc = parse_graph(DOC)
    changed = apply_inputs(doc, {"prompt": "a dog", "10.b": "watercolour"})
    assert changed.nodes["2"].inputs["value"] == "a dog" and changed.nodes["10"].inputs["b"] == "watercolour"
    assert doc.nodes["2"].inputs["value"] == "a cat"


def test_apply_inputs_reports_every_unknown_name():
    with pytest.raises(GraphInvalid) as info:
        apply_inputs(parse_graph(DOC), {"nope": 1, "99.value": 2})
    assert [e.code for e in info.value.errors] == ["unknown_graph_input", "unknown_graph_input"]
