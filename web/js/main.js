// The editor: composes the canvas (litegraph), the node catalogue from the server,
// the graph document conversion, undo/redo, workflows, runs, and `window.nodeflow`.
//
// Everything the editor knows about nodes and types comes from GET /api/nodes; the
// only connection rule applied here is the server's compatibility table (types.js).

import { LGraph, LGraphCanvas, LiteGraph } from "../vendor/litegraph.es.js";
import { api, ApiError, connectEvents, withToken } from "./api.js";
import { checkDocument, loadDocument, toDocument } from "./document.js";
import { History } from "./history.js";
import { MISSING_TYPE, randomSeed, registerNodeTypes, services } from "./nodes.js";
import { readGraphFromPng } from "./png.js";
import { Runs } from "./runs.js";
import { TextEditor } from "./textedit.js";
import { TypeTable } from "./types.js";

const DRAFT_KEY = "nodeflow.draft";
const $ = (id) => document.getElementById(id);

class Editor {
  constructor() {
    this.state = { inputs: {}, meta: {}, extra: {} };
    this.workflowName = null; // the saved workflow the canvas was opened from
    this.workflows = [];
    this.loading = false;
    this.maxId = 0;
    this.uploads = [];
    this.seenModels = new Set();
  }

  // -- start-up -----------------------------------------------------------------------
  async start() {
    this.catalogue = await api.nodes();
    this.types = new TypeTable(this.catalogue.types);
    services.types = this.types;
    this.configureLiteGraph();
    registerNodeTypes(this.catalogue);

    this.graph = new LGraph();
    this.graph.onNodeAdded = (node) => this.nodeAdded(node);
    const element = $("graph-canvas");
    this.canvas = new LGraphCanvas(element, this.graph);
    this.canvas.allow_searchbox = true;
    this.canvas.render_canvas_border = false;
    this.canvas.show_info = false;
    // text stays readable down to this zoom; below it litegraph draws plain boxes (fast for big graphs)
    this.canvas.low_quality_zoom_threshold = 0.45;
    this.resize();
    window.addEventListener("resize", () => this.resize());

    this.textEditor = new TextEditor($("text-editor"), this.canvas);
    services.editText = (node, widget, done) => this.textEditor.open(node, widget, done);
    services.uploadImage = () => this.pickAndUploadImage();
    services.imageChoices = () => this.uploads;
    services.showImageChoice = (node, name) => this.showImageChoice(node, name);
    services.modelChoices = (spec) => [spec.default ?? "default", ...this.seenModels];
    services.changed = (node, input) => this.changed(node && input ? `${node.nf?.id}.${input}` : null);
    services.menu = (node) => this.nodeMenu(node);

    this.history = new History(
      () => this.document(),
      (doc) => this.restore(doc),
    );
    this.history.onChange = () => this.historyChanged();

    this.runs = new Runs(this, {
      queue: $("queue"),
      queueCount: $("queue-count"),
      gallery: $("gallery"),
      lightbox: $("lightbox"),
      lightboxImage: $("lightbox-image"),
    });

    this.buildLibrary();
    this.bindUi();
    this.bindChangeTracking(element);

    const draft = this.readDraft();
    if (draft) {
      try {
        this.load(draft.doc, draft.name);
      } catch {
        this.load(emptyDocument(), null);
      }
    } else this.load(emptyDocument(), null);
    this.history.reset();

    this.events = connectEvents(
      (message) => this.runs.handle(message),
      (connected) => {
        $("connection").textContent = connected ? "connected" : "offline — reconnecting";
        $("connection").classList.toggle("offline", !connected);
        if (connected) this.runs.refresh();
      },
    );
    await this.refreshWorkflows();
    this.refreshUploads();
    if (this.catalogue.errors?.length) this.toast(`${this.catalogue.errors.length} node pack(s) failed to load; see the server log`);
  }

  configureLiteGraph() {
    const types = this.types;
    // The one connection rule, from the server's table. Every litegraph path that
    // asks whether two slots fit (dragging, highlighting, menus) goes through here.
    LiteGraph.isValidConnection = (output, input) => types.canConnect(output, input);
    for (const name of Object.keys(types.info)) LGraphCanvas.link_type_colors[name] = types.colour(name);
    LiteGraph.release_link_on_empty_shows_menu = true;
    LiteGraph.alt_drag_do_clone_nodes = true;
    LiteGraph.middle_click_slot_add_default_node = true;
    LiteGraph.catch_exceptions = true;
  }

  resize() {
    const wrap = $("canvas-wrap");
    this.canvas.resize(wrap.clientWidth, wrap.clientHeight);
  }

  // -- node ids -------------------------------------------------------------------------
  nodeAdded(node) {
    if (!node.nf) return;
    // a loading document's ids are its keys, unique already; pasted or added nodes need checking
    const taken = !this.loading && node.nf.id && this.graph._nodes.some((n) => n !== node && n.nf?.id === node.nf.id);
    if (!node.nf.id || taken) node.nf.id = String(++this.maxId);
    const numeric = Number(node.nf.id);
    if (Number.isInteger(numeric) && numeric > this.maxId) this.maxId = numeric;
  }

  nodeById(id) {
    return this.graph._nodes.find((n) => n.nf?.id === String(id)) || null;
  }

  // -- documents ------------------------------------------------------------------------
  document() {
    return toDocument(this.graph, this.state);
  }

  /** Replace the canvas with `doc` (throws with a sentence if it is not a graph). */
  load(doc, name) {
    this.loading = true;
    try {
      this.maxId = 0;
      for (const id of Object.keys(doc?.nodes || {})) {
        const n = Number(id);
        if (Number.isInteger(n) && n > this.maxId) this.maxId = n;
      }
      this.state = loadDocument(this.graph, doc);
      this.rememberModels();
      this.showImageChoices();
    } finally {
      this.loading = false;
    }
    this.workflowName = name;
    $("workflow-name").value = name || "";
    this.clearProblems();
    this.renderGraphInputs();
    this.canvas.setDirty(true, true);
  }

  rememberModels() {
    for (const node of this.graph._nodes) {
      for (const spec of node.constructor.nfSchema?.inputs || []) {
        if (spec.widget !== "model") continue;
        const value = node.widgets?.find((w) => w.name === spec.name)?.value;
        if (value) this.seenModels.add(String(value));
      }
    }
  }

  /** Show an uploaded image chosen in an image widget on its node (other paths are the server's business). */
  showImageChoice(node, name) {
    if (this.uploads.includes(name)) this.setImages(node.nf.id, [withToken(`/api/uploads/${encodeURIComponent(name)}`)]);
  }

  showImageChoices() {
    for (const node of this.graph._nodes) {
      for (const spec of node.constructor.nfSchema?.inputs || []) {
        if (spec.widget !== "image") continue;
        const value = node.widgets?.find((w) => w.name === spec.name)?.value;
        if (value) this.showImageChoice(node, value);
      }
    }
  }

  async refreshUploads() {
    try {
      this.uploads = ((await api.listUploads())?.uploads || []).map((u) => u.name);
      this.showImageChoices();
    } catch {
      this.uploads = []; // an older server without the listing: uploading still works
    }
  }

  /** Load `doc` as an undoable step (opening, dropping, uploading, the API). */
  loadGraph(doc, name = null) {
    const problem = checkDocument(doc);
    if (problem) throw new Error(problem);
    this.history.check();
    this.load(doc, name);
    this.fitView();
    this.changed();
  }

  restore(doc) {
    const view = { offset: [...this.canvas.ds.offset], scale: this.canvas.ds.scale };
    this.load(doc, this.workflowName);
    this.canvas.ds.offset = view.offset;
    this.canvas.ds.scale = view.scale;
    this.saveDraft();
  }

  fitView() {
    const nodes = this.graph._nodes;
    if (!nodes.length) return;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const el = this.canvas.canvas;
    const scale = Math.max(0.1, Math.min(1, (el.width - 80) / (x1 - x0), (el.height - 80) / (y1 - y0)));
    this.canvas.ds.scale = scale;
    this.canvas.ds.offset = [(el.width / scale - (x1 - x0)) / 2 - x0, (el.height / scale - (y1 - y0)) / 2 - y0];
    this.canvas.setDirty(true, true);
  }

  /** Something may have changed: record it for undo, keep the draft, refresh the side panel. */
  changed(key = null) {
    if (this.loading) return;
    if (this.history.check(key)) {
      this.saveDraft();
      this.renderGraphInputs();
    }
    this.canvas.setDirty(true, true);
  }

  historyChanged() {
    $("undo").disabled = !this.history.canUndo;
    $("redo").disabled = !this.history.canRedo;
  }

  saveDraft() {
    clearTimeout(this._draftTimer);
    this._draftTimer = setTimeout(() => {
      try {
        localStorage.setItem(DRAFT_KEY, JSON.stringify({ name: this.workflowName, doc: this.document() }));
      } catch {
        // storage full or disabled: the draft is a convenience, not a save
      }
    }, 400);
  }

  readDraft() {
    try {
      const draft = JSON.parse(localStorage.getItem(DRAFT_KEY) || "null");
      return draft && draft.doc && !checkDocument(draft.doc) ? draft : null;
    } catch {
      return null;
    }
  }

  bindChangeTracking(element) {
    // litegraph has no change event; every edit ends with a pointer or key release.
    // litegraph's own listeners were added first, so its work is done when these run;
    // checking right away (not on a timer) keeps each gesture one undo step even when
    // the browser hands over the next key press before pending timers.
    element.addEventListener("pointerup", () => this.changed());
    document.addEventListener("keyup", (e) => {
      if (!isTextField(e.target)) this.changed();
    });
  }

  // -- the node library -------------------------------------------------------------------
  buildLibrary() {
    const entries = Object.values(this.catalogue.nodes).sort(
      (a, b) => a.category.localeCompare(b.category) || a.display_name.localeCompare(b.display_name),
    );
    const list = $("node-list");
    const render = (query) => {
      const words = query.toLowerCase().split(/\s+/).filter(Boolean);
      const match = (s) => {
        const hay = [s.display_name, s.id, s.category, s.description, ...s.inputs.map((i) => `${i.name} ${i.type}`), ...s.outputs.map((o) => `${o.name} ${o.type}`)]
          .join(" ")
          .toLowerCase();
        return words.every((w) => hay.includes(w));
      };
      const shown = entries.filter(match);
      const groups = new Map();
      for (const s of shown) {
        if (!groups.has(s.category)) groups.set(s.category, []);
        groups.get(s.category).push(s);
      }
      const children = [];
      for (const [category, schemas] of groups) {
        const heading = document.createElement("div");
        heading.className = "category";
        heading.textContent = category;
        children.push(heading);
        for (const schema of schemas) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "node-entry";
          button.setAttribute("role", "listitem");
          button.draggable = true;
          button.dataset.type = schema.id;
          button.title = `${schema.description}\n${schema.id} v${schema.version}`;
          button.setAttribute("aria-label", `Add ${schema.display_name}`);
          const name = document.createElement("span");
          name.textContent = schema.display_name;
          const sockets = document.createElement("span");
          sockets.className = "sockets";
          for (const out of schema.outputs) {
            const dot = document.createElement("i");
            dot.style.background = this.types.colour(out.type);
            dot.title = out.type;
            sockets.append(dot);
          }
          button.append(name, sockets);
          button.addEventListener("click", () => this.addNode(schema.id));
          button.addEventListener("dragstart", (e) => {
            e.dataTransfer.setData("application/x-nodeflow-node", schema.id);
            e.dataTransfer.effectAllowed = "copy";
          });
          children.push(button);
        }
      }
      if (!children.length) {
        const empty = document.createElement("p");
        empty.className = "empty";
        empty.textContent = "No node matches.";
        children.push(empty);
      }
      list.replaceChildren(...children);
    };
    $("node-search").addEventListener("input", (e) => render(e.target.value));
    $("node-search").addEventListener("keydown", (e) => {
      if (e.key === "Enter") list.querySelector(".node-entry")?.click();
    });
    render("");
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
    this.changed();
    return node;
  }

  nodeMenu(node) {
    const schema = node.constructor.nfSchema;
    if (!schema) return [];
    const options = [];
    for (const spec of schema.inputs) {
      const exposedAs = Object.entries(this.state.inputs).find(([, t]) => t.node === node.nf.id && t.input === spec.name)?.[0];
      if (exposedAs) {
        options.push({ content: `Stop exposing "${exposedAs}"`, callback: () => this.unexposeInput(exposedAs) });
      } else if (node.widgets?.some((w) => w.name === spec.name)) {
        options.push({ content: `Expose "${spec.name}" as a workflow input`, callback: () => this.exposeInput(node, spec.name) });
      }
    }
    return options;
  }

  exposeInput(node, input, name = input) {
    let unique = name;
    for (let i = 2; unique in this.state.inputs; i++) unique = `${name}_${i}`;
    this.state.inputs = { ...this.state.inputs, [unique]: { node: node.nf.id, input, description: "" } };
    this.changed();
    return unique;
  }

  unexposeInput(name) {
    const { [name]: _, ...rest } = this.state.inputs;
    this.state.inputs = rest;
    this.changed();
  }

  // -- workflow inputs panel ----------------------------------------------------------------
  renderGraphInputs() {
    const form = $("graph-inputs");
    const entries = Object.entries(this.state.inputs || {});
    const active = document.activeElement;
    if (form.contains(active) && form.dataset.keys === entries.map(([k]) => k).join("\u0000")) {
      // the user is typing here: refresh values of the other fields only
      for (const field of form.querySelectorAll("[data-input]")) {
        if (field !== active) this.fillField(field, field.dataset.input);
      }
      return;
    }
    form.dataset.keys = entries.map(([k]) => k).join("\u0000");
    const rows = entries.map(([name, target]) => {
      const node = this.nodeById(target.node);
      const spec = node?.constructor.nfSchema?.inputs.find((i) => i.name === target.input);
      const row = document.createElement("div");
      row.className = "graph-input";
      const id = `graph-input-${name}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = name;
      if (target.description) label.title = target.description;
      let field;
      if (!node || !spec) {
        field = document.createElement("input");
        field.disabled = true;
        field.value = node ? `unknown input ${target.input}` : `node ${target.node} is missing`;
      } else if (Array.isArray(spec.choices)) {
        field = document.createElement("select");
        for (const choice of spec.choices) field.append(new Option(String(choice), String(choice)));
      } else if (spec.type === "BOOL") {
        field = document.createElement("input");
        field.type = "checkbox";
      } else if (spec.type === "INT" || spec.type === "FLOAT") {
        field = document.createElement("input");
        field.type = "number";
        if (spec.min != null) field.min = spec.min;
        if (spec.max != null) field.max = spec.max;
        field.step = spec.step ?? (spec.type === "INT" ? 1 : "any");
      } else if (spec.multiline) {
        field = document.createElement("textarea");
        field.rows = 3;
      } else {
        field = document.createElement("input");
        field.type = "text";
      }
      field.id = id;
      field.name = name;
      field.dataset.input = name;
      if (node && spec) {
        this.fillField(field, name);
        const commit = () => this.setGraphInput(name, readField(field, spec));
        field.addEventListener(field.tagName === "SELECT" || field.type === "checkbox" ? "change" : "input", commit);
      }
      row.append(label, field);
      if (spec && spec.widget === "seed") {
        const dice = document.createElement("button");
        dice.type = "button";
        dice.textContent = "↻";
        dice.title = "New random seed";
        dice.setAttribute("aria-label", `New random ${name}`);
        dice.addEventListener("click", () => {
          this.setGraphInput(name, randomSeed(spec));
          this.fillField(field, name);
        });
        row.append(dice);
      }
      return row;
    });
    if (!rows.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "None. Right-click a node to expose one of its inputs here.";
      rows.push(p);
    }
    form.replaceChildren(...rows);
  }

  fillField(field, name) {
    const value = this.getGraphInput(name);
    if (field.type === "checkbox") field.checked = Boolean(value);
    else field.value = value ?? "";
  }

  getGraphInput(name) {
    const target = this.state.inputs[name];
    const node = target && this.nodeById(target.node);
    return node?.widgets?.find((w) => w.name === target.input)?.value;
  }

  /** Set an exposed workflow input (or "NODE_ID.INPUT") to a literal, as an undoable edit. */
  setGraphInput(name, value) {
    let target = this.state.inputs[name];
    if (!target && name.includes(".")) {
      const at = name.lastIndexOf(".");
      target = { node: name.slice(0, at), input: name.slice(at + 1) };
    }
    const node = target && this.nodeById(target.node);
    const widget = node?.widgets?.find((w) => w.name === target.input);
    if (!widget) throw new Error(`'${name}' is not a workflow input or NODE_ID.INPUT with a widget`);
    const old = widget.value;
    widget.value = value;
    node.onWidgetChanged(widget.name, value, old, widget);
  }

  // -- problems -------------------------------------------------------------------------------
  clearProblems() {
    for (const node of this.graph._nodes) if (node.nf) node.nf.errors = [];
    this.problems = [];
    $("problems").replaceChildren();
  }

  /** Show structured errors [{code, node, input, message}] on their nodes and in the panel. */
  showProblems(errors, source = "validation") {
    this.clearProblems();
    this.problems = errors;
    for (const error of errors) {
      const node = error.node != null ? this.nodeById(error.node) : null;
      if (node && source === "validation") node.nf.errors.push({ input: error.input, message: error.message, code: error.code });
    }
    const items = errors.map((error) => {
      const li = document.createElement("li");
      li.className = "problem";
      li.dataset.node = error.node ?? "";
      li.dataset.input = error.input ?? "";
      li.dataset.code = error.code ?? "";
      const node = error.node != null ? this.nodeById(error.node) : null;
      const where = document.createElement("button");
      where.type = "button";
      where.className = "where";
      where.textContent = node ? `${node.title} #${error.node}${error.input ? ` · ${error.input}` : ""}` : error.node != null ? `node ${error.node}` : "graph";
      where.addEventListener("click", () => node && this.focusNode(node));
      const text = document.createElement("span");
      text.className = "message";
      text.textContent = error.message;
      li.append(where, text);
      return li;
    });
    $("problems").replaceChildren(...items);
    this.canvas.setDirty(true, true);
  }

  focusNode(node) {
    this.canvas.centerOnNode(node);
    this.canvas.selectNodes([node]);
    this.canvas.setDirty(true, true);
  }

  // -- run state on nodes -----------------------------------------------------------------------
  setNodeRun(nodeId, state) {
    const node = this.nodeById(nodeId);
    if (!node) return;
    node.nf.run = state?.status ? state : null;
    this.canvas.setDirty(true, false);
  }

  clearRunDecorations() {
    for (const node of this.graph._nodes) {
      if (!node.nf) continue;
      node.nf.run = null;
      node.nf.preview = null;
    }
    this.canvas.setDirty(true, false);
  }

  setPreview(nodeId, dataUrl) {
    const node = this.nodeById(nodeId);
    if (!node) return;
    const img = new Image();
    img.onload = () => {
      if (node.nf.run?.status !== "running") return; // arrived after the node finished
      node.nf.preview = img;
      node.makeRoomForImage(img.naturalHeight / img.naturalWidth);
      this.canvas.setDirty(true, false);
    };
    img.src = dataUrl;
  }

  setImages(nodeId, urls) {
    const node = this.nodeById(nodeId);
    if (!node) return;
    node.nf.images = urls;
    node.nf.imageElements = urls.map((url) => {
      const img = new Image();
      img.onload = () => {
        node.makeRoomForImage(img.naturalHeight / img.naturalWidth);
        this.canvas.setDirty(true, false);
      };
      img.src = url;
      return img;
    });
  }

  // -- runs -------------------------------------------------------------------------------------
  /** Queue the canvas graph. Returns the run id; throws an ApiError (with .errors) when it is invalid. */
  async queueRun(inputs) {
    this.textEditor.apply();
    this.randomiseSeeds();
    const doc = this.document();
    try {
      const created = await api.queueRun(doc, inputs && Object.keys(inputs).length ? inputs : undefined);
      this.clearProblems();
      this.runs.queued(created.id, doc);
      return created.id;
    } catch (error) {
      if (error instanceof ApiError && error.errors.length) {
        this.showProblems(error.errors, "validation");
        this.toast(`Not run: ${error.errors.length} problem${error.errors.length > 1 ? "s" : ""} in the graph (see Problems)`);
      } else this.toast(`Not run: ${error.message}`);
      throw error;
    }
  }

  randomiseSeeds() {
    let any = false;
    for (const node of this.graph._nodes) {
      for (const name of node.properties?.randomize || []) {
        const widget = node.widgets?.find((w) => w.name === name);
        const spec = node.constructor.nfSchema?.inputs.find((i) => i.name === name);
        if (!widget || !spec) continue;
        widget.value = randomSeed(spec);
        node.nf.set.add(name);
        any = true;
      }
    }
    if (any) this.changed();
  }

  // -- workflows ----------------------------------------------------------------------------------
  async refreshWorkflows(select) {
    try {
      this.workflows = (await api.listWorkflows()).workflows || [];
    } catch (e) {
      this.toast(`Cannot list workflows: ${e.message}`);
      return;
    }
    const el = $("workflow-select");
    const options = this.workflows.map((w) => {
      const option = new Option(w.read_only ? `${w.name} (built-in)` : w.name, w.name);
      if (w.description) option.title = w.description;
      return option;
    });
    el.replaceChildren(new Option("— choose a workflow —", ""), ...options);
    el.value = select ?? this.workflowName ?? "";
  }

  async openWorkflow(name) {
    if (!name) throw new Error("choose a workflow to open");
    const doc = await api.getWorkflow(name);
    const info = this.workflows.find((w) => w.name === name);
    // a built-in opens as a starting point: saving it needs a name of your own
    this.loadGraph(doc, name);
    this.workflowName = info?.read_only ? null : name;
    $("workflow-name").value = info?.read_only ? "" : name;
    if (info?.read_only) $("workflow-name").placeholder = `${name} (built-in: save under a new name)`;
    $("workflow-select").value = name;
    this.openedWorkflow = name;
    this.saveDraft();
    return doc;
  }

  async saveWorkflow(name = $("workflow-name").value.trim()) {
    if (!name) {
      $("workflow-name").focus();
      throw new Error("type a name for the workflow first");
    }
    const doc = this.document();
    if (!doc.meta.name) doc.meta = { ...doc.meta, name };
    const saved = await api.putWorkflow(name, doc);
    this.state.meta = doc.meta;
    this.workflowName = name;
    $("workflow-name").value = name;
    this.saveDraft();
    await this.refreshWorkflows(name);
    const problems = saved?.problems || [];
    this.toast(problems.length ? `Saved "${name}" (${problems.length} problem${problems.length > 1 ? "s" : ""} to fix before it runs)` : `Saved "${name}"`);
    return saved;
  }

  async renameWorkflow(newName = $("workflow-name").value.trim()) {
    const old = this.workflowName;
    if (!old) throw new Error("this graph is not a saved workflow yet: use Save");
    if (!newName || newName === old) throw new Error("type the new name in the name box first");
    const doc = this.document();
    doc.meta = { ...doc.meta, name: newName };
    await api.putWorkflow(newName, doc);
    await api.deleteWorkflow(old);
    this.state.meta = doc.meta;
    this.workflowName = newName;
    this.saveDraft();
    await this.refreshWorkflows(newName);
    this.toast(`Renamed "${old}" to "${newName}"`);
  }

  async deleteWorkflow(name = this.workflowName) {
    if (!name) throw new Error("this graph is not a saved workflow");
    await api.deleteWorkflow(name);
    if (name === this.workflowName) this.workflowName = null;
    await this.refreshWorkflows("");
    this.toast(`Deleted "${name}" (the graph stays open; Save brings it back)`);
  }

  download() {
    const doc = this.document();
    const blob = new Blob([JSON.stringify(doc, null, 2) + "\n"], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${this.workflowName || doc.meta?.name || "graph"}.json`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  /** Open a dropped or chosen file: a graph .json, or a PNG carrying its graph. */
  async openFile(file) {
    const bytes = await file.arrayBuffer();
    const head = new Uint8Array(bytes.slice(0, 8));
    let doc;
    if (head[0] === 0x89 && head[1] === 0x50) {
      doc = await readGraphFromPng(bytes);
      if (!doc) throw new Error(`${file.name} holds no nodeflow graph (it was not written by the save-image node)`);
    } else {
      try {
        doc = JSON.parse(new TextDecoder().decode(bytes));
      } catch (e) {
        throw new Error(`${file.name} is not JSON: ${e.message}`);
      }
    }
    this.loadGraph(doc, null);
    this.toast(`Opened ${file.name}`);
    return doc;
  }

  async uploadInto(node, input, file) {
    const info = await api.upload(file);
    await this.refreshUploads();
    const widget = node.widgets.find((w) => w.name === input);
    const old = widget.value;
    widget.value = info.name;
    node.onWidgetChanged(input, info.name, old, widget);
    this.toast(`Uploaded ${file.name} as ${info.name}`);
  }

  async pickAndUploadImage() {
    // In the document while the chooser is open: a detached input can be garbage
    // collected before the user picks, and the pick is then lost.
    const input = document.createElement("input");
    input.type = "file";
    input.accept = "image/*";
    input.hidden = true;
    document.body.append(input);
    const file = await new Promise((resolve) => {
      input.addEventListener("change", () => resolve(input.files[0] || null));
      input.addEventListener("cancel", () => resolve(null));
      input.click();
    }).finally(() => input.remove());
    if (!file) return null;
    try {
      const info = await api.upload(file);
      await this.refreshUploads();
      return info.name;
    } catch (e) {
      this.toast(`Upload failed: ${e.message}`);
      return null;
    }
  }

  // -- UI wiring -----------------------------------------------------------------------------------
  bindUi() {
    const guard = (fn) => async (...args) => {
      try {
        await fn(...args);
      } catch (e) {
        this.toast(e.message);
      }
    };
    $("run").addEventListener("click", () => this.queueRun().catch(() => {}));
    $("open-workflow").addEventListener("click", guard(() => this.openWorkflow($("workflow-select").value)));
    $("workflow-select").addEventListener("dblclick", guard(() => this.openWorkflow($("workflow-select").value)));
    $("save-workflow").addEventListener("click", guard(() => this.saveWorkflow()));
    $("rename-workflow").addEventListener("click", guard(() => this.renameWorkflow()));
    const del = $("delete-workflow");
    del.addEventListener(
      "click",
      guard(async () => {
        // two clicks, no modal: a modal confirm would block scripts and tests alike
        if (del.dataset.armed !== "1") {
          if (!this.workflowName) throw new Error("this graph is not a saved workflow");
          del.dataset.armed = "1";
          del.textContent = `Delete "${this.workflowName}"?`;
          setTimeout(() => {
            del.dataset.armed = "";
            del.textContent = "Delete";
          }, 4000);
          return;
        }
        del.dataset.armed = "";
        del.textContent = "Delete";
        await this.deleteWorkflow();
      }),
    );
    $("new-graph").addEventListener("click", guard(() => this.loadGraph(emptyDocument(), null)));
    $("download-graph").addEventListener("click", () => this.download());
    $("upload-graph").addEventListener("click", () => $("upload-input").click());
    $("upload-input").addEventListener(
      "change",
      guard(async (e) => {
        const file = e.target.files[0];
        e.target.value = "";
        if (file) await this.openFile(file);
      }),
    );
    $("undo").addEventListener("click", () => this.history.undo());
    $("redo").addEventListener("click", () => this.history.redo());
    this.historyChanged();

    document.addEventListener("keydown", (e) => {
      const mod = e.ctrlKey || e.metaKey;
      if (!mod) return;
      const key = e.key.toLowerCase();
      if (key === "enter") {
        e.preventDefault();
        this.queueRun().catch(() => {});
      } else if (key === "s") {
        e.preventDefault();
        guard(() => this.saveWorkflow())();
      } else if (isTextField(e.target)) {
        return; // undo inside a text box is the text box's
      } else if (key === "z" && !e.shiftKey) {
        e.preventDefault();
        this.history.undo();
      } else if (key === "y" || (key === "z" && e.shiftKey)) {
        e.preventDefault();
        this.history.redo();
      }
    });

    const wrap = $("canvas-wrap");
    const hint = $("drop-hint");
    window.addEventListener("dragover", (e) => {
      e.preventDefault();
      const files = e.dataTransfer?.types?.includes("Files");
      e.dataTransfer.dropEffect = files ? "copy" : "copy";
      hint.hidden = !files;
    });
    window.addEventListener("dragleave", (e) => {
      if (!e.relatedTarget) hint.hidden = true;
    });
    window.addEventListener(
      "drop",
      guard(async (e) => {
        e.preventDefault();
        hint.hidden = true;
        const type = e.dataTransfer.getData("application/x-nodeflow-node");
        if (type) {
          if (!wrap.contains(e.target)) return;
          const pos = this.canvas.convertEventToCanvasOffset(e);
          this.addNode(type, pos);
          return;
        }
        const file = e.dataTransfer.files?.[0];
        if (!file) return;
        // an image dropped on a node with an image input is that input's new image
        const [x, y] = this.canvas.convertEventToCanvasOffset(e);
        const target = wrap.contains(e.target) ? this.graph.getNodeOnPos(x, y) : null;
        const imageSpec = target?.constructor.nfSchema?.inputs.find((i) => i.widget === "image");
        if (imageSpec && file.type.startsWith("image/")) {
          await this.uploadInto(target, imageSpec.name, file);
          return;
        }
        await this.openFile(file);
      }),
    );
  }

  toast(message) {
    const el = $("toast");
    el.textContent = message;
    el.hidden = false;
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => {
      el.hidden = true;
    }, 6000);
  }

  // -- geometry for scripts and tests --------------------------------------------------------------
  /** Page coordinates of an input or output socket of a node. */
  slotPosition(nodeId, name, kind = "input") {
    const node = this.nodeById(nodeId);
    if (!node) throw new Error(`no node ${nodeId}`);
    const slots = kind === "input" ? node.inputs : node.outputs;
    const index = slots.findIndex((s) => s.name === name);
    if (index < 0) throw new Error(`node ${nodeId} has no ${kind} '${name}'`);
    const pos = kind === "input" ? node.getInputPos(index) : node.getOutputPos(index);
    return this.toPage(pos);
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

  toPage(graphPos) {
    const [x, y] = this.canvas.ds.convertOffsetToCanvas(graphPos);
    const rect = this.canvas.canvas.getBoundingClientRect();
    return { x: rect.left + x, y: rect.top + y };
  }
}

function emptyDocument() {
  return { format: "nodeflow/graph", version: 1, nodes: {}, inputs: {}, meta: {} };
}

function isTextField(el) {
  return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
}

function readField(field, spec) {
  if (field.type === "checkbox") return field.checked;
  if (spec.type === "INT" && !Array.isArray(spec.choices)) return Math.round(Number(field.value));
  if (spec.type === "FLOAT" && !Array.isArray(spec.choices)) return Number(field.value);
  if (Array.isArray(spec.choices)) return spec.choices.find((c) => String(c) === field.value) ?? field.value;
  return field.value;
}

/** The public scripting API: for power users in the console, and for tests. */
function exposeApi(editor) {
  return {
    version: 1,
    /** Replace the canvas with a graph document (undoable). */
    loadGraph: (doc) => editor.loadGraph(doc, null),
    /** The canvas as a graph document (the format the CLI runs). */
    getGraph: () => editor.document(),
    /** Queue the canvas graph, optionally with graph inputs; resolves to the run id. */
    queueRun: (inputs) => editor.queueRun(inputs),
    /** The last run queued from this tab: {id, status, outputs, errors, ...}, or null. */
    lastRun: () => editor.runs.lastRun(),
    /** The websocket messages this tab received about a run: [{type, node, value, max}]. */
    runEvents: (id) => editor.runs.events(id),
    /** Resolves with a run's record once it has finished. */
    waitForRun: (id) => editor.runs.wait(id),
    openWorkflow: (name) => editor.openWorkflow(name),
    /** The name of the workflow last opened from the server (built-ins included), or null. */
    openedWorkflow: () => editor.openedWorkflow ?? null,
    saveWorkflow: (name) => editor.saveWorkflow(name),
    listWorkflows: () => editor.workflows.map((w) => ({ ...w })),
    /** Add a node of a type (e.g. "core.add") at an optional graph position; returns its id. */
    addNode: (type, pos) => editor.addNode(type, pos).nf.id,
    /** Set an exposed workflow input, or "NODE_ID.INPUT", to a literal. */
    setInput: (name, value) => editor.setGraphInput(name, value),
    /** What the canvas shows for a node: run state, validation errors, image URLs. */
    nodeState: (id) => {
      const node = editor.nodeById(id);
      if (!node) return null;
      return {
        type: node.type === MISSING_TYPE ? node.nf.raw?.type : node.type,
        title: node.title,
        run: node.nf.run ? { ...node.nf.run } : null,
        errors: node.nf.errors.map((e) => ({ ...e })),
        images: [...(node.nf.images || [])],
        hasPreview: Boolean(node.nf.preview),
      };
    },
    /** The widgets drawn on a node: [{name, kind, value, options}] (kind: number, combo, toggle, text, multiline, button). */
    widgets: (id) =>
      (editor.nodeById(id)?.widgets || []).map((w) => ({
        name: w.name,
        kind: w.type === "nf_multiline" ? "multiline" : w.type,
        value: w.value,
        options: Object.fromEntries(
          Object.entries(w.options || {}).map(([k, v]) => [k, typeof v === "function" ? v() : v]),
        ),
      })),
    /** Problems shown in the Problems panel: [{code, node, input, message}]. */
    problems: () => (editor.problems || []).map((e) => ({ ...e })),
    /** Links on the canvas: [{from, output, to, input}]. */
    links: () =>
      [...editor.graph._links.values()].map((l) => {
        const from = editor.graph.getNodeById(l.origin_id);
        const to = editor.graph.getNodeById(l.target_id);
        return { from: from?.nf?.id, output: from?.outputs[l.origin_slot]?.name, to: to?.nf?.id, input: to?.inputs[l.target_slot]?.name };
      }),
    slotPosition: (id, name, kind) => editor.slotPosition(id, name, kind),
    widgetPosition: (id, name) => editor.widgetPosition(id, name),
    focusNode: (id) => editor.focusNode(editor.nodeById(id)),
    fitView: () => editor.fitView(),
    undo: () => editor.history.undo(),
    redo: () => editor.history.redo(),
    canConnect: (outputType, inputType) => editor.types.canConnect(outputType, inputType),
    catalogue: () => editor.catalogue,
    withToken,
    // the live objects, for those who know litegraph
    get graph() {
      return editor.graph;
    },
    get canvas() {
      return editor.canvas;
    },
  };
}

const editor = new Editor();
window.nodeflow = exposeApi(editor);
window.nodeflow.ready = editor.start().then(
  () => {
    document.body.dataset.ready = "true";
    return true;
  },
  (error) => {
    document.body.dataset.ready = "error";
    const el = $("toast");
    el.textContent = `The editor could not start: ${error.message}`;
    el.hidden = false;
    throw error;
  },
);
