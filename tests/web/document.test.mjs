// Canvas <-> graph document (web/js/document.js) on litegraph's real graph, without a
// browser: round trips, what the editor keeps for others, reroutes, groups.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LGraph } from "../../web/vendor/litegraph.es.js";
import { checkDocument, emptyDocument, loadDocument, toDocument } from "../../web/js/document.js";
import { configureLiteGraph } from "../../web/js/graphview.js";
import { registerNodeTypes } from "../../web/js/nodes.js";
import { TypeTable } from "../../web/js/types.js";
import { CATALOGUE, VOCABULARY } from "./fixtures.mjs";

const types = new TypeTable(CATALOGUE.types);
configureLiteGraph(types);
registerNodeTypes(CATALOGUE, { types, literalTypes: VOCABULARY.literalTypes });

function roundTrip(doc) {
  const graph = new LGraph();
  const state = loadDocument(graph, doc, VOCABULARY);
  return { graph, state, saved: toDocument(graph, state, VOCABULARY) };
}

const doc = (nodes, meta = {}, inputs = {}) => ({ format: "nodeflow/graph", version: 2, nodes, inputs, meta });

test("a document comes back exactly as it was", () => {
  const original = doc(
    {
      1: { type: "core.int", inputs: { value: 3 }, ui: { pos: [0, 0], title: "Count", collapsed: true, pinned: true, note: "kept" } },
      2: { type: "core.add", inputs: { a: { node: "1", output: "out" } }, ui: { pos: [300, 0], size: [260, 120] } },
      3: { type: "core.show", inputs: { value: { node: "2", output: "total" } }, ui: { pos: [600, 0] } },
    },
    { name: "demo", editor: { groups: [{ title: "G", bounding: [-10, -50, 400, 200], color: "#3f789e", font_size: 24, flags: {} }] } },
    { count: { node: "1", input: "value", description: "how many" } },
  );
  assert.deepEqual(roundTrip(original).saved, original);
});

test("inputs a document left out stay out, unknown inputs and missing node types are kept", () => {
  const original = doc({
    a: { type: "core.add", inputs: { a: 1.5, old_input: 3 }, ui: { pos: [0, 0] } },
    b: { type: "plugin.gone", inputs: { x: { node: "a", output: "total" }, mode: "fast" }, ui: { pos: [300, 0] } },
    c: { type: "core.show", inputs: { value: { node: "b", output: "result" } }, ui: { pos: [600, 0] } },
  });
  const { graph, saved } = roundTrip(original);
  assert.deepEqual(saved, original);
  assert.equal(graph.nodes.length, 3);
  assert.equal(graph.links.size, 2); // the stand-in for plugin.gone keeps both links drawn
});

test("reroutes are saved in meta.editor with the links they carry", () => {
  const original = doc(
    {
      1: { type: "core.int", inputs: { value: 2 }, ui: { pos: [0, 0] } },
      2: { type: "core.add", inputs: { a: { node: "1", output: "out" }, b: { node: "1", output: "out" } }, ui: { pos: [400, 0] } },
    },
    { editor: { reroutes: [
      { id: 1, pos: [200, 100], links: [{ node: "2", input: "a" }, { node: "2", input: "b" }] },
      { id: 2, pos: [300, 120], parent: 1, links: [{ node: "2", input: "a" }] },
    ] } },
  );
  const { graph, saved } = roundTrip(original);
  assert.deepEqual(saved, original);
  assert.equal(graph.reroutes.size, 2);
  const intoA = graph.getLink(graph.nodes.find((n) => n.nf.id === "2").inputs[0].link);
  assert.equal(intoA.parentId, 2); // the reroute nearest the input
});

test("a reroute whose links are gone is not saved", () => {
  const original = doc(
    { 1: { type: "core.int", inputs: {}, ui: { pos: [0, 0] } } },
    { editor: { reroutes: [{ id: 1, pos: [5, 5], links: [{ node: "9", input: "a" }] }] } },
  );
  assert.deepEqual(roundTrip(original).saved.meta, {});
});

test("a graph without positions is laid out by dependency", () => {
  const { saved } = roundTrip(doc({
    s: { type: "core.show", inputs: { value: { node: "a", output: "total" } } },
    a: { type: "core.add", inputs: { a: { node: "i", output: "out" } } },
    i: { type: "core.int", inputs: {} },
  }));
  const x = (id) => saved.nodes[id].ui.pos[0];
  assert.ok(x("i") < x("a") && x("a") < x("s"));
});

test("a link the types refuse is kept in the document for validation to explain", () => {
  const original = doc({
    1: { type: "core.add", inputs: {}, ui: { pos: [0, 0] } },
    2: { type: "core.int", inputs: { value: { node: "1", output: "total" } }, ui: { pos: [300, 0] } },
  });
  const { graph, saved } = roundTrip(original);
  assert.equal(graph.links.size, 0); // FLOAT -> INT is not drawn
  assert.deepEqual(saved, original);
});

test("a version 1 document opens and is written in the server's version", () => {
  const original = { ...doc({ 1: { type: "core.int", inputs: { value: 4 }, ui: { pos: [0, 0] } } }), version: 1 };
  const { saved } = roundTrip(original);
  assert.equal(saved.version, 2);
  assert.deepEqual({ ...saved, version: 1 }, original);
});

test("node modes are kept", () => {
  const original = doc({ 1: { type: "core.int", inputs: {}, mode: "muted", ui: { pos: [0, 0] } } });
  assert.deepEqual(roundTrip(original).saved, original);
});

test("an input saved under a socket's former name takes its current name", () => {
  const catalogue = structuredClone(CATALOGUE);
  catalogue.nodes["core.add"].inputs[0].aliases = ["x"];
  registerNodeTypes(catalogue, { types, literalTypes: VOCABULARY.literalTypes });
  try {
    const { saved } = roundTrip(doc({
      1: { type: "core.int", inputs: {}, ui: { pos: [0, 0] } },
      2: { type: "core.add", inputs: { x: { node: "1", output: "out" }, b: 2 }, ui: { pos: [300, 0] } },
    }));
    assert.deepEqual(saved.nodes["2"].inputs, { a: { node: "1", output: "out" }, b: 2 });
  } finally {
    registerNodeTypes(CATALOGUE, { types, literalTypes: VOCABULARY.literalTypes });
  }
});

test("documents of another format or version are refused with a sentence", () => {
  assert.match(checkDocument({ format: "comfy" }, VOCABULARY), /not a nodeflow graph/);
  assert.match(checkDocument({ version: 9 }, VOCABULARY), /version 9 is not supported/);
  assert.match(checkDocument({ version: 0 }, VOCABULARY), /version 0 is not supported/);
  assert.match(checkDocument([], VOCABULARY), /JSON object/);
  assert.equal(checkDocument(emptyDocument(VOCABULARY), VOCABULARY), null);
  assert.throws(() => loadDocument(new LGraph(), { version: 9 }, VOCABULARY), /not supported/);
});
