"""Property tests: whatever document arrives, the answer is a structured error list.

Two generators, 1,000 documents each: arbitrary JSON values (malformed structures),
and graph-shaped documents mixing real node types, wrong names, literals of every
JSON kind and links to real or missing nodes. Valid ones are also run.
"""

from __future__ import annotations

import json

from _engine_nodes import make_registry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeflow.cache import Cache
from nodeflow.errors import ErrorInfo
from nodeflow.executor import Executor
from nodeflow.validate import validate

REGISTRY = make_registry()
KNOWN_CODES = {
    "invalid_json", "unsupported_version", "unknown_node_type", "missing_input", "unknown_input",
    "bad_link", "type_mismatch", "value_out_of_range", "invalid_value", "cycle", "unknown_graph_input",
    "empty_graph", "missing_file", "unknown_subgraph", "bad_subgraph", "subgraph_cycle",
}
RUN_CODES = {"node_failed", "mutated_input", "bad_output"}
TYPES = ["test.number", "test.count", "test.add", "test.tensor", "test.scale", "test.sum", "test.fail", "core.show", "core.join_text", "nope.x"]
NAMES = ["value", "a", "b", "latents", "factor", "size", "separator", "bogus"]
OUTPUTS = ["out", "latents", "total", "text", "zzz"]
IDS = ["1", "2", "3", "4", "5"]

json_leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
any_json = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=20)
link = st.fixed_dictionaries({"node": st.sampled_from(IDS + ["ghost"]), "output": st.sampled_from(OUTPUTS)})
value = link | json_leaf | st.lists(json_leaf, max_size=2)
node_doc = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={"inputs": st.dictionaries(st.sampled_from(NAMES), value, max_size=4), "ui": st.dictionaries(st.text(max_size=4), json_leaf, max_size=2)},
)
graph_input = st.fixed_dictionaries({"node": st.sampled_from(IDS + ["ghost"]), "input": st.sampled_from(NAMES)})
graph_doc = st.fixed_dictionaries(
    {"nodes": st.dictionaries(st.sampled_from(IDS), node_doc, max_size=5)},
    optional={
        "format": st.sampled_from(["nodeflow/graph", "other"]),
        "version": st.sampled_from([1, 1, 1, 0, 2, "1"]),
        "inputs": st.dictionaries(st.text(max_size=5), graph_input | any_json, max_size=2),
        "meta": any_json,
    },
)


def assert_structured(errors):
    assert isinstance(errors, list)
    for err in errors:
        assert isinstance(err, ErrorInfo) and err.code in KNOWN_CODES and err.message
        assert err.node is None or isinstance(err.node, str)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(any_json)
def test_arbitrary_json_values_give_structured_errors(data):
    assert_structured(validate(data if isinstance(data, dict) else json.dumps(data, allow_nan=True), REGISTRY))


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(graph_doc)
def test_graph_shaped_documents_validate_or_run_cleanly(doc):
    errors = validate(doc, REGISTRY)
    assert_structured(errors)
    if not errors:
        result = Executor(REGISTRY, Cache(budget_bytes=1 << 20)).run(doc)
        assert result.status in ("succeeded", "failed")
        assert all(e.code in RUN_CODES for e in result.errors)
