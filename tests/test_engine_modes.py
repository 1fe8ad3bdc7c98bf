"""Node modes (muted, bypassed), subgraphs and renamed sockets: what the graph says is what runs."""

from __future__ import annotations

import pytest
from _engine_nodes import CALLS, link, make_registry

from nodeflow.executor import Executor
from nodeflow.graph import dump_graph, parse_graph
from nodeflow.validate import validate


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def chain(mode_of_scale: str = "active") -> dict:
    """number -> tensor -> scale -> sum, plus an independent number -> write branch."""
    return {
        "nodes": {
            "a": {"type": "test.number", "inputs": {"value": 1.0}},
            "t": {"type": "test.tensor", "inputs": {"value": link("a")}},
            "s": {"type": "test.scale", "inputs": {"latents": link("t", "latents"), "factor": 3.0}, "mode": mode_of_scale},
            "sum": {"type": "test.sum", "inputs": {"latents": link("s")}},
            "b": {"type": "test.number", "inputs": {"value": 2.0}},
            "w": {"type": "test.write", "inputs": {"value": link("b")}},
        }
    }


def test_a_muted_node_does_not_run_nor_does_anything_that_needs_it(registry, tmp_path):
    result = Executor(registry).run(chain("muted"), output_dir=tmp_path)
    assert result.status == "succeeded"
    assert "s" not in CALLS and "sum" not in CALLS
    assert CALLS["w"] == 1  # the branch that does not need it still runs
    assert result.nodes["s"].status == "muted" and result.nodes["sum"].status == "muted"
    assert "sum" not in result.values


def test_a_bypassed_node_passes_its_input_through_to_the_output_of_the_same_type(registry, tmp_path):
    bypassed = Executor(registry).run(chain("bypassed"), output_dir=tmp_path)
    without = {k: v for k, v in chain()["nodes"].items() if k != "s"}
    without["sum"] = {"type": "test.sum", "inputs": {"latents": link("t", "latents")}}
    plain = Executor(registry).run({"nodes": without}, output_dir=tmp_path)
    assert bypassed.status == plain.status == "succeeded"
    assert bypassed.values["sum"]["total"] == plain.values["sum"]["total"] == 64.0  # not scaled by 3
    assert bypassed.nodes["s"].status == "bypassed" and "s" not in CALLS


def test_bypass_with_no_input_of_the_output_type_mutes_what_needs_that_output(registry):
    graph = {"nodes": {
        "a": {"type": "test.number", "inputs": {"value": 1.0}},
        "t": {"type": "test.tensor", "inputs": {"value": link("a")}, "mode": "bypassed"},  # FLOAT in, LATENTS out
        "sum": {"type": "test.sum", "inputs": {"latents": link("t", "latents")}},
    }}
    result = Executor(registry).run(graph)
    assert result.status == "succeeded" and result.nodes["sum"].status == "muted" and "sum" not in CALLS


def test_an_optional_input_linked_to_a_muted_node_is_left_unconnected(registry):
    graph = {"nodes": {
        "n": {"type": "test.count", "inputs": {"value": 5}, "mode": "muted"},
        "c": {"type": "test.checked", "inputs": {"low": 1.0, "high": 4.0, "count": link("n")}},
    }}
    result = Executor(registry).run(graph)
    assert result.status == "succeeded", result.errors
    assert result.values["c"]["out"] == 3.0 and result.nodes["n"].status == "muted"


def test_modes_round_trip_and_active_is_not_written(registry):
    doc = parse_graph(chain("bypassed"))
    text = dump_graph(doc)
    assert '"mode": "bypassed"' in text and text.count('"mode"') == 1
    assert parse_graph(text) == doc


def subgraph_doc(instances: int = 1) -> dict:
    """A subgraph "tripled" (tensor -> scale x3) used ``instances`` times, each feeding a sum."""
    nodes = {"a": {"type": "test.number", "inputs": {"value": 2.0}}}
    for i in range(instances):
        nodes[f"g{i}"] = {"type": "subgraph:tripled", "inputs": {"value": link("a")}}
        nodes[f"sum{i}"] = {"type": "test.sum", "inputs": {"latents": {"node": f"g{i}", "output": "latents"}}}
    return {
        "nodes": nodes,
        "subgraphs": {"tripled": {
            "nodes": {"t": {"type": "test.tensor", "inputs": {}},
                      "s": {"type": "test.scale", "inputs": {"latents": link("t", "latents"), "factor": 3.0}}},
            "inputs": {"value": {"targets": [{"node": "t", "input": "value"}]}},
            "outputs": {"latents": {"node": "s", "output": "out"}},
        }},
    }


def test_a_subgraph_runs_like_the_nodes_it_holds(registry):
    result = Executor(registry).run(subgraph_doc())
    assert result.status == "succeeded", result.errors
    assert result.values["sum0"]["total"] == 2.0 * 3.0 * 64
    assert result.nodes["g0/t"].status == "ran" and result.nodes["g0/s"].status == "ran"


def test_inner_nodes_are_cached_per_node_so_two_identical_instances_share_results(registry):
    result = Executor(registry).run(subgraph_doc(instances=2))
    assert result.status == "succeeded"
    assert CALLS["g0/t"] + CALLS["g1/t"] == 1  # same signature: computed once
    assert result.values["sum0"] == result.values["sum1"]


def test_errors_inside_a_subgraph_name_the_outer_and_inner_ids(registry):
    doc = subgraph_doc()
    doc["subgraphs"]["tripled"]["nodes"]["s"]["inputs"]["factor"] = "three"
    errors = validate(doc, registry)
    assert [(e.node, e.input, e.code) for e in errors] == [("g0/s", "factor", "invalid_value")]


def test_an_unknown_subgraph_and_a_self_containing_one_are_errors(registry):
    unknown = {"nodes": {"g": {"type": "subgraph:nope"}}}
    assert [e.code for e in validate(unknown, registry)] == ["unknown_subgraph"]
    looped = {"nodes": {"g": {"type": "subgraph:loop"}},
              "subgraphs": {"loop": {"nodes": {"inner": {"type": "subgraph:loop"}}}}}
    assert "subgraph_cycle" in {e.code for e in validate(looped, registry)}


def test_nested_subgraphs_flatten_to_slash_paths(registry):
    doc = subgraph_doc()
    doc["subgraphs"]["outer"] = {
        "nodes": {"inner": {"type": "subgraph:tripled", "inputs": {}}},
        "inputs": {"value": {"targets": [{"node": "inner", "input": "value"}]}},
        "outputs": {"latents": {"node": "inner", "output": "latents"}},
    }
    doc["nodes"]["g0"]["type"] = "subgraph:outer"
    result = Executor(registry).run(doc)
    assert result.status == "succeeded", result.errors
    assert result.values["sum0"]["total"] == 2.0 * 3.0 * 64 and "g0/inner/s" in result.nodes


def test_graph_inputs_can_set_a_subgraph_input(registry):
    doc = subgraph_doc()
    doc["nodes"]["g0"]["inputs"] = {"value": 5.0}
    doc["inputs"] = {"v": {"node": "g0", "input": "value"}}
    result = Executor(registry).run(doc, inputs={"v": 1.0})
    assert result.status == "succeeded", result.errors
    assert result.values["sum0"]["total"] == 1.0 * 3.0 * 64


def test_sockets_saved_under_a_former_name_still_connect(registry):
    graph = {"nodes": {
        "r": {"type": "test.renamed", "inputs": {"old_in": 4.0}},
        "add": {"type": "test.add", "inputs": {"a": {"node": "r", "output": "old_out"}, "b": 1.0}},
    }}
    assert validate(graph, registry) == []
    result = Executor(registry).run(graph, targets=["add"])
    assert result.status == "succeeded" and result.values["add"]["out"] == 5.0
