// The graph being edited: the canvas (graphview.js) plus what the document holds beside
// it (exposed inputs, meta, unknown top-level keys), its identity (which workflow it is,
// as last saved or opened; session.js), undo/redo (history.js), and the draft kept in
// the browser after every edit, so a reload loses nothing.
//
// Edits are found by asking, after each change litegraph reports (changes.js), whether
// the document differs from the last snapshot. A snapshot is {key, doc}: undoing an
// "open" brings back the previous graph and its identity with it.
//
// A subgraph can be opened to edit it (subgraphs.js): the canvas then shows its nodes,
// `path` says which ([{name, via}], outermost first: subgraph `name` opened through
// node `via`), and `root` holds the rest of the document as it was when it was opened.
// The document (for undo, drafts, saving, runs) is always the whole one: what the
// canvas shows folded back into `root`. Opening and leaving are not edits.
//
// Events (`on(name, fn)`):
//   loaded    the canvas holds another document (opened, undone, restored)
//   scope     a subgraph was opened or left: the canvas shows another level of the same document
//   edited    an edit was recorded
//   identity  the identity or the unsaved-changes state changed

import { trackChanges } from "./changes.js";
import { checkDocument, loadDocument, toDocument } from "./document.js";
import { History } from "./history.js";
import { registerSubgraphTypes, schemaOf } from "./nodes.js";
import { convertToSubgraph, foldSubgraph, insideDocument, localId, PATH_SEPARATOR, subgraphName, validPath } from "./subgraphs.js";
import { fingerprint, newIdentity, newKey } from "./session.js";

const VIEW_SAVE_DELAY_MS = 300;

export class Workspace {
  #viewTimer = null;

  /** @param {{view: GraphView, vocabulary, session: Session}} deps */
  constructor({ view, vocabulary, session }) {
    this.view = view;
    this.graph = view.graph;
    this.vocabulary = vocabulary;
    this.session = session;
    this.state = { inputs: {}, meta: {}, extra: {} };
    this.identity = newIdentity();
    this.identities = new Map([[this.identity.key, this.identity]]);
    this.dirty = false;
    this.loading = false;
    this.maxId = 0;
    this.path = [];
    this.root = null;
    this.listeners = { loaded: [], scope: [], edited: [], identity: [] };
    this.history = new History(
      () => this.snapshot(),
      (snapshot) => this.restore(snapshot),
    );
    this.graph.onNodeAdded = (node) => this.nodeAdded(node);
    this.touched = trackChanges(this.graph, view.canvas.canvas, () => this.changed());
    view.canvas.ds.onChanged = () => this.viewChanged();
    window.addEventListener("pagehide", () => this.session.writeView(this.view.view));
  }

  on(event, fn) {
    this.listeners[event].push(fn);
  }

  #emit(event) {
    for (const fn of this.listeners[event]) fn();
  }

  /** The key of the graph on the canvas (runs queued from it carry it). */
  get key() {
    return this.identity.key;
  }

  snapshot() {
    return { key: this.identity.key, doc: this.document() };
  }

  /** The whole graph document (with an open subgraph as the canvas shows it). */
  document() {
    const here = toDocument(this.graph, this.state, this.vocabulary);
    return this.path.length ? foldSubgraph(this.root, this.path.at(-1).name, here) : here;
  }

  /** Replace the canvas with `doc` (throws with a sentence if it is not a graph); no undo step. */
  #load(doc) {
    this.loading = true;
    try {
      this.maxId = 0;
      for (const id of Object.keys(doc?.nodes || {})) {
        const n = Number(id);
        if (Number.isInteger(n) && n > this.maxId) this.maxId = n;
      }
      this.state = loadDocument(this.graph, doc, this.vocabulary);
    } finally {
      this.loading = false;
    }
    this.view.redraw(true);
  }

  #setIdentity(identity) {
    this.identity = identity;
    this.identities.set(identity.key, identity);
    if (this.identities.size > 100) this.identities.delete(this.identities.keys().next().value);
    this.#updateDirty();
  }

  #updateDirty() {
    this.dirty = this.history.current !== null && fingerprint(this.history.current) !== this.identity.baseline;
  }

  /**
   * Open `doc` as an undoable step, with what is known of it (`fields`: name, opened).
   * It counts as unchanged until edited.
   */
  open(doc, fields = {}, { fit = true } = {}) {
    const problem = checkDocument(doc, this.vocabulary);
    if (problem) throw new Error(problem);
    this.history.check(); // an edit not recorded yet stays undoable
    const scoped = this.path.length > 0;
    this.#show(doc, []);
    if (fit) this.view.fitView();
    this.identity = { ...newIdentity(fields), key: newKey() };
    this.history.check();
    this.#setIdentity({ ...this.identity, baseline: fingerprint(this.history.current) });
    this.#saveDraft();
    this.#emit("loaded");
    if (scoped) this.#emit("scope");
    this.#emit("identity");
  }

  /**
   * Bring back the graph kept in the browser (a reload): true when there was one.
   * The view comes back too; undo starts from here.
   */
  resume() {
    const draft = this.session.readDraft();
    if (!draft || checkDocument(draft.doc, this.vocabulary)) return false;
    try {
      this.#load(draft.doc);
    } catch {
      return false;
    }
    const view = this.session.readView();
    if (view) this.view.view = view;
    else this.view.fitView();
    this.identity = draft.identity;
    this.history.reset();
    this.#setIdentity(draft.identity);
    this.#emit("loaded");
    this.#emit("identity");
    return true;
  }

  /** Undo and redo: load a snapshot back, keeping the view (and the subgraph open, if it is still there). */
  restore(snapshot) {
    const view = this.view.view;
    const path = validPath(snapshot.doc, this.path);
    const left = path.length !== this.path.length;
    this.#show(snapshot.doc, path);
    this.view.view = view;
    if (left) this.#emit("scope");
    this.#setIdentity(this.identities.get(snapshot.key) ?? { ...newIdentity(), key: snapshot.key });
    this.#saveDraft();
    this.#emit("loaded");
    this.#emit("identity");
  }

  /** Something may have changed: record it for undo (one step per `key` edited quickly), keep the draft. */
  changed(key = null) {
    if (this.loading) return;
    if (this.history.check(key)) {
      const wasDirty = this.dirty;
      this.#updateDirty();
      this.#saveDraft();
      this.#emit("edited");
      if (wasDirty !== this.dirty) this.#emit("identity");
    }
    this.view.redraw();
  }

  /** The graph was saved as workflow `name`: it has no unsaved changes now. */
  markSaved(name) {
    this.history.check();
    this.#setIdentity({ ...this.identity, name, opened: name, baseline: fingerprint(this.history.current) });
    this.#saveDraft();
    this.#emit("identity");
  }

  /** Change what is known of the graph (e.g. its workflow was deleted: {name: null}). */
  setIdentity(fields) {
    this.#setIdentity({ ...this.identity, ...fields });
    this.#saveDraft();
    this.#emit("identity");
  }

  // -- subgraphs --------------------------------------------------------------------------------
  /** Put `root` on the canvas at `path`: the whole document, or the subgraph the path ends at. */
  #show(root, path) {
    this.path = path;
    this.root = path.length ? root : null;
    if (!path.length) {
      this.#load(root);
      return;
    }
    const name = path.at(-1).name;
    registerSubgraphTypes(root.subgraphs); // their schemas give the boundary nodes' sockets
    this.#load(insideDocument(root, name, schemaOf(`subgraph:${name}`) ?? { inputs: [], outputs: [] }));
  }

  /** Put the canvas nodes with these ids into a new subgraph, as one undoable edit; returns the new node. */
  convert(ids) {
    this.history.check();
    const here = toDocument(this.graph, this.state, this.vocabulary);
    const instanceId = String(this.maxId + 1);
    const { doc } = convertToSubgraph(here, ids, { instanceId });
    const root = this.path.length ? foldSubgraph(this.root, this.path.at(-1).name, doc) : doc;
    const view = this.view.view;
    this.#show(root, this.path);
    this.view.view = view;
    this.changed();
    return this.view.nodeById(instanceId);
  }

  /** The flat-id prefix of the level the canvas shows ("" at the top, "sg/" inside node sg). */
  get prefix() {
    return this.path.map((f) => f.via + PATH_SEPARATOR).join("");
  }

  /** Open the subgraph canvas node `node` runs. */
  enter(node) {
    const name = subgraphName(node?.type);
    if (name === null || !node.nf) throw new Error("not a subgraph node");
    this.history.check(); // an edit not recorded yet belongs to this level
    const root = this.document();
    if (!root.subgraphs?.[name]) throw new Error(`this graph has no subgraph '${name}'`);
    const frame = { name, via: node.nf.id, title: node.title, view: this.view.view };
    this.#show(root, [...this.path, frame]);
    this.view.fitView();
    this.#emit("scope");
  }

  /** Go back to level `depth` (0: the whole graph; default: one level up). */
  leave(depth = this.path.length - 1) {
    if (depth < 0 || depth >= this.path.length) return;
    this.history.check();
    const root = this.document();
    const view = this.path[depth].view;
    this.#show(root, this.path.slice(0, depth));
    if (view) this.view.view = view;
    else this.view.fitView();
    this.#emit("scope");
  }

  /**
   * The canvas node that shows the node a run or an error names (`flatId`, "outer/inner"
   * for nodes inside subgraphs): {node, exact} (exact false: a subgraph node holding it,
   * `inner` its id inside), or null when it is not at the level shown.
   */
  locate(flatId) {
    const found = localId(String(flatId), this.prefix, (id) => this.view.nodeById(id) !== null);
    return found && { ...found, node: this.view.nodeById(found.id) };
  }

  /** The id a run reports for a canvas node. */
  flatId(node) {
    return this.prefix + node.nf.id;
  }

  #saveDraft() {
    if (this.history.current !== null) this.session.writeDraft(this.history.current, this.identity);
  }

  viewChanged() {
    clearTimeout(this.#viewTimer);
    this.#viewTimer = setTimeout(() => this.session.writeView(this.view.view), VIEW_SAVE_DELAY_MS);
  }

  /** Give pasted and added nodes an id of their own (a loading document's ids are its keys already). */
  nodeAdded(node) {
    if (!node.nf) return;
    const taken = !this.loading && node.nf.id && this.graph.nodes.some((n) => n !== node && n.nf?.id === node.nf.id);
    if (!node.nf.id || taken) node.nf.id = String(++this.maxId);
    const numeric = Number(node.nf.id);
    if (Number.isInteger(numeric) && numeric > this.maxId) this.maxId = numeric;
  }
}
