// Node classes for litegraph, built from the server's node schemas (GET /api/nodes).
//
// Every nodeflow input becomes one litegraph input slot, in schema order, so slot i is
// schema input i. An input that can take a literal (a socket type the vocabulary lists
// as literal, or a choice list) also gets a widget (widgets.js), bound to its slot
// ("widget input slot"): linking something into the slot disables the widget, exactly
// as the graph format says a value is either a literal or a link.
//
// Editor bookkeeping lives in `node.nf` (never serialised by litegraph):
//   id       the node's id in the graph document (a string, stable across saves)
//   set      names of inputs whose literal is written to the document; inputs a
//            loaded document left out stay out (their default applies), so opening
//            and saving a workflow does not rewrite it
//   run      {status, value, max, seconds, message} of the run shown (runstate.js)
//   errors   [{input, message, code}] from validation (400 on POST /api/runs)
//   preview  latest latent preview (an Image), images: result image URLs
//
// What nodes need from the editor comes in as one `host` object given to
// registerNodeTypes, not through module state:
//   types                   TypeTable (the connection rule)
//   literalTypes            Set of socket types that take literals (vocabulary)
//   editText(node, widget, done), uploadImage(), imageChoices(), showImageChoice(node, name),
//   modelChoices(spec)      widget helpers (widgets.js)
//   changed(node, input)    a widget was edited: one undoable step per field
//   touched()               the graph may have changed (links): check soon
//   menu(node)              extra context-menu entries
//   rename(node)            open the title editor

import { LGraphNode, LiteGraph } from "../vendor/litegraph.es.js";
import { drawNodeState } from "./nodedraw.js";
import { addWidgetFor } from "./widgets.js";

export const MISSING_TYPE = "nodeflow/missing";

/** Whether a schema input gets a widget (a literal may be typed in). */
export function takesLiteral(spec, literalTypes) {
  return literalTypes.has(spec.type) || Array.isArray(spec.choices);
}

function applySlotColours(slot, type, types) {
  const colour = types?.colour(type);
  if (colour) {
    slot.color_on = colour;
    slot.color_off = colour;
  }
}

/** The base class of every node: state drawing, change tracking, renaming. */
function baseClass(host) {
  return class NodeflowNode extends LGraphNode {
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
      if (spec.widget === "image") host.showImageChoice?.(this, value);
      // an edited input no longer carries the error the last validation found there
      this.nf.errors = this.nf.errors.filter((e) => e.input !== name);
      host.changed?.(this, name);
    }

    onConnectionsChange(kind, index, connected) {
      // a link into an input answers a "missing input" or "type mismatch" mark on it
      if (kind === LiteGraph.INPUT && connected && this.nf) {
        const name = this.inputs?.[index]?.name;
        this.nf.errors = this.nf.errors.filter((e) => e.input !== name);
      }
      host.touched?.();
    }

    onResize() {
      if (this.graph?.list_of_graphcanvas?.some((c) => c.resizing_node === this)) this.nf.sized = true;
    }

    onConnectInput(index, outputType) {
      // the same table as LiteGraph.isValidConnection; kept here too so no code path
      // inside litegraph (drag, paste-with-connections, menus) can bypass the rule
      return !host.types || host.types.canConnect(outputType, this.inputs[index]?.type);
    }

    onNodeTitleDblClick() {
      host.rename?.(this);
    }

    /** Height of slots and widgets, where result images start. */
    contentHeight() {
      let bottom = 4;
      for (const w of this.widgets || []) {
        if (w.last_y === undefined) continue;
        bottom = Math.max(bottom, w.last_y + (w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT));
      }
      const slotRows = Math.max((this.inputs || []).filter((s) => !s.widget).length, (this.outputs || []).length);
      return Math.max(bottom, slotRows * LiteGraph.NODE_SLOT_HEIGHT + 6) + 4;
    }

    /** Grow the node so an image of `aspect` (h/w) fits below its widgets. */
    makeRoomForImage(aspect) {
      const width = this.size[0] - 20;
      const needed = this.contentHeight() + Math.min(width * aspect, 256) + 10;
      if (this.size[1] < needed) this.setSize([this.size[0], needed]);
    }

    getExtraMenuOptions() {
      return host.menu?.(this) ?? [];
    }

    onDrawForeground(ctx, canvas) {
      drawNodeState(this, ctx, canvas?.low_quality);
    }
  };
}

/** Make a litegraph class for one node schema. */
function classFor(Base, schema, host) {
  const literal = new Set(schema.inputs.filter((s) => takesLiteral(s, host.literalTypes)).map((s) => s.name));
  const cls = class extends Base {
    constructor(title) {
      super(title);
      for (const spec of schema.inputs) {
        const slot = this.addInput(spec.name, spec.type, { label: spec.display_name || spec.name });
        applySlotColours(slot, spec.type, host.types);
        if (spec.optional || spec.has_default) slot.shape = 7; // hollow: may stay empty
        if (literal.has(spec.name)) {
          const widget = addWidgetFor(this, spec, host);
          slot.widget = { name: widget.name };
          if (spec.has_default) this.nf.set.add(spec.name);
        }
      }
      for (const spec of schema.outputs) {
        const slot = this.addOutput(spec.name, spec.type, { label: spec.display_name || spec.name });
        applySlotColours(slot, spec.type, host.types);
      }
      this.properties = { randomize: [] };
      this.size = this.computeSize();
      this.size[0] = Math.max(this.size[0], 220);
      if (schema.output_node) this.color = host.outputNodeColour ?? undefined;
      // what a fresh node looks like, so only colours the user picked are saved
      this.nf.defaultColor = this.color;
      this.nf.defaultBgcolor = this.bgcolor;
    }
  };
  cls.title = schema.display_name;
  cls.nfSchema = schema;
  cls.nfLiteral = literal;
  cls.desc = schema.description;
  return cls;
}

/**
 * A stand-in for a node whose type the server does not know (a missing plugin).
 * It keeps the document's node as it was so saving does not lose it; its slots are
 * made to fit the links that touch it.
 */
function missingClass(Base) {
  const cls = class MissingNode extends Base {
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
  };
  cls.title = "Missing node";
  cls.nfSchema = null;
  cls.nfLiteral = new Set();
  return cls;
}

/**
 * Register a class per schema with litegraph (under the node id, so `node.type` is
 * the id the graph document uses) and return {id: class}.
 */
export function registerNodeTypes(catalogue, host) {
  LiteGraph.clearRegisteredTypes();
  const Base = baseClass(host);
  const classes = {};
  for (const [id, schema] of Object.entries(catalogue.nodes || {})) {
    const cls = classFor(Base, schema, host);
    LiteGraph.registerNodeType(id, cls);
    cls.category = schema.category; // registerNodeType derives it from a "/" path; ids have none
    classes[id] = cls;
  }
  const Missing = missingClass(Base);
  LiteGraph.registerNodeType(MISSING_TYPE, Missing);
  Missing.category = "";
  Missing.skip_list = true;
  return classes;
}
