// The overlay editor for multi-line text widgets (prompts).
//
// Prompts are long; litegraph's one-line prompt box is not the place to write them.
// Clicking a multi-line widget opens a real <textarea> over the canvas, sized to the
// widget, which the browser's own editing (undo, selection, IME) works in.

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
