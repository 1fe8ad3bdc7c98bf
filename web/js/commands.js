// What keys and menus do to the graph's structure: node modes (Ctrl+M mutes, Ctrl+B
// bypasses, the node menu sets them too), converting the selection into a subgraph,
// opening a subgraph node (its menu, or a double-click on its body) and going back
// (the breadcrumb over the canvas, breadcrumb.js).
//
// Commands act on the selection, or on the node whose menu was opened when it is not
// part of the selection. Each is one undoable edit (workspace.js records it).

import { BYPASSED, litegraphMode, modeMenuLabel, modeOf, MUTED, toggledModes } from "./modes.js";

const NO_MODE = "A subgraph node has no mode of its own: open it (double-click its body) and set the modes of the nodes inside";

/** Whether a canvas node can be muted or bypassed (the engine refuses a mode on a subgraph node). */
export function takesMode(node) {
  return Boolean(node?.nf && !node.nf.boundary && !node.constructor.nfSubgraph);
}

export class Commands {
  /** @param {{view: GraphView, workspace: Workspace, toast: Toast}} deps */
  constructor({ view, workspace, toast }) {
    this.view = view;
    this.workspace = workspace;
    this.toast = toast;
  }

  selection() {
    return Object.values(this.view.canvas.selected_nodes || {}).filter((n) => n.nf);
  }

  /** The nodes a command applies to: the selection, or `node` alone when it is not selected. */
  targets(node = null) {
    const selected = this.selection();
    if (!node || selected.includes(node)) return selected;
    return [node];
  }

  /** Ctrl+M (`mode` muted) or Ctrl+B (bypassed): toggle it on the nodes; false when none can take it. */
  toggleMode(mode, node = null) {
    const chosen = this.targets(node);
    const nodes = chosen.filter(takesMode);
    if (!nodes.length) {
      this.toast.show(chosen.length ? NO_MODE : `Select nodes first, then ${mode === MUTED ? "Ctrl+M" : "Ctrl+B"}`);
      return false;
    }
    const next = toggledModes(nodes.map(modeOf), mode);
    nodes.forEach((n, i) => {
      n.mode = litegraphMode(next[i]);
    });
    this.workspace.changed();
    this.view.redraw(true);
    return true;
  }

  /** Put the nodes in a new subgraph; returns the subgraph node, or null when nothing could go in. */
  convert(node = null) {
    const ids = this.targets(node).filter((n) => !n.nf.boundary).map((n) => n.nf.id);
    if (!ids.length) {
      this.toast.show("Select the nodes to put in a subgraph first (click, Shift+click or Ctrl+drag)");
      return null;
    }
    let instance;
    try {
      instance = this.workspace.convert(ids);
    } catch (error) {
      this.toast.show(`Not converted: ${error.message}`);
      return null;
    }
    if (instance) this.view.canvas.selectNodes([instance]);
    return instance;
  }

  open(node) {
    try {
      this.workspace.enter(node);
    } catch (error) {
      this.toast.show(error.message);
    }
  }

  /** Entries at the top of a node's menu. */
  menu(node) {
    const entries = [];
    if (node.constructor.nfSubgraph) entries.push({ content: "Open subgraph", callback: () => this.open(node) });
    const modal = this.targets(node).filter(takesMode);
    if (modal.length) {
      const modes = modal.map(modeOf);
      entries.push(
        { content: modeMenuLabel(modes, MUTED), callback: () => this.toggleMode(MUTED, node) },
        { content: modeMenuLabel(modes, BYPASSED), callback: () => this.toggleMode(BYPASSED, node) },
      );
    }
    if (!node.nf?.boundary) entries.push({ content: "Convert to subgraph", callback: () => this.convert(node) });
    return entries;
  }

  /** Entries added to the canvas menu (right-click on empty space) while nodes are selected. */
  canvasMenu() {
    const selected = this.selection().filter((n) => !n.nf.boundary);
    if (!selected.length) return [];
    return [{ content: "Convert to subgraph", callback: () => this.convert() }];
  }
}
