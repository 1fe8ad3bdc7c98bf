// The mask painter's pixels, as pure functions: a mask is a Uint8Array of width*height
// bytes, 255 where the picture is to be repainted and 0 elsewhere (what Load Mask reads
// as white = repaint). Strokes are rasterised here with hard edges (a pixel is painted
// when its centre lies within the brush radius of the stroke), so a saved mask holds
// only 0 and 255 and does not depend on the browser's antialiasing.

/** The rectangle {x0, y0, x1, y1} (x1, y1 exclusive) of pixels a stroke may touch, clipped; null when empty. */
function strokeBox(width, height, a, b, radius) {
  const x0 = Math.max(0, Math.floor(Math.min(a[0], b[0]) - radius));
  const y0 = Math.max(0, Math.floor(Math.min(a[1], b[1]) - radius));
  const x1 = Math.min(width, Math.ceil(Math.max(a[0], b[0]) + radius) + 1);
  const y1 = Math.min(height, Math.ceil(Math.max(a[1], b[1]) + radius) + 1);
  return x0 < x1 && y0 < y1 ? { x0, y0, x1, y1 } : null;
}

/** Squared distance from point (px, py) to the segment a-b. */
function distanceSquared(px, py, a, b) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const length = dx * dx + dy * dy;
  const t = length ? Math.max(0, Math.min(1, ((px - a[0]) * dx + (py - a[1]) * dy) / length)) : 0;
  const ex = a[0] + t * dx - px;
  const ey = a[1] + t * dy - py;
  return ex * ex + ey * ey;
}

/**
 * Paint the segment from `a` to `b` (image coordinates, [x, y]) with a round brush of
 * `radius` pixels: `value` 255 (brush) or 0 (eraser). A dot is a segment from a point to itself.
 * @returns {?{x0, y0, x1, y1}} the rectangle that may have changed
 */
export function paintSegment(mask, width, height, a, b, radius, value) {
  const box = strokeBox(width, height, a, b, radius);
  if (!box) return null;
  const limit = radius * radius;
  for (let y = box.y0; y < box.y1; y++) {
    for (let x = box.x0; x < box.x1; x++) {
      if (distanceSquared(x + 0.5, y + 0.5, a, b) <= limit) mask[y * width + x] = value;
    }
  }
  return box;
}

/**
 * The mask a picture already holds: `from` "luminance" (a mask picture: light = repaint)
 * or "alpha" (an image: transparent = repaint, as Load Image's mask output reads it).
 * @param {Uint8ClampedArray} rgba  the picture's RGBA pixels (canvas ImageData)
 */
export function maskFromPixels(rgba, from) {
  const mask = new Uint8Array(rgba.length / 4);
  for (let i = 0; i < mask.length; i++) {
    const p = i * 4;
    const level = from === "alpha" ? 255 - rgba[p + 3] : (rgba[p] * 299 + rgba[p + 1] * 587 + rgba[p + 2] * 114) / 1000;
    mask[i] = level >= 128 ? 255 : 0;
  }
  return mask;
}

/** RGBA pixels of `box` showing the painted part of `mask` in `colour` ([r, g, b, a]), the rest clear. */
export function overlayPixels(mask, width, box, colour) {
  const w = box.x1 - box.x0;
  const out = new Uint8ClampedArray(w * (box.y1 - box.y0) * 4);
  for (let y = box.y0; y < box.y1; y++) {
    for (let x = box.x0; x < box.x1; x++) {
      if (mask[y * width + x]) out.set(colour, ((y - box.y0) * w + (x - box.x0)) * 4);
    }
  }
  return out;
}

/** RGBA pixels whose alpha says the mask (0 = transparent = repaint) and whose colour is black: the alpha upload. */
export function alphaPixels(mask) {
  const out = new Uint8Array(mask.length * 4);
  for (let i = 0; i < mask.length; i++) out[i * 4 + 3] = 255 - mask[i];
  return out;
}
