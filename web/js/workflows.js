// Workflows on the server and graph files (top bar): the workflow list, Open, Save,
// Rename, Delete (click twice), New, Download, Upload (a graph, or a ComfyUI file the
// server converts: comfyfiles.js), and the unsaved-changes marker.
// Anything that replaces the canvas (New, Open, a dropped file, a run's graph) asks
// first when the graph has unsaved changes.

import { classifyJson, importReport, isComfyPng } from "./comfyfiles.js";
import { emptyDocument } from "./document.js";
import { GRAPH_CHUNK, readPngText } from "./png.js";

export class Workflows {
  /**
   * @param {object} el  {select, open, name, save, rename, remove, fresh, download, upload, uploadInput, marker}
   * @param {{api, workspace: Workspace, confirm: Confirm, toast: Toast, vocabulary, notes: ImportNotes}} deps
   */
  constructor(el, { api, workspace, confirm, toast, vocabulary, notes }) {
    this.notes = notes;
    this.el = el;
    this.api = api;
    this.workspace = workspace;
    this.confirm = confirm;
    this.toast = toast;
    this.vocabulary = vocabulary;
    this.list = [];
    workspace.on("identity", () => this.showIdentity());
    this.bind();
  }

  bind() {
    const { el } = this;
    const guard = (fn) => () => fn().catch((e) => this.toast.show(e.message));
    el.open.addEventListener("click", guard(() => this.open(el.select.value)));
    el.select.addEventListener("dblclick", guard(() => this.open(el.select.value)));
    el.save.addEventListener("click", guard(() => this.save()));
    el.rename.addEventListener("click", guard(() => this.rename()));
    el.remove.addEventListener("click", guard(() => this.removeClicked()));
    el.fresh.addEventListener("click", guard(() => this.newGraph()));
    el.download.addEventListener("click", () => this.download());
    el.upload.addEventListener("click", () => el.uploadInput.click());
    el.uploadInput.addEventListener(
      "change",
      guard(async () => {
        const file = el.uploadInput.files[0];
        el.uploadInput.value = "";
        if (file) await this.openFile(file);
      }),
    );
  }

  /** Name box, unsaved-changes marker and page title follow the graph's identity. */
  showIdentity() {
    const { name, opened } = this.workspace.identity;
    const dirty = this.workspace.dirty;
    if (document.activeElement !== this.el.name) this.el.name.value = name || "";
    if (this.list.some((w) => w.name === opened)) this.el.select.value = opened;
    else if (!opened) this.el.select.value = "";
    this.el.name.placeholder = !name && opened ? `${opened} (built-in: save under a new name)` : "untitled";
    this.el.marker.hidden = !dirty;
    document.title = `${dirty ? "● " : ""}${name || opened || "untitled"} — nodeflow`;
  }

  async refresh(select) {
    try {
      this.list = (await this.api.listWorkflows()).workflows || [];
    } catch (e) {
      this.toast.show(`Cannot list workflows: ${e.message}`);
      return;
    }
    const options = this.list.map((w) => {
      const option = new Option(w.read_only ? `${w.name} (built-in)` : w.name, w.name);
      if (w.description) option.title = w.description;
      return option;
    });
    this.el.select.replaceChildren(new Option("— choose a workflow —", ""), ...options);
    this.el.select.value = select ?? this.workspace.identity.opened ?? "";
  }

  /** Whether the canvas may be replaced: true when nothing is unsaved or the user says discard. */
  async mayDiscard(what) {
    if (!this.workspace.dirty) return true;
    const { name, opened } = this.workspace.identity;
    const label = name || opened || "this graph";
    return this.confirm.ask(`"${label}" has unsaved changes. ${what} and discard them?`, "Discard changes");
  }

  /** Replace the canvas with `doc` after asking (unless `ask` is false); false when the user kept the current graph. */
  async replace(doc, fields, what, ask = true) {
    if (ask && !(await this.mayDiscard(what))) return false;
    this.workspace.open(doc, fields);
    return true;
  }

  /** Open workflow `name`; `ask: false` replaces unsaved changes without asking (scripts). */
  async open(name, { ask = true } = {}) {
    if (!name) throw new Error("choose a workflow to open");
    const doc = await this.api.getWorkflow(name);
    const info = this.list.find((w) => w.name === name);
    // a built-in opens as a starting point: saving it needs a name of your own
    if (!(await this.replace(doc, { name: info?.read_only ? null : name, opened: name }, `Open "${name}"`, ask))) return null;
    this.el.select.value = name;
    return doc;
  }

  async newGraph() {
    return this.replace(emptyDocument(this.vocabulary), {}, "Start a new graph");
  }

  async save(name = this.el.name.value.trim()) {
    if (!name) {
      this.el.name.focus();
      throw new Error("type a name for the workflow first");
    }
    const doc = this.workspace.document();
    if (!doc.meta.name) doc.meta = { ...doc.meta, name };
    const saved = await this.api.putWorkflow(name, doc);
    this.workspace.state.meta = doc.meta;
    this.workspace.markSaved(name);
    await this.refresh(name);
    const problems = saved?.problems || [];
    this.toast.show(problems.length ? `Saved "${name}" (${problems.length} problem${problems.length > 1 ? "s" : ""} to fix before it runs)` : `Saved "${name}"`);
    return saved;
  }

  async rename(newName = this.el.name.value.trim()) {
    const old = this.workspace.identity.name;
    if (!old) throw new Error("this graph is not a saved workflow yet: use Save");
    if (!newName || newName === old) throw new Error("type the new name in the name box first");
    const doc = this.workspace.document();
    doc.meta = { ...doc.meta, name: newName };
    await this.api.putWorkflow(newName, doc);
    await this.api.deleteWorkflow(old);
    this.workspace.state.meta = doc.meta;
    this.workspace.markSaved(newName);
    await this.refresh(newName);
    this.toast.show(`Renamed "${old}" to "${newName}"`);
  }

  async removeClicked() {
    // two clicks, no modal: the second click on the same button confirms
    const button = this.el.remove;
    const name = this.workspace.identity.name;
    if (button.dataset.armed !== "1") {
      if (!name) throw new Error("this graph is not a saved workflow");
      button.dataset.armed = "1";
      button.textContent = `Delete "${name}"?`;
      setTimeout(() => {
        button.dataset.armed = "";
        button.textContent = "Delete";
      }, 4000);
      return;
    }
    button.dataset.armed = "";
    button.textContent = "Delete";
    await this.api.deleteWorkflow(name);
    this.workspace.setIdentity({ name: null, baseline: null });
    await this.refresh("");
    this.toast.show(`Deleted "${name}" (the graph stays open; Save brings it back)`);
  }

  download() {
    const doc = this.workspace.document();
    const blob = new Blob([JSON.stringify(doc, null, 2) + "\n"], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${this.workspace.identity.name || doc.meta?.name || "graph"}.json`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  /** Open a dropped or chosen file: a graph .json, a PNG carrying its graph, or a ComfyUI file (imported by the server). */
  async openFile(file) {
    const bytes = await file.arrayBuffer();
    const head = new Uint8Array(bytes.slice(0, 8));
    if (head[0] === 0x89 && head[1] === 0x50) return this.#openPng(file, bytes);
    let data;
    try {
      data = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new Error(`${file.name} is not JSON: ${e.message}`);
    }
    if (classifyJson(data) === "comfy") return this.#importComfy(file, bytes);
    return this.#openDocument(file, data);
  }

  async #openPng(file, bytes) {
    const texts = await readPngText(bytes);
    if (texts[GRAPH_CHUNK]) return this.#openDocument(file, JSON.parse(texts[GRAPH_CHUNK]));
    if (isComfyPng(texts)) return this.#importComfy(file, bytes);
    throw new Error(`${file.name} holds no graph (it was not written by nodeflow's save-image node or by ComfyUI)`);
  }

  async #openDocument(file, doc) {
    if (!(await this.replace(doc, {}, `Open ${file.name}`))) return null;
    this.toast.show(`Opened ${file.name}`);
    return doc;
  }

  /** Convert a ComfyUI file on the server, open the graph as a new one, show the importer's notes. */
  async #importComfy(file, bytes) {
    let answer;
    try {
      answer = await this.api.importComfy(new Blob([bytes]));
    } catch (e) {
      throw new Error(`${file.name}: ${e.message}`);
    }
    const doc = answer.graph;
    doc.meta = { ...doc.meta, name: file.name.replace(/\.[^.]*$/, "") || doc.meta?.name };
    if (!(await this.replace(doc, {}, `Open ${file.name}`))) return null;
    this.notes.show(importReport(file.name, answer));
    return doc;
  }
}
