// The "Workflow inputs" panel: a form for the graph's exposed inputs (what
// `nodeflow run --set name=value` and POST /api/runs {"inputs"} set), and the node
// menu entries that expose an input or stop exposing it.

import { randomSeed } from "./widgets.js";

function readField(field, spec) {
  if (field.type === "checkbox") return field.checked;
  if (spec.type === "INT" && !Array.isArray(spec.choices)) return Math.round(Number(field.value));
  if (spec.type === "FLOAT" && !Array.isArray(spec.choices)) return Number(field.value);
  if (Array.isArray(spec.choices)) return spec.choices.find((c) => String(c) === field.value) ?? field.value;
  return field.value;
}

function fieldFor(spec) {
  let field;
  if (Array.isArray(spec.choices)) {
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
  return field;
}

export class InputsPanel {
  /**
   * @param {HTMLFormElement} form
   * @param {Workspace} workspace
   */
  constructor(form, workspace) {
    this.form = form;
    this.workspace = workspace;
    workspace.on("loaded", () => this.render());
    workspace.on("scope", () => this.render());
    workspace.on("edited", () => this.render());
  }

  get inputs() {
    return this.workspace.state.inputs || {};
  }

  /** Node menu entries: expose an input that has a widget, or stop exposing it (at the top level: graph inputs name top-level nodes). */
  menu(node) {
    const schema = node.constructor.nfSchema;
    if (!schema || this.workspace.path.length) return [];
    const options = [];
    for (const spec of schema.inputs) {
      const exposedAs = Object.entries(this.inputs).find(([, t]) => t.node === node.nf.id && t.input === spec.name)?.[0];
      if (exposedAs) options.push({ content: `Stop exposing "${exposedAs}"`, callback: () => this.unexpose(exposedAs) });
      else if (node.widgets?.some((w) => w.name === spec.name)) {
        options.push({ content: `Expose "${spec.name}" as a workflow input`, callback: () => this.expose(node, spec.name) });
      }
    }
    return options;
  }

  expose(node, input, name = input) {
    let unique = name;
    for (let i = 2; unique in this.inputs; i++) unique = `${name}_${i}`;
    this.workspace.state.inputs = { ...this.inputs, [unique]: { node: node.nf.id, input, description: "" } };
    this.workspace.changed();
    return unique;
  }

  unexpose(name) {
    const { [name]: _, ...rest } = this.inputs;
    this.workspace.state.inputs = rest;
    this.workspace.changed();
  }

  #target(name) {
    let target = this.inputs[name];
    if (!target && name.includes(".")) {
      const at = name.lastIndexOf(".");
      target = { node: name.slice(0, at), input: name.slice(at + 1) };
    }
    const node = target && this.workspace.view.nodeById(target.node);
    const widget = node?.widgets?.find((w) => w.name === target.input);
    return { target, node, widget };
  }

  get(name) {
    return this.#target(name).widget?.value;
  }

  /** Set an exposed workflow input (or "NODE_ID.INPUT") to a literal, as an undoable edit. */
  set(name, value) {
    const { node, widget } = this.#target(name);
    if (!widget) throw new Error(`'${name}' is not a workflow input or NODE_ID.INPUT with a widget`);
    const old = widget.value;
    widget.value = value;
    node.onWidgetChanged(widget.name, value, old, widget);
  }

  render() {
    const form = this.form;
    if (this.workspace.path.length) {
      // graph inputs set nodes at the top; a subgraph's own inputs are its node's sockets
      form.dataset.keys = "";
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "Set at the top of the graph: go back (← Back above the canvas) to edit them.";
      form.replaceChildren(p);
      return;
    }
    const entries = Object.entries(this.inputs);
    const keys = entries.map(([k]) => k).join("\u0000");
    const active = document.activeElement;
    if (form.contains(active) && form.dataset.keys === keys) {
      // the user is typing here: refresh values of the other fields only
      for (const field of form.querySelectorAll("[data-input]")) if (field !== active) this.fill(field, field.dataset.input);
      return;
    }
    form.dataset.keys = keys;
    const rows = entries.map(([name, target]) => this.row(name, target));
    if (!rows.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "None. Right-click a node to expose one of its inputs here.";
      rows.push(p);
    }
    form.replaceChildren(...rows);
  }

  row(name, target) {
    const node = this.workspace.view.nodeById(target.node);
    const spec = node?.constructor.nfSchema?.inputs.find((i) => i.name === target.input);
    const row = document.createElement("div");
    row.className = "graph-input";
    const label = document.createElement("label");
    label.htmlFor = `graph-input-${name}`;
    label.textContent = name;
    if (target.description) label.title = target.description;
    const field = spec ? fieldFor(spec) : document.createElement("input");
    field.id = `graph-input-${name}`;
    field.name = name;
    field.dataset.input = name;
    row.append(label, field);
    if (!node || !spec) {
      field.disabled = true;
      field.value = node ? `unknown input ${target.input}` : `node ${target.node} is missing`;
      return row;
    }
    this.fill(field, name);
    const commit = () => this.set(name, readField(field, spec));
    field.addEventListener(field.tagName === "SELECT" || field.type === "checkbox" ? "change" : "input", commit);
    if (spec.widget === "seed") {
      const dice = document.createElement("button");
      dice.type = "button";
      dice.textContent = "↻";
      dice.title = "New random seed";
      dice.setAttribute("aria-label", `New random ${name}`);
      dice.addEventListener("click", () => {
        this.set(name, randomSeed(spec));
        this.fill(field, name);
      });
      row.append(dice);
    }
    return row;
  }

  fill(field, name) {
    const value = this.get(name);
    if (field.type === "checkbox") field.checked = Boolean(value);
    else field.value = value ?? "";
  }
}
