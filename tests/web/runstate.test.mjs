// The run book (web/js/runstate.js): which run the canvas shows for which graph, and
// what each run did to each node, from websocket messages and run records.
import assert from "node:assert/strict";
import { test } from "node:test";
import { combineStates, RunBook } from "../../web/js/runstate.js";
import { VOCABULARY } from "./fixtures.mjs";

const book = () => new RunBook(VOCABULARY);
const msg = (type, run, extra = {}) => ({ type, run, ...extra });

test("with three runs queued from one graph, the canvas shows the one executing", () => {
  const b = book();
  for (const id of ["r1", "r2", "r3"]) b.queued(id, "g1", "slow", ["slow", "show"]);
  assert.equal(b.focusFor("g1"), "r1"); // the next to run
  b.handle(msg("run_started", "r1", { nodes: 2 }));
  b.handle(msg("node_started", "r1", { node: "slow" }));
  assert.equal(b.focusFor("g1"), "r1");
  assert.equal(b.nodeState("r1", "slow").status, "running");
  assert.equal(b.nodeState("r3", "slow").status, "queued");
  b.handle(msg("run_succeeded", "r1", { outputs: [] }));
  assert.equal(b.focusFor("g1"), "r2"); // queued after the last that ran: next
  b.handle(msg("run_started", "r2", { nodes: 2 }));
  assert.equal(b.focusFor("g1"), "r2");
  b.handle(msg("run_succeeded", "r2"));
  b.handle(msg("run_started", "r3"));
  b.handle(msg("run_succeeded", "r3"));
  assert.equal(b.focusFor("g1"), "r3"); // all done: the last one
});

test("a graph shows only runs queued from it", () => {
  const b = book();
  b.queued("a", "g1", "one", ["1"]);
  b.queued("b", "g2", "two", ["1"]);
  b.handle(msg("run_started", "a"));
  b.handle(msg("node_started", "a", { node: "1" }));
  assert.equal(b.focusFor("g1"), "a");
  assert.equal(b.focusFor("g2"), "b"); // queued, not a's state on its node "1"
  assert.equal(b.nodeState("b", "1").status, "queued");
  assert.equal(b.focusFor("g3"), null);
});

test("a run that finished before its POST answered keeps what the websocket said", () => {
  const b = book();
  b.handle(msg("run_started", "r"));
  b.handle(msg("node_finished", "r", { node: "1", seconds: 0.01 }));
  b.handle(msg("run_succeeded", "r"));
  b.queued("r", "g", "x", ["1", "2"]);
  assert.equal(b.records.get("r").status, "succeeded");
  assert.equal(b.nodeState("r", "1").status, "done");
  assert.equal(b.focusFor("g"), "r");
});

test("a cancelled node is drawn as cancelled, not as an error", () => {
  const b = book();
  b.queued("r", "g", "x", ["slow", "show"]);
  b.handle(msg("run_started", "r"));
  b.handle(msg("progress", "r", { node: "slow", value: 3, max: 10 }));
  b.handle(msg("run_cancelling", "r"));
  b.handle(msg("node_cancelled", "r", { node: "slow" }));
  b.handle(msg("run_cancelled", "r", { errors: [{ code: "cancelled", node: "slow", message: "the run was cancelled" }] }));
  assert.equal(b.nodeState("r", "slow").status, "cancelled");
  assert.equal(b.nodeState("r", "show").status, undefined); // never started: not part of what ran
  b.reconcile("r", { status: "cancelled", nodes: { slow: { status: "cancelled" }, show: { status: "skipped" } }, errors: [{ code: "cancelled", node: "slow" }] });
  assert.equal(b.nodeState("r", "slow").status, "cancelled");
  assert.deepEqual(b.nodeState("r", "show"), {});
});

test("a node the run did not need is not drawn as cached", () => {
  const b = book();
  b.queued("r", "g", "x", ["a", "b"]);
  b.handle(msg("run_succeeded", "r"));
  b.reconcile("r", { status: "succeeded", nodes: { a: { status: "not_needed" }, b: { status: "cached" } } });
  assert.deepEqual(b.nodeState("r", "a"), {});
  assert.equal(b.nodeState("r", "b").status, "cached");
});

test("a live record's planned nodes wait as queued", () => {
  const b = book();
  b.queued("r", "g", "x", ["a", "b"]);
  b.reconcile("r", { status: "running", nodes: { a: { status: "running" }, b: { status: "pending" } } });
  assert.equal(b.nodeState("r", "b").status, "queued");
});

test("a failing node is an error with its message", () => {
  const b = book();
  b.queued("r", "g", "x", ["f"]);
  b.handle(msg("node_failed", "r", { node: "f", error: { code: "node_error", message: "boom" } }));
  assert.deepEqual([b.nodeState("r", "f").status, b.nodeState("r", "f").message], ["error", "boom"]);
});

test("the record replaces live states: nodes it did not need go, cached ones say so", () => {
  const b = book();
  b.queued("r", "g", "x", ["1", "2", "3"]);
  b.handle(msg("run_succeeded", "r"));
  b.reconcile("r", { status: "succeeded", nodes: { 1: { status: "cached" }, 2: { status: "ran", seconds: 0.5 } }, outputs: [] });
  assert.equal(b.nodeState("r", "1").status, "cached");
  assert.deepEqual([b.nodeState("r", "2").status, b.nodeState("r", "2").seconds], ["done", 0.5]);
  assert.deepEqual(b.nodeState("r", "3"), {});
});

test("when the connection drops, queued and running work shows as lost until the server answers", () => {
  const b = book();
  b.queued("r", "g", "x", ["slow", "show"]);
  b.handle(msg("queue", null, { queued: 0, running: "r" }));
  b.handle(msg("run_started", "r"));
  b.handle(msg("node_started", "r", { node: "slow" }));
  assert.deepEqual(b.connectionLost(), ["r"]);
  assert.equal(b.records.get("r").lost, true);
  assert.equal(b.nodeState("r", "slow").status, "lost");
  assert.equal(b.nodeState("r", "show").status, "lost");
  assert.equal(b.running, null);
  assert.equal(b.progress("r"), null);
  // the server came back with the run still running (the websocket had dropped, not the server)
  b.merge([{ id: "r", status: "running", created: 1 }]);
  b.reconcile("r", { status: "running", nodes: { slow: { status: "running", progress: { value: 4, max: 10 } } } });
  assert.equal(b.records.get("r").lost, false);
  assert.deepEqual([b.nodeState("r", "slow").status, b.nodeState("r", "slow").value], ["running", 4]);
  assert.equal(b.nodeState("r", "show").status, "queued");
});

test("a finished status from the websocket outranks an older history page", () => {
  const b = book();
  b.handle(msg("run_succeeded", "r"));
  b.merge([{ id: "r", status: "running", created: 5, workflow: null, name: "txt2img" }]);
  assert.equal(b.records.get("r").status, "succeeded");
  assert.equal(b.label("r"), "txt2img");
});

test("a run the websocket reported started stays running when an older history page says queued", () => {
  const b = book();
  b.queued("r", "g", "slow", ["slow"]);
  b.handle(msg("run_started", "r", { nodes: 1 }));
  b.merge([{ id: "r", status: "queued", created: 5 }]); // fetched before the run started, received after
  assert.equal(b.records.get("r").status, "running");
  b.merge([{ id: "q", status: "queued", created: 6 }, { id: "s", status: "running", created: 7 }]);
  assert.deepEqual([b.records.get("q").status, b.records.get("s").status], ["queued", "running"]);
});

test("a run record fetched before the run started does not set a running run back to queued", () => {
  // the editor's websocket connected after the runs were queued: it fetches each record, and
  // the run_started can arrive before an answer the server gave while the run was still queued
  const b = book();
  b.queued("r", "g", "slow", ["slow"]);
  b.handle(msg("run_started", "r", { nodes: 1 }));
  b.handle(msg("node_started", "r", { node: "slow" }));
  b.reconcile("r", { status: "queued", nodes: { slow: { status: "pending" } } });
  assert.equal(b.records.get("r").status, "running");
  assert.equal(b.nodeState("r", "slow").status, "running");
  b.reconcile("r", { status: "cancelled", nodes: { slow: { status: "cancelled" } }, errors: [] }); // news further on still lands
  assert.equal(b.records.get("r").status, "cancelled");
});

test("rows are labelled by this tab's workflow name, else the record's workflow or graph name", () => {
  const b = book();
  b.merge([{ id: "a", status: "succeeded", workflow: "wf" }, { id: "b", status: "succeeded", name: "meta" }, { id: "c", status: "queued" }]);
  b.queued("d", "g", "my-digits", []);
  assert.deepEqual(["a", "b", "c", "d"].map((id) => b.label(id)), ["wf", "meta", "graph", "my-digits"]);
});

test("overall progress counts settled nodes and the running node's steps", () => {
  const b = book();
  b.queued("r", "g", "x", ["1", "2", "3", "4"]);
  b.handle(msg("run_started", "r", { nodes: 4 }));
  b.handle(msg("node_cached", "r", { node: "1" }));
  b.handle(msg("node_finished", "r", { node: "2" }));
  b.handle(msg("progress", "r", { node: "3", value: 5, max: 10 }));
  assert.deepEqual(b.progress("r"), { done: 2, total: 4, fraction: 2.5 / 4, step: { value: 5, max: 10 } });
  b.handle(msg("run_succeeded", "r"));
  assert.equal(b.progress("r"), null);
});

test("a progress message's extra figures (a training loss) reach the running step", () => {
  const b = book();
  b.queued("r", "g", "x", ["t"]);
  b.handle(msg("run_started", "r", { nodes: 1 }));
  b.handle(msg("progress", "r", { node: "t", value: 3, max: 10, info: { loss: 0.25 } }));
  assert.deepEqual(b.progress("r").step, { value: 3, max: 10, info: { loss: 0.25 } });
});

test("runs queued in an earlier visit are adopted with their graph", () => {
  const b = book();
  b.adopt([{ id: "old", key: "g", label: "kept" }]);
  b.merge([{ id: "old", status: "succeeded", created: 1 }]);
  assert.equal(b.focusFor("g"), "old");
  assert.equal(b.label("old"), "kept");
  b.forget("old");
  assert.equal(b.focusFor("g"), null);
});

test("outputs arrive once each, from messages and from the end of the run", () => {
  const b = book();
  b.handle(msg("output", "r", { node: "save", kind: "image", url: "/api/outputs/r/a.png" }));
  b.handle(msg("run_succeeded", "r", { outputs: [{ node: "save", kind: "image", url: "/api/outputs/r/a.png" }, { node: "save", kind: "image", url: "/api/outputs/r/b.png" }] }));
  assert.deepEqual(b.records.get("r").outputs.map((o) => o.url), ["/api/outputs/r/a.png", "/api/outputs/r/b.png"]);
});

test("a run cancelled before it started does not take the canvas from the one that ran", () => {
  const b = book();
  for (const id of ["r1", "r2"]) b.queued(id, "g", "x", ["slow"]);
  b.handle(msg("run_started", "r1"));
  b.handle(msg("node_started", "r1", { node: "slow" }));
  b.handle(msg("run_cancelled", "r2", { error: "the run was cancelled before it started" }));
  b.handle(msg("node_cancelled", "r1", { node: "slow" }));
  b.handle(msg("run_cancelled", "r1", { errors: [{ code: "cancelled", node: "slow" }] }));
  assert.equal(b.focusFor("g"), "r1");
  assert.equal(b.nodeState("r1", "slow").status, "cancelled");
});

test("values a run reports per node are kept, from its end message or its record", () => {
  const b = book();
  b.handle(msg("run_succeeded", "r", { values: { show: { text: "5.5" } } }));
  assert.deepEqual(b.nodeValue("r", "show"), { text: "5.5" });
  b.reconcile("r", { status: "succeeded", nodes: {}, values: { show: { text: "five and a half" } } });
  assert.deepEqual(b.nodeValue("r", "show"), { text: "five and a half" });
  assert.equal(b.nodeValue("r", "other"), undefined);
  b.reconcile("r", { status: "succeeded", nodes: {} }); // a server that sends no values keeps what was known
  assert.deepEqual(b.nodeValue("r", "show"), { text: "five and a half" });
});

test("muted and bypassed nodes show those statuses from the run record; nodes not needed show nothing", () => {
  const b = book();
  b.queued("r", "g", "x", ["1", "3"]);
  b.handle(msg("run_started", "r"));
  b.handle(msg("node_finished", "r", { node: "1", seconds: 0.01 }));
  b.handle(msg("run_succeeded", "r"));
  b.reconcile("r", {
    status: "succeeded",
    nodes: { 1: { status: "ran" }, 2: { status: "bypassed" }, 3: { status: "muted" }, 4: { status: "muted" }, 5: { status: "not_needed" } },
  });
  assert.deepEqual(["1", "2", "3", "4", "5"].map((id) => b.nodeState("r", id).status), ["done", "bypassed", "muted", "muted", undefined]);
});

test("a subgraph node shows the states of the nodes inside it combined", () => {
  const b = book();
  b.queued("r", "g", "x", ["sg/a", "sg/b", "sg/c", "out"]);
  assert.equal(b.groupState("r", "sg/").status, "queued");
  b.handle(msg("run_started", "r"));
  b.handle(msg("node_finished", "r", { node: "sg/a", seconds: 0.25 }));
  assert.equal(b.groupState("r", "sg/").status, "running"); // some done, some to come
  b.handle(msg("progress", "r", { node: "sg/b", value: 2, max: 5 }));
  assert.deepEqual(b.groupState("r", "sg/"), { status: "running", value: 2, max: 5 });
  b.handle(msg("node_finished", "r", { node: "sg/b", seconds: 0.5 }));
  b.handle(msg("node_failed", "r", { node: "sg/c", error: { code: "node_failed", node: "sg/c", message: "boom" } }));
  assert.deepEqual(b.groupState("r", "sg/"), { status: "error", message: "c: boom" });
  assert.equal(b.groupState("r", "other/").status, undefined);
});

test("combined states: done adds the seconds up, cached when all were, muted when none ran", () => {
  const s = (status, extra = {}) => ({ status, ...extra });
  assert.deepEqual(combineStates([["a", s("done", { seconds: 1 })], ["b", s("cached")], ["c", s("muted")]]), { status: "done", seconds: 1 });
  assert.deepEqual(combineStates([["a", s("cached")], ["b", s("cached")]]), { status: "cached" });
  assert.deepEqual(combineStates([["a", s("muted")], ["b", s("bypassed")]]), { status: "muted" });
  assert.deepEqual(combineStates([["a", s("bypassed")]]), { status: "bypassed" });
  assert.deepEqual(combineStates([["a", s("lost")], ["b", s("done")]]), { status: "lost" });
  assert.deepEqual(combineStates([]), {});
});

test("a queue message naming two running runs (two workers) marks both running", () => {
  const b = book();
  for (const id of ["r1", "r2", "r3"]) b.queued(id, "g1", "slow", ["slow"]);
  b.handle(msg("queue", "r2", { queued: 1, running: "r1", running_ids: ["r1", "r2"] }));
  assert.deepEqual(b.runningIds, ["r1", "r2"]);
  assert.equal(b.running, "r1");
  assert.equal(b.records.get("r1").status, "running");
  assert.equal(b.records.get("r2").status, "running");
  assert.equal(b.records.get("r3").status, "queued");
});
