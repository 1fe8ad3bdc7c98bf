"""The executor: runs only what is needed, caches by signature, reports and cancels."""

from __future__ import annotations

import pytest
import torch
from _engine_nodes import CALLS, link, make_registry

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.node import CancelToken


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def chain_graph(value: float = 1.0, factor: float = 2.0) -> dict:
    return {
        "nodes": {
            "a": {"type": "test.number", "inputs": {"value": value}},
            "t": {"type": "test.tensor", "inputs": {"value": link("a")}},
            "s": {"type": "test.scale", "inputs": {"latents": link("t", "latents"), "factor": factor}},
            "sum": {"type": "test.sum", "inputs": {"latents": link("s")}},
            "unused": {"type": "test.number", "inputs": {"value": 5.0}},
        }
    }


def test_runs_only_what_output_nodes_need():
    result = Executor(make_registry()).run(chain_graph())
    assert result.status == "succeeded"
    assert result.values["sum"]["total"] == pytest.approx(1.0 * 2.0 * 64)
    assert "unused" not in CALLS and "unused" not in result.nodes


def test_second_identical_run_executes_no_node():
    executor = Executor(make_registry())
    executor.run(chain_graph())
    CALLS.clear()
    result = executor.run(chain_graph())
    assert result.status == "succeeded"
    assert sum(CALLS.values()) == 0
    assert result.values["sum"]["total"] == pytest.approx(128.0)


def test_changing_one_literal_reruns_only_that_node_and_descendants():
    executor = Executor(make_registry())
    executor.run(chain_graph())
    CALLS.clear()
    result = executor.run(chain_graph(factor=3.0))
    assert dict(CALLS) == {"s": 1, "sum": 1}
    # "t" comes from the cache, so "a" (which only feeds it) is not needed at all.
    assert result.nodes["t"].status == "cached" and result.nodes["a"].status == "not_needed"
    assert result.values["sum"]["total"] == pytest.approx(192.0)


def test_identical_subgraphs_share_one_result():
    graph = {
        "nodes": {
            "a1": {"type": "test.number", "inputs": {"value": 2.0}},
            "a2": {"type": "test.number", "inputs": {"value": 2.0}},
            "sum": {"type": "test.add", "inputs": {"a": link("a1"), "b": link("a2")}},
        }
    }
    executor = Executor(make_registry())
    executor.run(graph)
    CALLS.clear()
    graph["nodes"]["a3"] = {"type": "test.number", "inputs": {"value": 2.0}}
    graph["nodes"]["sum"]["inputs"]["b"] = link("a3")
    executor.run(graph)
    assert sum(CALLS.values()) == 0


def test_int_output_widens_into_float_input():
    graph = {
        "nodes": {
            "i": {"type": "test.count", "inputs": {"value": 3}},
            "sum": {"type": "test.add", "inputs": {"a": link("i"), "b": 0.5}},
        }
    }
    result = Executor(make_registry()).run(graph)
    assert result.values["sum"]["out"] == 3.5


def test_in_place_mutation_of_an_input_fails_the_run_with_a_clear_error():
    graph = {
        "nodes": {
            "t": {"type": "test.tensor", "inputs": {}},
            "bad": {"type": "test.bad_scale", "inputs": {"latents": link("t", "latents")}},
            "sum": {"type": "test.sum", "inputs": {"latents": link("bad")}},
        }
    }
    result = Executor(make_registry()).run(graph)
    assert result.status == "failed"
    (error,) = result.errors
    assert (error.code, error.node, error.input) == ("mutated_input", "bad", "latents")
    assert "in place" in error.message


def test_failing_node_is_named_and_earlier_results_stay_cached():
    graph = {
        "nodes": {
            "a": {"type": "test.number", "inputs": {"value": 1.0}},
            "f": {"type": "test.fail", "inputs": {"value": link("a")}},
            "sum": {"type": "test.add", "inputs": {"a": link("f")}},
        }
    }
    executor = Executor(make_registry())
    result = executor.run(graph)
    assert result.status == "failed"
    assert result.errors[0].node == "f" and "boom" in result.errors[0].message
    assert result.nodes["sum"].status == "skipped"
    CALLS.clear()
    executor.run(graph)
    assert "a" not in CALLS and CALLS["f"] == 1


def test_events_cover_start_cached_progress_and_finish():
    events = []
    executor = Executor(make_registry())
    graph = {"nodes": {"s": {"type": "test.slow", "inputs": {"steps": 3}}, "sum": {"type": "test.add", "inputs": {"a": link("s")}}}}
    executor.run(graph, on_event=events.append)
    kinds = [(e.type, e.node) for e in events]
    assert kinds[0] == ("run_started", None) and kinds[-1] == ("run_finished", None)
    assert [e.data["value"] for e in events if e.type == "progress"] == [1, 2, 3]
    finished = [e for e in events if e.type == "node_finished"]
    assert {e.node for e in finished} == {"s", "sum"} and all(e.data["seconds"] >= 0 for e in finished)
    events.clear()
    executor.run(graph, on_event=events.append)
    # "sum" is served from the cache; "s" feeds only it, so it is not needed and not reported as cached.
    assert [e.type for e in events] == ["run_started", "node_cached", "run_finished"]
    assert [e.node for e in events if e.type == "node_cached"] == ["sum"]


def test_cancel_inside_a_long_node_stops_within_one_step():
    token = CancelToken()
    seen = []

    def on_event(event):
        if event.type == "progress":
            seen.append(event.data["value"])
            token.cancel()

    graph = {"nodes": {"s": {"type": "test.slow", "inputs": {"steps": 50}}}}
    result = Executor(make_registry()).run(graph, on_event=on_event, cancel=token)
    assert result.status == "cancelled"
    assert seen == [1]
    assert result.errors[0].code == "cancelled"


def test_cancel_between_nodes_runs_nothing_more():
    token = CancelToken()
    token.cancel()
    result = Executor(make_registry()).run(chain_graph(), cancel=token)
    assert result.status == "cancelled" and sum(CALLS.values()) == 0


def test_output_files_are_reported_also_when_cached(tmp_path):
    graph = {"nodes": {"a": {"type": "test.number", "inputs": {"value": 4.0}}, "w": {"type": "test.write", "inputs": {"value": link("a")}}}}
    executor = Executor(make_registry())
    first = executor.run(graph, output_dir=tmp_path)
    second = executor.run(graph, output_dir=tmp_path)
    assert [o["path"] for o in first.outputs] == [str(tmp_path / "value_w.txt")]
    assert second.outputs == first.outputs and second.nodes["w"].status == "cached"


def test_lru_budget_evicts_least_recently_used_entries():
    cache = Cache(budget_bytes=3 * 4 * 64 * 4)  # room for three 1x4x8x8 float32 tensors
    for i in range(5):
        cache.put(f"k{i}", {"x": torch.zeros(1, 4, 8, 8)})
    assert cache.get("k0") is None and cache.get("k1") is None
    assert cache.get("k4") is not None and cache.stats()["bytes"] <= cache.budget_bytes


def test_disk_tier_serves_a_fresh_cache_object(tmp_path):
    graph = chain_graph()
    Executor(make_registry(), Cache(disk_dir=tmp_path)).run(graph)
    CALLS.clear()
    result = Executor(make_registry(), Cache(disk_dir=tmp_path)).run(graph)
    assert sum(CALLS.values()) == 0 and result.nodes["sum"].status == "cached"
    assert (tmp_path / "index.json").is_file()


def test_run_with_unknown_graph_input_fails_before_running():
    result = Executor(make_registry()).run(chain_graph(), inputs={"nope": 1})
    assert result.status == "failed" and result.errors[0].code == "unknown_graph_input"
    assert sum(CALLS.values()) == 0


def test_impure_node_fed_by_a_link_gets_none_in_its_fingerprint_and_still_runs():
    from nodeflow.node import Input, Output, node

    seen = []

    @node("test.impure_echo", category="test", pure=False)
    class ImpureEcho:
        """Echoes its input; its fingerprint records what it was given."""

        value = Input("FLOAT")
        out = Output("FLOAT")

        def fingerprint(self, ctx, value):
            seen.append(value)
            return "same"

        def run(self, ctx, value):
            return value

    registry = make_registry()
    registry.add(ImpureEcho, "test")
    graph = {"nodes": {"a": {"type": "test.number", "inputs": {"value": 2.0}}, "e": {"type": "test.impure_echo", "inputs": {"value": link("a")}}}}
    result = Executor(registry).run(graph)
    assert result.status == "succeeded" and result.values["e"]["out"] == 2.0
    assert seen == [None]


def test_a_fingerprint_that_raises_fails_the_run_naming_the_node():
    from nodeflow.node import Input, Output, node

    @node("test.bad_fingerprint", category="test", pure=False)
    class BadFingerprint:
        """Its fingerprint fails."""

        value = Input("FLOAT", default=1.0)
        out = Output("FLOAT")

        def fingerprint(self, ctx, value):
            raise OSError("file vanished")

        def run(self, ctx, value):
            return value

    registry = make_registry()
    registry.add(BadFingerprint, "test")
    result = Executor(registry).run({"nodes": {"b": {"type": "test.bad_fingerprint"}}})
    assert result.status == "failed"
    assert result.errors[0].node == "b" and "file vanished" in result.errors[0].message
