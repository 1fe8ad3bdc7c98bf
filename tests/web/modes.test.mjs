// Node modes (web/js/modes.js, commands.js): what Ctrl+M and Ctrl+B do, how a mode is kept
// on litegraph's node and written in the document.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LGraph, LGraphEventMode } from "../../web/vendor/litegraph.es.js";
import { Commands, takesMode } from "../../web/js/commands.js";
import { loadDocument, toDocument } from "../../web/js/document.js";
import { configureLiteGraph } from "../../web/js/graphview.js";
import { BYPASSED, litegraphMode, modeMenuLabel, modeOf, MUTED, toggledModes } from "../../web/js/modes.js";
import { registerNodeTypes } from "../../web/js/nodes.js";
import { TypeTable } from "../../web/js/types.js";
import { CATALOGUE, VOCABULARY } from "./fixtures.mjs";

const types = new TypeTable(CATALOGUE.types);
configureLiteGraph(types);
registerNodeTypes(CATALOGUE, { types, literalTypes: VOCABULARY.literalTypes });

test("Ctrl+M mutes the selection; pressed again on muted nodes it unmutes them", () => {
  assert.deepEqual(toggledModes(["active", "active"], MUTED), ["muted", "muted"]);
  assert.deepEqual(toggledModes(["muted", "muted"], MUTED), ["active", "active"]);
  assert.deepEqual(toggledModes(["muted", "bypassed", "active"], MUTED), ["muted", "muted", "muted"]); // a mixed selection ends in one mode
  assert.deepEqual(toggledModes(["bypassed"], BYPASSED), ["active"]);
  assert.throws(() => toggledModes(["active"], "active"), /cannot toggle/);
  assert.equal(modeMenuLabel(["muted", "active"], MUTED), "Mute");
  assert.equal(modeMenuLabel(["muted"], MUTED), "Unmute");
  assert.equal(modeMenuLabel(["bypassed"], BYPASSED), "Stop bypassing");
});

test("modes are litegraph's numbers on the canvas, ComfyUI's ones", () => {
  assert.equal(litegraphMode("muted"), LGraphEventMode.NEVER);
  assert.equal(litegraphMode("bypassed"), LGraphEventMode.BYPASS);
  assert.equal(litegraphMode(undefined), LGraphEventMode.ALWAYS);
  assert.equal(modeOf({ mode: LGraphEventMode.BYPASS }), "bypassed");
  assert.equal(modeOf({ mode: LGraphEventMode.ON_EVENT }), "active"); // litegraph's other modes mean nothing here
});

const doc = (nodes) => ({ format: "nodeflow/graph", version: 2, nodes, inputs: {}, meta: {} });

test("a mode set on the canvas is written in the document, active ones are not written", () => {
  const graph = new LGraph();
  const state = loadDocument(graph, doc({
    1: { type: "core.int", inputs: {}, mode: "bypassed", ui: { pos: [0, 0] } },
    2: { type: "plugin.gone", inputs: {}, mode: "muted", ui: { pos: [300, 0] } },
    3: { type: "core.int", inputs: {}, mode: "sleeping", ui: { pos: [600, 0] } },
  }), VOCABULARY);
  const [one, two] = ["1", "2"].map((id) => graph.nodes.find((n) => n.nf.id === id));
  assert.equal(one.mode, LGraphEventMode.BYPASS);
  one.mode = litegraphMode("active");
  two.mode = litegraphMode("bypassed"); // a missing plugin's node too
  const saved = toDocument(graph, state, VOCABULARY).nodes;
  assert.equal("mode" in saved["1"], false);
  assert.equal(saved["2"].mode, "bypassed");
  assert.equal(saved["3"].mode, "sleeping"); // unknown here: kept for the engine to judge
});

function scene(selected) {
  const graph = new LGraph();
  const subgraph = { nodes: { a: { type: "core.int", inputs: {} } }, inputs: {}, outputs: { out: { node: "a", output: "out" } } };
  loadDocument(graph, { ...doc({
    1: { type: "core.int", inputs: {}, ui: { pos: [0, 0] } },
    2: { type: "core.add", inputs: {}, mode: "muted", ui: { pos: [300, 0] } },
    3: { type: "subgraph:s", inputs: {}, ui: { pos: [600, 0] } },
  }), subgraphs: { s: subgraph } }, VOCABULARY);
  const nodes = Object.fromEntries(graph.nodes.map((n) => [n.nf.id, n]));
  const said = [];
  let edits = 0;
  const commands = new Commands({
    view: { canvas: { selected_nodes: Object.fromEntries(selected.map((id) => [id, nodes[id]])) }, redraw() {} },
    workspace: { changed: () => edits++ },
    toast: { show: (m) => said.push(m) },
  });
  return { nodes, commands, said, edits: () => edits };
}

test("the keys act on the selection, leave subgraph nodes alone and say why when nothing can take a mode", () => {
  const { nodes, commands, said, edits } = scene(["1", "2", "3"]);
  assert.equal(takesMode(nodes["3"]), false);
  assert.ok(commands.toggleMode(MUTED));
  assert.deepEqual(["1", "2", "3"].map((id) => modeOf(nodes[id])), ["muted", "muted", "active"]);
  assert.equal(edits(), 1);
  const alone = scene(["3"]);
  assert.equal(alone.commands.toggleMode(BYPASSED), false);
  assert.match(alone.said[0], /subgraph node has no mode of its own/);
  assert.deepEqual(said, []);
});

test("a node's menu acts on it alone unless it is part of the selection", () => {
  const { nodes, commands } = scene(["1"]);
  const entries = (node) => commands.menu(node).map((e) => e.content);
  assert.deepEqual(entries(nodes["2"]), ["Unmute", "Bypass", "Convert to subgraph"]); // 2 is not selected: its own mode
  assert.deepEqual(entries(nodes["1"]), ["Mute", "Bypass", "Convert to subgraph"]);
  assert.deepEqual(entries(nodes["3"]), ["Open subgraph", "Convert to subgraph"]);
  commands.menu(nodes["2"])[0].callback();
  assert.equal(modeOf(nodes["2"]), "active");
  assert.equal(modeOf(nodes["1"]), "active");
});
