// The "Problems" panel and the marks on nodes: structured errors
// ({code, node, input, message}) from validation (400 on POST /api/runs) or from a run.
// Validation errors are drawn on their node (red outline, the input framed, the message
// below); editing that input or linking into it clears its mark (nodes.js).
//
// An error about a node inside a subgraph names it `outer/inner` (the engine's flat id):
// at the top it is drawn on the subgraph node (with the inner id in its message), and on
// the inner node itself while that subgraph is open (`locate`, workspace.js).

export class ProblemsPanel {
  /**
   * @param {HTMLElement} list
   * @param {GraphView} view
   * @param {(flatId: string) => ?{node, exact, inner}} locate  the canvas node showing a node id an error names
   */
  constructor(list, view, locate) {
    this.list = list;
    this.view = view;
    this.locate = locate;
    this.problems = [];
    this.source = "validation";
  }

  clear() {
    this.#unmark();
    this.problems = [];
    this.list.replaceChildren();
    this.view.redraw();
  }

  #unmark() {
    for (const node of this.view.graph.nodes) if (node.nf) node.nf.errors = [];
  }

  /** Show errors on their nodes (`source` "validation") or only in the panel ("run": the node shows its run state). */
  show(errors, source = "validation") {
    this.clear();
    this.problems = errors;
    this.source = source;
    this.mark();
    this.list.replaceChildren(...errors.map((error) => this.item(error)));
    this.view.redraw(true);
  }

  /** Draw the marks again (the canvas shows another level of the graph). */
  mark() {
    this.#unmark();
    if (this.source !== "validation") return;
    for (const error of this.problems) {
      const hit = error.node != null ? this.locate(error.node) : null;
      if (!hit) continue;
      const mark = hit.exact ? { input: error.input, message: error.message } : { input: null, message: `${hit.inner}: ${error.message}` };
      hit.node.nf.errors.push({ ...mark, code: error.code });
    }
    this.view.redraw(true);
  }

  item(error) {
    const li = document.createElement("li");
    li.className = "problem";
    li.dataset.node = error.node ?? "";
    li.dataset.input = error.input ?? "";
    li.dataset.code = error.code ?? "";
    const where = document.createElement("button");
    where.type = "button";
    where.className = "where";
    const node = error.node != null ? this.locate(error.node)?.node : null;
    where.textContent = node ? `${node.title} #${error.node}${error.input ? ` · ${error.input}` : ""}` : error.node != null ? `node ${error.node}` : "graph";
    where.addEventListener("click", () => {
      const shown = error.node != null ? this.locate(error.node)?.node : null; // the level shown may have changed
      if (shown) this.view.focusNode(shown);
    });
    const text = document.createElement("span");
    text.className = "message";
    text.textContent = error.message;
    li.append(where, text);
    return li;
  }
}
