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
//   modelKind(spec), modelEntries(spec, kind, current), refreshModels()   widget helpers (widgets.js, models.js)
//   changed(node, input)    a widget was edited: one undoable step per field
//   touched()               the graph may have changed (links): check soon
//   menu(node)              extra context-menu entries
//   rename(node)            open the title editor
//   openSubgraph(node)      open the subgraph a subgraph node runs
//
// Node modes are litegraph's `node.mode` (modes.js): muted nodes are drawn dimmed,
// bypassed ones purple, as ComfyUI draws them. A document's subgraphs get a class each
// (registerSubgraphTypes, when the document is drawn), built from subgraphSchema() like
// any node's; while a subgraph is open, two boundary nodes carry its inputs and outputs.

import { LGraphEventMode, LGraphNode, LiteGraph } from "../vendor/litegraph.es.js";
import { drawBoundaryHint, drawNodeState, drawSubgraphMark } from "./nodedraw.js";
import { SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS, SUBGRAPH_PREFIX, subgraphSchema } from "./subgraphs.js";
import { addWidgetFor } from "./widgets.js";

export const MISSING_TYPE = "nodeflow/missing";
/**
 * A bypassed node's background, drawn at a low opacity (graphview.js) as ComfyUI draws its
 * magenta one: purple on the dark canvas, lavender on the light one.
 */
const BYPASSED_BGCOLOR = "#9b4dca";
/** Title colours (mid-tones: readable in the light and the dark theme) of subgraph and boundary nodes. */
const SUBGRAPH_COLOUR = "#3d6a8f";
const BOUNDARY_COLOUR = "#6a6a80";

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

    get renderingBgColor() {
      return this.mode === LGraphEventMode.BYPASS ? BYPASSED_BGCOLOR : super.renderingBgColor;
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

/** A node running a subgraph: sockets and widgets from subgraphSchema(); double-click its body to open it. */
function subgraphClass(Base, schema, name, host) {
  const cls = class SubgraphInstance extends classFor(Base, schema, host) {
    constructor(title) {
      super(title);
      this.color = this.nf.defaultColor = SUBGRAPH_COLOUR;
      this.size[1] += 18; // room for its mark
    }

    onDblClick(_e, pos) {
      if (pos[1] >= 0) host.openSubgraph?.(this); // the title bar renames
    }

    onDrawForeground(ctx, canvas) {
      super.onDrawForeground(ctx, canvas);
      if (!canvas?.low_quality) drawSubgraphMark(this, ctx);
    }
  };
  cls.nfSubgraph = name;
  return cls;
}

/**
 * Where a subgraph's inputs come in (`kind` SUBGRAPH_INPUTS: an output per input) or its
 * outputs leave (SUBGRAPH_OUTPUTS: an input per output), while it is open. Its document
 * node is kept as it came (`nf.raw`, like a missing node's); it cannot be deleted or copied.
 */
function boundaryClass(Base, kind, host) {
  const cls = class BoundaryNode extends Base {
    constructor(title) {
      super(title);
      this.color = this.nf.defaultColor = BOUNDARY_COLOUR;
      this.nf.boundary = kind;
      this.block_delete = true;
      this.clonable = false;
    }

    /** Add the sockets ([{name, type}]) this boundary carries. */
    setSockets(sockets) {
      for (const { name, type } of sockets || []) {
        const slot = kind === SUBGRAPH_INPUTS ? this.addOutput(name, type) : this.addInput(name, type);
        applySlotColours(slot, type, host.types);
      }
      this.size = [Math.max(200, this.computeSize()[0]), Math.max(60, this.computeSize()[1] + 18)];
    }

    onConnectInput(index, outputType) {
      return !host.types || host.types.canConnect(outputType, this.inputs[index]?.type);
    }

    onNodeTitleDblClick() {} // its title is not the user's to change

    getExtraMenuOptions() {
      return [];
    }

    onDrawForeground(ctx, canvas) {
      super.onDrawForeground(ctx, canvas);
      if (!canvas?.low_quality) drawBoundaryHint(this, ctx, kind === SUBGRAPH_INPUTS ? "the subgraph's inputs" : "the subgraph's outputs");
    }
  };
  cls.title = kind === SUBGRAPH_INPUTS ? "Inputs" : "Outputs";
  cls.nfSchema = null;
  cls.nfLiteral = new Set();
  return cls;
}

function registerHidden(type, cls) {
  LiteGraph.registerNodeType(type, cls);
  cls.category = "";
  cls.skip_list = true;
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
  Missing.nfBase = Base; // registerSubgraphTypes builds on the same base, with the same host
  Missing.nfHost = host;
  registerHidden(MISSING_TYPE, Missing);
  registerHidden(SUBGRAPH_INPUTS, boundaryClass(Base, SUBGRAPH_INPUTS, host));
  registerHidden(SUBGRAPH_OUTPUTS, boundaryClass(Base, SUBGRAPH_OUTPUTS, host));
  return classes;
}

/** The schema litegraph has for a node type (the catalogue's, or a subgraph's), or null. */
export function schemaOf(type) {
  return LiteGraph.registered_node_types[type]?.nfSchema ?? null;
}

/**
 * Register a class for each subgraph a document defines (type `subgraph:NAME`), in
 * place of those of the document drawn before. Subgraphs using one another are
 * resolved through each other (subgraphSchema); one that cannot be (it contains itself)
 * gets no class, so its nodes are drawn as missing.
 */
export function registerSubgraphTypes(subgraphs) {
  const Missing = LiteGraph.registered_node_types[MISSING_TYPE];
  if (!Missing?.nfBase) throw new Error("registerNodeTypes() first");
  for (const type of Object.keys(LiteGraph.registered_node_types)) {
    if (type.startsWith(SUBGRAPH_PREFIX)) LiteGraph.unregisterNodeType(type);
  }
  const host = Missing.nfHost;
  const catalogueSchema = (type) => (type?.startsWith(SUBGRAPH_PREFIX) ? null : schemaOf(type));
  const canConnect = host.types ? (a, b) => host.types.canConnect(a, b) : undefined;
  for (const name of Object.keys(subgraphs || {})) {
    const schema = subgraphSchema(name, subgraphs, catalogueSchema, canConnect);
    if (!schema) continue;
    registerHidden(schema.id, subgraphClass(Missing.nfBase, schema, name, host));
  }
}
