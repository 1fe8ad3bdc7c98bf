"""The nodeflow command: reports, exit codes, --set, and a disk cache shared by processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def plugin_dir(tmp_path):
    """A plugin folder holding the engine test nodes."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(Path(__file__).with_name("_engine_nodes.py"), folder / "engine_test_nodes.py")
    return folder


@pytest.fixture
def graph_file(tmp_path):
    graph = {
        "format": "nodeflow/graph",
        "version": 1,
        "nodes": {
            "a": {"type": "test.number", "inputs": {"value": 1.5}},
            "t": {"type": "test.tensor", "inputs": {"value": {"node": "a", "output": "out"}}},
            "s": {"type": "test.scale", "inputs": {"latents": {"node": "t", "output": "latents"}, "factor": 2.0}},
            "sum": {"type": "test.sum", "inputs": {"latents": {"node": "s", "output": "out"}}},
            "w": {"type": "test.write", "inputs": {"value": {"node": "sum", "output": "total"}}},
        },
        "inputs": {"factor": {"node": "s", "input": "factor"}},
    }
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(graph))
    return path


def nodeflow(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nodeflow.cli", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_run_json_report_has_the_documented_shape(graph_file, plugin_dir, tmp_path):
    proc = nodeflow("run", graph_file, "--plugins", plugin_dir, "--out", tmp_path / "out", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded" and isinstance(report["seconds"], float)
    assert set(report["nodes"]) == {"a", "t", "s", "sum", "w"}
    assert all(n["status"] == "ran" and n["type"].startswith("test.") for n in report["nodes"].values())
    assert report["outputs"] == [str(tmp_path / "out" / "value_w.txt")] and report["errors"] == []
    assert (tmp_path / "out" / "value_w.txt").read_text() == repr(1.5 * 2.0 * 64)


def test_set_accepts_graph_inputs_and_node_dot_input(graph_file, plugin_dir, tmp_path):
    proc = nodeflow("run", graph_file, "--plugins", plugin_dir, "--out", tmp_path, "--set", "factor=3", "--set", "a.value=0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "value_w.txt").read_text() == repr(0.5 * 3.0 * 64)


def test_second_process_reuses_the_disk_cache(graph_file, plugin_dir, tmp_path):
    cache = tmp_path / "cache"
    first = nodeflow("run", graph_file, "--plugins", plugin_dir, "--out", tmp_path, "--cache-dir", cache, "--json")
    second = nodeflow("run", graph_file, "--plugins", plugin_dir, "--out", tmp_path, "--cache-dir", cache, "--set", "factor=4", "--json")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    statuses = {k: v["status"] for k, v in json.loads(second.stdout)["nodes"].items()}
    # "a" only feeds "t", which came from the disk cache: it was not needed, not served from the cache.
    assert statuses == {"a": "not_needed", "t": "cached", "s": "ran", "sum": "ran", "w": "ran"}


def test_invalid_graph_exits_1_with_errors_and_no_traceback(tmp_path):
    path = tmp_path / "g.json"
    path.write_text('{"nodes": {"1": {"type": "core.add", "inputs": {"a": "x"}}}}')
    proc = nodeflow("run", path)
    assert proc.returncode == 1
    assert "[node 1, input 'a']" in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_json_exits_1_with_invalid_json(tmp_path):
    path = tmp_path / "g.json"
    path.write_text("{oops")
    proc = nodeflow("validate", path, "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["errors"][0]["code"] == "invalid_json"


def test_usage_errors_exit_2():
    assert nodeflow("run").returncode == 2
    assert nodeflow("frobnicate").returncode == 2
    missing = nodeflow("run", "no/such/graph.json")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_bad_set_syntax_exits_2(graph_file):
    assert nodeflow("run", graph_file, "--set", "novalue").returncode == 2


def test_nodes_json_lists_schemas_and_compatibility_table():
    proc = nodeflow("nodes", "--json")
    catalogue = json.loads(proc.stdout)
    add = catalogue["nodes"]["core.add"]
    assert add["pack"] == "core" and [i["name"] for i in add["inputs"]] == ["a", "b"]
    assert "FLOAT" in catalogue["types"]["matrix"]["INT"]
