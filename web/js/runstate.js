// The runs the editor knows about and what each did to each node: a pure model, fed by
// the websocket's messages and the server's run records, with no DOM and no canvas.
//
// A run's node ids only mean something for the graph it ran, so the book remembers
// which runs were queued from which graph (by the graph's key, see session.js), and the
// canvas shows a run only on the graph it was queued from: `focusFor(key)` says which.
//
// Node states, as the canvas draws them:
//   queued, running {value, max}, cached, done {seconds}, error {message},
//   cancelled (the run was cancelled while the node ran), lost (the connection to the
//   server dropped while the node was queued or running; the record says more later),
//   muted (muted, or needs a muted node: it did not run), bypassed (its inputs were
//   passed through). A subgraph node shows the states of the nodes inside it combined
//   (`groupState`, `combineStates`).
// A run may also report values per node ({"values": {node id: {output: value}}} in its
// record or final message, the shape of the engine's RunResult.shown_values()), shown
// on the node.

/**
 * How a run record's node status (the engine's NodeStatus) is drawn. `null`: nothing
 * to draw (the node did not run: never reached because the run stopped first, or not
 * needed because what it feeds came from the cache).
 */
const RECORD_NODE_STATUS = {
  pending: "queued", running: "running", ran: "done", cached: "cached", failed: "error", cancelled: "cancelled",
  muted: "muted", bypassed: "bypassed", skipped: null, not_needed: null,
};
const SETTLED = new Set(["done", "cached", "error", "cancelled", "muted", "bypassed"]);
/** The first of these among the nodes inside a subgraph is what its node shows. */
const GROUP_PRECEDENCE = ["running", "error", "lost", "cancelled"];

/**
 * One state for a subgraph node from those of the nodes inside it ([[id, state]], ids
 * relative to it): running while one runs (with its progress) or while some are done
 * and others queued; else the first error (its message names the inner node), lost
 * or cancelled; else queued; else done (seconds added up) or cached when all were;
 * else muted or bypassed when none ran. {} when nothing is known.
 */
export function combineStates(entries) {
  const states = entries.map(([, state]) => state).filter((s) => s?.status);
  if (!states.length) return {};
  for (const status of GROUP_PRECEDENCE) {
    const index = entries.findIndex(([, s]) => s?.status === status);
    if (index < 0) continue;
    const [inner, state] = entries[index];
    if (status === "running") return { status, value: state.value, max: state.max };
    return state.message ? { status, message: `${inner}: ${state.message}` } : { status };
  }
  const ran = states.filter((s) => s.status === "done" || s.status === "cached");
  if (states.some((s) => s.status === "queued")) return { status: ran.length ? "running" : "queued" };
  if (ran.length && ran.every((s) => s.status === "cached")) return { status: "cached" };
  if (ran.length) return { status: "done", seconds: ran.reduce((sum, s) => sum + (s.seconds ?? 0), 0) };
  return { status: states.some((s) => s.status === "muted") ? "muted" : "bypassed" };
}
const NODE_EVENT_STATUS = {
  node_started: "running", node_cached: "cached", node_finished: "done", node_failed: "error", node_cancelled: "cancelled",
};

export class RunBook {
  /** @param {{finished: Set<string>}} vocabulary  from vocabulary.js */
  constructor(vocabulary) {
    this.finishedStatuses = vocabulary.finished;
    this.records = new Map(); // run id -> {id, status, created, workflow, name, outputs, errors, error, seconds, total, lost}
    this.nodes = new Map(); // run id -> Map(node id -> state)
    this.origins = new Map(); // run id -> {key, label}, in the order they were queued
    this.running = null; // the run the server started first among those it is running, as the last queue message said
    this.runningIds = []; // every run the server is running (several with --workers N)
    this.waiting = 0; // runs waiting in the server's queue
    this.connected = true;
  }

  isFinished(status) {
    return this.finishedStatuses.has(status);
  }

  /** Runs queued from this browser earlier ([{id, key, label}], oldest first; from session.js). */
  adopt(origins) {
    for (const { id, key, label } of origins) if (!this.origins.has(id)) this.origins.set(id, { key, label });
  }

  /** POST /api/runs accepted a run of the graph `key` with these node ids. */
  queued(id, key, label, nodeIds) {
    this.origins.delete(id);
    this.origins.set(id, { key, label });
    // the websocket may have told us about this run before POST /api/runs answered
    // (a small graph can finish first): keep what arrived, fill in the rest
    const states = this.#states(id);
    for (const nodeId of nodeIds) if (!states.has(nodeId)) states.set(nodeId, { status: "queued" });
    const known = this.records.get(id);
    this.records.set(id, { outputs: [], errors: [], ...known, id, status: known?.status ?? "queued", created: known?.created ?? Date.now() / 1000 });
  }

  /** The label a run is listed under: the workflow it was queued from, else the graph's name. */
  label(id) {
    const record = this.records.get(id);
    return this.origins.get(id)?.label || record?.workflow || record?.name || "graph";
  }

  #states(id) {
    let states = this.nodes.get(id);
    if (!states) {
      states = new Map();
      this.nodes.set(id, states);
    }
    return states;
  }

  #record(id) {
    let record = this.records.get(id);
    if (!record) {
      record = { id, status: "queued", outputs: [], errors: [] };
      this.records.set(id, record);
    }
    return record;
  }

  #setNode(runId, nodeId, fields) {
    const states = this.#states(runId);
    states.set(nodeId, { ...(states.get(nodeId) || {}), ...fields });
  }

  /**
   * Apply one websocket message. Returns what changed, for the views:
   * {run, node} for one node, {run, all: true} for many, {run} for the run only, or null.
   */
  handle(message) {
    const id = message.run;
    const type = message.type;
    if (type === "queue") {
      this.running = message.running ?? null;
      this.runningIds = message.running_ids ?? (this.running ? [this.running] : []);
      this.waiting = message.queued ?? 0;
      for (const running of this.runningIds) {
        if (!this.#record(running).lost) this.#record(running).status = "running";
      }
      return { run: id ?? null, queue: true };
    }
    if (!id) return null;
    const record = this.#record(id);
    if (type === "run_started") {
      Object.assign(record, { status: "running", began: true, total: message.nodes ?? record.total, lost: false });
      return { run: id, all: true };
    }
    if (type in NODE_EVENT_STATUS && message.node) {
      const state = { status: NODE_EVENT_STATUS[type], value: undefined, max: undefined };
      if (message.seconds != null) state.seconds = message.seconds;
      if (type === "node_failed") {
        // (servers before node_cancelled reported a cancelled node as failed without an error)
        if (message.error) state.message = message.error.message;
        else state.status = "cancelled";
      }
      this.#setNode(id, message.node, state);
      return { run: id, node: message.node };
    }
    if (type === "progress" && message.node) {
      this.#setNode(id, message.node, { status: "running", value: message.value, max: message.max, info: message.info || {} });
      return { run: id, node: message.node };
    }
    if (type === "run_cancelling") {
      record.cancelling = true;
      return { run: id };
    }
    if (type === "output" && message.url) {
      if (!record.outputs.some((o) => o.url === message.url)) record.outputs.push({ node: message.node ?? null, kind: message.kind, url: message.url });
      return { run: id, output: true };
    }
    if (type.startsWith("run_")) return this.#finished(id, message);
    return null;
  }

  #finished(id, message) {
    const record = this.#record(id);
    const status = message.type.slice("run_".length);
    if (!this.isFinished(status)) return null;
    const outputs = [...record.outputs];
    for (const output of message.outputs || []) if (!outputs.some((o) => o.url === output.url)) outputs.push(output);
    Object.assign(record, { status, seconds: message.seconds, error: message.error ?? null, errors: message.errors || [], outputs, lost: false });
    if (message.values) record.values = message.values;
    this.#applyErrors(id, status, record.errors);
    for (const [nodeId, state] of this.#states(id)) {
      // a node still running or queued when the run ended did not finish
      if (state.status === "running" || state.status === "lost") this.#setNode(id, nodeId, { status: status === "cancelled" ? "cancelled" : "error", value: undefined, max: undefined });
      else if (state.status === "queued") this.#states(id).delete(nodeId);
    }
    return { run: id, all: true, finished: true };
  }

  #applyErrors(id, status, errors) {
    for (const error of errors) {
      if (!error.node) continue;
      const cancelled = error.code === "cancelled" || status === "cancelled";
      this.#setNode(id, error.node, cancelled ? { status: "cancelled", message: undefined } : { status: "error", message: error.message });
    }
  }

  /** How far a run with `status` has got: 0 queued (or unknown), 1 running, 2 finished. */
  #stage(status) {
    if (this.isFinished(status)) return 2;
    return status === "running" ? 1 : 0;
  }

  /** Merge a page of GET /api/runs (newest first). */
  merge(runs) {
    for (const run of runs) {
      const known = this.records.get(run.id) || {};
      // a run only moves forward (queued, running, finished): a status the websocket reported
      // further on is newer than a list fetched a moment before it
      const status = this.#stage(known.status) > this.#stage(run.status) ? known.status : run.status;
      const outputs = known.outputs?.length > (run.outputs?.length ?? 0) ? known.outputs : run.outputs || [];
      this.records.set(run.id, { ...known, ...run, status, outputs, lost: false });
    }
    this.connected = true;
  }

  /**
   * Replace a run's node states with its record (GET /api/runs/{id}): the websocket
   * says nothing about nodes a run did not need, and a live record knows what ran while
   * the connection was down.
   */
  reconcile(id, record) {
    const known = this.records.get(id);
    if (known && this.#stage(known.status) > this.#stage(record.status)) {
      // fetched before the websocket's news about this run (as in merge): the news is newer
      known.lost = false;
      return { run: id };
    }
    const states = this.#states(id);
    const finished = this.isFinished(record.status);
    const recorded = record.nodes || {};
    for (const [nodeId, state] of states) {
      if (nodeId in recorded) continue;
      if (finished) states.delete(nodeId); // not part of the run
      else if (state.status === "lost") states.set(nodeId, { status: "queued" });
    }
    for (const [nodeId, node] of Object.entries(recorded)) {
      let status = RECORD_NODE_STATUS[node.status];
      if (status === undefined) continue; // a status this editor does not know
      if (status === "running" && finished) status = record.status === "cancelled" ? "cancelled" : "error";
      if (status === null) {
        states.delete(nodeId);
        continue;
      }
      const previous = states.get(nodeId) || {};
      const progress = status === "running" && node.progress
        ? { value: node.progress.value, max: node.progress.max, info: node.progress.info || {} }
        : { value: undefined, max: undefined, info: {} };
      states.set(nodeId, { ...previous, status, seconds: node.seconds ?? previous.seconds, ...progress });
    }
    const rec = this.#record(id);
    Object.assign(rec, { status: record.status, outputs: record.outputs || rec.outputs, errors: record.errors || [], error: record.error ?? null, lost: false });
    if (record.values) rec.values = record.values;
    if (finished) this.#applyErrors(id, record.status, rec.errors);
    return { run: id, all: true };
  }

  /** The websocket closed: what was queued or running is in doubt until the server answers again. */
  connectionLost() {
    this.connected = false;
    const touched = [];
    for (const record of this.records.values()) {
      if (record.status !== "queued" && record.status !== "running") continue;
      record.lost = true;
      touched.push(record.id);
      for (const [nodeId, state] of this.#states(record.id)) {
        if (state.status === "queued" || state.status === "running") this.#setNode(record.id, nodeId, { status: "lost", value: undefined, max: undefined });
      }
    }
    this.running = null;
    this.runningIds = [];
    return touched;
  }

  forget(id) {
    this.records.delete(id);
    this.nodes.delete(id);
    this.origins.delete(id);
  }

  /**
   * What a run reported a node's outputs to be, if the server sends values: a run record
   * or a run_succeeded message with {"values": {node id: {output: value}}} (e.g. what
   * core.show showed).
   */
  nodeValue(runId, nodeId) {
    return this.records.get(runId)?.values?.[nodeId];
  }

  /** A node's state in a run ({} when the run says nothing about it). */
  nodeState(runId, nodeId) {
    return this.nodes.get(runId)?.get(nodeId) ?? {};
  }

  /** The combined state of the nodes whose ids start with `prefix` ("sg/": those inside subgraph node sg). */
  groupState(runId, prefix) {
    const inside = [];
    for (const [nodeId, state] of this.nodes.get(runId) || []) if (nodeId.startsWith(prefix)) inside.push([nodeId.slice(prefix.length), state]);
    return combineStates(inside);
  }

  /**
   * The run whose node states the canvas shows for the graph `key`: among the runs
   * queued from that graph, the one running; else the earliest queued after the last
   * one that ran (it is next); else the last one that ran (a run cancelled before it
   * started never ran). null when the graph has none.
   */
  focusFor(key) {
    const mine = [...this.origins].filter(([, o]) => o.key === key).map(([id]) => this.records.get(id) || { id, status: "queued" });
    if (!mine.length) return null;
    const running = mine.find((r) => r.status === "running" && !r.lost);
    if (running) return running.id;
    let lastStarted = -1;
    mine.forEach((r, i) => {
      if (this.#started(r)) lastStarted = i;
    });
    const next = mine.slice(lastStarted + 1).find((r) => r.status === "queued");
    if (next) return next.id;
    return lastStarted >= 0 ? mine[lastStarted].id : mine.at(-1).id;
  }

  /** Whether a run began executing (a run cancelled while queued never did). */
  #started(record) {
    return record.status !== "queued" && (record.began || record.started != null || record.status === "running");
  }

  /**
   * Overall progress of a running run: {done, total, fraction, step} where `step` is the
   * running node's {value, max} if it reports one (with `info`, e.g. a training loss, when
   * the node sent more); null when the run is not running.
   */
  progress(id) {
    const record = this.records.get(id);
    if (!record || record.status !== "running" || record.lost) return null;
    const states = [...(this.nodes.get(id)?.values() || [])];
    const total = Math.max(record.total ?? 0, states.length, 1);
    const done = states.filter((s) => SETTLED.has(s.status)).length;
    const current = states.find((s) => s.status === "running" && s.max);
    const part = current ? Math.max(0, Math.min(1, current.value / current.max)) : 0;
    return {
      done,
      total,
      fraction: Math.min(1, (done + part) / total),
      step: current ? stepOf(current) : null,
    };
  }
}

/** A running node's step for the progress label: {value, max} and, when it reported any, `info`. */
function stepOf(state) {
  const step = { value: state.value, max: state.max };
  if (state.info && Object.keys(state.info).length) step.info = state.info;
  return step;
}
