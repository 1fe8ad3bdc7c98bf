// `window.nodeflow`: the scripting API, for power users in the console and for tests
// (which read state and geometry through it, and act with the mouse and keyboard).

import { modeOf } from "./modes.js";
import { MISSING_TYPE } from "./nodes.js";

/** @param {object} e  the composed editor: {view, workspace, inputs, problems, runs, workflows, types, catalogue, withToken} */
export function scriptingApi(e) {
  const { view, workspace, runs } = e;
  return {
    version: 2,
    /** Replace the canvas with a graph document (undoable; does not ask about unsaved changes). */
    loadGraph: (doc) => workspace.open(doc),
    /** The canvas as a graph document (the format the CLI runs). */
    getGraph: () => workspace.document(),
    /** Queue the canvas graph, optionally with graph inputs; resolves to the run id. */
    queueRun: (inputs) => runs.queue(inputs),
    /** The run whose node states the canvas shows: {id, status, outputs, errors, ...}, or null. */
    lastRun: () => (runs.shown ? { ...e.book.records.get(runs.shown), id: runs.shown } : null),
    /** The websocket messages this tab received about a run: [{type, node, value, max}]. */
    runEvents: (id) => runs.events(id),
    /** Resolves with a run's record once it has finished. */
    waitForRun: (id) => runs.wait(id),
    /** A run as this tab knows it (status, lost, outputs...), or null. */
    run: (id) => (e.book.records.has(id) ? { ...e.book.records.get(id) } : null),
    /** Open a workflow from the server (without asking about unsaved changes, like loadGraph). */
    openWorkflow: (name) => e.workflows.open(name, { ask: false }),
    /** The name of the workflow last opened from the server (built-ins included), or null. */
    openedWorkflow: () => workspace.identity.opened ?? null,
    saveWorkflow: (name) => e.workflows.save(name),
    listWorkflows: () => e.workflows.list.map((w) => ({ ...w })),
    /** Read the workflow list from the server again. */
    refreshWorkflows: () => e.workflows.refresh(),
    /** Whether the graph has changes not saved since it was opened or saved. */
    dirty: () => workspace.dirty,
    /** Add a node of a type (e.g. "core.add") at an optional graph position; returns its id. */
    addNode: (type, pos) => {
      const node = view.addNode(type, pos);
      workspace.changed();
      return node.nf.id;
    },
    /** Set an exposed workflow input, or "NODE_ID.INPUT", to a literal. */
    setInput: (name, value) => e.inputs.set(name, value),
    /** What the canvas shows for a node: run state, validation errors, image URLs, the value a run reported (text, or null). */
    nodeState: (id) => {
      const node = view.nodeById(id);
      if (!node) return null;
      return {
        type: node.type === MISSING_TYPE ? node.nf.raw?.type : node.type,
        title: node.title,
        mode: modeOf(node),
        collapsed: Boolean(node.flags?.collapsed),
        run: node.nf.run ? { ...node.nf.run } : null,
        errors: node.nf.errors.map((x) => ({ ...x })),
        images: [...(node.nf.images || [])],
        hasPreview: Boolean(node.nf.preview),
        value: node.nf.value ?? null,
      };
    },
    /** The widgets drawn on a node: [{name, kind, value, shown, options}] (kind: number, combo, toggle, text, multiline, button; shown: the text drawn). */
    widgets: (id) =>
      (view.nodeById(id)?.widgets || []).map((w) => ({
        name: w.name,
        kind: w.type === "nf_multiline" ? "multiline" : w.type,
        value: w.value,
        shown: w._displayValue ?? null,
        options: Object.fromEntries(Object.entries(w.options || {}).map(([k, v]) => [k, typeof v === "function" ? v() : v])),
      })),
    /** Problems shown in the Problems panel: [{code, node, input, message}]. */
    problems: () => e.problems.problems.map((x) => ({ ...x })),
    /** Links on the canvas: [{from, output, to, input}]. */
    links: () =>
      [...view.graph.links.values()].map((l) => {
        const from = view.graph.getNodeById(l.origin_id);
        const to = view.graph.getNodeById(l.target_id);
        return { from: from?.nf?.id, output: from?.outputs[l.origin_slot]?.name, to: to?.nf?.id, input: to?.inputs[l.target_slot]?.name };
      }),
    /** Ids of the selected nodes. */
    selection: () => e.commands.selection().map((n) => n.nf.id),
    /** The subgraphs open, outermost first: [{name, via, title}] (via: the node opened); [] at the top. */
    subgraphPath: () => workspace.path.map(({ name, via, title }) => ({ name, via, title })),
    /** The view: {offset: [x, y], scale}. */
    view: () => view.view,
    slotPosition: (id, name, kind) => view.slotPosition(id, name, kind),
    widgetPosition: (id, name) => view.widgetPosition(id, name),
    titlePosition: (id, where) => view.titlePosition(id, where),
    linkCentre: (id, input) => view.linkCentre(id, input),
    /** Page coordinates of a graph position. */
    toPage: (x, y) => view.toPage([x, y]),
    focusNode: (id) => view.focusNode(view.nodeById(id)),
    fitView: () => view.fitView(),
    undo: () => workspace.history.undo(),
    redo: () => workspace.history.redo(),
    canConnect: (outputType, inputType) => e.types.canConnect(outputType, inputType),
    catalogue: () => e.catalogue,
    withToken: e.withToken,
    // the live objects, for those who know litegraph
    get graph() {
      return view.graph;
    },
    get canvas() {
      return view.canvas;
    },
  };
}
