"""Model affinity: a job's models are named by the very keys the model store files them under."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeflow.backends.affinity import affinity, keys_on, wanted_models
from nodeflow.files import PathResolver


def loader_graph(model: str = "default", dtype: str = "auto") -> dict:
    """Load Model with ``model`` exposed as the graph input ``checkpoint``, feeding ``core.show``."""
    return {"nodes": {"load": {"type": "sd.load_model", "inputs": {"model": model, "dtype": dtype}},
                      "show": {"type": "core.show", "inputs": {"value": {"node": "load", "output": "scheduler_config"}}}},
            "inputs": {"checkpoint": {"node": "load", "input": "model"}}}


@pytest.fixture(scope="module")
def store(tiny_sd_dir):
    """A model store that loaded the tiny model once, as a job's Load Model node with dtype and device "auto" does."""
    from nodeflow.models import ModelStore

    models = ModelStore(device="cpu")
    models.load_sd(tiny_sd_dir)
    return models


def test_the_keys_computed_for_a_job_are_the_keys_the_store_holds_after_loading_its_model(store, tiny_sd_dir):
    wants = wanted_models(loader_graph(), {"checkpoint": tiny_sd_dir.name}, PathResolver.create([tiny_sd_dir.parent]))
    assert keys_on(wants, store.resolve_device(None), store.dtype) == set(store.held())
    assert affinity(wants, store.held(), "cpu", None) == 1


def test_another_dtype_or_device_is_another_model(store, tiny_sd_dir):
    fp16 = wanted_models(loader_graph(str(tiny_sd_dir), dtype="fp16"), {}, None)
    auto = wanted_models(loader_graph(str(tiny_sd_dir)), {}, None)
    assert affinity(fp16, store.held(), "cpu", None) == 0
    assert affinity(auto, store.held(), "cuda", None) == 0  # on a GPU worker auto means fp16 on cuda
    assert affinity(auto, store.held(), "cpu", "bf16") == 0  # a worker whose store defaults to bf16
    assert affinity(auto, store.held(), "cpu", None) == 1


def test_a_prediction_type_override_is_another_model(store, tiny_sd_dir):
    graph = loader_graph(str(tiny_sd_dir))
    graph["nodes"]["load"]["inputs"]["prediction"] = "v_prediction"
    wants = wanted_models(graph, {}, None)
    assert affinity(wants, store.held(), "cpu", None) == 0

    from nodeflow.models import ModelStore

    store_v = ModelStore(device="cpu")
    store_v.load_sd(tiny_sd_dir, prediction_type="v_prediction")
    assert keys_on(wants, "cpu", None) == set(store_v.held())


def test_a_model_that_cannot_be_found_or_a_linked_path_adds_no_preference(tmp_path: Path):
    missing = wanted_models(loader_graph(str(tmp_path / "nowhere")), {}, None)
    linked = loader_graph()
    linked["nodes"]["load"]["inputs"]["model"] = {"node": "name", "output": "text"}
    assert missing == () and wanted_models(linked, {}, None) == ()
    assert wanted_models("not a graph", {}, None) == ()
