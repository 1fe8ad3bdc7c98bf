// The "Problems" panel and the marks on nodes: structured errors
// ({code, node, input, message}) from validation (400 on POST /api/runs) or from a run.
// Validation errors are drawn on their node (red outline, the input framed, the message
// below); editing that input or linking into it clears its mark (nodes.js).

export class ProblemsPanel {
  /**
   * @param {HTMLElement} list
   * @param {GraphView} view
   */
  constructor(list, view) {
    this.list = list;
    this.view = view;
    this.problems = [];
  }

  clear() {
    for (const node of this.view.graph.nodes) if (node.nf) node.nf.errors = [];
    this.problems = [];
    this.list.replaceChildren();
    this.view.redraw();
  }

  /** Show errors on their nodes (`source` "validation") or only in the panel ("run": the node shows its run state). */
  show(errors, source = "validation") {
    this.clear();
    this.problems = errors;
    for (const error of errors) {
      const node = error.node != null ? this.view.nodeById(error.node) : null;
      if (node && source === "validation") node.nf.errors.push({ input: error.input, message: error.message, code: error.code });
    }
    this.list.replaceChildren(...errors.map((error) => this.item(error)));
    this.view.redraw(true);
  }

  item(error) {
    const li = document.createElement("li");
    li.className = "problem";
    li.dataset.node = error.node ?? "";
    li.dataset.input = error.input ?? "";
    li.dataset.code = error.code ?? "";
    const node = error.node != null ? this.view.nodeById(error.node) : null;
    const where = document.createElement("button");
    where.type = "button";
    where.className = "where";
    where.textContent = node ? `${node.title} #${error.node}${error.input ? ` · ${error.input}` : ""}` : error.node != null ? `node ${error.node}` : "graph";
    where.addEventListener("click", () => node && this.view.focusNode(node));
    const text = document.createElement("span");
    text.className = "message";
    text.textContent = error.message;
    li.append(where, text);
    return li;
  }
}
