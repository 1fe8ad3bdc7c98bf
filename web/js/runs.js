// Runs as the editor sees them: the queue panel, the gallery, and the per-node state
// (queued, running with progress, cached, done, error) and previews drawn on the
// canvas, all fed by the server's websocket (GET /api/ws) and run records.
//
// Node states are shown for one run at a time, the one this tab queued last (or, when
// it has queued none, whichever run the server is running), because the canvas shows
// one graph and a run's node ids only mean something for the graph it ran.

import { api, withToken } from "./api.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const NODE_STATUS = { node_started: "running", node_cached: "cached", node_finished: "done", node_failed: "error" };
const HISTORY_LIMIT = 30;

export class Runs {
  /**
   * @param editor  {nodeById(id), redraw(), showProblems(errors, source), loadGraph(doc)}
   * @param elements  {queue, queueCount, gallery, lightbox}
   */
  constructor(editor, elements) {
    this.editor = editor;
    this.el = elements;
    this.records = new Map(); // run id -> summary (history list + live updates)
    this.focus = null; // the run whose node states the canvas shows
    this.mine = new Set(); // runs queued from this tab
    this.nodeStates = new Map(); // run id -> Map(node id -> state)
    this.waiters = new Map(); // run id -> [resolve]
    this.settled = new Map(); // run id -> promise of its final record (states reconciled)
    this.gallery = []; // [{run, node, url}]
    this.galleryKeys = new Set();
    this.logs = new Map(); // run id -> [{type, node, value, max}] as received (image data left out)
    this._refreshTimer = null;
  }

  // -- queueing ---------------------------------------------------------------------
  /** Called when POST /api/runs accepted a run of `doc` from this tab. */
  queued(id, doc) {
    this.mine.add(id);
    this.focus = id;
    // The websocket may have told us about this run before POST /api/runs answered
    // (a small graph can finish first): keep what arrived, fill in the rest.
    const states = this.nodeStates.get(id) || new Map();
    for (const nodeId of Object.keys(doc.nodes || {})) if (!states.has(nodeId)) states.set(nodeId, { status: "queued" });
    this.nodeStates.set(id, states);
    const known = this.records.get(id);
    this.records.set(id, { outputs: [], ...known, id, status: known?.status ?? "queued", created: known?.created ?? Date.now() / 1000 });
    this.editor.clearRunDecorations();
    this.applyStates();
    if (FINISHED.has(known?.status)) {
      this.showOutputs(id);
      if (known.status === "failed" && known.errors?.length) this.editor.showProblems(known.errors, "run");
    }
    this.renderQueue();
    this.scheduleRefresh();
  }

  /** Resolves with the run's record once it succeeded, failed or was cancelled. */
  wait(id) {
    if (this.settled.has(id)) return this.settled.get(id);
    const record = this.records.get(id);
    if (record && FINISHED.has(record.status)) return Promise.resolve({ ...record });
    return new Promise((resolve) => {
      const list = this.waiters.get(id) || [];
      list.push(resolve);
      this.waiters.set(id, list);
    });
  }

  lastRun() {
    const id = this.focus;
    return id ? { ...this.records.get(id), id } : null;
  }

  // -- websocket ----------------------------------------------------------------------
  handle(message) {
    const id = message.run;
    if (id) this.record(id, message);
    switch (message.type) {
      case "queue":
        this.el.queueCount.textContent = message.queued || message.running ? `${message.queued} waiting${message.running ? ", 1 running" : ""}` : "";
        if (message.running && !this.focus) this.focus = message.running;
        this.scheduleRefresh();
        return;
      case "run_started":
        this.update(id, { status: "running" });
        return;
      case "node_started":
      case "node_cached":
      case "node_finished":
      case "node_failed": {
        const state = { status: NODE_STATUS[message.type] };
        if (message.seconds != null) state.seconds = message.seconds;
        if (message.error) state.message = message.error.message;
        this.setNode(id, message.node, state);
        return;
      }
      case "progress":
        if (message.node) this.setNode(id, message.node, { status: "running", value: message.value, max: message.max });
        return;
      case "preview":
        if (id === this.focus && message.node) this.editor.setPreview(message.node, message.image);
        return;
      case "output":
        if (message.url && message.kind === "image") this.addImage(id, message.node, message.url);
        return;
      case "run_succeeded":
      case "run_failed":
      case "run_cancelled":
        this.finished(id, message);
        return;
      default:
        // an event kind this editor does not know yet: ignore it, keep working
    }
  }

  record(id, message) {
    if (!this.logs.has(id)) {
      this.logs.set(id, []);
      if (this.logs.size > 20) this.logs.delete(this.logs.keys().next().value);
    }
    const log = this.logs.get(id);
    if (log.length < 1000) log.push({ type: message.type, node: message.node ?? null, value: message.value, max: message.max });
  }

  /** The websocket messages received about a run (for scripts and tests). */
  events(id) {
    return (this.logs.get(id) || []).map((m) => ({ ...m }));
  }

  setNode(runId, nodeId, state) {
    let states = this.nodeStates.get(runId);
    if (!states) {
      states = new Map();
      this.nodeStates.set(runId, states);
    }
    states.set(nodeId, { ...(states.get(nodeId) || {}), ...state });
    if (runId === this.focus) this.editor.setNodeRun(nodeId, states.get(nodeId));
  }

  applyStates() {
    const states = this.nodeStates.get(this.focus);
    if (!states) return;
    for (const [nodeId, state] of states) this.editor.setNodeRun(nodeId, state);
  }

  finished(id, message) {
    const status = message.type.replace("run_", "");
    const outputs = message.outputs || [];
    this.update(id, { status, seconds: message.seconds, error: message.error, errors: message.errors || [], outputs, finished: Date.now() / 1000 });
    const reconciled = this.reconcile(id);
    for (const error of message.errors || []) {
      if (error.node) this.setNode(id, error.node, { status: "error", message: error.message });
    }
    // the last latent preview stays on its node until the next run: it shows where the loop ended
    if (id === this.focus && status === "failed" && message.errors?.length) this.editor.showProblems(message.errors, "run");
    // outputs of cached nodes arrive only here (a cache hit sends no output message)
    for (const output of outputs) {
      if (output.kind === "image" && output.url) this.addImage(id, output.node, output.url, false);
    }
    if (id === this.focus) this.showOutputs(id);
    this.renderGallery();
    // waiters hear of the end once the canvas shows the final node states
    const settled = reconciled.catch(() => {}).then(() => ({ ...this.records.get(id) }));
    this.settled.set(id, settled);
    if (this.settled.size > 50) this.settled.delete(this.settled.keys().next().value);
    settled.then((record) => {
      for (const resolve of this.waiters.get(id) || []) resolve(record);
      this.waiters.delete(id);
    });
    this.scheduleRefresh();
  }

  /** Put a finished run's images on the nodes that made them. */
  showOutputs(id) {
    const byNode = new Map();
    for (const output of this.records.get(id)?.outputs || []) {
      if (output.kind !== "image" || !output.url) continue;
      if (!byNode.has(output.node)) byNode.set(output.node, []);
      byNode.get(output.node).push(withToken(output.url));
    }
    for (const [nodeId, urls] of byNode) this.editor.setImages(nodeId, urls);
  }

  /**
   * Replace the live node states of a finished run with its record: the websocket
   * says nothing about nodes a run did not need, and a node may have been served from
   * the cache without running.
   */
  async reconcile(id) {
    let record;
    try {
      record = await api.getRun(id);
    } catch {
      return;
    }
    const states = this.nodeStates.get(id) || new Map();
    this.nodeStates.set(id, states);
    for (const nodeId of states.keys()) {
      if (!(nodeId in (record.nodes || {}))) states.set(nodeId, {}); // not part of the run
    }
    for (const [nodeId, node] of Object.entries(record.nodes || {})) {
      const status = { ran: "done", cached: "cached", failed: "error", skipped: null, running: "cancelled" }[node.status];
      const previous = states.get(nodeId) || {};
      states.set(nodeId, status ? { ...previous, status, seconds: node.seconds ?? previous.seconds, value: undefined, max: undefined } : {});
    }
    for (const error of record.errors || []) {
      if (error.node) states.set(error.node, { ...(states.get(error.node) || {}), status: "error", message: error.message });
    }
    if (id === this.focus) this.applyStates();
  }

  addImage(runId, nodeId, url, render = true) {
    const key = `${runId}\u0000${url}`;
    if (this.galleryKeys.has(key)) return;
    this.galleryKeys.add(key);
    this.gallery.unshift({ run: runId, node: nodeId, url: withToken(url) });
    if (runId === this.focus && nodeId) {
      const urls = this.gallery.filter((g) => g.run === runId && g.node === nodeId).map((g) => g.url).reverse();
      this.editor.setImages(nodeId, urls);
    }
    if (render) this.renderGallery();
  }

  update(id, fields) {
    this.records.set(id, { ...(this.records.get(id) || { id }), ...fields });
    this.renderQueue();
  }

  // -- history --------------------------------------------------------------------------
  scheduleRefresh() {
    if (this._refreshTimer) return;
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      this.refresh();
    }, 250);
  }

  async refresh() {
    let list;
    try {
      list = await api.listRuns();
    } catch {
      return; // the server is away; the websocket's reconnect brings us back here
    }
    const runs = list?.runs || [];
    for (const run of runs.slice(0, HISTORY_LIMIT)) {
      const known = this.records.get(run.id) || {};
      // a live websocket status is newer than a list fetched a moment ago
      const status = FINISHED.has(known.status) ? known.status : run.status;
      this.records.set(run.id, { ...known, ...run, status });
      for (const output of run.outputs || []) {
        if (output.kind === "image" && output.url) this.addImage(run.id, output.node, output.url, false);
      }
    }
    this.renderQueue(runs.slice(0, HISTORY_LIMIT).map((r) => r.id));
    this.renderGallery();
  }

  renderQueue(order) {
    const ids = order || [...this.records.keys()];
    const sorted = ids
      .map((id) => this.records.get(id))
      .filter(Boolean)
      .sort((a, b) => (b.created || 0) - (a.created || 0))
      .slice(0, HISTORY_LIMIT);
    const list = this.el.queue;
    list.replaceChildren(
      ...sorted.map((run) => {
        const item = document.createElement("li");
        item.className = `run run-${run.status}`;
        item.dataset.run = run.id;
        const label = document.createElement("span");
        label.className = "run-label";
        const when = run.created ? new Date(run.created * 1000).toLocaleTimeString() : "";
        const what = run.workflow || (this.mine.has(run.id) ? "this graph" : "graph");
        label.textContent = `${what} · ${when}`;
        const status = document.createElement("span");
        status.className = "run-status";
        status.textContent = run.status + (run.seconds != null && FINISHED.has(run.status) ? ` ${Number(run.seconds).toFixed(1)}s` : "");
        item.append(status, label);
        if (run.error) item.title = run.error;
        if (run.status === "queued" || run.status === "running") {
          const cancel = document.createElement("button");
          cancel.type = "button";
          cancel.textContent = "Cancel";
          cancel.setAttribute("aria-label", `Cancel run ${run.id}`);
          cancel.addEventListener("click", () => api.cancelRun(run.id).catch((e) => this.editor.toast(e.message)));
          item.append(cancel);
        } else {
          const open = document.createElement("button");
          open.type = "button";
          open.textContent = "Open";
          open.title = "Open the graph this run ran (inputs applied)";
          open.setAttribute("aria-label", `Open the graph of run ${run.id}`);
          open.addEventListener("click", async () => {
            try {
              const detail = await api.getRun(run.id);
              this.editor.loadGraph(detail.graph);
            } catch (e) {
              this.editor.toast(e.message);
            }
          });
          item.append(open);
        }
        return item;
      }),
    );
  }

  renderGallery() {
    const root = this.el.gallery;
    const shown = this.gallery.slice(0, 60);
    root.replaceChildren(
      ...shown.map((entry) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "thumb";
        const img = document.createElement("img");
        img.src = entry.url;
        img.alt = `output of node ${entry.node ?? "?"}, run ${entry.run.slice(0, 8)}`;
        img.loading = "lazy";
        button.append(img);
        button.addEventListener("click", () => {
          this.el.lightboxImage.src = entry.url;
          this.el.lightboxImage.alt = img.alt;
          this.el.lightbox.showModal();
        });
        return button;
      }),
    );
  }
}
