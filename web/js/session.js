// What the editor keeps in the browser between visits, so nothing is lost by a reload:
// the graph as it is on the canvas (the draft) with what the editor knows about it (its
// identity: which workflow it is, as last saved or opened), the view (pan and zoom), and
// which runs this browser queued from which graph.
//
// Storage is injected (window.localStorage in the page, a Map-backed stand-in in the
// unit tests). A full or disabled storage never breaks the editor: writes that fail are
// reported as `false`, reads of damaged entries as nothing.

const DRAFT = "nodeflow.draft";
const VIEW = "nodeflow.view";
const RUNS = "nodeflow.runs";
/** Runs remembered per browser (their graph and label); older ones are forgotten. */
export const RUNS_KEPT = 50;

/**
 * The identity of the graph on the canvas.
 * @typedef {object} Identity
 * @property {string} key       this graph's id in this browser (runs queued from it carry it)
 * @property {?string} name     the user workflow it is saved as (null: not saved yet)
 * @property {?string} opened   the workflow it was opened from (built-ins included)
 * @property {?string} baseline fingerprint() of the snapshot as last saved or opened (unsaved-changes marker)
 */

/** A fresh identity for a graph that is not a saved workflow. */
export function newIdentity(fields = {}) {
  return { key: newKey(), name: null, opened: null, baseline: null, ...fields };
}

/**
 * A short fingerprint of a text (53-bit cyrb53 hash, base 36): enough to tell "the graph
 * as saved" from "the graph now" without keeping a second copy of a big graph.
 */
export function fingerprint(text) {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

/** A random id for a graph (not a secret; it only has to differ between graphs). */
export function newKey() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `g${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
}

export class Session {
  /** @param {Storage} storage  localStorage or anything with getItem/setItem/removeItem */
  constructor(storage) {
    this.storage = storage;
  }

  #read(key) {
    try {
      const text = this.storage.getItem(key);
      return text ? JSON.parse(text) : null;
    } catch {
      return null; // damaged or unreadable: as if there were nothing
    }
  }

  #write(key, text) {
    try {
      this.storage.setItem(key, text);
      return true;
    } catch {
      return false; // full or disabled: the draft is a convenience, not a save
    }
  }

  /**
   * Keep the canvas graph. `snapshot` is the JSON text History records ({key, doc}),
   * passed as text so a big graph is not serialised twice.
   */
  writeDraft(snapshot, identity) {
    return this.#write(DRAFT, `{"identity":${JSON.stringify(identity)},"snapshot":${snapshot}}`);
  }

  /** {identity, doc} as last kept, or null when there is none (a first visit) or it is damaged. */
  readDraft() {
    const draft = this.#read(DRAFT);
    if (draft?.doc && typeof draft.doc === "object" && !draft.snapshot) {
      // an earlier editor kept {name, doc}: still the user's graph, with unknown saved state
      const name = typeof draft.name === "string" ? draft.name : null;
      return { doc: draft.doc, identity: newIdentity({ name, opened: name }) };
    }
    const doc = draft?.snapshot?.doc;
    const identity = draft?.identity;
    if (!doc || typeof doc !== "object" || !identity || typeof identity.key !== "string") return null;
    return { doc, identity: { ...newIdentity(), ...identity } };
  }

  writeView(view) {
    return this.#write(VIEW, JSON.stringify({ offset: [...view.offset], scale: view.scale }));
  }

  /** {offset: [x, y], scale} or null. */
  readView() {
    const view = this.#read(VIEW);
    const ok = view && Array.isArray(view.offset) && view.offset.length === 2 && view.offset.every(Number.isFinite) && Number.isFinite(view.scale) && view.scale > 0;
    return ok ? { offset: [...view.offset], scale: view.scale } : null;
  }

  /** Remember that run `id` was queued from graph `key` (shown as `label`). */
  rememberRun(id, key, label) {
    const runs = this.readRuns().filter((r) => r.id !== id);
    runs.push({ id, key, label });
    return this.#write(RUNS, JSON.stringify(runs.slice(-RUNS_KEPT)));
  }

  forgetRun(id) {
    return this.#write(RUNS, JSON.stringify(this.readRuns().filter((r) => r.id !== id)));
  }

  /** [{id, key, label}], oldest first. */
  readRuns() {
    const runs = this.#read(RUNS);
    return Array.isArray(runs) ? runs.filter((r) => r && typeof r.id === "string" && typeof r.key === "string") : [];
  }
}
