// The canvas: litegraph's graph and canvas objects, configured for nodeflow, and what
// the rest of the editor asks of them (find a node, fit the view, draw run state on
// nodes, page coordinates for pointer automation).
//
// Configuration made here:
//   * the one connection rule is the server's table (types.js);
//   * menus show only what the engine supports: litegraph's own "Convert to Subgraph"
//     (litegraph's subgraphs, not the engine's) and node modes ("Mode" with litegraph's
//     Always/On Event/Never/On Trigger, the properties panel that edits it) are removed,
//     and so are edits the document cannot keep (shapes); the editor's own entries for
//     modes and subgraphs come from commands.js;
//   * muted nodes are drawn dimmed and bypassed ones purple, as ComfyUI draws them;
//   * the canvas search box (double-click, or a link released on empty space) finds
//     nodes with the same matcher as the library (search.js).

import { CanvasPointer, LGraph, LGraphCanvas, LGraphEventMode, LGraphGroup, LiteGraph } from "../vendor/litegraph.es.js";
import { valueHeight } from "./nodedraw.js";

/** Below this zoom litegraph draws plain boxes; the fitted view never goes below it. */
export const LOW_DETAIL_ZOOM = 0.45;
const READABLE_ZOOM = 0.5;
/** How opaque muted and bypassed nodes are drawn (ComfyUI: 0.4, and 0.2 on its magenta ground; a little more here, to stay legible). */
const MODE_ALPHA = { [LGraphEventMode.NEVER]: 0.4, [LGraphEventMode.BYPASS]: 0.35 };
const HIDDEN_MENU_ENTRIES = [/^Convert to Subgraph/, /^Mode$/, /^Properties/, /^Shapes$/, /^Inputs$/, /^Outputs$/];

/** Menu entries without those the engine does not support (and with no doubled separators). */
export function supportedMenu(options, replacements = {}) {
  const kept = [];
  for (const option of options) {
    const content = option?.content;
    if (typeof content === "string" && HIDDEN_MENU_ENTRIES.some((re) => re.test(content))) continue;
    if (option === null && (kept.length === 0 || kept.at(-1) === null)) continue;
    kept.push(typeof content === "string" && replacements[content] ? { ...option, ...replacements[content] } : option);
  }
  while (kept.length && kept.at(-1) === null) kept.pop();
  return kept;
}

export class GraphView {
  /**
   * @param {HTMLCanvasElement} element
   * @param {HTMLElement} wrap  the element whose size the canvas takes
   * @param {{types, search: (query) => string[], rename: (node) => void, canvasMenu: () => object[]}} deps
   */
  constructor(element, wrap, { types, search, rename, canvasMenu: extraCanvasMenu = () => [] }) {
    configureLiteGraph(types);
    this.wrap = wrap;
    this.graph = new LGraph();
    this.canvas = new LGraphCanvas(element, this.graph);
    const canvas = this.canvas;
    canvas.allow_searchbox = true;
    canvas.render_canvas_border = false;
    canvas.show_info = false;
    canvas.low_quality_zoom_threshold = LOW_DETAIL_ZOOM; // text stays readable down to here
    canvas.onSearchBox = (_helper, query) => search(query);
    const nodeMenu = canvas.getNodeMenuOptions.bind(canvas);
    const canvasMenu = canvas.getCanvasMenuOptions.bind(canvas);
    const renameEntry = { Title: { content: "Rename", callback: (_v, _o, _e, _m, node) => rename(node) } };
    canvas.getNodeMenuOptions = (node) => supportedMenu(nodeMenu(node), renameEntry);
    canvas.getCanvasMenuOptions = () => supportedMenu([...canvasMenu(), ...extraCanvasMenu()]);
    const drawNode = canvas.drawNode.bind(canvas);
    canvas.drawNode = (node, ctx) => {
      const alpha = canvas.editor_alpha;
      if (node.mode in MODE_ALPHA) canvas.editor_alpha = alpha * MODE_ALPHA[node.mode];
      try {
        drawNode(node, ctx);
      } finally {
        canvas.editor_alpha = alpha;
      }
    };
    this.resize();
    window.addEventListener("resize", () => this.resize());
  }

  resize() {
    this.canvas.resize(this.wrap.clientWidth, this.wrap.clientHeight);
  }

  redraw(background = false) {
    this.canvas.setDirty(true, background);
  }

  /** The canvas node whose document id is `id`, or null. */
  nodeById(id) {
    return this.graph.nodes.find((n) => n.nf?.id === String(id)) || null;
  }

  get view() {
    return { offset: [...this.canvas.ds.offset], scale: this.canvas.ds.scale };
  }

  set view(view) {
    this.canvas.ds.offset = view.offset;
    this.canvas.ds.scale = view.scale;
    this.redraw(true);
  }

  /**
   * Show the whole graph, or as much of it as fits at a readable zoom: a graph too big
   * for the window is shown from its left (where its sources are), centred vertically.
   */
  fitView() {
    const nodes = this.graph.nodes;
    if (!nodes.length) return;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const { width, height } = this.canvas.canvas;
    const margin = 40;
    const fit = Math.min(1, (width - 2 * margin) / (x1 - x0), (height - 2 * margin) / (y1 - y0));
    const scale = Math.max(READABLE_ZOOM, fit);
    const left = (x1 - x0) * scale <= width - 2 * margin ? (width / scale - (x1 - x0)) / 2 - x0 : margin / scale - x0;
    this.view = { scale, offset: [left, (height / scale - (y1 - y0)) / 2 - y0] };
  }

  focusNode(node) {
    this.canvas.centerOnNode(node);
    this.canvas.selectNodes([node]);
    this.redraw(true);
  }

  /** Add a node of `type` at graph position `pos` (default: the middle of the view). */
  addNode(type, pos) {
    const node = LiteGraph.createNode(type);
    if (!node) throw new Error(`unknown node type '${type}'`);
    if (!pos) {
      const el = this.canvas.canvas;
      const centre = this.canvas.ds.convertCanvasToOffset([el.width / 2, el.height / 2]);
      pos = [centre[0] - node.size[0] / 2, centre[1] - node.size[1] / 2];
    }
    node.pos = [Math.round(pos[0]), Math.round(pos[1])];
    this.graph.add(node);
    this.canvas.selectNodes([node]);
    return node;
  }

  /** Put the selected nodes (and other selected items) in a new group; false when nothing is selected. */
  groupSelection() {
    const items = [...this.canvas.selectedItems];
    if (!items.length) return false;
    const group = new LGraphGroup("Group");
    group.resizeTo(items, 10);
    this.graph.add(group);
    this.redraw(true);
    return group;
  }

  // -- what the canvas shows of runs ------------------------------------------------
  setNodeRun(nodeId, state) {
    const node = this.nodeById(nodeId);
    if (!node) return;
    node.nf.run = state?.status ? { ...state } : null;
    this.redraw();
  }

  /** Forget what a run drew on the nodes; `images` too when the next run shown is another graph's. */
  clearRunDecorations({ images = false } = {}) {
    for (const node of this.graph.nodes) {
      if (!node.nf) continue;
      node.nf.run = null;
      node.nf.preview = null;
      node.nf.value = undefined;
      if (images) {
        node.nf.images = [];
        node.nf.imageElements = [];
      }
    }
    this.redraw();
  }

  /** Show a value a run reported for a node (undefined: none). */
  setNodeValue(nodeId, value) {
    const node = this.nodeById(nodeId);
    if (!node) return;
    const text = value === undefined ? undefined : formatValue(value);
    if (text === node.nf.value) return;
    node.nf.value = text;
    if (text !== undefined) {
      const needed = node.contentHeight() + valueHeight(text.split("\n").length);
      if (node.size[1] < needed) node.setSize([node.size[0], needed]);
    }
    this.redraw();
  }

  setPreview(nodeId, dataUrl) {
    const node = this.nodeById(nodeId);
    if (!node) return;
    const img = new Image();
    img.onload = () => {
      if (node.nf.run?.status !== "running") return; // arrived after the node finished
      node.nf.preview = img;
      node.makeRoomForImage(img.naturalHeight / img.naturalWidth);
      this.redraw();
    };
    img.src = dataUrl;
  }

  setImages(nodeId, urls) {
    const node = this.nodeById(nodeId);
    if (!node) return;
    if (urls.length === node.nf.images.length && urls.every((u, i) => u === node.nf.images[i])) return;
    node.nf.images = urls;
    node.nf.imageElements = urls.map((url) => {
      const img = new Image();
      img.onload = () => {
        node.makeRoomForImage(img.naturalHeight / img.naturalWidth);
        this.redraw();
      };
      img.src = url;
      return img;
    });
  }

  // -- geometry for scripts and tests -------------------------------------------------
  /** Page coordinates of a graph position. */
  toPage(graphPos) {
    const [x, y] = this.canvas.ds.convertOffsetToCanvas(graphPos);
    const rect = this.canvas.canvas.getBoundingClientRect();
    return { x: rect.left + x, y: rect.top + y };
  }

  /** Page coordinates of an input or output socket of a node. */
  slotPosition(nodeId, name, kind = "input") {
    const node = this.nodeById(nodeId);
    if (!node) throw new Error(`no node ${nodeId}`);
    const slots = kind === "input" ? node.inputs : node.outputs;
    const index = slots.findIndex((s) => s.name === name);
    if (index < 0) throw new Error(`node ${nodeId} has no ${kind} '${name}'`);
    return this.toPage(kind === "input" ? node.getInputPos(index) : node.getOutputPos(index));
  }

  /** Page coordinates of the middle of the widget of input `name`. */
  widgetPosition(nodeId, name) {
    const node = this.nodeById(nodeId);
    const widget = node?.widgets?.find((w) => w.name === name);
    if (widget && widget.last_y === undefined) this.canvas.draw(true, true); // lays widgets out
    if (!widget || widget.last_y === undefined) throw new Error(`no visible widget '${name}' on node ${nodeId}`);
    const height = widget.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT;
    return this.toPage([node.pos[0] + node.size[0] / 2, node.pos[1] + widget.last_y + height / 2]);
  }

  /** Page coordinates of a node's title bar (`where`: "middle", or "collapse" for its collapse dot). */
  titlePosition(nodeId, where = "middle") {
    const node = this.nodeById(nodeId);
    if (!node) throw new Error(`no node ${nodeId}`);
    const h = LiteGraph.NODE_TITLE_HEIGHT;
    const x = where === "collapse" ? node.pos[0] + h * 0.5 : node.pos[0] + Math.min(node.size[0] / 2, 80);
    return this.toPage([x, node.pos[1] - h * 0.5]);
  }

  /** Page coordinates of the middle of the link drawn into input `name` of node `nodeId` (where its marker is). */
  linkCentre(nodeId, name) {
    const node = this.nodeById(nodeId);
    const index = node?.inputs?.findIndex((s) => s.name === name) ?? -1;
    const link = index >= 0 ? this.graph.getLink(node.inputs[index].link) : null;
    if (!link) throw new Error(`no link into ${nodeId}.${name}`);
    // a link without reroutes is a symmetric bezier: its middle is the middle of its ends
    const a = this.graph.getNodeById(link.origin_id).getOutputPos(link.origin_slot);
    const b = node.getInputPos(index);
    return this.toPage([(a[0] + b[0]) / 2, (a[1] + b[1]) / 2]);
  }
}

/**
 * A node's reported outputs ({output: value}) as one short text: a single output's value
 * alone, several as "name: value" lines; strings as they are, anything else as JSON.
 */
export function formatValue(outputs) {
  const one = (value) => (typeof value === "string" ? value : JSON.stringify(value) ?? String(value));
  const isOutputs = outputs !== null && typeof outputs === "object" && !Array.isArray(outputs);
  const entries = isOutputs ? Object.entries(outputs) : [];
  let text;
  if (!isOutputs) text = one(outputs);
  else if (entries.length === 1) text = one(entries[0][1]);
  else text = entries.map(([name, value]) => `${name}: ${one(value)}`).join("\n");
  return text.length > 1000 ? `${text.slice(0, 999)}…` : text;
}

/** Settings of the litegraph library itself (global to the page): the connection rule, link colours, gestures. */
export function configureLiteGraph(types) {
  // The one connection rule, from the server's table. Every litegraph path that asks
  // whether two slots fit (dragging, highlighting, menus) goes through here.
  LiteGraph.isValidConnection = (output, input) => types.canConnect(output, input);
  for (const name of Object.keys(types.info)) LGraphCanvas.link_type_colors[name] = types.colour(name);
  LiteGraph.release_link_on_empty_shows_menu = true;
  LiteGraph.alt_drag_do_clone_nodes = true;
  LiteGraph.middle_click_slot_add_default_node = true;
  LiteGraph.catch_exceptions = true;
  // litegraph counts two presses as a double-click within 300 ms; desktops default to
  // about 500 ms, and a slower double-click should still open the search box or rename
  CanvasPointer.doubleClickTime = 500;
}
