// Files the graph refers to: uploaded images (GET/POST /api/uploads) for image inputs,
// and the model names seen in this session for model inputs (the server has no model
// listing yet), plus showing a chosen upload on its node.

export class Assets {
  /**
   * @param {{api, withToken, view: GraphView, toast: Toast}} deps
   */
  constructor({ api, withToken, view, toast }) {
    this.api = api;
    this.withToken = withToken;
    this.view = view;
    this.toast = toast;
    this.uploads = [];
    this.seenModels = new Set();
  }

  #inputsWith(kind) {
    const found = [];
    for (const node of this.view.graph.nodes) {
      for (const spec of node.constructor.nfSchema?.inputs || []) {
        if (spec.widget !== kind) continue;
        const value = node.widgets?.find((w) => w.name === spec.name)?.value;
        if (value) found.push([node, value]);
      }
    }
    return found;
  }

  /** A document was loaded: remember its models, show its uploaded images. */
  loaded() {
    for (const [, value] of this.#inputsWith("model")) this.seenModels.add(String(value));
    this.showImageChoices();
  }

  modelChoices(spec) {
    return [spec.default ?? "default", ...this.seenModels];
  }

  /** Show an uploaded image chosen in an image widget on its node (other paths are the server's business). */
  showImageChoice(node, name) {
    if (this.uploads.includes(name)) this.view.setImages(node.nf.id, [this.withToken(`/api/uploads/${encodeURIComponent(name)}`)]);
  }

  showImageChoices() {
    for (const [node, value] of this.#inputsWith("image")) this.showImageChoice(node, value);
  }

  async refreshUploads() {
    try {
      this.uploads = ((await this.api.listUploads())?.uploads || []).map((u) => u.name);
      this.showImageChoices();
    } catch {
      this.uploads = []; // an older server without the listing: uploading still works
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
