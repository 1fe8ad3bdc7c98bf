// The gallery: result images of all runs, newest first; a click opens the lightbox,
// which offers the image's download and "Load this graph" (the graph the run ran).

const SHOWN = 60;

export class Gallery {
  /**
   * @param {{root: HTMLElement, lightbox: HTMLDialogElement}} el  the lightbox holds img, a[download] and button[data-role=load]
   * @param {{withToken, loadGraph: (runId) => Promise<void>}} deps
   */
  constructor({ root, lightbox }, { withToken, loadGraph }) {
    this.root = root;
    this.lightbox = lightbox;
    this.withToken = withToken;
    this.entries = []; // [{run, node, url}], newest first
    this.keys = new Set();
    this.buttons = new Map(); // entry key -> its thumbnail button
    this.image = lightbox.querySelector("img");
    this.download = lightbox.querySelector("a[download]");
    this.current = null;
    lightbox.querySelector("[data-role=load]").addEventListener("click", async () => {
      const run = this.current?.run;
      lightbox.close();
      if (run) await loadGraph(run);
    });
  }

  /** Add an image of run `run`; returns whether it was new. */
  add(run, node, url) {
    const key = `${run}\u0000${url}`;
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    this.entries.unshift({ run, node, url: this.withToken(url) });
    return true;
  }

  removeRun(run) {
    this.entries = this.entries.filter((e) => e.run !== run);
    this.keys = new Set([...this.keys].filter((k) => !k.startsWith(`${run}\u0000`)));
  }

  /** Image URLs of one node in one run, oldest first. */
  urls(run, node) {
    return this.entries.filter((e) => e.run === run && e.node === node).map((e) => e.url).reverse();
  }

  /** Update the thumbnails; those already shown are kept (no flicker, and a click lands). */
  render() {
    const shown = this.entries.slice(0, SHOWN);
    const buttons = shown.map((entry) => {
      const key = `${entry.run}\u0000${entry.url}`;
      if (!this.buttons.has(key)) this.buttons.set(key, this.thumb(entry));
      return this.buttons.get(key);
    });
    const keep = new Set(buttons);
    for (const [key, button] of this.buttons) if (!keep.has(button)) this.buttons.delete(key);
    const current = [...this.root.children];
    if (current.length !== buttons.length || buttons.some((b, i) => b !== current[i])) this.root.replaceChildren(...buttons);
  }

  thumb(entry) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    const img = document.createElement("img");
    img.src = entry.url;
    img.alt = `output of node ${entry.node ?? "?"}, run ${entry.run.slice(0, 8)}`;
    img.loading = "lazy";
    button.append(img);
    button.addEventListener("click", () => this.open(entry, img.alt));
    return button;
  }

  open(entry, alt) {
    this.current = entry;
    this.image.src = entry.url;
    this.image.alt = alt;
    this.download.href = entry.url;
    this.download.download = new URL(entry.url, window.location.href).pathname.split("/").pop() || "image.png";
    this.lightbox.showModal();
  }
}
