// The node library (left panel): every node type of the catalogue grouped by category,
// a search box (search.js), click to add in the middle of the view, drag to a spot.

import { matchNodes } from "./search.js";

export const NODE_DRAG_TYPE = "application/x-nodeflow-node";

export class Library {
  /**
   * @param {{list: HTMLElement, search: HTMLInputElement}} elements
   * @param {{schemas: object[], types: TypeTable, add: (type) => void}} deps
   */
  constructor({ list, search }, { schemas, types, add }) {
    this.list = list;
    this.types = types;
    this.add = add;
    this.schemas = [...schemas].sort((a, b) => a.category.localeCompare(b.category) || a.display_name.localeCompare(b.display_name));
    search.addEventListener("input", () => this.render(search.value));
    search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") list.querySelector(".node-entry")?.click();
    });
    this.render("");
  }

  render(query) {
    const groups = new Map();
    for (const schema of matchNodes(query, this.schemas)) {
      if (!groups.has(schema.category)) groups.set(schema.category, []);
      groups.get(schema.category).push(schema);
    }
    const children = [];
    for (const [category, schemas] of groups) {
      const heading = document.createElement("div");
      heading.className = "category";
      heading.textContent = category;
      children.push(heading, ...schemas.map((s) => this.entry(s)));
    }
    if (!children.length) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "No node matches.";
      children.push(empty);
    }
    this.list.replaceChildren(...children);
  }

  entry(schema) {
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
    button.addEventListener("click", () => this.add(schema.id));
    button.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData(NODE_DRAG_TYPE, schema.id);
      e.dataTransfer.effectAllowed = "copy";
    });
    return button;
  }
}
