// The editor's composition root: it fetches the catalogue, builds each part with what
// it depends on, wires their events together and exposes `window.nodeflow`. The parts:
//
//   graphview.js   the litegraph canvas          workspace.js  the document, undo, draft
//   nodes.js       node classes (+ widgets.js, nodedraw.js)
//   library.js     the node library              inputs.js     the workflow inputs panel
//   problems.js    validation problems           workflows.js  workflows and files
//   runs.js        runs (+ runstate.js, queue.js, gallery.js)
//   commands.js    node modes and subgraphs (+ modes.js, subgraphs.js, breadcrumb.js)
//   shortcuts.js, minimap.js, theme.js, textedit.js, assets.js (+ models.js, maskeditor.js), drops.js, dialogs.js
//
// Everything the editor knows about nodes, types and the shared vocabulary comes from
// GET /api/nodes; nothing here copies the engine's constants.

import { api, connectEvents, withToken } from "./api.js";
import { Assets } from "./assets.js";
import { Breadcrumb } from "./breadcrumb.js";
import { ImportNotes } from "./comfyfiles.js";
import { Commands } from "./commands.js";
import { Confirm, renderShortcuts, Toast } from "./dialogs.js";
import { emptyDocument } from "./document.js";
import { bindDrops } from "./drops.js";
import { GraphView } from "./graphview.js";
import { InputsPanel } from "./inputs.js";
import { Library } from "./library.js";
import { MaskEditor } from "./maskeditor.js";
import { Minimap } from "./minimap.js";
import { ModelList } from "./models.js";
import { BYPASSED, MUTED } from "./modes.js";
import { registerNodeTypes } from "./nodes.js";
import { ProblemsPanel } from "./problems.js";
import { Runs } from "./runs.js";
import { RunBook } from "./runstate.js";
import { matchNodes } from "./search.js";
import { Session } from "./session.js";
import { bindShortcuts, SHORTCUTS } from "./shortcuts.js";
import { TextEditor, TitleEditor } from "./textedit.js";
import { followSystemTheme } from "./theme.js";
import { TypeTable } from "./types.js";
import { readVocabulary, unknownEvents } from "./vocabulary.js";
import { Workflows } from "./workflows.js";
import { Workspace } from "./workspace.js";
import { scriptingApi } from "./scripting.js";

const $ = (id) => document.getElementById(id);
const FIRST_VISIT_WORKFLOW = "txt2img";

/** Build the editor; resolves to its parts once the first graph is on the canvas. */
async function start() {
  // the model listing decides which inputs get a model picker, so it is read first
  const [catalogue, models] = await Promise.all([api.nodes(), new ModelList(api).refresh()]);
  const parts = compose(catalogue, models);
  wire(parts);
  await parts.workflows.refresh();
  if (!parts.workspace.resume()) await firstGraph(parts);
  parts.workspace.history.reset();
  connectEvents(
    (message) => parts.runs.handle(message),
    (connected) => {
      $("connection").textContent = connected ? "connected" : "offline — reconnecting";
      $("connection").classList.toggle("offline", !connected);
      parts.runs.connection(connected);
    },
  );
  parts.assets.refreshUploads();
  if (catalogue.errors?.length) parts.toast.show(`${catalogue.errors.length} node pack(s) failed to load; see the server log`);
  return parts;
}

/** Make every part, each given what it depends on. */
function compose(catalogue, models) {
  const vocabulary = readVocabulary(catalogue);
  const drift = unknownEvents(vocabulary);
  if (drift.length) console.warn(`nodeflow: the server does not send ${drift.join(", ")}`);
  const types = new TypeTable(catalogue.types);
  const schemas = Object.values(catalogue.nodes);
  const toast = new Toast($("toast"));
  const confirm = new Confirm($("confirm"));
  const session = new Session(window.localStorage);
  const host = { types, literalTypes: vocabulary.literalTypes }; // what nodes ask of the editor, completed in wire()
  const view = new GraphView($("graph-canvas"), $("canvas-wrap"), {
    types,
    search: (query) => matchNodes(query, schemas).map((s) => s.id),
    rename: (node) => host.rename(node),
    canvasMenu: () => host.canvasMenu?.() ?? [],
  });
  followSystemTheme(view, host);
  const workspace = new Workspace({ view, vocabulary, session });
  const commands = new Commands({ view, workspace, toast });
  const titles = new TitleEditor($("title-editor"), view, (node, title) => {
    node.title = title;
    workspace.changed(`${node.nf.id}.title`);
  });
  const problems = new ProblemsPanel($("problems"), view, (flatId) => workspace.locate(flatId));
  const notes = new ImportNotes($("import-notes"));
  const workflows = new Workflows(topBar(), { api, workspace, confirm, toast, vocabulary, notes });
  const textEditor = new TextEditor($("text-editor"), view.canvas);
  const book = new RunBook(vocabulary);
  const runs = new Runs(runElements(), {
    api, withToken, book, view, workspace, problems, session, toast, confirm, workflows,
    beforeRun: () => textEditor.apply(),
  });
  const masks = new MaskEditor($("mask-editor"), { api, withToken, toast });
  const assets = new Assets({ api, withToken, view, toast, models, masks });
  return {
    catalogue, vocabulary, types, schemas, toast, host, view, workspace, commands, titles, problems, workflows, textEditor, book, runs, assets,
    inputs: new InputsPanel($("graph-inputs"), workspace),
    breadcrumb: new Breadcrumb($("breadcrumb"), workspace),
    minimap: new Minimap($("minimap"), view),
    withToken,
  };
}

/** Connect the parts: what node widgets call, panels, drops, keys. */
function wire(parts) {
  const { host, view, workspace, commands, assets, inputs, titles, textEditor, problems, workflows, runs, toast } = parts;
  Object.assign(host, {
    editText: (node, widget, done) => textEditor.open(node, widget, done),
    uploadImage: () => assets.pickAndUpload(),
    imageChoices: () => assets.uploads,
    showImageChoice: (node, name) => assets.showImageChoice(node, name),
    modelKind: (spec) => assets.modelKind(spec),
    modelEntries: (spec, kind, current) => assets.modelEntries(spec, kind, current),
    refreshModels: () => assets.models.refresh(),
    paintMask: (spec, current) => assets.paintMask(spec, current),
    changed: (node, input) => workspace.changed(node && input ? `${node.nf?.id}.${input}` : null),
    touched: () => workspace.touched(),
    menu: (node) => [...commands.menu(node), ...inputs.menu(node)],
    canvasMenu: () => commands.canvasMenu(),
    rename: (node) => titles.open(node),
    openSubgraph: (node) => commands.open(node),
  });
  registerNodeTypes(parts.catalogue, host);
  const added = () => workspace.changed();
  new Library({ list: $("node-list"), search: $("node-search") }, { schemas: parts.schemas, types: parts.types, add: (type) => added(view.addNode(type)) });
  view.canvas.onDrawOverlay = () => parts.minimap.requestDraw();
  workspace.on("loaded", () => {
    problems.clear();
    assets.loaded();
  });
  workspace.on("scope", () => {
    problems.mark();
    assets.loaded();
  });
  bindUi({ workspace, workflows, runs, view, commands, toast });
  bindDrops({ wrap: $("canvas-wrap"), hint: $("drop-hint") }, { view, workflows, assets, toast, added });
}

/** A first visit opens the txt2img workflow, ready to run (an empty graph when the server has none). */
async function firstGraph({ workspace, workflows, vocabulary }) {
  if (workflows.list.some((w) => w.name === FIRST_VISIT_WORKFLOW)) {
    try {
      await workflows.open(FIRST_VISIT_WORKFLOW);
      return;
    } catch {
      // unreadable: start empty rather than not at all
    }
  }
  workspace.open(emptyDocument(vocabulary));
}

function topBar() {
  return {
    select: $("workflow-select"), open: $("open-workflow"), name: $("workflow-name"), save: $("save-workflow"),
    rename: $("rename-workflow"), remove: $("delete-workflow"), fresh: $("new-graph"), download: $("download-graph"),
    upload: $("upload-graph"), uploadInput: $("upload-input"), marker: $("unsaved"),
  };
}

function runElements() {
  return {
    interrupt: $("interrupt"), progress: $("run-progress"), progressBar: $("run-progress-bar"), progressLabel: $("run-progress-label"),
    queue: $("queue"), queueCount: $("queue-count"), clear: $("clear-runs"), gallery: $("gallery"), lightbox: $("lightbox"),
  };
}

function bindUi({ workspace, workflows, runs, view, commands, toast }) {
  const guard = (fn) => () => Promise.resolve().then(fn).catch((e) => toast.show(e.message));
  const history = workspace.history;
  history.onChange = () => {
    $("undo").disabled = !history.canUndo;
    $("redo").disabled = !history.canRedo;
  };
  $("undo").addEventListener("click", () => history.undo());
  $("redo").addEventListener("click", () => history.redo());
  $("run").addEventListener("click", () => runs.queue().catch(() => {}));
  const help = $("shortcuts");
  renderShortcuts(help, SHORTCUTS);
  $("show-shortcuts").addEventListener("click", () => help.showModal());
  bindShortcuts({
    run: () => runs.queue().catch(() => {}),
    save: guard(() => workflows.save()),
    undo: () => history.undo(),
    redo: () => history.redo(),
    group: () => {
      if (!view.groupSelection()) toast.show("Select nodes first (click, Shift+click or Ctrl+drag), then Ctrl+G");
    },
    mute: () => commands.toggleMode(MUTED),
    bypass: () => commands.toggleMode(BYPASSED),
    help: () => (help.open ? help.close() : help.showModal()),
  });
}

const ready = start();
ready.then(
  (editor) => {
    window.nodeflow = Object.assign(window.nodeflow, scriptingApi(editor));
    document.body.dataset.ready = "true";
  },
  (error) => {
    document.body.dataset.ready = "error";
    const el = $("toast");
    el.textContent = `The editor could not start: ${error.message}`;
    el.hidden = false;
  },
);
window.nodeflow = { ready: ready.then(() => true) };
