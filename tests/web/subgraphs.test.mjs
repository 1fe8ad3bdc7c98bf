// Subgraphs as documents (web/js/subgraphs.js): converting a selection, the schema an
// instance shows, opening one on litegraph's real graph and folding it back unchanged.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LGraph } from "../../web/vendor/litegraph.es.js";
import { loadDocument, toDocument } from "../../web/js/document.js";
import { configureLiteGraph } from "../../web/js/graphview.js";
import { registerNodeTypes, schemaOf } from "../../web/js/nodes.js";
import {
  canonical, convertToSubgraph, flatNodeIds, foldSubgraph, insideDocument, localId, subgraphSchema, validPath,
  SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS,
} from "../../web/js/subgraphs.js";
import { TypeTable } from "../../web/js/types.js";
import { CATALOGUE, VOCABULARY } from "./fixtures.mjs";

const types = new TypeTable(CATALOGUE.types);
configureLiteGraph(types);
registerNodeTypes(CATALOGUE, { types, literalTypes: VOCABULARY.literalTypes });
const canConnect = (a, b) => types.canConnect(a, b);
const catalogueSchema = (type) => CATALOGUE.nodes[type] ?? null;

const link = (node, output) => ({ node, output });
const doc = (nodes, inputs = {}, extra = {}) => ({ format: "nodeflow/graph", version: 2, nodes, inputs, meta: {}, ...extra });

/** int 1 -> add 3.a, int 2 -> add 3.b; add 3 -> add 4.a (b = 1.5); 4 -> show 5, 3 -> show 6. */
function arithmetic() {
  return doc(
    {
      1: { type: "core.int", inputs: { value: 3 }, ui: { pos: [0, 0] } },
      2: { type: "core.int", inputs: { value: 4 }, ui: { pos: [0, 200] } },
      3: { type: "core.add", inputs: { a: link("1", "out"), b: link("2", "out") }, ui: { pos: [300, 0] } },
      4: { type: "core.add", inputs: { a: link("3", "total"), b: 1.5 }, mode: "bypassed", ui: { pos: [600, 40] } },
      5: { type: "core.show", inputs: { value: link("4", "total") }, ui: { pos: [900, 0] } },
      6: { type: "core.show", inputs: { value: link("3", "total") }, ui: { pos: [900, 200] } },
    },
    { count: { node: "1", input: "value", description: "how many" } },
  );
}

test("links crossing the selection become the subgraph's inputs and outputs; literals and modes stay inside", () => {
  const { doc: out, name, instance } = convertToSubgraph(arithmetic(), ["3", "4"], { instanceId: "7" });
  assert.equal(name, "subgraph");
  assert.equal(instance, "7");
  assert.deepEqual(out.subgraphs.subgraph, {
    nodes: {
      3: { type: "core.add", inputs: {}, ui: { pos: [300, 0] } },
      4: { type: "core.add", inputs: { a: link("3", "total"), b: 1.5 }, mode: "bypassed", ui: { pos: [600, 40] } },
    },
    inputs: { a: { targets: [{ node: "3", input: "a" }] }, b: { targets: [{ node: "3", input: "b" }] } },
    outputs: { total: { node: "4", output: "total" }, total_2: { node: "3", output: "total" } },
  });
  assert.deepEqual(out.nodes["7"], { type: "subgraph:subgraph", inputs: { a: link("1", "out"), b: link("2", "out") }, ui: { pos: [300, 0] } });
  assert.deepEqual(out.nodes["5"].inputs, { value: link("7", "total") });
  assert.deepEqual(out.nodes["6"].inputs, { value: link("7", "total_2") });
  assert.deepEqual(Object.keys(out.nodes).sort(), ["1", "2", "5", "6", "7"]);
  assert.deepEqual(out.inputs, arithmetic().inputs); // node 1 stayed outside
});

test("one source feeding several selected inputs is one input with several targets", () => {
  const graph = arithmetic();
  graph.nodes["3"].inputs.b = link("1", "out");
  const { doc: out } = convertToSubgraph(graph, ["3", "4"], { instanceId: "7" });
  assert.deepEqual(out.subgraphs.subgraph.inputs, { a: { targets: [{ node: "3", input: "a" }, { node: "3", input: "b" }] } });
  assert.deepEqual(out.nodes["7"].inputs, { a: link("1", "out") });
});

test("a graph input on a selected node becomes an input of the subgraph node, with its literal", () => {
  const { doc: out } = convertToSubgraph(arithmetic(), ["1", "3"], { instanceId: "9", name: "counting" });
  const sub = out.subgraphs.counting;
  assert.deepEqual(sub.nodes["1"].inputs, {}); // the literal moved out to the instance
  assert.deepEqual(sub.inputs.count, { targets: [{ node: "1", input: "value" }], description: "how many" });
  assert.deepEqual(out.nodes["9"].inputs, { b: link("2", "out"), count: 3 });
  assert.deepEqual(out.inputs, { count: { node: "9", input: "count", description: "how many" } });
});

test("a second subgraph gets a name of its own, and nothing outside the selection moves", () => {
  const first = convertToSubgraph(arithmetic(), ["4"], { instanceId: "7" }).doc;
  const second = convertToSubgraph(first, ["2"], { instanceId: "8" });
  assert.equal(second.name, "subgraph_2");
  assert.deepEqual(Object.keys(second.doc.subgraphs), ["subgraph", "subgraph_2"]);
  assert.deepEqual(second.doc.nodes["3"].inputs, { a: link("1", "out"), b: link("8", "out") });
  assert.throws(() => convertToSubgraph(first, [], { instanceId: "8" }), /Select the nodes/);
});

test("an instance shows the subgraph's sockets with the inner types, widgets and literals", () => {
  const { doc: out } = convertToSubgraph(arithmetic(), ["1", "3"], { instanceId: "9" });
  const schema = subgraphSchema("subgraph", out.subgraphs, catalogueSchema, canConnect);
  assert.equal(schema.id, "subgraph:subgraph");
  assert.deepEqual(schema.inputs.map((s) => [s.name, s.type, s.optional]), [["b", "FLOAT", true], ["count", "INT", true]]);
  assert.deepEqual(schema.outputs.map((s) => [s.name, s.type]), [["total", "FLOAT"]]);
  // a literal left inside is what the instance's widget shows until it is set there
  out.subgraphs.subgraph.nodes["1"].inputs.value = 11;
  assert.equal(subgraphSchema("subgraph", out.subgraphs, catalogueSchema, canConnect).inputs[1].default, 11);
  // several targets: the narrowest type, so whatever feeds it fits them all
  out.subgraphs.subgraph.inputs.count.targets.push({ node: "3", input: "a" });
  assert.equal(subgraphSchema("subgraph", out.subgraphs, catalogueSchema, canConnect).inputs[1].type, "INT");
  assert.equal(subgraphSchema("nope", out.subgraphs, catalogueSchema), null);
  const selfish = { s: { nodes: { 1: { type: "subgraph:s", inputs: {} } }, inputs: {}, outputs: { o: { node: "1", output: "x" } } } };
  assert.equal(subgraphSchema("s", selfish, catalogueSchema).outputs[0].type, "*"); // contains itself: nothing to read
});

/** Open subgraph `name` of `root` on a real litegraph graph and save it back, untouched or after `edit(graph)`. */
function openAndLeave(root, name, edit = () => {}) {
  const graph = new LGraph();
  const inside = insideDocument(root, name, schemaOf(`subgraph:${name}`) ?? subgraphSchema(name, root.subgraphs, catalogueSchema, canConnect));
  const state = loadDocument(graph, inside, VOCABULARY);
  edit(graph);
  return { graph, inside, folded: foldSubgraph(root, name, toDocument(graph, state, VOCABULARY)) };
}

test("opening a subgraph and leaving it gives back the very same document", () => {
  const root = convertToSubgraph(arithmetic(), ["1", "3", "4"], { instanceId: "7" }).doc;
  const graph = new LGraph();
  loadDocument(graph, root, VOCABULARY); // registers the subgraph's class
  const { graph: opened, folded } = openAndLeave(root, "subgraph");
  assert.equal(JSON.stringify(folded), JSON.stringify(root));
  // the boundary nodes carry the sockets, linked where the subgraph's inputs and outputs are
  const boundary = (type) => opened.nodes.find((n) => n.type === type);
  assert.deepEqual(boundary(SUBGRAPH_INPUTS).outputs.map((s) => [s.name, s.type]), [["b", "FLOAT"], ["count", "INT"]]);
  assert.deepEqual(boundary(SUBGRAPH_OUTPUTS).inputs.map((s) => [s.name, s.type]), [["total", "FLOAT"], ["total_2", "FLOAT"]]);
  assert.equal(opened.links.size, 2 + 2 + 2); // b and count in, two inner links, two out
});

test("a document as the server stores it (defaults written out) also comes back byte for byte", () => {
  const root = convertToSubgraph(arithmetic(), ["3", "4"], { instanceId: "7" }).doc;
  const sub = root.subgraphs.subgraph;
  for (const spec of Object.values(sub.inputs)) spec.description = "";
  for (const spec of Object.values(sub.outputs)) spec.description = "";
  sub.meta = {};
  sub.nodes["3"].inputs = { b: 2 }; // a literal inside that an unset input leaves in force
  const graph = new LGraph();
  loadDocument(graph, root, VOCABULARY);
  assert.equal(JSON.stringify(openAndLeave(root, "subgraph").folded), JSON.stringify(root));
});

test("an edit inside changes that node of the subgraph only", () => {
  const root = convertToSubgraph(arithmetic(), ["3", "4"], { instanceId: "7" }).doc;
  const { folded } = openAndLeave(root, "subgraph", (graph) => {
    const inner = graph.nodes.find((n) => n.nf.id === "4");
    const widget = inner.widgets.find((w) => w.name === "b");
    widget.value = 2.5;
    inner.onWidgetChanged("b", 2.5, 1.5, widget);
  });
  const expected = structuredClone(root);
  expected.subgraphs.subgraph.nodes["4"].inputs.b = 2.5;
  assert.equal(canonical(folded), canonical(expected));
  assert.equal(folded.subgraphs.subgraph.nodes["3"], root.subgraphs.subgraph.nodes["3"]); // untouched: the same object
});

test("rewiring inside moves the targets; an output left unlinked is gone", () => {
  const root = convertToSubgraph(arithmetic(), ["3", "4"], { instanceId: "7" }).doc;
  const { folded } = openAndLeave(root, "subgraph", (graph) => {
    const inputs = graph.nodes.find((n) => n.type === SUBGRAPH_INPUTS);
    const outputs = graph.nodes.find((n) => n.type === SUBGRAPH_OUTPUTS);
    const four = graph.nodes.find((n) => n.nf.id === "4");
    inputs.connect(0, four, 1); // a also feeds 4.b now
    outputs.disconnectInput(1);
  });
  const sub = folded.subgraphs.subgraph;
  assert.deepEqual(sub.inputs.a.targets, [{ node: "3", input: "a" }, { node: "4", input: "b" }]);
  assert.deepEqual(Object.keys(sub.outputs), ["total"]);
  assert.deepEqual(sub.nodes["4"].inputs, { a: link("3", "total"), b: 1.5 }); // its literal applies when a is unset
});

test("ids runs report are flattened like the engine's; the canvas finds the node that shows each", () => {
  const root = convertToSubgraph(arithmetic(), ["3", "4"], { instanceId: "7" }).doc;
  root.nodes["2"].mode = "muted";
  assert.deepEqual(flatNodeIds(root).sort(), ["1", "5", "6", "7/3"]); // 7/4 is bypassed, 2 muted
  const top = new Set(Object.keys(root.nodes));
  assert.deepEqual(localId("7/3", "", (id) => top.has(id)), { id: "7", exact: false, inner: "3" });
  assert.deepEqual(localId("5", "", (id) => top.has(id)), { id: "5", exact: true, inner: null });
  assert.deepEqual(localId("7/3", "7/", (id) => id === "3"), { id: "3", exact: true, inner: null });
  assert.equal(localId("5", "7/", () => true), null);
  assert.deepEqual(validPath(root, [{ name: "subgraph", via: "7" }, { name: "gone", via: "3" }]), [{ name: "subgraph", via: "7" }]);
  assert.deepEqual(validPath(root, [{ name: "subgraph", via: "5" }]), []);
});
