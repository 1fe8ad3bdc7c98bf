// The overlay editor for multi-line text widgets (prompts).
//
// Prompts are long; litegraph's one-line prompt box is not the place to write them.
// Clicking a multi-line widget opens a real <textarea> over the canvas, sized to the
// widget, which the browser's own editing (undo, selection, IME) works in.

import { LiteGraph } from "../vendor/litegraph.es.js";

export class TextEditor {
  constructor(root, canvas) {
    this.root = root;
    this.canvas = canvas;
    this.area = root.querySelector("textarea");
    this.label = root.querySelector("label");
    this.done = null;
    this.area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.apply();
      } else if (e.key === "Escape") {
        e.preventDefault();
        this.close();
      }
      e.stopPropagation(); // keys typed here are text, not canvas shortcuts
    });
    root.querySelector("#text-editor-apply").addEventListener("click", () => this.apply());
    root.querySelector("#text-editor-cancel").addEventListener("click", () => this.close());
  }

  get isOpen() {
    return !this.root.hidden;
  }

  /** Open for `widget` of `node`; `done(text)` is called on apply. */
  open(node, widget, done) {
    if (this.isOpen) this.apply();
    const canvas = this.canvas;
    const rect = canvas.canvas.getBoundingClientRect();
    const scale = canvas.ds.scale;
    const [x, y] = canvas.ds.convertOffsetToCanvas([node.pos[0] + 10, node.pos[1] + (widget.last_y ?? 0)]);
    const width = Math.max(320, (node.size[0] - 20) * scale);
    this.root.style.left = `${Math.max(8, Math.min(rect.left + x, window.innerWidth - width - 8))}px`;
    this.root.style.top = `${Math.max(8, Math.min(rect.top + y, window.innerHeight - 260))}px`;
    this.root.style.width = `${width}px`;
    this.label.textContent = `${node.title} · ${widget.label || widget.name}`;
    this.area.value = widget.value ?? "";
    this.done = done;
    this.root.hidden = false;
    this.area.focus();
  }

  apply() {
    if (!this.isOpen) return;
    const done = this.done;
    const text = this.area.value;
    this.close();
    done?.(text);
  }

  close() {
    this.root.hidden = true;
    this.done = null;
    this.canvas.canvas.focus();
  }
}

/**
 * The node title editor: a one-line <input> over a node's title bar (double-click the
 * title, or "Rename" in the node menu). Enter or leaving the box applies, Esc cancels;
 * an empty title brings the node type's name back.
 */
export class TitleEditor {
  /**
   * @param {HTMLInputElement} input
   * @param {GraphView} view
   * @param {(node, title) => void} apply  sets the title and records the edit
   */
  constructor(input, view, apply) {
    this.input = input;
    this.view = view;
    this.applyTitle = apply;
    this.node = null;
    input.addEventListener("keydown", (e) => {
      e.stopPropagation(); // keys typed here are text, not canvas shortcuts
      if (e.key === "Enter") {
        e.preventDefault();
        this.apply();
      } else if (e.key === "Escape") {
        e.preventDefault();
        this.close();
      }
    });
    input.addEventListener("blur", () => this.apply());
  }

  open(node) {
    if (this.node) this.apply();
    this.node = node;
    const { ds } = this.view.canvas;
    const titleHeight = LiteGraph.NODE_TITLE_HEIGHT;
    const corner = this.view.toPage([node.pos[0], node.pos[1] - titleHeight]);
    const rect = this.input.offsetParent?.getBoundingClientRect() ?? { left: 0, top: 0 };
    Object.assign(this.input.style, {
      left: `${corner.x - rect.left}px`,
      top: `${corner.y - rect.top}px`,
      width: `${Math.max(160, node.size[0] * ds.scale)}px`,
      height: `${Math.max(22, titleHeight * ds.scale)}px`,
    });
    this.input.value = node.title;
    this.input.hidden = false;
    this.input.focus();
    this.input.select();
  }

  apply() {
    const node = this.node;
    if (!node) return;
    const title = this.input.value.trim();
    this.close();
    const next = title || node.constructor.title;
    if (next !== node.title) this.applyTitle(node, next);
  }

  close() {
    this.node = null;
    this.input.hidden = true;
    this.view.canvas.canvas.focus();
  }
}
