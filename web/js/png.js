// Reads the text chunks of a PNG file (tEXt, zTXt, iTXt) in the browser, and writes
// plain 8-bit PNGs (grayscale or RGBA) for the mask painter.
//
// The save-image node embeds the graph that made an image as JSON in a text chunk;
// dropping such a PNG on the editor reads it back. Pillow writes tEXt when the text
// is Latin-1 and iTXt (UTF-8) otherwise, compressed (zTXt / compressed iTXt) when
// asked to, so all three are handled. Compressed text is zlib data, which the
// browser's DecompressionStream("deflate") inflates.

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** The chunk name the save-image node writes the graph under. */
export const GRAPH_CHUNK = "nodeflow_graph";

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function indexOfZero(bytes, from) {
  for (let i = from; i < bytes.length; i++) if (bytes[i] === 0) return i;
  return -1;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8");

/**
 * All text chunks of a PNG as {keyword: text}. Throws if the bytes are not a PNG;
 * a damaged chunk ends the scan (what was read so far is returned).
 * @param {ArrayBuffer|Uint8Array} buffer
 */
export async function readPngText(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new Error("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const texts = {};
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = latin1.decode(bytes.subarray(offset + 4, offset + 8));
    const start = offset + 8;
    const end = start + length;
    if (end + 4 > bytes.length) break;
    const data = bytes.subarray(start, end);
    if (type === "tEXt" || type === "zTXt" || type === "iTXt") {
      const nul = indexOfZero(data, 0);
      if (nul > 0) {
        const keyword = latin1.decode(data.subarray(0, nul));
        try {
          texts[keyword] = await decodeText(type, data, nul);
        } catch {
          // one undecodable chunk should not hide the others
        }
      }
    }
    if (type === "IEND") break;
    offset = end + 4; // skip the CRC
  }
  return texts;
}

async function decodeText(type, data, nul) {
  if (type === "tEXt") return latin1.decode(data.subarray(nul + 1));
  if (type === "zTXt") return latin1.decode(await inflate(data.subarray(nul + 2)));
  // iTXt: keyword \0 flag method language \0 translated-keyword \0 text
  const compressed = data[nul + 1] === 1;
  const langEnd = indexOfZero(data, nul + 3);
  const transEnd = indexOfZero(data, langEnd + 1);
  const body = data.subarray(transEnd + 1);
  return utf8.decode(compressed ? await inflate(body) : body);
}

/** The graph document embedded in a PNG by the save-image node, or null when there is none. */
export async function readGraphFromPng(buffer) {
  const texts = await readPngText(buffer);
  const text = texts[GRAPH_CHUNK];
  if (!text) return null;
  return JSON.parse(text);
}

// -- writing ------------------------------------------------------------------------------------
// The mask painter saves 8-bit PNGs: grayscale (a mask, white = repaint) or RGBA (an
// image's alpha). A canvas cannot write a one-channel PNG, and its premultiplied pixels
// would change the colour under transparent ones, so the few lines of the format are here.

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * An 8-bit PNG of `pixels` (row-major, `channels` bytes a pixel: 1 grayscale, 4 RGBA).
 * @returns {Promise<Uint8Array>}
 */
export async function encodePng(width, height, pixels, channels) {
  const colourType = { 1: 0, 4: 6 }[channels];
  if (colourType === undefined) throw new Error(`PNG: ${channels} channels are not written (1 or 4)`);
  if (pixels.length !== width * height * channels) throw new Error("PNG: pixel count does not match the size");
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, colourType, 0, 0, 0], 8); // depth 8, colour type, deflate, filters, no interlace
  const stride = width * channels;
  const raw = new Uint8Array((stride + 1) * height); // each row: filter 0 (none), then its bytes
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const parts = [Uint8Array.from(SIGNATURE), pngChunk("IHDR", header), pngChunk("IDAT", await deflate(raw)), pngChunk("IEND", new Uint8Array())];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}
