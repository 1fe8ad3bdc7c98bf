// Subgraphs in the graph document, as pure functions of documents (no canvas, no DOM).
//
// The format is the engine's (nodeflow/graph.py, nodeflow/expand.py): a document may
// define `subgraphs: {NAME: {nodes, inputs: {name: {targets: [{node, input}]}},
// outputs: {name: {node, output}}}}` and use one as a node of type `subgraph:NAME`; the
// engine flattens them before it checks anything, naming inner nodes `outer/inner`
// (runs and errors report those ids). Definitions live at the top of the document, also
// those used inside other subgraphs.
//
// Here:
//   convertToSubgraph   a selection becomes a subgraph and one node using it
//   subgraphSchema      the node schema an instance shows (its sockets, from the inner nodes)
//   insideDocument      the document the canvas shows while a subgraph is open: its
//                       nodes plus two boundary nodes carrying its inputs and outputs
//   foldSubgraph        the whole document again, with what was edited inside
//   validPath, flatNodeIds, localId   which subgraphs are open; the ids runs report

import { ACTIVE } from "./modes.js";

/** A node of type `subgraph:NAME` runs the document's subgraph NAME (nodeflow/graph.py SUBGRAPH_PREFIX). */
export const SUBGRAPH_PREFIX = "subgraph:";
/** Between the ids of an instance and a node inside it, in the ids the engine reports (`outer/inner`). */
export const PATH_SEPARATOR = "/";
/** Editor-only node types: where a subgraph's inputs come in and its outputs leave, while it is open. */
export const SUBGRAPH_INPUTS = "nodeflow/subgraph-inputs";
export const SUBGRAPH_OUTPUTS = "nodeflow/subgraph-outputs";
/** How deep subgraphs may nest before the editor stops following them (the engine's MAX_DEPTH). */
const MAX_DEPTH = 32;

export function isLink(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    Object.keys(value).length === 2 &&
    typeof value.node === "string" &&
    typeof value.output === "string"
  );
}

/** The subgraph a node type runs (`subgraph:NAME` -> NAME), or null. */
export function subgraphName(type) {
  return typeof type === "string" && type.startsWith(SUBGRAPH_PREFIX) ? type.slice(SUBGRAPH_PREFIX.length) : null;
}

export function isBoundaryType(type) {
  return type === SUBGRAPH_INPUTS || type === SUBGRAPH_OUTPUTS;
}

/** `base`, else `base_2`, `base_3`... whichever is not a key of `taken`. */
export function uniqueName(base, taken) {
  if (!(base in taken)) return base;
  let i = 2;
  while (`${base}_${i}` in taken) i++;
  return `${base}_${i}`;
}

/** JSON with sorted keys: two documents that differ only in key order read the same. */
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .filter((k) => value[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

/** `before` when `now` says the same thing (so unchanged parts keep their key order), else `now`. */
function keepIfSame(now, before) {
  return before !== undefined && canonical(now) === canonical(before) ? before : now;
}

// -- converting a selection -----------------------------------------------------------------
/**
 * Put the nodes `ids` of the document `doc` into a new subgraph and put one node using
 * it (id `instanceId`) in their place. Links crossing the selection's boundary become
 * the subgraph's inputs (one per source output, feeding every selected input it fed) and
 * outputs (one per selected output used outside); literals inside stay inside. A graph
 * input (`doc.inputs`) that sets an input of a selected node would name a node that is
 * no longer at the top, where the engine looks graph inputs up: it becomes an input of
 * the subgraph, set on the new node (with the literal it had), and the graph input names
 * that. Returns {doc, name, instance}; `doc` is a new document.
 */
export function convertToSubgraph(doc, ids, { instanceId, name = "subgraph" }) {
  const chosen = new Set(ids.filter((id) => doc.nodes?.[id] && !isBoundaryType(doc.nodes[id].type)));
  if (!chosen.size) throw new Error("Select the nodes to put in the subgraph first");
  if (doc.nodes[instanceId]) throw new Error(`node id '${instanceId}' is taken`);
  const outer = structuredClone(doc);
  const subName = uniqueName(name, outer.subgraphs || {});
  const sub = { nodes: {}, inputs: {}, outputs: {} };
  const instance = { type: SUBGRAPH_PREFIX + subName, inputs: {}, ui: { pos: corner([...chosen].map((id) => outer.nodes[id])) } };
  for (const id of Object.keys(outer.nodes)) {
    if (!chosen.has(id)) continue;
    sub.nodes[id] = outer.nodes[id];
    delete outer.nodes[id];
  }
  linksIn(sub, chosen, instance);
  promoteGraphInputs(outer, sub, chosen, instance, instanceId);
  linksOut(outer, sub, chosen, instanceId);
  outer.nodes[instanceId] = instance;
  outer.subgraphs = { ...(outer.subgraphs || {}), [subName]: sub };
  rerouteLinks(outer, sub, chosen, instanceId);
  return { doc: outer, name: subName, instance: instanceId };
}

function corner(nodes) {
  const placed = nodes.map((n) => n.ui?.pos).filter((p) => Array.isArray(p) && p.length === 2);
  if (!placed.length) return [0, 0];
  return [Math.min(...placed.map((p) => p[0])), Math.min(...placed.map((p) => p[1]))];
}

/** Links from outside into selected nodes: one subgraph input per source output. */
function linksIn(sub, chosen, instance) {
  const bySource = new Map();
  for (const [id, nd] of Object.entries(sub.nodes)) {
    for (const [input, value] of Object.entries(nd.inputs || {})) {
      if (!isLink(value) || chosen.has(value.node)) continue;
      const source = `${value.node}\u0000${value.output}`;
      let name = bySource.get(source);
      if (name === undefined) {
        name = uniqueName(input, sub.inputs);
        bySource.set(source, name);
        sub.inputs[name] = { targets: [] };
        instance.inputs[name] = value;
      }
      sub.inputs[name].targets.push({ node: id, input });
      delete nd.inputs[input];
    }
  }
}

function feeding(sub, node, input) {
  return Object.keys(sub.inputs).find((name) => sub.inputs[name].targets.some((t) => t.node === node && t.input === input));
}

/** Graph inputs that set inputs of selected nodes now set inputs of the instance. */
function promoteGraphInputs(outer, sub, chosen, instance, instanceId) {
  for (const [graphInput, target] of Object.entries(outer.inputs || {})) {
    if (!chosen.has(target?.node)) continue;
    const crossing = feeding(sub, target.node, target.input);
    const value = sub.nodes[target.node].inputs?.[target.input];
    if (crossing === undefined && isLink(value)) {
      delete outer.inputs[graphInput]; // it set a value made inside: nothing outside can set it now
      continue;
    }
    let name = crossing;
    if (name === undefined) {
      name = uniqueName(graphInput, sub.inputs);
      sub.inputs[name] = { targets: [{ node: target.node, input: target.input }] };
      if (target.description) sub.inputs[name].description = target.description;
      if (value !== undefined) {
        instance.inputs[name] = value;
        delete sub.nodes[target.node].inputs[target.input];
      }
    }
    outer.inputs[graphInput] = { ...target, node: instanceId, input: name };
  }
}

/** Links from selected nodes to the rest: one subgraph output per selected output used outside. */
function linksOut(outer, sub, chosen, instanceId) {
  const byOutput = new Map();
  for (const nd of Object.values(outer.nodes)) {
    for (const [input, value] of Object.entries(nd.inputs || {})) {
      if (!isLink(value) || !chosen.has(value.node)) continue;
      const source = `${value.node}\u0000${value.output}`;
      let name = byOutput.get(source);
      if (name === undefined) {
        name = uniqueName(value.output, sub.outputs);
        byOutput.set(source, name);
        sub.outputs[name] = { node: value.node, output: value.output };
      }
      nd.inputs[input] = { node: instanceId, output: name };
    }
  }
}

/** Reroutes name links by the input they end at: links into selected nodes now end at the instance (or are inside). */
function rerouteLinks(outer, sub, chosen, instanceId) {
  const reroutes = outer.meta?.editor?.reroutes;
  if (!Array.isArray(reroutes)) return;
  for (const reroute of reroutes) {
    const links = [];
    for (const link of reroute.links || []) {
      const moved = chosen.has(link.node) ? feeding(sub, link.node, link.input) : null;
      const now = !chosen.has(link.node) ? link : moved !== undefined ? { node: instanceId, input: moved } : null;
      if (now && !links.some((l) => l.node === now.node && l.input === now.input)) links.push(now);
    }
    reroute.links = links; // a reroute left with none is dropped when the document is drawn
  }
}

// -- what an instance looks like --------------------------------------------------------------
const ANY_INPUT = {
  type: "*", description: "", optional: true, has_default: false, default: null,
  min: null, max: null, step: null, choices: null, multiline: false, widget: null,
};

/**
 * The node schema of `subgraph:NAME` (the shape of GET /api/nodes' schemas): an input per
 * subgraph input, typed like the inner input it feeds (the narrowest when it feeds
 * several: `canConnect(a, b)` says whether a value of type a fits b), with that input's
 * widget and, as its default, the literal inside; an output per subgraph output, typed
 * like the inner output. `schemaOf(type)` gives the catalogue's schemas. Null when the
 * subgraph is not defined (or contains itself).
 */
export function subgraphSchema(name, subgraphs, schemaOf, canConnect = (a, b) => a === b, seen = []) {
  const sub = subgraphs?.[name];
  if (!sub || seen.includes(name) || seen.length >= MAX_DEPTH) return null;
  const inner = (type) => {
    const nested = subgraphName(type);
    return nested === null ? schemaOf(type) : subgraphSchema(nested, subgraphs, schemaOf, canConnect, [...seen, name]);
  };
  const count = Object.keys(sub.nodes || {}).length;
  return {
    id: SUBGRAPH_PREFIX + name,
    display_name: name,
    category: "subgraphs",
    description: `Subgraph "${name}": ${count} node${count === 1 ? "" : "s"}`,
    version: "",
    output_node: false,
    inputs: Object.entries(sub.inputs || {}).map(([input, spec]) => instanceInput(input, spec, sub, inner, canConnect)),
    outputs: Object.entries(sub.outputs || {}).map(([output, spec]) => {
      const found = findSpec(inner(sub.nodes?.[spec?.node]?.type)?.outputs, spec?.output);
      return { name: output, display_name: output, type: found?.type ?? "*", description: spec?.description || found?.description || "" };
    }),
  };
}

function findSpec(specs, name) {
  return (specs || []).find((s) => s.name === name || (s.aliases || []).includes(name)) ?? null;
}

function instanceInput(name, spec, sub, inner, canConnect) {
  const fed = (spec?.targets || []).flatMap((t) => {
    const node = sub.nodes?.[t.node];
    const found = findSpec(inner(node?.type)?.inputs, t.input);
    return found ? [{ spec: found, value: node.inputs?.[t.input] ?? node.inputs?.[found.name] }] : [];
  });
  const narrowest = fed.find((f) => fed.every((o) => canConnect(f.spec.type, o.spec.type))) ?? fed[0];
  const base = narrowest?.spec ?? ANY_INPUT;
  const literal = narrowest && narrowest.value !== undefined && !isLink(narrowest.value);
  const settled = (f) => f.spec.optional || f.spec.has_default || (f.value !== undefined && !isLink(f.value));
  return {
    ...base,
    name,
    display_name: name,
    aliases: [],
    description: spec?.description || base.description || "",
    // left unset, the inner literal (or the inner input's default) applies
    optional: fed.every(settled),
    has_default: literal || Boolean(base.has_default),
    default: literal ? narrowest.value : base.default,
  };
}

// -- editing a subgraph ---------------------------------------------------------------------------
function bounds(nodes) {
  const placed = Object.values(nodes).map((n) => n?.ui?.pos).filter((p) => Array.isArray(p) && p.length === 2);
  if (!placed.length) return { x0: 40, y0: 40, x1: 640 };
  return { x0: Math.min(...placed.map((p) => p[0])), y0: Math.min(...placed.map((p) => p[1])), x1: Math.max(...placed.map((p) => p[0])) + 260 };
}

/**
 * The document the canvas shows while subgraph `name` of `root` is open: its nodes, and
 * two boundary nodes (editor-only types) whose sockets are the subgraph's inputs
 * (outputs of the first, linked to the inner inputs they feed) and outputs (inputs of
 * the second, linked from the inner outputs they are). `schema` is subgraphSchema()'s.
 * The other subgraphs come along (`subgraphs`), so instances inside are drawn too.
 */
export function insideDocument(root, name, schema) {
  const sub = root.subgraphs?.[name];
  if (!sub) throw new Error(`this graph has no subgraph '${name}'`);
  const nodes = structuredClone(sub.nodes || {});
  const inId = uniqueName("inputs", nodes);
  const outId = uniqueName("outputs", { ...nodes, [inId]: true });
  for (const [input, spec] of Object.entries(sub.inputs || {})) {
    for (const target of spec?.targets || []) {
      const node = nodes[target.node];
      if (node) node.inputs = { ...(node.inputs || {}), [target.input]: { node: inId, output: input } };
    }
  }
  const leaving = {};
  for (const [output, spec] of Object.entries(sub.outputs || {})) {
    if (nodes[spec?.node]) leaving[output] = { node: spec.node, output: spec.output };
  }
  const box = bounds(nodes);
  const sockets = (specs) => specs.map((s) => ({ name: s.name, type: s.type }));
  nodes[inId] = { type: SUBGRAPH_INPUTS, inputs: {}, sockets: sockets(schema.inputs), ui: { pos: [box.x0 - 300, box.y0] } };
  nodes[outId] = { type: SUBGRAPH_OUTPUTS, inputs: leaving, sockets: sockets(schema.outputs), ui: { pos: [box.x1 + 80, box.y0] } };
  return { format: root.format, version: root.version, nodes, inputs: {}, meta: structuredClone(sub.meta || {}), subgraphs: root.subgraphs || {} };
}

/**
 * The whole document again: `root` with subgraph `name` as the canvas now shows it
 * (`inside`, an insideDocument() after editing). Inner inputs linked from the inputs
 * node are the subgraph inputs' targets again (a literal they had inside comes back:
 * it applies when the instance leaves that input unset); links into the outputs node
 * are its outputs (one left unlinked is gone). What did not change is returned as it
 * was, key order included, so opening and leaving a subgraph changes nothing.
 */
export function foldSubgraph(root, name, inside) {
  const original = root.subgraphs?.[name] ?? {};
  const inId = Object.keys(inside.nodes).find((id) => inside.nodes[id].type === SUBGRAPH_INPUTS);
  const outId = Object.keys(inside.nodes).find((id) => inside.nodes[id].type === SUBGRAPH_OUTPUTS);
  const nodes = {};
  const targets = {};
  for (const [id, node] of Object.entries(inside.nodes)) {
    if (id === inId || id === outId) continue;
    const inputs = {};
    for (const [input, value] of Object.entries(node.inputs || {})) {
      if (!(isLink(value) && value.node === inId)) {
        inputs[input] = value;
        continue;
      }
      (targets[value.output] ||= []).push({ node: id, input });
      const kept = original.nodes?.[id]?.inputs?.[input];
      if (kept !== undefined && !isLink(kept)) inputs[input] = kept;
    }
    nodes[id] = keepIfSame({ ...node, inputs }, original.nodes?.[id]);
  }
  const sub = { ...original, nodes, inputs: foldInputs(original.inputs, targets), outputs: foldOutputs(original.outputs, inside.nodes[outId]) };
  if ("meta" in original || Object.keys(inside.meta || {}).length) sub.meta = inside.meta || {};
  const subgraphs = {};
  for (const [key, value] of Object.entries(inside.subgraphs || root.subgraphs || {})) subgraphs[key] = key === name ? keepIfSame(sub, original) : value;
  if (!(name in subgraphs)) subgraphs[name] = sub;
  return { ...root, subgraphs };
}

function foldInputs(inputs, targets) {
  const same = (a, b) => a.node === b.node && a.input === b.input;
  const folded = {};
  for (const [name, spec] of Object.entries(inputs || {})) {
    const now = targets[name] || [];
    const before = (spec?.targets || []).filter((t) => now.some((n) => same(n, t)));
    folded[name] = { ...spec, targets: [...before, ...now.filter((n) => !before.some((t) => same(n, t)))] };
  }
  return folded;
}

function foldOutputs(outputs, outNode) {
  const folded = {};
  for (const [name, spec] of Object.entries(outputs || {})) {
    const link = outNode?.inputs?.[name];
    if (isLink(link)) folded[name] = { ...spec, node: link.node, output: link.output };
  }
  return folded;
}

/**
 * The part of `path` ([{name, via}], outermost first: subgraph `name` opened through node
 * `via`) that `root` still has: each `via` a node using that subgraph where the path
 * says. Undo may have taken a subgraph away.
 */
export function validPath(root, path) {
  const kept = [];
  let nodes = root.nodes;
  for (const frame of path) {
    const node = nodes?.[frame.via];
    if (!node || subgraphName(node.type) !== frame.name || !root.subgraphs?.[frame.name]) break;
    kept.push(frame);
    nodes = root.subgraphs[frame.name].nodes;
  }
  return kept;
}

/** The ids a run of `doc` reports for the nodes that will run (subgraphs flattened, muted and bypassed nodes left out). */
export function flatNodeIds(doc) {
  const ids = [];
  const work = [[doc.nodes || {}, "", 0]];
  while (work.length) {
    const [nodes, prefix, depth] = work.pop();
    for (const [id, node] of Object.entries(nodes)) {
      const name = subgraphName(node?.type);
      if (name === null) {
        if ((node?.mode ?? ACTIVE) === ACTIVE) ids.push(prefix + id);
      } else if (doc.subgraphs?.[name] && depth < MAX_DEPTH) {
        work.push([doc.subgraphs[name].nodes || {}, `${prefix}${id}${PATH_SEPARATOR}`, depth + 1]);
      }
    }
  }
  return ids;
}

/**
 * Where a node a run reports (`flatId`, e.g. "sg/encode") shows on a canvas that shows the
 * level `prefix` ("" at the top, "sg/" inside instance sg): {id, exact: true} for the
 * node itself, {id, exact: false, inner} for the instance containing it (`inner`: its id
 * inside), null when it is not at this level. `has(id)`: whether the canvas has that node.
 */
export function localId(flatId, prefix, has) {
  if (typeof flatId !== "string" || !flatId.startsWith(prefix)) return null;
  const rest = flatId.slice(prefix.length);
  if (has(rest)) return { id: rest, exact: true, inner: null };
  for (let cut = rest.indexOf(PATH_SEPARATOR); cut > 0; cut = rest.indexOf(PATH_SEPARATOR, cut + 1)) {
    const id = rest.slice(0, cut);
    if (has(id)) return { id, exact: false, inner: rest.slice(cut + 1) };
  }
  return null;
}
