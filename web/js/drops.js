// Dropping things on the page: a library entry on the canvas adds that node there; an
// image on a node with an image input uploads it into that input; a graph .json, a
// nodeflow PNG or a ComfyUI workflow, prompt or PNG anywhere opens it (workflows.js).

import { NODE_DRAG_TYPE } from "./library.js";

/**
 * @param {{wrap: HTMLElement, hint: HTMLElement}} el
 * @param {{view: GraphView, workflows: Workflows, assets: Assets, toast: Toast, added: (node) => void}} deps
 */
export function bindDrops({ wrap, hint }, { view, workflows, assets, toast, added }) {
  window.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    hint.hidden = !e.dataTransfer?.types?.includes("Files");
  });
  window.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) hint.hidden = true;
  });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    hint.hidden = true;
    dropped(e).catch((error) => toast.show(error.message));
  });

  async function dropped(e) {
    const type = e.dataTransfer.getData(NODE_DRAG_TYPE);
    if (type) {
      if (wrap.contains(e.target)) added(view.addNode(type, view.canvas.convertEventToCanvasOffset(e)));
      return;
    }
    const file = e.dataTransfer.files?.[0];
    if (!file) return;
    // an image dropped on a node with an image input is that input's new image
    const [x, y] = view.canvas.convertEventToCanvasOffset(e);
    const target = wrap.contains(e.target) ? view.graph.getNodeOnPos(x, y) : null;
    const imageSpec = target?.constructor.nfSchema?.inputs.find((i) => i.widget === "image");
    if (imageSpec && file.type.startsWith("image/")) await assets.uploadInto(target, imageSpec.name, file);
    else await workflows.openFile(file);
  }
}
