// Undo and redo as document snapshots (web/js/history.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { History } from "../../web/js/history.js";

function harness() {
  const state = { doc: { n: 0 } };
  const history = new History(
    () => structuredClone(state.doc),
    (doc) => {
      state.doc = doc;
    },
  );
  history.reset();
  return { state, history };
}

test("an unchanged document records nothing", () => {
  const { history } = harness();
  assert.equal(history.check(), false);
  assert.equal(history.canUndo, false);
});

test("undo and redo walk the recorded snapshots", () => {
  const { state, history } = harness();
  state.doc = { n: 1 };
  assert.equal(history.check(), true);
  state.doc = { n: 2 };
  history.check();
  assert.equal(history.undo(), true);
  assert.deepEqual(state.doc, { n: 1 });
  assert.equal(history.undo(), true);
  assert.deepEqual(state.doc, { n: 0 });
  assert.equal(history.undo(), false);
  assert.equal(history.redo(), true);
  assert.deepEqual(state.doc, { n: 1 });
});

test("an edit not recorded yet is the step undo takes back", () => {
  const { state, history } = harness();
  state.doc = { n: 5 };
  history.undo();
  assert.deepEqual(state.doc, { n: 0 });
  history.redo();
  assert.deepEqual(state.doc, { n: 5 });
});

test("quick edits of the same field are one step, other fields are not", () => {
  const { state, history } = harness();
  state.doc = { n: 1 };
  history.check("a.value");
  state.doc = { n: 12 };
  history.check("a.value");
  state.doc = { n: 13 };
  history.check("b.value");
  history.undo();
  assert.deepEqual(state.doc, { n: 12 });
  history.undo();
  assert.deepEqual(state.doc, { n: 0 });
});

test("a new edit after undo drops the redo steps", () => {
  const { state, history } = harness();
  state.doc = { n: 1 };
  history.check();
  history.undo();
  state.doc = { n: 2 };
  history.check();
  assert.equal(history.canRedo, false);
});

test("at most 100 steps are kept", () => {
  const { state, history } = harness();
  for (let i = 1; i <= 130; i++) {
    state.doc = { n: i };
    history.check();
  }
  let steps = 0;
  while (history.undo()) steps++;
  assert.equal(steps, 100);
  assert.deepEqual(state.doc, { n: 30 });
});
