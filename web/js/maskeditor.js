// The mask painter, the way ComfyUI's mask editor works: opened from an image input's
// "paint mask…" button, it shows the picture, paints what to repaint with a round brush
// (eraser, size, clear), and saves the mask as an upload that the input then names:
//
//   * a mask input (Load Mask, `file: "mask"`): a grayscale PNG, white = repaint, the
//     size of the picture painted over (chosen among the graph's uploaded images);
//   * an image input (Load Image, `file: "image"`): the same image with transparency where
//     painted (its `mask` output), stored by the server from the original's pixels and
//     the painted alpha (POST /upload/mask), so colours under the mask are kept.
//
// The pixels are maskpaint.js's (pure); the PNG writer is png.js's.

import { alphaPixels, maskFromPixels, overlayPixels, paintSegment } from "./maskpaint.js";
import { encodePng } from "./png.js";

const OVERLAY = [255, 40, 110, 150];

/** How an input is painted: "gray" (a mask picture) or "alpha" (an image's transparency); null when it is not paintable. */
export function paintMode(spec) {
  if (spec.widget !== "image") return null;
  return { mask: "gray", image: "alpha" }[spec.file] ?? null;
}

export class MaskEditor {
  /**
   * @param {HTMLDialogElement} dialog  the #mask-editor dialog (index.html)
   * @param {{api, withToken, toast: Toast}} deps
   */
  constructor(dialog, { api, withToken, toast }) {
    this.dialog = dialog;
    this.api = api;
    this.withToken = withToken;
    this.toast = toast;
    this.el = Object.fromEntries([...dialog.querySelectorAll("[data-role]")].map((e) => [e.dataset.role, e]));
    this.state = null;
    this.#bind();
  }

  #bind() {
    const { el } = this;
    el.size.addEventListener("input", () => (el["size-label"].textContent = `${el.size.value} px`));
    el.clear.addEventListener("click", () => this.#clear());
    el.cancel.addEventListener("click", () => this.dialog.close());
    el.save.addEventListener("click", () => this.#save().catch((e) => this.toast.show(`Mask not saved: ${e.message}`)));
    el.background.addEventListener("change", () => this.#show(el.background.value).catch((e) => this.toast.show(e.message)));
    this.dialog.addEventListener("close", () => this.#finish(null));
    const canvas = el.mask;
    canvas.addEventListener("pointerdown", (e) => this.#down(e));
    canvas.addEventListener("pointermove", (e) => this.#move(e));
    canvas.addEventListener("pointerup", (e) => this.#up(e));
    canvas.addEventListener("pointercancel", (e) => this.#up(e));
    canvas.addEventListener("pointerleave", () => (el.cursor.hidden = true));
  }

  /**
   * Paint a mask for input `spec` of a node whose value is `current`; `graphImages` are the
   * images the graph's image inputs name (what a mask is painted over first), `uploaded`
   * the server's uploads. Resolves to the stored upload's name, or null when cancelled.
   */
  async open(spec, current, graphImages, uploaded) {
    const mode = paintMode(spec);
    const uploads = new Set(uploaded);
    const choices = mode === "alpha" ? [current].filter((n) => uploads.has(n)) : [...new Set([...graphImages, ...uploads])].filter((n) => uploads.has(n));
    if (!choices.length) {
      throw new Error(mode === "alpha" ? "choose or upload an image first, then paint its mask" : "upload an image first (a Load Image node's): the mask is painted over it");
    }
    this.state = { mode, current, uploads, mask: null, width: 0, height: 0, last: null, done: null };
    this.#fillBackgrounds(mode, choices);
    this.el.title.textContent = mode === "alpha" ? `Paint the mask of ${current}` : "Paint a mask";
    this.el.hint.textContent = mode === "alpha"
      ? "Drag to paint what to repaint. Saved as a copy of the image, transparent where painted (Load Image's mask output)."
      : "Drag to paint what to repaint. Saved as a grayscale PNG upload: white = repaint, black = keep.";
    const result = new Promise((resolve) => (this.state.done = resolve));
    await this.#show(choices[0]);
    this.dialog.showModal();
    return result;
  }

  #fillBackgrounds(mode, choices) {
    this.el.background.replaceChildren(...choices.map((name) => new Option(name, name)));
    this.el.background.closest("label").hidden = mode === "alpha" || choices.length < 2;
  }

  async #load(name) {
    const picture = new Image();
    picture.src = this.withToken(`/api/uploads/${encodeURIComponent(name)}`);
    await picture.decode();
    return picture;
  }

  /** Show picture `name` and the mask the input already has, if it fits. */
  async #show(name) {
    const picture = await this.#load(name);
    const { width, height } = { width: picture.naturalWidth, height: picture.naturalHeight };
    for (const canvas of [this.el.image, this.el.mask]) Object.assign(canvas, { width, height });
    this.#fit(width, height);
    const ctx = this.el.image.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(picture, 0, 0);
    Object.assign(this.state, { width, height, background: name, mask: await this.#initialMask(ctx, width, height) });
    this.el.size.value = String(Math.max(2, Math.round(Math.min(width, height) / 12)));
    this.el.size.dispatchEvent(new Event("input"));
    this.#redraw({ x0: 0, y0: 0, x1: width, y1: height });
  }

  /** Show the picture as large as the window allows, small pictures up to 4x, keeping its aspect. */
  #fit(width, height) {
    const scale = Math.min(4, (window.innerWidth * 0.86) / width, (window.innerHeight * 0.68) / height, 1200 / width);
    Object.assign(this.el.image.style, { width: `${Math.floor(width * scale)}px`, height: `${Math.floor(height * scale)}px` });
  }

  async #initialMask(ctx, width, height) {
    const { mode, current, uploads } = this.state;
    if (mode === "alpha") return maskFromPixels(ctx.getImageData(0, 0, width, height).data, "alpha");
    if (!current || !uploads.has(current)) return new Uint8Array(width * height);
    const earlier = await this.#load(current).catch(() => null);
    if (!earlier || earlier.naturalWidth !== width || earlier.naturalHeight !== height) return new Uint8Array(width * height);
    const scratch = Object.assign(document.createElement("canvas"), { width, height }).getContext("2d", { willReadFrequently: true });
    scratch.drawImage(earlier, 0, 0);
    return maskFromPixels(scratch.getImageData(0, 0, width, height).data, "luminance");
  }

  #redraw(box) {
    const { mask, width } = this.state;
    const pixels = overlayPixels(mask, width, box, OVERLAY);
    this.el.mask.getContext("2d").putImageData(new ImageData(pixels, box.x1 - box.x0, box.y1 - box.y0), box.x0, box.y0);
  }

  #clear() {
    if (!this.state?.mask) return;
    this.state.mask.fill(0);
    this.#redraw({ x0: 0, y0: 0, x1: this.state.width, y1: this.state.height });
  }

  // -- painting ---------------------------------------------------------------------------------
  /** Image coordinates of a pointer event, and the scale from image pixels to CSS pixels. */
  #where(e) {
    const rect = this.el.mask.getBoundingClientRect();
    const scale = rect.width / this.state.width;
    return { point: [(e.clientX - rect.left) / scale, (e.clientY - rect.top) / scale], scale, rect };
  }

  #stroke(to) {
    const { state, el } = this;
    const radius = Number(el.size.value) / 2;
    const value = this.dialog.querySelector("input[name=mask-tool]:checked")?.value === "eraser" ? 0 : 255;
    const box = paintSegment(state.mask, state.width, state.height, state.last ?? to, to, radius, value);
    state.last = to;
    if (box) this.#redraw(box);
  }

  #down(e) {
    if (e.button !== 0 || !this.state?.mask) return;
    e.preventDefault();
    this.el.mask.setPointerCapture(e.pointerId);
    this.state.last = null;
    this.state.painting = true;
    this.#stroke(this.#where(e).point);
  }

  #move(e) {
    if (!this.state?.mask) return;
    const { point, scale } = this.#where(e);
    this.#cursor(point, scale);
    if (this.state.painting) this.#stroke(point);
  }

  #up(e) {
    if (!this.state) return;
    this.state.painting = false;
    this.state.last = null;
    if (this.el.mask.hasPointerCapture(e.pointerId)) this.el.mask.releasePointerCapture(e.pointerId);
  }

  #cursor([x, y], scale) {
    const size = Number(this.el.size.value) * scale;
    Object.assign(this.el.cursor.style, { left: `${x * scale}px`, top: `${y * scale}px`, width: `${size}px`, height: `${size}px` });
    this.el.cursor.hidden = false;
  }

  // -- saving -----------------------------------------------------------------------------------
  async #save() {
    const { mode, mask, width, height, background } = this.state;
    this.el.save.disabled = true;
    try {
      const name = mode === "alpha" ? await this.#saveAlpha(mask, width, height, background) : await this.#saveGray(mask, width, height);
      this.#finish(name);
      this.dialog.close();
    } finally {
      this.el.save.disabled = false;
    }
  }

  async #saveGray(mask, width, height) {
    const png = await encodePng(width, height, mask, 1);
    const info = await this.api.upload(new File([png], "mask.png", { type: "image/png" }));
    return info.name;
  }

  async #saveAlpha(mask, width, height, original) {
    const png = await encodePng(width, height, alphaPixels(mask), 4);
    const info = await this.api.uploadMask(new File([png], "mask.png", { type: "image/png" }), original);
    return info.name;
  }

  #finish(name) {
    const done = this.state?.done;
    if (!done) return;
    this.state.done = null;
    done(name);
  }
}
