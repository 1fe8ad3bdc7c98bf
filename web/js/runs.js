// Runs in the page: queueing the canvas graph (Run, Ctrl+Enter), the websocket's
// messages into the run book (runstate.js), and what follows from them: node states,
// previews and images on the canvas for the run that belongs there, the queue panel,
// the gallery, the overall progress bar, the global Interrupt, and what the page shows
// when the server goes away ("connection lost") and comes back.
//
// Runs name nodes inside subgraphs by their flat ids (`outer/inner`); the canvas shows
// such a node on its subgraph node (the states of all inside, combined) and, while that
// subgraph is open, on the node itself (workspace.locate).

import { ApiError } from "./api.js";
import { Gallery } from "./gallery.js";
import { QueuePanel } from "./queue.js";
import { flatNodeIds, PATH_SEPARATOR } from "./subgraphs.js";
import { randomSeed } from "./widgets.js";

const HISTORY_PAGE = 30;
const LOG_RUNS = 20;
const LOG_LENGTH = 1000;

export class Runs {
  /**
   * @param {object} el  {interrupt, progress, progressBar, progressLabel, queue, queueCount, clear, gallery, lightbox}
   * @param {object} deps  {api, withToken, book, view, workspace, problems, session, toast, confirm, workflows, beforeRun}
   */
  constructor(el, deps) {
    Object.assign(this, deps);
    this.el = el;
    this.shown = null; // the run whose node states the canvas shows
    this.shownKey = null; // ... and the graph it was shown on
    this.waiters = new Map(); // run id -> [resolve]
    this.settled = new Map(); // run id -> promise of its final record (states reconciled)
    this.logs = new Map(); // run id -> [{type, node, value, max}] as received (image data left out)
    this.refreshTimer = null;
    this.book.adopt(this.session.readRuns());
    this.queuePanel = new QueuePanel(
      { list: el.queue, count: el.queueCount, clear: el.clear },
      {
        book: this.book,
        withToken: this.withToken,
        cancel: (id) => this.api.cancelRun(id).catch((e) => this.toast.show(e.message)),
        open: (id) => this.openRunGraph(id).catch((e) => this.toast.show(e.message)),
        remove: (id) => this.remove(id).catch((e) => this.toast.show(e.message)),
        clearFinished: () => this.clearFinished().catch((e) => this.toast.show(e.message)),
      },
    );
    this.gallery = new Gallery({ root: el.gallery, lightbox: el.lightbox }, { withToken: this.withToken, loadGraph: (id) => this.openRunGraph(id, "Load the graph of this image") });
    el.interrupt.addEventListener("click", () => this.interrupt().catch((e) => this.toast.show(e.message)));
    this.workspace.on("loaded", () => this.show(true));
    this.workspace.on("scope", () => this.show(true));
    this.render();
  }

  // -- queueing -----------------------------------------------------------------------
  /** Queue the canvas graph. Resolves to the run id; rejects (after saying why) when it cannot run. */
  async queue(inputs) {
    this.beforeRun?.();
    if (!Object.keys(this.workspace.document().nodes).length) {
      const error = new Error("Nothing to run: the canvas is empty. Add nodes from the library or open a workflow.");
      this.toast.show(error.message);
      throw error;
    }
    this.randomiseSeeds();
    const doc = this.workspace.document();
    let created;
    try {
      created = await this.api.queueRun(doc, inputs && Object.keys(inputs).length ? inputs : undefined);
    } catch (error) {
      if (error instanceof ApiError && error.errors.length) {
        this.problems.show(error.errors, "validation");
        this.toast.show(`Not run: ${error.errors.length} problem${error.errors.length > 1 ? "s" : ""} in the graph (see Problems)`);
      } else this.toast.show(`Not run: ${error.message}`);
      throw error;
    }
    this.problems.clear();
    const { name, opened } = this.workspace.identity;
    const label = name || opened || doc.meta?.name || "untitled graph";
    this.book.queued(created.id, this.workspace.key, label, flatNodeIds(doc));
    this.session.rememberRun(created.id, this.workspace.key, label);
    this.show();
    this.scheduleRefresh();
    return created.id;
  }

  randomiseSeeds() {
    let any = false;
    for (const node of this.view.graph.nodes) {
      for (const name of node.properties?.randomize || []) {
        const widget = node.widgets?.find((w) => w.name === name);
        const spec = node.constructor.nfSchema?.inputs.find((i) => i.name === name);
        if (!widget || !spec) continue;
        widget.value = randomSeed(spec);
        node.nf.set.add(name);
        any = true;
      }
    }
    if (any) this.workspace.changed();
  }

  /** Stop the run the server is running, whichever graph it is. */
  async interrupt() {
    const id = this.book.running;
    if (!id) {
      this.toast.show("Nothing is running");
      return;
    }
    await this.api.cancelRun(id);
  }

  // -- messages -------------------------------------------------------------------------
  handle(message) {
    if (message.run) this.log(message);
    const change = this.book.handle(message);
    if (message.type === "preview" && message.node && message.run === this.shown) {
      const shownOn = this.workspace.locate(message.node);
      if (shownOn) this.view.setPreview(shownOn.id, message.image);
    }
    if (message.type === "output" && message.url && message.kind === "image") {
      this.gallery.add(message.run, message.node, message.url);
      this.gallery.render();
    }
    if (change?.finished) this.finished(message.run, message);
    this.show(false, change);
    if (change?.queue || change?.finished) this.scheduleRefresh();
  }

  log(message) {
    if (!this.logs.has(message.run)) {
      this.logs.set(message.run, []);
      if (this.logs.size > LOG_RUNS) this.logs.delete(this.logs.keys().next().value);
    }
    const log = this.logs.get(message.run);
    if (log.length < LOG_LENGTH) log.push({ type: message.type, node: message.node ?? null, value: message.value, max: message.max });
  }

  /** The websocket messages received about a run (for scripts and tests). */
  events(id) {
    return (this.logs.get(id) || []).map((m) => ({ ...m }));
  }

  finished(id, message) {
    // outputs of cached nodes arrive only here (a cache hit sends no output message)
    for (const output of message.outputs || []) if (output.kind === "image" && output.url) this.gallery.add(id, output.node, output.url);
    this.gallery.render();
    const settled = this.reconcile(id).then(() => {
      if (id === this.shown && message.type === "run_failed" && message.errors?.length) this.problems.show(message.errors, "run");
      return { ...this.book.records.get(id) };
    });
    this.settle(id, settled);
  }

  settle(id, promise) {
    this.settled.set(id, promise);
    if (this.settled.size > 50) this.settled.delete(this.settled.keys().next().value);
    promise.then((record) => {
      for (const resolve of this.waiters.get(id) || []) resolve(record);
      this.waiters.delete(id);
    });
  }

  /** Replace a run's live node states with its record (the websocket does not tell everything). */
  async reconcile(id) {
    try {
      this.book.reconcile(id, await this.api.getRun(id));
    } catch {
      return; // the server is away or forgot the run: keep what the websocket said
    }
    this.show(false, { run: id, all: true });
  }

  /** Resolves with the run's record once it succeeded, failed or was cancelled. */
  wait(id) {
    if (this.settled.has(id)) return this.settled.get(id);
    const record = this.book.records.get(id);
    if (record && this.book.isFinished(record.status) && !this.waiters.has(id)) return Promise.resolve({ ...record });
    return new Promise((resolve) => {
      this.waiters.set(id, [...(this.waiters.get(id) || []), resolve]);
    });
  }

  // -- the canvas ---------------------------------------------------------------------------
  /**
   * Draw the run that belongs on the canvas now. `reloaded`: the canvas holds another
   * document; `change`: what the last message changed ({run, node} or {run, all}).
   */
  show(reloaded = false, change = null) {
    const focus = this.book.focusFor(this.workspace.key);
    if (reloaded || focus !== this.shown) {
      // another graph's images go; the same graph keeps its last images until new ones come
      this.view.clearRunDecorations({ images: reloaded || this.shownKey !== this.workspace.key });
      this.shown = focus;
      this.shownKey = this.workspace.key;
      if (focus) this.drawAll();
    } else if (focus && change?.run === focus) {
      const shownOn = change.node ? this.workspace.locate(change.node) : null;
      if (shownOn) this.drawNode(shownOn.node);
      else if (change.all || change.output) this.drawAll();
    }
    this.render();
  }

  /** A canvas node's state in the run shown: its own, or, for a subgraph node, that of the nodes inside combined. */
  drawNode(node) {
    const flat = this.workspace.flatId(node);
    const state = node.constructor.nfSubgraph ? this.book.groupState(this.shown, flat + PATH_SEPARATOR) : this.book.nodeState(this.shown, flat);
    this.view.setNodeRun(node.nf.id, state);
    this.view.setNodeValue(node.nf.id, this.book.nodeValue(this.shown, flat));
  }

  drawAll() {
    for (const node of this.view.graph.nodes) if (node.nf) this.drawNode(node);
    const byNode = new Map();
    for (const output of this.book.records.get(this.shown)?.outputs || []) {
      if (output.kind !== "image" || !output.url) continue;
      this.gallery.add(this.shown, output.node, output.url);
      const shownOn = output.node != null ? this.workspace.locate(output.node) : null;
      if (!shownOn) continue;
      const urls = this.gallery.urls(this.shown, output.node);
      byNode.set(shownOn.id, [...new Set([...(byNode.get(shownOn.id) || []), ...urls])]);
    }
    for (const [nodeId, urls] of byNode) this.view.setImages(nodeId, urls);
  }

  /** The queue panel, the progress bar and the Interrupt button. */
  render() {
    this.queuePanel.render();
    const running = this.book.running;
    this.el.interrupt.disabled = !running;
    const progress = running ? this.book.progress(running) : null;
    this.el.progress.hidden = !progress;
    if (!progress) return;
    const percent = Math.round(progress.fraction * 100);
    this.el.progressBar.style.width = `${percent}%`;
    this.el.progress.setAttribute("aria-valuenow", String(percent));
    const loss = progress.step?.info?.loss;
    const step = progress.step ? ` · step ${progress.step.value}/${progress.step.max}${typeof loss === "number" ? ` · loss ${loss.toFixed(4)}` : ""}` : "";
    this.el.progressLabel.textContent = `${this.book.label(running)}: ${progress.done}/${progress.total} nodes${step}`;
  }

  // -- the server's side ---------------------------------------------------------------------
  /** The websocket opened (true) or closed (false). */
  connection(connected) {
    if (connected) {
      this.refresh().then(() => this.recover());
      return;
    }
    this.book.connectionLost();
    this.show(false, { run: this.shown, all: true });
  }

  /** After a reconnect: runs that were in doubt get their states from the server. */
  async recover() {
    const mine = [...this.book.origins.keys()].filter((id) => {
      const record = this.book.records.get(id);
      return record && (this.waiters.has(id) || id === this.shown || !this.book.isFinished(record.status));
    });
    for (const id of mine) {
      await this.reconcile(id);
      const record = this.book.records.get(id);
      if (record && this.book.isFinished(record.status) && this.waiters.has(id)) this.settle(id, Promise.resolve({ ...record }));
    }
  }

  scheduleRefresh() {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refresh();
    }, 250);
  }

  async refresh() {
    let list;
    try {
      list = await this.api.listRuns(HISTORY_PAGE);
    } catch {
      return; // the server is away; the websocket's reconnect brings us back here
    }
    const runs = list?.runs || [];
    this.book.merge(runs);
    for (const run of runs) {
      for (const output of run.outputs || []) if (output.kind === "image" && output.url) this.gallery.add(run.id, output.node, output.url);
    }
    this.gallery.render();
    this.show();
  }

  async openRunGraph(id, what = "Open the graph of this run") {
    const detail = await this.api.getRun(id);
    await this.workflows.replace(detail.graph, {}, what);
  }

  async remove(id) {
    await this.api.deleteRun(id);
    this.forget(id);
  }

  forget(id) {
    const wasShown = id === this.shown;
    this.book.forget(id);
    this.session.forgetRun(id);
    this.gallery.removeRun(id);
    this.gallery.render();
    this.show(wasShown);
  }

  async clearFinished() {
    const finished = [...this.book.records.values()].filter((r) => this.book.isFinished(r.status)).map((r) => r.id);
    if (!finished.length) return;
    const ok = await this.confirm.ask(`Delete ${finished.length} finished run${finished.length > 1 ? "s" : ""} and their output files?`, "Delete runs");
    if (!ok) return;
    for (const id of finished) {
      try {
        await this.api.deleteRun(id);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) throw e; // already gone: fine
      }
      this.forget(id);
    }
    this.toast.show(`Deleted ${finished.length} run${finished.length > 1 ? "s" : ""}`);
  }
}
