// Node classes for litegraph, built from the server's node schemas (GET /api/nodes).
//
// Every nodeflow input becomes one litegraph input slot, in schema order, so slot i is
// schema input i. An input that can take a literal (INT, FLOAT, STRING, BOOL, or a
// choice list) also gets a widget, bound to its slot ("widget input slot"): linking
// something into the slot disables the widget, exactly as the graph format says a
// value is either a literal or a link.
//
// Editor bookkeeping lives in `node.nf` (never serialised by litegraph):
//   id       the node's id in the graph document (a string, stable across saves)
//   set      names of inputs whose literal is written to the document; inputs a
//            loaded document left out stay out (their default applies), so opening
//            and saving a workflow does not rewrite it
//   run      {status, value, max, seconds, message} from the websocket
//   errors   [{input, message, code}] from validation (400 on POST /api/runs)
//   preview  latest latent preview (an Image), images: result image URLs

import { LGraphNode, LiteGraph } from "../vendor/litegraph.es.js";

export const LITERAL_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOL"]);
export const MISSING_TYPE = "nodeflow/missing";

const STATUS_COLOURS = {
  queued: "#8a8f98",
  running: "#3ddc84",
  cached: "#5aa9e6",
  done: "#2f9e44",
  error: "#ff5c5c",
  cancelled: "#d9a400",
};

const MULTILINE_LINES = 4;
const LINE_HEIGHT = 15;

/** Whether a schema input gets a widget (a literal may be typed in). */
export function takesLiteral(spec) {
  return LITERAL_TYPES.has(spec.type) || Array.isArray(spec.choices);
}

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

/** Editor-wide services the node widgets call (text editor overlay, uploads, change notification). */
export const services = {
  editText: null, // (node, widget, onDone) -> void
  uploadImage: null, // () -> Promise<string|null>
  imageChoices: null, // () -> [uploaded image names]
  showImageChoice: null, // (node, name) -> show the chosen image on the node
  modelChoices: null, // (spec) -> [model names or paths]
  changed: null, // (node, inputName) -> void
  menu: null, // (node) -> extra context-menu entries
  types: null, // TypeTable
};

function makeMultilineWidget(node, spec, value) {
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
        services.editText?.(targetNode, this, (text) => {
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

function addWidgetFor(node, spec) {
  const value = initialValue(spec);
  const label = spec.display_name || spec.name;
  const noop = () => {};
  let widget;
  if (Array.isArray(spec.choices)) {
    widget = node.addWidget("combo", spec.name, value, noop, { values: spec.choices.slice() });
  } else if (spec.type === "BOOL") {
    widget = node.addWidget("toggle", spec.name, Boolean(value), noop, { on: "true", off: "false" });
  } else if (spec.type === "INT" || spec.type === "FLOAT") {
    const step = spec.step ?? (spec.type === "INT" ? 1 : 0.01);
    widget = node.addWidget("number", spec.name, value, noop, {
      min: spec.min ?? undefined,
      max: spec.max ?? undefined,
      step2: step,
      precision: decimalsFor(spec),
      round: spec.type === "INT" ? 1 : undefined,
    });
  } else if (spec.multiline) {
    widget = node.addCustomWidget(makeMultilineWidget(node, spec, String(value ?? "")));
  } else if (spec.widget === "image") {
    // uploaded images (GET /api/uploads), plus whatever the document names
    widget = node.addWidget("combo", spec.name, String(value ?? ""), noop, {
      values: () => withCurrent(services.imageChoices?.() ?? [], widget?.value),
    });
  } else if (spec.widget === "model") {
    // models this session has seen (the server has no model listing), plus the current one
    widget = node.addWidget("combo", spec.name, String(value ?? ""), noop, {
      values: () => withCurrent(services.modelChoices?.(spec) ?? [], widget?.value),
    });
  } else {
    widget = node.addWidget("text", spec.name, String(value ?? ""), noop, {});
  }
  widget.label = label;
  if (spec.description) widget.tooltip = spec.description;
  if (spec.widget === "seed") {
    const randomise = node.addWidget("button", `${spec.name}:randomise`, null, () => {
      const old = widget.value;
      widget.value = Math.floor(Math.random() * Math.min(spec.max ?? 2 ** 32 - 1, 2 ** 32 - 1));
      node.onWidgetChanged?.(widget.name, widget.value, old, widget);
    });
    randomise.label = `↻ new ${label}`;
    randomise.serialize = false;
    const each = node.addWidget("toggle", `${spec.name}:each_run`, false, (on) => {
      const list = new Set(node.properties.randomize || []);
      if (on) list.add(spec.name);
      else list.delete(spec.name);
      node.properties.randomize = [...list];
      services.changed?.(node, spec.name);
    }, { on: "yes", off: "no" });
    each.label = `new ${label} each run`;
  }
  if (spec.widget === "model") {
    const other = node.addWidget("button", `${spec.name}:path`, null, (_v, canvas, _n, _p, event) => {
      canvas.prompt(`${label} (folder or .safetensors path)`, widget.value, (text) => {
        if (!text) return;
        const old = widget.value;
        widget.value = String(text).trim();
        node.onWidgetChanged?.(widget.name, widget.value, old, widget);
      }, event);
    });
    other.label = `other ${label} path…`;
    other.serialize = false;
  }
  if (spec.widget === "image") {
    const upload = node.addWidget("button", `${spec.name}:upload`, null, async () => {
      const name = await services.uploadImage?.();
      if (!name) return;
      const old = widget.value;
      widget.value = name;
      node.onWidgetChanged?.(widget.name, name, old, widget);
    });
    upload.label = `upload ${label}…`;
    upload.serialize = false;
  }
  return widget;
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

/** The base for every node class: state drawing and change tracking. */
class NodeflowNode extends LGraphNode {
  constructor(title) {
    super(title);
    this.nf = { id: null, set: new Set(), run: null, errors: [], preview: null, images: [], extraInputs: {}, uiExtra: {}, sized: false };
    this.serialize_widgets = true;
  }

  onWidgetChanged(name, value, _old, widget) {
    if (!this.nf) return;
    const spec = this.constructor.nfSchema?.inputs.find((i) => i.name === name);
    if (!spec) return;
    if (spec.type === "INT" && typeof value === "number" && !Number.isInteger(value)) widget.value = Math.round(value);
    this.nf.set.add(name);
    if (spec.widget === "image") services.showImageChoice?.(this, value);
    // an edited input no longer carries the error the last validation found there
    this.nf.errors = this.nf.errors.filter((e) => e.input !== name);
    services.changed?.(this, name);
  }

  onConnectionsChange(kind, index, connected) {
    // a link into an input answers a "missing input" or "type mismatch" mark on it
    if (kind === 1 /* input */ && connected && this.nf) {
      const name = this.inputs?.[index]?.name;
      this.nf.errors = this.nf.errors.filter((e) => e.input !== name);
    }
  }

  onResize() {
    if (this.graph?.list_of_graphcanvas?.some((c) => c.resizing_node === this)) this.nf.sized = true;
  }

  onConnectInput(_index, outputType, _output, _source, _slot) {
    // the same table as LiteGraph.isValidConnection; kept here too so no code path
    // inside litegraph (drag, paste-with-connections, menus) can bypass the rule
    const input = this.inputs[_index];
    return !services.types || services.types.canConnect(outputType, input?.type);
  }

  /** Height of slots and widgets, where result images start. */
  contentHeight() {
    let bottom = 4;
    for (const w of this.widgets || []) {
      if (w.last_y === undefined) continue;
      bottom = Math.max(bottom, w.last_y + (w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT));
    }
    const slotRows = Math.max(
      (this.inputs || []).filter((s) => !s.widget).length,
      (this.outputs || []).length,
    );
    return Math.max(bottom, slotRows * LiteGraph.NODE_SLOT_HEIGHT + 6) + 4;
  }

  /** Grow the node so an image of `aspect` (h/w) fits below its widgets. */
  makeRoomForImage(aspect) {
    const width = this.size[0] - 20;
    const needed = this.contentHeight() + Math.min(width * aspect, 256) + 10;
    if (this.size[1] < needed) this.setSize([this.size[0], needed]);
  }

  getExtraMenuOptions() {
    return services.menu?.(this) ?? [];
  }

  onDrawForeground(ctx, canvas) {
    drawNodeState(this, ctx, canvas?.low_quality);
  }
}

function drawNodeState(node, ctx, lowQuality) {
  const nf = node.nf;
  if (!nf) return;
  const [w, h] = node.size;
  const titleH = LiteGraph.NODE_TITLE_HEIGHT;
  const status = nf.errors.length ? "error" : nf.run?.status;
  if (status) {
    ctx.save();
    ctx.strokeStyle = STATUS_COLOURS[status] || "#888";
    ctx.lineWidth = status === "running" || status === "error" ? 3 : 2;
    ctx.beginPath();
    ctx.roundRect(-3, -titleH - 3, w + 6, h + titleH + 6, 10);
    ctx.stroke();
    if (!lowQuality) {
      const label = statusLabel(nf, status);
      ctx.font = "bold 11px sans-serif";
      const tw = ctx.measureText(label).width + 12;
      ctx.fillStyle = STATUS_COLOURS[status] || "#888";
      ctx.beginPath();
      ctx.roundRect(w - tw, -titleH - 20, tw, 16, 8);
      ctx.fill();
      ctx.fillStyle = "#111";
      ctx.textAlign = "left";
      ctx.fillText(label, w - tw + 6, -titleH - 8);
    }
    if (status === "running" && nf.run?.max) {
      const frac = Math.max(0, Math.min(1, nf.run.value / nf.run.max));
      ctx.fillStyle = "#3ddc84";
      ctx.fillRect(0, -3, w * frac, 3);
    }
    ctx.restore();
  }
  if (node.flags?.collapsed) return;
  const image = nf.preview || nf.imageElements?.[0];
  if (image && image.complete && image.naturalWidth) {
    const top = node.contentHeight();
    const maxW = w - 20;
    const maxH = h - top - 8;
    if (maxH > 8) {
      const scale = Math.min(maxW / image.naturalWidth, maxH / image.naturalHeight);
      const iw = image.naturalWidth * scale;
      const ih = image.naturalHeight * scale;
      ctx.save();
      ctx.imageSmoothingEnabled = scale < 1; // tiny images stay crisp when enlarged
      ctx.drawImage(image, (w - iw) / 2, top + (maxH - ih) / 2, iw, ih);
      ctx.restore();
      const count = nf.imageElements?.length || 0;
      if (!lowQuality && !nf.preview && count > 1) {
        ctx.fillStyle = "#ddd";
        ctx.font = "11px sans-serif";
        ctx.fillText(`1 of ${count}`, 10, h - 6);
      }
    }
  }
  if (lowQuality) return;
  const shown = nf.errors.length ? nf.errors : nf.run?.status === "error" && nf.run.message ? [{ message: nf.run.message }] : [];
  if (shown.length) drawErrors(node, ctx, shown);
}

function statusLabel(nf, status) {
  if (status === "error") return nf.errors.length ? "invalid" : "error";
  if (status === "running" && nf.run?.max) return `running ${nf.run.value}/${nf.run.max}`;
  if (status === "done" && nf.run?.seconds != null) return `done ${Number(nf.run.seconds).toFixed(2)}s`;
  return status;
}

function drawErrors(node, ctx, errors) {
  const [w, h] = node.size;
  ctx.save();
  ctx.strokeStyle = STATUS_COLOURS.error;
  ctx.lineWidth = 2;
  for (const error of errors) {
    if (!error.input) continue;
    const index = (node.inputs || []).findIndex((s) => s.name === error.input);
    if (index < 0) continue;
    const slot = node.inputs[index];
    const widget = slot.widget ? node.widgets?.find((x) => x.name === slot.widget.name) : null;
    if (widget && widget.last_y !== undefined) {
      ctx.beginPath();
      ctx.roundRect(10, widget.last_y - 2, w - 20, (widget.computedHeight ?? 24) - 0, 6);
      ctx.stroke();
    } else {
      const pos = node.getInputPos(index);
      ctx.beginPath();
      ctx.arc(pos[0] - node.pos[0], pos[1] - node.pos[1], 8, 0, Math.PI * 2);
      ctx.stroke();
    }
  }
  ctx.font = "12px sans-serif";
  // the server's sentence usually names the input already; say it only when it does not
  const lines = errors.map((e) => (e.input && !e.message.includes(`'${e.input}'`) ? `${e.input}: ${e.message}` : e.message));
  const boxW = Math.max(w, ...lines.map((l) => ctx.measureText(l).width + 16));
  const boxH = lines.length * 16 + 8;
  ctx.fillStyle = "rgba(120, 20, 20, 0.92)";
  ctx.beginPath();
  ctx.roundRect(0, h + 8, boxW, boxH, 6);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.textAlign = "left";
  lines.forEach((line, i) => ctx.fillText(line, 8, h + 8 + 16 * (i + 1)));
  ctx.restore();
}

function applySlotColours(slot, type) {
  const colour = services.types?.colour(type);
  if (colour) {
    slot.color_on = colour;
    slot.color_off = colour;
  }
}

/** Make a litegraph class for one node schema. */
function classFor(schema) {
  const cls = class extends NodeflowNode {
    constructor(title) {
      super(title);
      for (const spec of schema.inputs) {
        const slot = this.addInput(spec.name, spec.type, { label: spec.display_name || spec.name });
        applySlotColours(slot, spec.type);
        if (spec.optional || spec.has_default) slot.shape = 7; // hollow: may stay empty
        if (takesLiteral(spec)) {
          const widget = addWidgetFor(this, spec);
          slot.widget = { name: widget.name };
          if (spec.has_default) this.nf.set.add(spec.name);
        }
      }
      for (const spec of schema.outputs) {
        const slot = this.addOutput(spec.name, spec.type, { label: spec.display_name || spec.name });
        applySlotColours(slot, spec.type);
      }
      this.properties = { randomize: [] };
      this.size = this.computeSize();
      this.size[0] = Math.max(this.size[0], 220);
      if (schema.output_node) this.color = "#2d4a3e";
      // what a fresh node looks like, so only colours the user picked are saved
      this.nf.defaultColor = this.color;
      this.nf.defaultBgcolor = this.bgcolor;
    }
  };
  cls.title = schema.display_name;
  cls.nfSchema = schema;
  cls.desc = schema.description;
  return cls;
}

/**
 * A stand-in for a node whose type the server does not know (a missing plugin).
 * It keeps the document's node as it was so saving does not lose it; its slots are
 * made to fit the links that touch it.
 */
export class MissingNode extends NodeflowNode {
  constructor(title) {
    super(title);
    this.color = this.nf.defaultColor = "#6b2020";
    this.bgcolor = this.nf.defaultBgcolor = "#3a1a1a";
    this.size = [240, 60];
  }

  onDrawForeground(ctx, canvas) {
    super.onDrawForeground(ctx, canvas);
    if (canvas?.low_quality) return;
    ctx.fillStyle = "#ffb3b3";
    ctx.font = "12px sans-serif";
    ctx.fillText(`unknown type ${this.nf.raw?.type ?? ""}`, 10, this.size[1] - 10);
  }

  onConnectInput() {
    return true;
  }
}
MissingNode.title = "Missing node";
MissingNode.nfSchema = null;

/**
 * Register a class per schema with litegraph (under the node id, so `node.type` is
 * the id the graph document uses) and return {id: class}.
 */
export function registerNodeTypes(catalogue) {
  LiteGraph.clearRegisteredTypes();
  const classes = {};
  for (const [id, schema] of Object.entries(catalogue.nodes || {})) {
    const cls = classFor(schema);
    LiteGraph.registerNodeType(id, cls);
    cls.category = schema.category; // registerNodeType derives it from a "/" path; ids have none
    classes[id] = cls;
  }
  LiteGraph.registerNodeType(MISSING_TYPE, MissingNode);
  MissingNode.category = "";
  MissingNode.skip_list = true;
  return classes;
}
