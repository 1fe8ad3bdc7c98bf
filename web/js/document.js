// Converts between the litegraph canvas and the nodeflow graph document
// ({"format", "version", "nodes", "inputs", "subgraphs", "meta"}), the one file format the
// CLI runs and the server stores. The format's name and version come from the server's
// vocabulary (vocabulary.js). Editor-only data goes under a node's "ui" or the graph's
// "meta.editor" (groups, reroutes), which the executor ignores.
//
// Round trips are exact for what the editor understands: node ids, input order,
// literals left out of a document (so their default applies) stay left out, unknown
// "ui" keys and unknown inputs are carried through untouched, node modes are kept, and
// a node whose type the server does not know is kept verbatim (see MissingNode). The
// document's subgraphs travel beside the canvas (each gets a node class first, so its
// instances have their sockets); subgraphs.js edits them.
//
// Only litegraph's public API is used: graph.nodes, graph.groups, graph.reroutes,
// graph.getLink(), graph.setReroute().

import { LGraphGroup, LiteGraph } from "../vendor/litegraph.es.js";
import { ACTIVE, litegraphMode, modeOf } from "./modes.js";
import { MISSING_TYPE, registerSubgraphTypes } from "./nodes.js";
import { isLink } from "./subgraphs.js";

export { isLink };

/** An empty graph document in the server's format. */
export function emptyDocument(vocabulary) {
  return { format: vocabulary.graphFormat, version: vocabulary.graphVersion, nodes: {}, inputs: {}, meta: {} };
}

/** Problems that stop a document from loading at all (the server validates the rest); null when none. */
export function checkDocument(doc, vocabulary) {
  const { graphFormat, graphVersion } = vocabulary;
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) return "a graph must be a JSON object";
  if ((doc.format ?? graphFormat) !== graphFormat) return `not a nodeflow graph (format ${JSON.stringify(doc.format)})`;
  // older versions are this one without its additions (version 1: no node modes, no subgraphs)
  const version = doc.version ?? graphVersion;
  if (!Number.isInteger(version) || version < 1 || version > graphVersion)
    return `graph format version ${doc.version} is not supported by this editor (it reads versions 1 to ${graphVersion})`;
  if (doc.nodes !== undefined && (typeof doc.nodes !== "object" || Array.isArray(doc.nodes))) return "'nodes' must be an object";
  return null;
}

/** Place nodes that have no ui.pos in columns by depth, so a hand-written graph is readable. */
function layout(doc) {
  const depth = {};
  const ids = Object.keys(doc.nodes);
  const deps = Object.fromEntries(
    ids.map((id) => [id, Object.values(doc.nodes[id]?.inputs || {}).filter(isLink).map((l) => l.node).filter((n) => n in doc.nodes)]),
  );
  // longest-path depth in topological order (Kahn): linear, no recursion; nodes on a
  // cycle (invalid anyway) keep depth 0
  const consumers = Object.fromEntries(ids.map((id) => [id, []]));
  const waiting = {};
  for (const id of ids) {
    depth[id] = 0;
    waiting[id] = deps[id].length;
    for (const dep of deps[id]) consumers[dep].push(id);
  }
  const ready = ids.filter((id) => waiting[id] === 0);
  while (ready.length) {
    const id = ready.pop();
    for (const next of consumers[id]) {
      depth[next] = Math.max(depth[next], depth[id] + 1);
      if (--waiting[next] === 0) ready.push(next);
    }
  }
  const rows = {};
  const positions = {};
  for (const id of ids) {
    const column = depth[id];
    rows[column] = (rows[column] || 0) + 1;
    positions[id] = [40 + column * 300, 40 + (rows[column] - 1) * 220];
  }
  return positions;
}

/**
 * Replace the canvas's graph with `doc`. Returns the graph-level state the editor
 * keeps beside the canvas: {inputs, meta, extra} (extra: unknown top-level keys).
 */
export function loadDocument(graph, doc, vocabulary) {
  const problem = checkDocument(doc, vocabulary);
  if (problem) throw new Error(problem);
  const nodesDoc = doc.nodes || {};
  graph.clear();
  registerSubgraphTypes(doc.subgraphs);
  const byId = createNodes(nodesDoc);
  addStandInSlots(nodesDoc, byId);
  for (const node of byId.values()) graph.add(node, true);
  connectLinks(nodesDoc, byId);
  graph.updateExecutionOrder();
  addGroups(graph, doc.meta?.editor?.groups);
  addReroutes(graph, doc.meta?.editor?.reroutes, byId);
  const { format, version, nodes, inputs, meta, ...extra } = doc;
  return { inputs: structuredClone(inputs || {}), meta: structuredClone(meta || {}), extra: structuredClone(extra) };
}

function createNodes(nodesDoc) {
  const positions = layout({ nodes: nodesDoc });
  const byId = new Map();
  for (const [id, nodeDoc] of Object.entries(nodesDoc)) {
    const known = nodeDoc && typeof nodeDoc.type === "string" && LiteGraph.registered_node_types[nodeDoc.type] && nodeDoc.type !== MISSING_TYPE;
    const node = LiteGraph.createNode(known ? nodeDoc.type : MISSING_TYPE);
    node.nf.id = String(id);
    const ui = nodeDoc?.ui && typeof nodeDoc.ui === "object" ? nodeDoc.ui : {};
    applyUi(node, ui);
    applyMode(node, nodeDoc?.mode);
    if (node.nf.boundary) {
      node.nf.raw = structuredClone(nodeDoc);
      node.setSockets(nodeDoc.sockets);
    } else if (!known) {
      node.nf.raw = structuredClone(nodeDoc ?? {});
      node.title = ui.title ?? `${nodeDoc?.type ?? "?"} (missing)`;
    } else {
      applyInputs(node, nodeDoc.inputs || {});
    }
    if (!node.nf.hasPos) node.pos = positions[id];
    byId.set(String(id), node);
  }
  return byId;
}

function applyMode(node, mode) {
  const number = litegraphMode(mode);
  if (number !== undefined) node.mode = number;
  else node.nf.unknownMode = mode; // a spelling this editor does not know: kept, for the engine to judge
}

/** The `mode` a node's document gets: none when active (the default), else its spelling. */
function modeField(node) {
  const mode = modeOf(node);
  if (mode !== ACTIVE) return mode;
  return node.nf.unknownMode;
}

function applyUi(node, ui) {
  const { pos, size, title, collapsed, pinned, color, bgcolor, randomize, ...uiExtra } = ui;
  node.nf.uiExtra = uiExtra;
  if (title !== undefined) {
    node.title = title;
    node.nf.hadTitle = true; // keep it in the document even when it equals the default
  }
  if (color) node.color = node.nf.hadColor = color;
  if (bgcolor) node.bgcolor = node.nf.hadBgcolor = bgcolor;
  if (collapsed) node.flags.collapsed = true;
  if (pinned) node.flags.pinned = true;
  if (Array.isArray(randomize)) node.properties.randomize = randomize.slice();
  if (Array.isArray(pos) && pos.length === 2) {
    node.pos = [Number(pos[0]), Number(pos[1])];
    node.nf.hasPos = true;
  }
  if (Array.isArray(size) && size.length === 2) {
    node.size = [Number(size[0]), Number(size[1])];
    node.nf.sized = true;
  }
}

/** Which outputs of each node are linked, and into what, so a stand-in can offer matching slots. */
function wantedOutputs(nodesDoc) {
  const wanted = new Map();
  for (const [id, nodeDoc] of Object.entries(nodesDoc)) {
    for (const [name, value] of Object.entries(nodeDoc?.inputs || {})) {
      if (!isLink(value)) continue;
      const list = wanted.get(value.node) || [];
      list.push({ output: value.output, consumer: id, input: name });
      wanted.set(value.node, list);
    }
  }
  return wanted;
}

/** Stand-ins for missing node types get the slots their links need before anything is connected. */
function addStandInSlots(nodesDoc, byId) {
  const wanted = wantedOutputs(nodesDoc);
  for (const [id, node] of byId) {
    if (!node.nf.raw || node.nf.boundary) continue;
    for (const [name, value] of Object.entries(node.nf.raw.inputs || {})) {
      if (!isLink(value)) continue;
      const type = byId.get(value.node)?.outputs?.find((o) => o.name === value.output)?.type ?? "*";
      node.addInput(name, type);
    }
    const seen = new Set();
    for (const use of wanted.get(id) || []) {
      if (seen.has(use.output)) continue;
      seen.add(use.output);
      const type = byId.get(use.consumer)?.inputs?.find((i) => i.name === use.input)?.type ?? "*";
      node.addOutput(use.output, type);
    }
    node.size = node.nf.sized ? node.size : [Math.max(240, node.computeSize()[0]), Math.max(60, node.computeSize()[1])];
  }
}

function connectLinks(nodesDoc, byId) {
  for (const [id, nodeDoc] of Object.entries(nodesDoc)) {
    const target = byId.get(String(id));
    for (const [name, value] of Object.entries(nodeDoc?.inputs || {})) {
      if (!isLink(value)) continue;
      const source = byId.get(value.node);
      const inName = currentName(target.constructor.nfSchema?.inputs, name);
      const outName = currentName(source?.constructor.nfSchema?.outputs, value.output);
      const inIndex = target.inputs?.findIndex((s) => s.name === inName) ?? -1;
      const outIndex = source?.outputs?.findIndex((s) => s.name === outName) ?? -1;
      if (inIndex < 0 || outIndex < 0) {
        // a link the canvas cannot draw (missing node or output): keep it in the document
        target.nf.extraInputs[name] = value;
        continue;
      }
      const link = source.connect(outIndex, target, inIndex);
      if (!link) target.nf.extraInputs[name] = value; // refused (type mismatch): keep it, validation will say why
    }
  }
}

function addGroups(graph, groups) {
  if (!Array.isArray(groups)) return;
  for (const g of groups) {
    const group = new LGraphGroup(g.title);
    group.configure({ ...g, id: -1 });
    graph.add(group);
  }
}

/** The litegraph link drawn into input `input` of node `node` (ids as in the document), if any. */
function linkInto(byId, target) {
  const node = byId.get(String(target?.node));
  const name = currentName(node?.constructor.nfSchema?.inputs, target?.input);
  const slot = node?.inputs?.find((s) => s.name === name);
  return slot?.link != null ? slot.link : null;
}

/**
 * Reroutes are saved as {id, pos, parent?, links: [{node, input}]}: the links passing
 * through, named by the input they end at (litegraph's link ids are not part of the
 * document). A link's last reroute before its input is the one no other reroute on the
 * same link names as its parent.
 */
function addReroutes(graph, reroutes, byId) {
  if (!Array.isArray(reroutes)) return;
  const through = new Map(); // link id -> [reroute ids]
  for (const r of reroutes) {
    if (!r || !Number.isInteger(r.id) || !Array.isArray(r.pos)) continue;
    const linkIds = (r.links || []).map((t) => linkInto(byId, t)).filter((id) => id != null);
    if (!linkIds.length) continue; // its links are gone: nothing to route
    graph.setReroute({ id: r.id, parentId: r.parent ?? undefined, pos: [Number(r.pos[0]), Number(r.pos[1])], linkIds });
    for (const linkId of linkIds) through.set(linkId, [...(through.get(linkId) || []), r]);
  }
  for (const [linkId, list] of through) {
    const parents = new Set(list.map((r) => r.parent));
    const last = list.find((r) => !parents.has(r.id));
    const link = graph.getLink(linkId);
    if (link && last) link.parentId = last.id;
  }
}

/** A socket's current name: `name` itself, or the socket that lists it among its former names (aliases). */
function currentName(specs, name) {
  return (specs || []).find((s) => s.name === name || (s.aliases || []).includes(name))?.name ?? name;
}

function applyInputs(node, inputs) {
  const schema = node.constructor.nfSchema;
  node.nf.set = new Set();
  for (const [saved, value] of Object.entries(inputs)) {
    const name = currentName(schema.inputs, saved);
    const spec = schema.inputs.find((i) => i.name === name);
    if (!spec) {
      node.nf.extraInputs[name] = value; // unknown to this version of the node: keep it
      continue;
    }
    if (isLink(value)) continue; // connected after all nodes exist
    if (!node.constructor.nfLiteral.has(name)) {
      node.nf.extraInputs[name] = value; // a literal where only links fit: keep it, validation reports it
      continue;
    }
    const widget = node.widgets?.find((w) => w.name === name);
    if (widget) {
      widget.value = value;
      node.nf.set.add(name);
    }
  }
  for (const name of node.properties.randomize || []) {
    const toggle = node.widgets?.find((w) => w.name === `${name}:each_run`);
    if (toggle) toggle.value = true;
  }
}

function linkValue(graph, node, slotIndex) {
  const link = graph.getLink(node.inputs[slotIndex].link);
  if (!link) return undefined;
  const source = graph.getNodeById(link.origin_id);
  if (!source?.nf) return undefined;
  return { node: source.nf.id, output: source.outputs[link.origin_slot].name };
}

function nodeUi(node) {
  const ui = { ...node.nf.uiExtra, pos: [Math.round(node.pos[0]), Math.round(node.pos[1])] };
  if (node.nf.sized) ui.size = [Math.round(node.size[0]), Math.round(node.size[1])];
  const defaultTitle = node.nf.raw ? `${node.nf.raw.type ?? "?"} (missing)` : node.constructor.title;
  if (node.nf.hadTitle || node.title !== defaultTitle) ui.title = node.title;
  if (node.flags?.collapsed) ui.collapsed = true;
  if (node.flags?.pinned) ui.pinned = true;
  if (node.color && (node.nf.hadColor || node.color !== node.nf.defaultColor)) ui.color = node.color;
  if (node.bgcolor && (node.nf.hadBgcolor || node.bgcolor !== node.nf.defaultBgcolor)) ui.bgcolor = node.bgcolor;
  if (node.properties?.randomize?.length) ui.randomize = node.properties.randomize.slice();
  return ui;
}

/** The document node for one canvas node. */
export function nodeDocument(graph, node) {
  const ui = nodeUi(node);
  if (node.nf.raw) {
    const raw = structuredClone(node.nf.raw);
    raw.inputs = { ...(raw.inputs || {}) };
    for (const [i, slot] of (node.inputs || []).entries()) {
      const link = linkValue(graph, node, i);
      if (link) raw.inputs[slot.name] = link;
      else delete raw.inputs[slot.name];
    }
    raw.ui = { ...(raw.ui || {}), ...ui };
    const mode = modeField(node);
    if (mode !== undefined) raw.mode = mode;
    else delete raw.mode;
    return raw;
  }
  const schema = node.constructor.nfSchema;
  const inputs = {};
  for (const [i, spec] of schema.inputs.entries()) {
    const link = linkValue(graph, node, i);
    if (link) inputs[spec.name] = link;
    else if (spec.name in node.nf.extraInputs) inputs[spec.name] = node.nf.extraInputs[spec.name];
    else if (node.nf.set.has(spec.name)) {
      const widget = node.widgets?.find((w) => w.name === spec.name);
      if (widget) inputs[spec.name] = widget.value;
    }
  }
  for (const [name, value] of Object.entries(node.nf.extraInputs)) {
    if (!(name in inputs) && !schema.inputs.some((s) => s.name === name)) inputs[name] = value;
  }
  const mode = modeField(node);
  return mode !== undefined ? { type: node.type, inputs, mode, ui } : { type: node.type, inputs, ui };
}

function rerouteDocuments(graph) {
  const saved = [];
  for (const reroute of graph.reroutes.values()) {
    const links = [];
    for (const linkId of reroute.linkIds) {
      const link = graph.getLink(linkId);
      const target = link && graph.getNodeById(link.target_id);
      const input = target?.inputs?.[link.target_slot]?.name;
      if (target?.nf && input) links.push({ node: target.nf.id, input });
    }
    if (!links.length) continue; // a reroute whose links were all removed routes nothing
    const entry = { id: reroute.id, pos: [Math.round(reroute.pos[0]), Math.round(reroute.pos[1])], links };
    if (reroute.parentId != null) entry.parent = reroute.parentId;
    saved.push(entry);
  }
  return saved;
}

function setEditorMeta(meta, key, list) {
  if (list.length) meta.editor = { ...(meta.editor || {}), [key]: list };
  else if (meta.editor) {
    delete meta.editor[key];
    if (!Object.keys(meta.editor).length) delete meta.editor;
  }
}

/** The whole graph document for the canvas plus the editor's graph-level state. */
export function toDocument(graph, state, vocabulary) {
  const nodes = {};
  for (const node of graph.nodes) {
    if (!node.nf) continue;
    nodes[node.nf.id] = nodeDocument(graph, node);
  }
  // an exposed input whose node was deleted goes with it
  const inputs = Object.fromEntries(Object.entries(state.inputs || {}).filter(([, target]) => target && target.node in nodes));
  const meta = structuredClone(state.meta || {});
  const groups = graph.groups.map((g) => {
    const { id, ...rest } = g.serialize();
    return rest;
  });
  setEditorMeta(meta, "groups", groups);
  setEditorMeta(meta, "reroutes", rerouteDocuments(graph));
  return { ...structuredClone(state.extra || {}), format: vocabulary.graphFormat, version: vocabulary.graphVersion, nodes, inputs, meta };
}
