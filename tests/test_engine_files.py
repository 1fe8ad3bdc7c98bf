"""Files named in graphs: where they resolve, what their stamps cover, and the server's confinement."""

from __future__ import annotations

import json
import os

import pytest
from _engine_nodes import CALLS, make_registry

from nodeflow.executor import Executor
from nodeflow.files import NotAModel, PathResolver, stamp
from nodeflow.graph import load_graph
from nodeflow.validate import validate


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def read_graph(path: str) -> dict:
    return {"nodes": {"r": {"type": "test.read", "inputs": {"path": path}},
                      "show": {"type": "core.show", "inputs": {"value": {"node": "r", "output": "text"}}}}}


def test_a_relative_name_resolves_in_the_graph_files_folder_first(tmp_path, monkeypatch, registry):
    (tmp_path / "graphs" / "data").mkdir(parents=True)
    (tmp_path / "graphs" / "data" / "note.txt").write_text("beside the graph")
    (tmp_path / "cwd" / "data").mkdir(parents=True)
    (tmp_path / "cwd" / "data" / "note.txt").write_text("in the working dir")
    (tmp_path / "graphs" / "g.json").write_text(json.dumps(read_graph("data/note.txt")))
    monkeypatch.chdir(tmp_path / "cwd")
    result = Executor(registry, paths=PathResolver.create([tmp_path / "cwd"])).run(load_graph(tmp_path / "graphs" / "g.json"))
    assert result.status == "succeeded", result.errors
    assert result.values["show"]["text"] == repr("beside the graph")


def test_a_missing_file_is_a_validation_error_naming_node_input_and_folders(tmp_path, registry):
    errors = validate(read_graph("nope.txt"), registry, PathResolver.create([tmp_path]))
    assert [(e.code, e.node, e.input) for e in errors] == [("missing_file", "r", "path")]
    assert str(tmp_path) in errors[0].message


def test_replacing_a_named_file_reruns_the_node_that_reads_it(tmp_path, registry):
    (tmp_path / "a.txt").write_text("one")
    executor = Executor(registry, paths=PathResolver.create([tmp_path]))
    assert executor.run(read_graph("a.txt")).values["show"]["text"] == repr("one")
    assert executor.run(read_graph("a.txt")).nodes["show"].status == "cached"
    (tmp_path / "a.txt").write_text("two!")
    result = executor.run(read_graph("a.txt"))
    assert result.values["show"]["text"] == repr("two!") and CALLS["r"] == 2


def test_a_confined_resolver_reads_only_inside_its_folders_and_says_the_same_for_absent_files(tmp_path):
    inside = tmp_path / "inputs"
    inside.mkdir()
    (inside / "ok.txt").write_text("fine")
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path / "secret.txt", inside / "link.txt")
    paths = PathResolver.create([inside], confined=True)
    assert paths.resolve("ok.txt").read_text() == "fine"
    messages = []
    for name in (str(tmp_path / "secret.txt"), "../secret.txt", "link.txt", str(tmp_path / "absent.txt"), "absent.txt"):
        with pytest.raises(FileNotFoundError) as caught:
            paths.resolve(name)
        messages.append(str(caught.value).replace(name, "NAME"))
    assert len(set(messages)) == 1 and str(tmp_path) not in messages[0]


def test_a_model_folder_stamp_covers_only_the_files_a_loader_reads(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "unet" / "config.json").write_text("{}")
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 10)
    before = stamp(tmp_path)
    (tmp_path / "notes.md").write_text("not read by any loader")
    (tmp_path / "unet" / "deep").mkdir()
    (tmp_path / "unet" / "deep" / "w.safetensors").write_bytes(b"y" * 99)
    assert stamp(tmp_path) == before
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 11)
    assert stamp(tmp_path) != before


def test_a_folder_that_is_not_a_model_is_refused_without_walking_it(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    with pytest.raises(NotAModel, match="not a model"):
        stamp(tmp_path)
