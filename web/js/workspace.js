// The graph being edited: the canvas (graphview.js) plus what the document holds beside
// it (exposed inputs, meta, unknown top-level keys), its identity (which workflow it is,
// as last saved or opened; session.js), undo/redo (history.js), and the draft kept in
// the browser after every edit, so a reload loses nothing.
//
// Edits are found by asking, after each change litegraph reports (changes.js), whether
// the document differs from the last snapshot. A snapshot is {key, doc}: undoing an
// "open" brings back the previous graph and its identity with it.
//
// Events (`on(name, fn)`):
//   loaded    the canvas holds another document (opened, undone, restored)
//   edited    an edit was recorded
//   identity  the identity or the unsaved-changes state changed

import { trackChanges } from "./changes.js";
import { checkDocument, loadDocument, toDocument } from "./document.js";
import { History } from "./history.js";
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
    this.listeners = { loaded: [], edited: [], identity: [] };
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

  /** The canvas as a graph document. */
  document() {
    return toDocument(this.graph, this.state, this.vocabulary);
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
    this.#load(doc);
    if (fit) this.view.fitView();
    this.identity = { ...newIdentity(fields), key: newKey() };
    this.history.check();
    this.#setIdentity({ ...this.identity, baseline: fingerprint(this.history.current) });
    this.#saveDraft();
    this.#emit("loaded");
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

  /** Undo and redo: load a snapshot back, keeping the view. */
  restore(snapshot) {
    const view = this.view.view;
    this.#load(snapshot.doc);
    this.view.view = view;
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
