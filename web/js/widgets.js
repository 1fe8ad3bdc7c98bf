// Widgets drawn on nodes for inputs that take a literal: numbers with the declared
// min/max/step, toggles, selects for declared choices, one-line text, the multi-line
// prompt widget (edited in an overlay), model pickers, and the helpers for seeds, images
// and models.
// What a widget needs from the editor (the text editor, uploads, change notification)
// comes in through the `host` given to registerNodeTypes (nodes.js).

import { LiteGraph } from "../vendor/litegraph.es.js";
import { paintMode } from "./maskeditor.js";

const MULTILINE_LINES = 4;
const LINE_HEIGHT = 15;

/** The value a widget shows for an input no document has set yet. */
export function initialValue(spec) {
  if (spec.has_default && spec.default !== null && spec.default !== undefined) return spec.default;
  if (Array.isArray(spec.choices)) return spec.choices[0] ?? "";
  return { INT: spec.min ?? 0, FLOAT: spec.min ?? 0, BOOL: false }[spec.type] ?? "";
}

function decimalsFor(spec) {
  if (spec.type === "INT") return 0;
  const step = spec.step ?? 0.01;
  const text = String(step);
  return text.includes(".") ? Math.min(text.split(".")[1].length, 6) : 0;
}

function makeMultilineWidget(node, spec, value, host) {
  const widget = {
    type: "nf_multiline",
    name: spec.name,
    label: spec.display_name || spec.name,
    value,
    options: { multiline: true },
    y: 0,
    _wrapKey: null,
    _wrapLines: [],
    computeSize(width) {
      return [width ?? node.size[0], 18 + MULTILINE_LINES * LINE_HEIGHT];
    },
    draw(ctx, _node, width, y, _h, lowQuality) {
      const margin = 15;
      const height = this.computeSize(width)[1];
      ctx.fillStyle = LiteGraph.WIDGET_BGCOLOR;
      ctx.strokeStyle = LiteGraph.WIDGET_OUTLINE_COLOR;
      ctx.beginPath();
      ctx.roundRect(margin, y, width - margin * 2, height, 6);
      ctx.fill();
      if (!lowQuality) ctx.stroke();
      if (lowQuality) return;
      ctx.font = "11px sans-serif";
      ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR;
      ctx.textAlign = "left";
      ctx.fillText(this.label, margin + 6, y + 12);
      ctx.font = "12px sans-serif";
      ctx.fillStyle = LiteGraph.WIDGET_TEXT_COLOR;
      const key = `${width}\u0000${this.value}`;
      if (this._wrapKey !== key) {
        this._wrapLines = wrapText(ctx, String(this.value ?? ""), width - margin * 2 - 12, MULTILINE_LINES);
        this._wrapKey = key;
      }
      this._wrapLines.forEach((line, i) => ctx.fillText(line, margin + 6, y + 14 + (i + 1) * LINE_HEIGHT - 2));
    },
    onPointerDown(pointer, targetNode) {
      if (this.computedDisabled) return false;
      pointer.onClick = () =>
        host.editText?.(targetNode, this, (text) => {
          const old = this.value;
          this.value = text;
          targetNode.onWidgetChanged?.(this.name, text, old, this);
        });
      return true;
    },
  };
  return widget;
}

function wrapText(ctx, text, maxWidth, maxLines) {
  const lines = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(/(\s+)/)) {
      const candidate = line + word;
      if (ctx.measureText(candidate).width > maxWidth && line) {
        lines.push(line.trimEnd());
        line = word.trimStart();
      } else line = candidate;
      if (lines.length >= maxLines) break;
    }
    lines.push(line);
    if (lines.length >= maxLines) break;
  }
  if (lines.length > maxLines || (lines.length === maxLines && text.length > lines.join(" ").length + maxLines)) {
    lines.length = maxLines;
    lines[maxLines - 1] = `${lines[maxLines - 1]}…`;
  }
  return lines.slice(0, maxLines);
}

/**
 * Add the widget for input `spec` to `node` (plus its helper buttons: new seed, upload,
 * other model path) and return it. `host` is the editor side (see nodes.js).
 */
export function addWidgetFor(node, spec, host) {
  const widget = mainWidget(node, spec, host);
  widget.label = spec.display_name || spec.name;
  if (spec.description) widget.tooltip = spec.description;
  if (spec.widget === "seed") addSeedHelpers(node, spec, widget, host);
  if (widget.nfModelKind) addModelPathButton(node, spec, widget);
  if (spec.widget === "image") addUploadButton(node, spec, widget, host);
  if (paintMode(spec)) addPaintButton(node, spec, widget, host);
  return widget;
}

function mainWidget(node, spec, host) {
  const value = initialValue(spec);
  const noop = () => {};
  if (Array.isArray(spec.choices)) return node.addWidget("combo", spec.name, value, noop, { values: spec.choices.slice() });
  if (spec.type === "BOOL") return node.addWidget("toggle", spec.name, Boolean(value), noop, { on: "true", off: "false" });
  if (spec.type === "INT" || spec.type === "FLOAT") {
    return node.addWidget("number", spec.name, value, noop, {
      min: spec.min ?? undefined,
      max: spec.max ?? undefined,
      step2: spec.step ?? (spec.type === "INT" ? 1 : 0.01),
      precision: decimalsFor(spec),
      round: spec.type === "INT" ? 1 : undefined,
    });
  }
  if (spec.multiline) return node.addCustomWidget(makeMultilineWidget(node, spec, String(value ?? ""), host));
  const kind = host.modelKind?.(spec);
  if (kind) return addModelWidget(node, spec, kind, host);
  if (spec.widget === "image") {
    // uploaded images (GET /api/uploads), plus whatever the document names
    let widget = null; // declared first: litegraph may ask for the values while adding it
    widget = node.addWidget("combo", spec.name, String(value ?? ""), noop, { values: () => withCurrent(host.imageChoices?.() ?? [], widget?.value) });
    return widget;
  }
  return node.addWidget("text", spec.name, String(value ?? ""), noop, {});
}

/**
 * A model picker: a combo whose menu lists the server's models of `kind` with their
 * family ("name · SDXL"), the default and names seen this session (models.js); the node
 * shows the chosen name with its family. Any other path is typed with the helper button.
 */
function addModelWidget(node, spec, kind, host) {
  let widget = null;
  const entries = () => host.modelEntries?.(spec, kind, widget?.value) ?? [];
  widget = node.addWidget("combo", spec.name, String(initialValue(spec) ?? ""), () => {}, { values: () => entries().map((e) => e.value) });
  widget.nfModelKind = kind;
  Object.defineProperty(widget, "_displayValue", {
    get: () => (widget.computedDisabled ? "" : (entries().find((e) => e.value === String(widget.value))?.label ?? String(widget.value))),
  });
  widget.onPointerDown = (pointer, target, canvas) => {
    if (widget.computedDisabled) return false;
    pointer.onClick = (event) => {
      openModelMenu(event ?? pointer.eDown, canvas, entries(), (value) => setWidget(target, widget, value));
      host.refreshModels?.(); // files added to the folders since show up the next time
    };
    return true;
  };
  return widget;
}

function openModelMenu(event, canvas, entries, choose) {
  const items = entries.map((entry) => ({ content: escapeHtml(entry.label), value: entry.value, className: entry.listed ? "nf-model-listed" : "" }));
  new LiteGraph.ContextMenu(items, {
    event,
    className: "dark nf-model-menu",
    scale: Math.max(1, canvas?.ds?.scale ?? 1),
    callback: (item) => choose(item.value),
  });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Set `widget` as if the user had: the node hears of it (undo step, marks cleared). */
function setWidget(node, widget, value) {
  const old = widget.value;
  widget.value = value;
  node.onWidgetChanged?.(widget.name, value, old, widget);
}

function helperButton(node, name, label, action) {
  const button = node.addWidget("button", name, null, action);
  button.label = label;
  button.serialize = false;
  return button;
}

function addSeedHelpers(node, spec, widget, host) {
  const label = widget.label;
  helperButton(node, `${spec.name}:randomise`, `↻ new ${label}`, () => setWidget(node, widget, randomSeed(spec)));
  const each = node.addWidget("toggle", `${spec.name}:each_run`, false, (on) => {
    const list = new Set(node.properties.randomize || []);
    if (on) list.add(spec.name);
    else list.delete(spec.name);
    node.properties.randomize = [...list];
    host.changed?.(node, spec.name);
  }, { on: "yes", off: "no" });
  each.label = `new ${label} each run`;
}

function addModelPathButton(node, spec, widget) {
  const label = widget.label;
  helperButton(node, `${spec.name}:path`, `other ${label} path…`, (_v, canvas, _n, _p, event) => {
    canvas.prompt(`${label} (a name in the model folders, or a path)`, widget.value, (text) => {
      if (text) setWidget(node, widget, String(text).trim());
    }, event);
  });
}

function addUploadButton(node, spec, widget, host) {
  helperButton(node, `${spec.name}:upload`, `upload ${widget.label}…`, async () => {
    const name = await host.uploadImage?.();
    if (name) setWidget(node, widget, name);
  });
}

function addPaintButton(node, spec, widget, host) {
  helperButton(node, `${spec.name}:paint`, paintMode(spec) === "alpha" ? "paint mask (alpha)…" : "paint mask…", async () => {
    const name = await host.paintMask?.(spec, widget.value);
    if (name) setWidget(node, widget, name);
  });
}

function withCurrent(list, current) {
  const values = [...new Set(list.map(String))];
  if (current !== undefined && current !== null && current !== "" && !values.includes(String(current))) values.unshift(String(current));
  return values.length ? values : [""];
}

/** A random seed for an input (used for "new seed each run"). */
export function randomSeed(spec) {
  return Math.floor(Math.random() * Math.min(spec?.max ?? 2 ** 32 - 1, 2 ** 32 - 1));
}
