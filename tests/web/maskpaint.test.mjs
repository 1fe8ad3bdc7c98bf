// The mask painter's pixels (web/js/maskpaint.js) and the PNGs it saves (web/js/png.js encodePng).
import assert from "node:assert/strict";
import { test } from "node:test";
import { inflateSync } from "node:zlib";
import { alphaPixels, maskFromPixels, overlayPixels, paintSegment } from "../../web/js/maskpaint.js";
import { encodePng } from "../../web/js/png.js";

const W = 20;
const H = 10;
const at = (mask, x, y) => mask[y * W + x];

test("a stroke paints every pixel whose centre is within the radius of the segment, and nothing else", () => {
  const mask = new Uint8Array(W * H);
  const box = paintSegment(mask, W, H, [3, 5], [15, 5], 2, 255);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const cx = x + 0.5;
      const cy = y + 0.5;
      const nearest = Math.max(3, Math.min(15, cx));
      const inside = (cx - nearest) ** 2 + (cy - 5) ** 2 <= 4;
      assert.equal(at(mask, x, y), inside ? 255 : 0, `pixel ${x},${y}`);
    }
  }
  assert.equal(at(mask, 9, 5), 255);
  assert.equal(at(mask, 9, 2), 0);
  assert.ok(box.x0 <= 1 && box.x1 >= 17 && box.y0 <= 3 && box.y1 >= 7, JSON.stringify(box));
});

test("a dot is a disc; the eraser clears; strokes are clipped to the picture", () => {
  const mask = new Uint8Array(W * H);
  paintSegment(mask, W, H, [10, 5], [10, 5], 3, 255);
  assert.equal(at(mask, 10, 5), 255);
  assert.equal(at(mask, 12, 5), 255); // centre 12.5: 2.5 away
  assert.equal(at(mask, 13, 5), 0); // centre 13.5: 3.5 away
  paintSegment(mask, W, H, [10, 5], [10, 5], 1, 0);
  assert.equal(at(mask, 10, 5), 0);
  assert.equal(at(mask, 12, 5), 255);
  const edge = new Uint8Array(W * H);
  assert.deepEqual(paintSegment(edge, W, H, [-5, -5], [0, 0], 2, 255), { x0: 0, y0: 0, x1: 3, y1: 3 });
  assert.equal(at(edge, 0, 0), 255);
  assert.equal(paintSegment(edge, W, H, [-50, -50], [-40, -40], 2, 255), null);
});

test("a picture's mask: light pixels of a mask picture, transparent pixels of an image", () => {
  const rgba = Uint8ClampedArray.from([255, 255, 255, 255, 0, 0, 0, 255, 200, 200, 200, 0, 10, 10, 10, 100]);
  assert.deepEqual([...maskFromPixels(rgba, "luminance")], [255, 0, 255, 0]);
  assert.deepEqual([...maskFromPixels(rgba, "alpha")], [0, 0, 255, 255]);
});

test("the overlay shows painted pixels in the colour, the alpha upload is transparent where painted", () => {
  const mask = Uint8Array.from([0, 255, 255, 0]);
  assert.deepEqual([...overlayPixels(mask, 2, { x0: 0, y0: 0, x1: 2, y1: 2 }, [1, 2, 3, 4])], [0, 0, 0, 0, 1, 2, 3, 4, 1, 2, 3, 4, 0, 0, 0, 0]);
  assert.deepEqual([...overlayPixels(mask, 2, { x0: 1, y0: 0, x1: 2, y1: 1 }, [1, 2, 3, 4])], [1, 2, 3, 4]);
  assert.deepEqual([...alphaPixels(mask)], [0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255]);
});

function readChunks(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks = [];
  for (let at = 8; at < bytes.length; ) {
    const length = view.getUint32(at);
    chunks.push({ type: Buffer.from(bytes.subarray(at + 4, at + 8)).toString("latin1"), data: bytes.subarray(at + 8, at + 8 + length) });
    at += 12 + length;
  }
  return chunks;
}

for (const channels of [1, 4]) {
  test(`encodePng writes an 8-bit ${channels === 1 ? "grayscale" : "RGBA"} PNG of exactly the pixels`, async () => {
    const pixels = Uint8Array.from({ length: 3 * 2 * channels }, (_, i) => (i * 37) % 256);
    const png = await encodePng(3, 2, pixels, channels);
    assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
    const chunks = readChunks(png);
    assert.deepEqual(chunks.map((c) => c.type), ["IHDR", "IDAT", "IEND"]);
    const ihdr = new DataView(chunks[0].data.buffer, chunks[0].data.byteOffset, 13);
    assert.deepEqual([ihdr.getUint32(0), ihdr.getUint32(4), chunks[0].data[8], chunks[0].data[9]], [3, 2, 8, channels === 1 ? 0 : 6]);
    const raw = inflateSync(chunks[1].data);
    const stride = 3 * channels;
    for (let y = 0; y < 2; y++) {
      assert.equal(raw[y * (stride + 1)], 0); // filter: none
      assert.deepEqual([...raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1))], [...pixels.subarray(y * stride, (y + 1) * stride)]);
    }
  });
}

test("encodePng refuses a pixel count that does not match", async () => {
  await assert.rejects(encodePng(2, 2, new Uint8Array(3), 1), /pixel count/);
  await assert.rejects(encodePng(1, 1, new Uint8Array(3), 3), /channels/);
});
