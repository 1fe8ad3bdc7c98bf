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


def test_values_of_the_results_are_printed_and_reported_in_json(tmp_path):
    path = tmp_path / "show.json"
    path.write_text(json.dumps({"nodes": {
        "t": {"type": "core.join_text", "inputs": {"a": "hello", "b": "world"}},
        "show": {"type": "core.show", "inputs": {"value": {"node": "t", "output": "text"}}},
    }}))
    plain = nodeflow("run", path, "--out", tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "show: 'hello, world'" in plain.stdout.splitlines()
    report = json.loads(nodeflow("run", path, "--out", tmp_path, "--json").stdout)
    assert report["values"] == {"show": {"text": "'hello, world'"}}


def test_a_graph_with_no_nodes_is_an_error_not_a_success(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text('{"nodes": {}}')
    proc = nodeflow("run", path, "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["errors"][0]["code"] == "empty_graph"


def test_ctrl_c_exits_130_without_a_traceback(tmp_path, plugin_dir):
    path = tmp_path / "interrupt.json"
    path.write_text(json.dumps({"nodes": {"i": {"type": "test.interrupt", "inputs": {}},
                                          "show": {"type": "core.show", "inputs": {"value": {"node": "i", "output": "out"}}}}}))
    proc = nodeflow("run", path, "--plugins", plugin_dir, "--out", tmp_path)
    assert proc.returncode == 130 and "interrupted" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unavailable_or_unknown_device_is_a_usage_error_before_anything_loads(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is available here")
    cuda = nodeflow("run", "txt2img", "--device", "cuda", "--out", tmp_path)
    assert cuda.returncode == 2 and "no CUDA" in cuda.stderr and "Traceback" not in cuda.stderr
    bogus = nodeflow("run", "txt2img", "--device", "tpu7", "--out", tmp_path)
    assert bogus.returncode == 2 and "unknown device" in bogus.stderr
    assert not (tmp_path / "txt2img_save_00000.png").exists()


def test_progress_bars_are_drawn_only_on_a_terminal(graph_file, plugin_dir, tmp_path):
    proc = nodeflow("run", graph_file, "--plugins", plugin_dir, "--out", tmp_path)
    assert proc.returncode == 0
    # stderr is a pipe here: only the one-line summary, no bar redraws (tqdm writes '\r' and 'node/s').
    assert "\r" not in proc.stderr and "node/s" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("succeeded in ")


def test_validate_accepts_set_and_checks_the_values_it_sets(graph_file, plugin_dir):
    ok = nodeflow("validate", graph_file, "--plugins", plugin_dir, "--set", "factor=3", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    bad = nodeflow("validate", graph_file, "--plugins", plugin_dir, "--set", "factor=\"x\"", "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["errors"][0]["input"] == "factor"


def test_shipped_workflows_run_by_name_and_by_path_from_another_folder(tmp_path):
    workflows = Path(__file__).resolve().parent.parent / "workflows"
    by_name = nodeflow("run", "txt2img", "--set", "steps=2", "--json", "--out", tmp_path / "a", cwd=tmp_path)
    by_path = nodeflow("run", workflows / "img2img.json", "--set", "steps=2", "--json", "--out", tmp_path / "b", cwd=tmp_path)
    for proc in (by_name, by_path):
        assert proc.returncode == 0, proc.stderr
        assert all(Path(p).is_file() for p in json.loads(proc.stdout)["outputs"])


def test_problems_that_need_no_model_are_reported_by_validate_before_anything_loads(tmp_path):
    proc = nodeflow("validate", "img2img", "--json", "--set", "scheduler=warp_drive", "--set", "strength=0.01",
                    "--set", "image=nowhere.png", "--set", "steps=20", cwd=tmp_path)
    errors = {(e["node"], e["input"], e["code"]) for e in json.loads(proc.stdout)["errors"]}
    assert proc.returncode == 1
    assert errors == {("scheduler", "name", "invalid_value"), ("init", "strength", "invalid_value"),
                      ("image", "path", "missing_file")}
    sizes = nodeflow("validate", "txt2img", "--json", "--set", "width=100", cwd=tmp_path)
    assert [(e["input"], e["code"]) for e in json.loads(sizes.stdout)["errors"]] == [("width", "invalid_value")]


class _Custom:
    """Anything a weights-only unpickler refuses."""


def test_the_pickle_refusal_does_not_offer_torchs_weights_only_false_advice(tmp_path):
    import torch

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"x": _Custom()}}, path)
    from nodeflow.models.single_file import CheckpointError, read_state_dict

    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path, allow_pickle=True)
    assert "weights_only` set to `False`" not in str(caught.value) and "weights_only=False" not in str(caught.value)
    assert "Unsupported global" in str(caught.value)
