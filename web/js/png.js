// Reads the text chunks of a PNG file (tEXt, zTXt, iTXt) in the browser.
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
