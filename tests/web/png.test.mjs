// PNG text chunks (web/js/png.js): tEXt, zTXt and iTXt (plain and compressed), as
// Pillow writes them for the save-image node's embedded graph.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deflateSync } from "node:zlib";
import { GRAPH_CHUNK, readGraphFromPng, readPngText } from "../../web/js/png.js";

const latin1 = (s) => Buffer.from(s, "latin1");
const utf8 = (s) => Buffer.from(s, "utf8");

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

function png(...chunks) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0);
  ihdr.writeUInt32BE(1, 4);
  ihdr[8] = 8; // bit depth; colour type 0 (grey)
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), ...chunks, chunk("IEND", Buffer.alloc(0))]);
}

const tEXt = (key, text) => chunk("tEXt", Buffer.concat([latin1(key), Buffer.from([0]), latin1(text)]));
const zTXt = (key, text) => chunk("zTXt", Buffer.concat([latin1(key), Buffer.from([0, 0]), deflateSync(latin1(text))]));
const iTXt = (key, text, compressed) =>
  chunk("iTXt", Buffer.concat([latin1(key), Buffer.from([0, compressed ? 1 : 0, 0]), latin1("en"), Buffer.from([0]), Buffer.from([0]), compressed ? deflateSync(utf8(text)) : utf8(text)]));

const GRAPH = { format: "nodeflow/graph", version: 1, nodes: { 4: { type: "core.string", inputs: { value: "ein Fuchs, 狐, лиса" } } } };

test("every kind of text chunk is read", async () => {
  const texts = await readPngText(png(tEXt("a", "plain é"), zTXt("b", "zipped"), iTXt("c", "狐", false), iTXt("d", "лиса", true)));
  assert.deepEqual(texts, { a: "plain é", b: "zipped", c: "狐", d: "лиса" });
});

test("the embedded graph comes back, compressed or not", async () => {
  for (const compressed of [false, true]) {
    assert.deepEqual(await readGraphFromPng(png(iTXt(GRAPH_CHUNK, JSON.stringify(GRAPH), compressed))), GRAPH);
  }
});

test("a PNG without the graph chunk has no graph", async () => {
  assert.equal(await readGraphFromPng(png(tEXt("Software", "other"))), null);
});

test("bytes that are not a PNG are refused", async () => {
  await assert.rejects(readPngText(utf8("GIF89a...")), /not a PNG/);
});

test("a truncated file gives what was read before the damage", async () => {
  const whole = png(tEXt("a", "first"), tEXt("b", "second"));
  const cut = whole.subarray(0, whole.length - 30);
  assert.deepEqual(await readPngText(cut), { a: "first" });
});
