// Shared fixtures of the editor's unit tests: a server vocabulary and a small catalogue,
// shaped as GET /api/nodes sends them.
import { HANDLED_EVENTS, readVocabulary } from "../../web/js/vocabulary.js";

export const VOCABULARY_JSON = {
  events: ["run_started", "node_started", "node_cached", "node_finished", "node_failed", "node_cancelled", "progress", "preview", "output", "run_finished"],
  node_statuses: ["pending", "skipped", "running", "ran", "cached", "not_needed", "failed", "cancelled", "muted", "bypassed"],
  run_statuses: ["queued", "running", "succeeded", "failed", "cancelled"],
  final_run_statuses: ["succeeded", "failed", "cancelled"],
  literal_types: ["BOOL", "FLOAT", "INT", "STRING"],
  messages: [...HANDLED_EVENTS],
};
export const GRAPH_JSON = { format: "nodeflow/graph", version: 2 };

export const VOCABULARY = readVocabulary({ vocabulary: VOCABULARY_JSON, graph: GRAPH_JSON });

const input = (name, type, extra = {}) => ({
  name, type, display_name: name, description: "", optional: false, has_default: false, default: null,
  min: null, max: null, step: null, choices: null, multiline: false, widget: null, ...extra,
});

export const CATALOGUE = {
  nodes: {
    "core.int": {
      id: "core.int", display_name: "Integer", category: "primitives", description: "An integer.", version: "1.0.0",
      inputs: [input("value", "INT", { has_default: true, default: 0 })], outputs: [{ name: "out", type: "INT" }], output_node: false,
    },
    "core.add": {
      id: "core.add", display_name: "Add", category: "math", description: "Add two numbers.", version: "1.0.0",
      inputs: [input("a", "FLOAT", { has_default: true, default: 0 }), input("b", "FLOAT", { has_default: true, default: 0 })],
      outputs: [{ name: "total", type: "FLOAT" }], output_node: false,
    },
    "core.show": {
      id: "core.show", display_name: "Show Value", category: "utils", description: "Show a value.", version: "1.0.0",
      inputs: [input("value", "*")], outputs: [], output_node: true,
    },
  },
  types: {
    any: "*", widenings: [["INT", "FLOAT"]],
    matrix: { INT: ["FLOAT", "INT", "*"], FLOAT: ["FLOAT", "*"] },
    types: { INT: { color: "#6ab0de" }, FLOAT: { color: "#7ab" } },
  },
  errors: [],
  vocabulary: VOCABULARY_JSON,
  graph: GRAPH_JSON,
};
