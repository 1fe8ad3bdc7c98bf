// The minimap: the whole graph in the corner of the canvas, with the part on screen
// framed. Press or drag on it to move the view there.

const PAD = 6;

export class Minimap {
  /**
   * @param {HTMLCanvasElement} element
   * @param {GraphView} view
   */
  constructor(element, view) {
    this.element = element;
    this.view = view;
    this.pending = false;
    this.transform = null; // graph -> minimap: {x0, y0, k}
    element.addEventListener("pointerdown", (e) => {
      element.setPointerCapture(e.pointerId);
      this.moveTo(e);
    });
    element.addEventListener("pointermove", (e) => {
      if (element.hasPointerCapture(e.pointerId)) this.moveTo(e);
    });
  }

  /** Redraw on the next frame (called whenever the canvas draws). */
  requestDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  /** The part of the graph on screen, in graph coordinates [x, y, w, h]. */
  visibleArea() {
    const { offset, scale } = this.view.view;
    const { width, height } = this.view.canvas.canvas;
    return [-offset[0], -offset[1], width / scale, height / scale];
  }

  draw() {
    const el = this.element;
    const ctx = el.getContext("2d");
    const nodes = this.view.graph.nodes;
    ctx.clearRect(0, 0, el.width, el.height);
    el.hidden = nodes.length === 0;
    if (!nodes.length) return;
    const [vx, vy, vw, vh] = this.visibleArea();
    let [x0, y0, x1, y1] = [vx, vy, vx + vw, vy + vh];
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - 30);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const k = Math.min((el.width - 2 * PAD) / (x1 - x0), (el.height - 2 * PAD) / (y1 - y0));
    this.transform = { x0, y0, k };
    const style = getComputedStyle(el);
    ctx.fillStyle = style.getPropertyValue("--minimap-node").trim() || "#888";
    for (const n of nodes) {
      const [x, y] = this.toMap([n.pos[0], n.pos[1] - 30]);
      ctx.fillRect(x, y, Math.max(2, n.size[0] * k), Math.max(2, (n.size[1] + 30) * k));
    }
    ctx.strokeStyle = style.getPropertyValue("--minimap-view").trim() || "#4f8cff";
    ctx.lineWidth = 1.5;
    const [rx, ry] = this.toMap([vx, vy]);
    ctx.strokeRect(rx, ry, vw * k, vh * k);
  }

  toMap([x, y]) {
    const { x0, y0, k } = this.transform;
    return [PAD + (x - x0) * k, PAD + (y - y0) * k];
  }

  /** Centre the view on the graph point under the pointer. */
  moveTo(e) {
    if (!this.transform) return;
    const rect = this.element.getBoundingClientRect();
    const { x0, y0, k } = this.transform;
    const gx = x0 + (e.clientX - rect.left - PAD) / k;
    const gy = y0 + (e.clientY - rect.top - PAD) / k;
    const { scale } = this.view.view;
    const { width, height } = this.view.canvas.canvas;
    this.view.view = { scale, offset: [width / (2 * scale) - gx, height / (2 * scale) - gy] };
  }
}
