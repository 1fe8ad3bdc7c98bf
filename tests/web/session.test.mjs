// What the editor keeps in the browser between visits (web/js/session.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { fingerprint, newIdentity, RUNS_KEPT, Session } from "../../web/js/session.js";

class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

class FullStorage extends MemoryStorage {
  setItem() {
    throw new Error("QuotaExceededError");
  }
}

test("a draft comes back with its identity", () => {
  const session = new Session(new MemoryStorage());
  const identity = newIdentity({ name: "mine", opened: "mine", baseline: "abc" });
  const snapshot = JSON.stringify({ key: identity.key, doc: { nodes: { 1: { type: "core.int" } } } });
  assert.equal(session.writeDraft(snapshot, identity), true);
  const draft = session.readDraft();
  assert.deepEqual(draft.doc, { nodes: { 1: { type: "core.int" } } });
  assert.deepEqual(draft.identity, identity);
});

test("a first visit or a damaged draft reads as no draft", () => {
  const storage = new MemoryStorage();
  const session = new Session(storage);
  assert.equal(session.readDraft(), null);
  storage.setItem("nodeflow.draft", "{not json");
  assert.equal(session.readDraft(), null);
  storage.setItem("nodeflow.draft", JSON.stringify({ snapshot: { doc: {} } })); // no identity
  assert.equal(session.readDraft(), null);
});

test("a full storage does not break the editor", () => {
  const session = new Session(new FullStorage());
  assert.equal(session.writeDraft("{}", newIdentity()), false);
  assert.equal(session.writeView({ offset: [1, 2], scale: 1 }), false);
  assert.equal(session.rememberRun("r1", "k", "x"), false);
});

test("the view comes back, a nonsensical one does not", () => {
  const storage = new MemoryStorage();
  const session = new Session(storage);
  session.writeView({ offset: [10.5, -3], scale: 0.8 });
  assert.deepEqual(session.readView(), { offset: [10.5, -3], scale: 0.8 });
  storage.setItem("nodeflow.view", JSON.stringify({ offset: [1, 2], scale: 0 }));
  assert.equal(session.readView(), null);
});

test("runs are remembered with their graph, the oldest forgotten first", () => {
  const session = new Session(new MemoryStorage());
  for (let i = 0; i < RUNS_KEPT + 5; i++) session.rememberRun(`r${i}`, `k${i % 2}`, "label");
  const runs = session.readRuns();
  assert.equal(runs.length, RUNS_KEPT);
  assert.equal(runs[0].id, "r5");
  assert.deepEqual(runs.at(-1), { id: `r${RUNS_KEPT + 4}`, key: `k${(RUNS_KEPT + 4) % 2}`, label: "label" });
  session.forgetRun("r5");
  assert.equal(session.readRuns()[0].id, "r6");
});

test("fingerprints tell texts apart and repeat for the same text", () => {
  assert.equal(fingerprint('{"a":1}'), fingerprint('{"a":1}'));
  assert.notEqual(fingerprint('{"a":1}'), fingerprint('{"a":2}'));
  assert.notEqual(fingerprint(""), fingerprint(" "));
});

test("identities get distinct keys", () => {
  assert.notEqual(newIdentity().key, newIdentity().key);
});

test("a draft kept by the earlier editor ({name, doc}) still comes back, as unsaved", () => {
  const storage = new MemoryStorage();
  storage.setItem("nodeflow.draft", JSON.stringify({ name: "mine", doc: { nodes: { 1: { type: "core.int" } } } }));
  const draft = new Session(storage).readDraft();
  assert.deepEqual(draft.doc, { nodes: { 1: { type: "core.int" } } });
  assert.equal(draft.identity.name, "mine");
  assert.equal(draft.identity.baseline, null);
});
