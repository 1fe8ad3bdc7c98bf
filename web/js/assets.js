// Files the graph refers to: uploaded images (GET/POST /api/uploads) for image inputs,
// masks painted on them (maskeditor.js), and the models for model inputs: the server's
// model folders (GET /api/models, with each checkpoint's family) plus the names seen in
// this session; and showing a chosen upload on its node.

import { modelEntries, modelKind } from "./models.js";

export class Assets {
  /**
   * @param {{api, withToken, view: GraphView, toast: Toast, models: ModelList, masks: MaskEditor}} deps
   */
  constructor({ api, withToken, view, toast, models, masks }) {
    this.api = api;
    this.withToken = withToken;
    this.view = view;
    this.toast = toast;
    this.models = models;
    this.masks = masks;
    this.uploads = [];
    this.seenModels = new Map(); // kind -> Set of names seen in documents this session
  }

  #inputsWith(test) {
    const found = [];
    for (const node of this.view.graph.nodes) {
      for (const spec of node.constructor.nfSchema?.inputs || []) {
        const widget = node.widgets?.find((w) => w.name === spec.name);
        if (widget?.value && test(spec, widget)) found.push([node, widget.value, widget]);
      }
    }
    return found;
  }

  /** A document was loaded: remember its models, show its uploaded images. */
  loaded() {
    for (const [, value, widget] of this.#inputsWith((_s, w) => w.nfModelKind)) this.#seen(widget.nfModelKind).add(String(value));
    this.showImageChoices();
  }

  #seen(kind) {
    if (!this.seenModels.has(kind)) this.seenModels.set(kind, new Set());
    return this.seenModels.get(kind);
  }

  /** The kind of model input `spec` names, or null (models.js). */
  modelKind(spec) {
    return modelKind(spec, this.models.kindNames());
  }

  /** The menu of a model input: [{value, label, listed}] (models.js). */
  modelEntries(spec, kind, current) {
    return modelEntries(spec, this.models.of(kind), this.#seen(kind), current);
  }

  /** Show an uploaded image chosen in an image widget on its node (other paths are the server's business). */
  showImageChoice(node, name) {
    if (this.uploads.includes(name)) this.view.setImages(node.nf.id, [this.withToken(`/api/uploads/${encodeURIComponent(name)}`)]);
  }

  showImageChoices() {
    for (const [node, value] of this.#inputsWith((spec) => spec.widget === "image")) this.showImageChoice(node, value);
  }

  async refreshUploads() {
    try {
      this.uploads = ((await this.api.listUploads())?.uploads || []).map((u) => u.name);
      this.showImageChoices();
    } catch {
      this.uploads = []; // an older server without the listing: uploading still works
    }
  }

  /** Open the mask painter for image input `spec` whose value is `current`; resolves to the new upload's name, or null. */
  async paintMask(spec, current) {
    const images = this.#inputsWith((s) => s.widget === "image" && s.file === "image").map(([, value]) => String(value));
    try {
      await this.refreshUploads();
      const name = await this.masks.open(spec, current, images, this.uploads);
      if (name) await this.refreshUploads();
      return name;
    } catch (e) {
      this.toast.show(e.message);
      return null;
    }
  }

  /** Upload `file` as the new value of image input `input` of `node`. */
  async uploadInto(node, input, file) {
    const info = await this.api.upload(file);
    await this.refreshUploads();
    const widget = node.widgets.find((w) => w.name === input);
    const old = widget.value;
    widget.value = info.name;
    node.onWidgetChanged(input, info.name, old, widget);
    this.toast.show(`Uploaded ${file.name} as ${info.name}`);
  }

  /** Let the user pick an image and upload it; resolves to its stored name, or null. */
  async pickAndUpload() {
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
      const info = await this.api.upload(file);
      await this.refreshUploads();
      return info.name;
    } catch (e) {
      this.toast.show(`Upload failed: ${e.message}`);
      return null;
    }
  }
}
