// The "Queue" panel: every client's runs, newest first, each row naming the workflow,
// with a thumbnail of its first image, its status (or "connection lost" while the
// server cannot be reached), and Cancel / Open / Delete; "Clear" deletes every finished
// run (DELETE /api/runs/{id}, which also removes its output files).

const LIMIT = 30;

export class QueuePanel {
  /**
   * @param {{list: HTMLElement, count: HTMLElement, clear: HTMLButtonElement}} el
   * @param {{book: RunBook, withToken, cancel, open, remove, clearFinished}} deps  actions take a run id
   */
  constructor(el, deps) {
    this.el = el;
    this.deps = deps;
    this.rows = new Map(); // run id -> {item, signature}
    el.clear.addEventListener("click", () => deps.clearFinished());
  }

  /** The runs to list, newest first. */
  runs() {
    const { book } = this.deps;
    const records = [...book.records.values()].filter((r) => r.created != null || book.origins.has(r.id));
    return records.sort((a, b) => (b.created || 0) - (a.created || 0)).slice(0, LIMIT);
  }

  /**
   * Update the list. Rows whose content did not change are kept as they are (progress
   * arrives many times a second; a row rebuilt each time could not be clicked).
   */
  render() {
    const { book } = this.deps;
    const runs = this.runs();
    const running = book.runningIds.length;
    this.el.count.textContent = book.waiting || running ? `${book.waiting} waiting${running ? `, ${running} running` : ""}` : "";
    this.el.clear.disabled = !runs.some((r) => book.isFinished(r.status));
    const rows = runs.map((run) => {
      const signature = this.signature(run);
      const known = this.rows.get(run.id);
      if (known?.signature === signature) return known.item;
      const item = this.row(run);
      this.rows.set(run.id, { item, signature });
      return item;
    });
    for (const id of this.rows.keys()) if (!runs.some((r) => r.id === id)) this.rows.delete(id);
    const current = [...this.el.list.children];
    if (current.length !== rows.length || rows.some((row, i) => row !== current[i])) this.el.list.replaceChildren(...rows);
  }

  signature(run) {
    const { book } = this.deps;
    const image = (run.outputs || []).find((o) => o.kind === "image" && o.url)?.url ?? "";
    return JSON.stringify([run.status, Boolean(run.lost), book.label(run.id), run.created, run.seconds, run.error, image]);
  }

  row(run) {
    const { book, withToken } = this.deps;
    const item = document.createElement("li");
    const lost = run.lost && !book.isFinished(run.status);
    item.className = `run run-${lost ? "lost" : run.status}`;
    item.dataset.run = run.id;
    const thumb = document.createElement("span");
    thumb.className = "run-thumb";
    const image = (run.outputs || []).find((o) => o.kind === "image" && o.url);
    if (image) {
      const img = document.createElement("img");
      img.src = withToken(image.url);
      img.alt = "";
      img.loading = "lazy";
      thumb.append(img);
    }
    const text = document.createElement("span");
    text.className = "run-text";
    const label = document.createElement("span");
    label.className = "run-label";
    const when = run.created ? new Date(run.created * 1000).toLocaleTimeString() : "";
    label.textContent = `${book.label(run.id)}${when ? ` · ${when}` : ""}`;
    const status = document.createElement("span");
    status.className = "run-status";
    const seconds = run.seconds != null && book.isFinished(run.status) ? ` ${Number(run.seconds).toFixed(1)}s` : "";
    status.textContent = lost ? "connection lost" : run.status + seconds;
    text.append(label, status);
    if (run.error) item.title = run.error;
    item.append(thumb, text, this.actions(run));
    return item;
  }

  actions(run) {
    const { book } = this.deps;
    const box = document.createElement("span");
    box.className = "run-actions";
    const button = (text, label, action) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = text;
      b.setAttribute("aria-label", `${label} ${run.id}`);
      b.addEventListener("click", () => action(run.id));
      box.append(b);
    };
    if (!book.isFinished(run.status)) {
      button("Cancel", "Cancel run", this.deps.cancel);
    } else {
      button("Open", "Open the graph of run", this.deps.open);
      button("✕", "Delete run", this.deps.remove);
      box.lastChild.title = "Delete this run and its output files";
    }
    return box;
  }
}
