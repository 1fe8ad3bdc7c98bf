"""Validation reports every problem at once, each with a code, node id and input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _engine_nodes import link, make_registry

from nodeflow.validate import validate

REGISTRY = make_registry()


@pytest.fixture
def plugin_dir(tmp_path):
    """A plugin folder holding the test nodes, for CLI runs in a subprocess."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(Path(__file__).with_name("_engine_nodes.py"), folder / "engine_test_nodes.py")
    return folder


def codes(errors):
    return sorted((e.code, e.node, e.input) for e in errors)


def test_valid_graph_has_no_errors():
    graph = {"nodes": {"a": {"type": "test.number", "inputs": {"value": 1.0}}, "b": {"type": "test.add", "inputs": {"a": link("a")}}}}
    assert validate(graph, REGISTRY) == []


def test_unknown_node_type():
    assert codes(validate({"nodes": {"x": {"type": "test.nope"}}}, REGISTRY)) == [("unknown_node_type", "x", None)]


def test_missing_required_input():
    assert codes(validate({"nodes": {"x": {"type": "test.add"}}}, REGISTRY)) == [("missing_input", "x", "a")]


def test_unknown_input_name():
    errors = validate({"nodes": {"x": {"type": "test.number", "inputs": {"valu": 1.0}}}}, REGISTRY)
    assert codes(errors) == [("unknown_input", "x", "valu")]
    assert "value" in errors[0].message  # names the inputs that do exist


def test_link_to_missing_node_or_output_is_bad_link():
    graph = {
        "nodes": {
            "a": {"type": "test.number"},
            "b": {"type": "test.add", "inputs": {"a": link("ghost"), "b": link("a", "nope")}},
        }
    }
    assert codes(validate(graph, REGISTRY)) == [("bad_link", "b", "a"), ("bad_link", "b", "b")]


def test_type_mismatch_names_both_types():
    graph = {"nodes": {"t": {"type": "test.tensor"}, "b": {"type": "test.add", "inputs": {"a": link("t", "latents")}}}}
    (error,) = validate(graph, REGISTRY)
    assert (error.code, error.node, error.input) == ("type_mismatch", "b", "a")
    assert "FLOAT" in error.message and "LATENTS" in error.message


def test_value_out_of_range_and_invalid_value():
    graph = {"nodes": {"a": {"type": "test.number", "inputs": {"value": 1e6}}, "c": {"type": "test.count", "inputs": {"value": "three"}}}}
    assert codes(validate(graph, REGISTRY)) == [("invalid_value", "c", "value"), ("value_out_of_range", "a", "value")]


def test_literal_where_only_a_link_makes_sense_is_invalid_value():
    graph = {"nodes": {"s": {"type": "test.scale", "inputs": {"latents": [1, 2]}}}}
    assert codes(validate(graph, REGISTRY)) == [("invalid_value", "s", "latents")]


def test_cycle_reports_every_node_in_it():
    graph = {
        "nodes": {
            "a": {"type": "test.add", "inputs": {"a": link("b")}},
            "b": {"type": "test.add", "inputs": {"a": link("a")}},
            "c": {"type": "test.add", "inputs": {"a": link("c")}},
        }
    }
    assert codes(validate(graph, REGISTRY)) == [("cycle", "a", None), ("cycle", "b", None), ("cycle", "c", None)]


def test_graph_input_pointing_nowhere():
    graph = {"nodes": {"a": {"type": "test.number"}}, "inputs": {"x": {"node": "a", "input": "nope"}, "y": {"node": "z", "input": "value"}}}
    assert [e.code for e in validate(graph, REGISTRY)] == ["unknown_graph_input", "unknown_graph_input"]


def test_invalid_json_text_is_a_structured_error():
    (error,) = validate("{not json", REGISTRY)
    assert error.code == "invalid_json"


def test_wrong_document_shape_names_the_node():
    errors = validate({"nodes": {"7": {"inputs": {}}}}, REGISTRY)
    assert [(e.code, e.node) for e in errors] == [("invalid_json", "7")]


def test_unknown_version_is_refused_clearly():
    (error,) = validate({"format": "nodeflow/graph", "version": 99, "nodes": {}}, REGISTRY)
    assert error.code == "unsupported_version" and "99" in error.message


def test_cli_validate_json_reports_cycle_unknown_type_missing_input_mismatch_and_range(tmp_path, plugin_dir):
    graph = {
        "nodes": {
            "1": {"type": "test.add", "inputs": {"a": link("2")}},
            "2": {"type": "test.add", "inputs": {"a": link("1")}},
            "3": {"type": "test.does_not_exist"},
            "4": {"type": "test.add"},
            "5": {"type": "test.scale", "inputs": {"latents": link("6")}},
            "6": {"type": "test.number", "inputs": {"value": 5000}},
        }
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(graph))
    proc = subprocess.run(
        [sys.executable, "-m", "nodeflow.cli", "validate", str(path), "--json", "--plugins", str(plugin_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] is False
    found = {(e["code"], e["node"], e["input"]) for e in report["errors"]}
    assert found == {
        ("cycle", "1", None),
        ("cycle", "2", None),
        ("unknown_node_type", "3", None),
        ("missing_input", "4", "a"),
        ("type_mismatch", "5", "latents"),
        ("value_out_of_range", "6", "value"),
    }
    assert all(e["message"] for e in report["errors"])
