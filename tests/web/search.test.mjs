// Node search (web/js/search.js): the library and the canvas search box share it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { matchNodes, searchText } from "../../web/js/search.js";

const schema = (id, display_name, category, description, inputs = [], outputs = []) => ({ id, display_name, category, description, inputs, outputs });
const SCHEMAS = [
  schema("sd.denoise", "Denoise", "sd/sampling", "The denoise loop (a sampler): latents in, latents out.",
    [{ name: "latents", type: "LATENTS" }], [{ name: "latents", type: "LATENTS" }]),
  schema("sd.tokenize", "Tokenize", "sd/conditioning", "Split a prompt into CLIP token ids.", [{ name: "text", type: "STRING" }], [{ name: "tokens", type: "TOKENS" }]),
  schema("sd.vae_decode", "VAE Decode", "sd/latents", "Latents to an image.", [{ name: "latents", type: "LATENTS" }], [{ name: "image", type: "IMAGE" }]),
  schema("core.add", "Add", "math", "Add two numbers.", [{ name: "a", type: "FLOAT" }], [{ name: "total", type: "FLOAT" }]),
  schema("core.string", "Text", "primitives", "A text value.", [], [{ name: "out", type: "STRING" }]),
];
const ids = (query) => matchNodes(query, SCHEMAS).map((s) => s.id);

test("words match descriptions, not only titles", () => {
  assert.deepEqual(ids("sampler"), ["sd.denoise"]);
  assert.deepEqual(ids("prompt"), ["sd.tokenize"]);
  assert.deepEqual(ids("clip"), ["sd.tokenize"]);
});

test("words match socket names and types", () => {
  assert.deepEqual(new Set(ids("latents")), new Set(["sd.denoise", "sd.vae_decode"]));
  assert.deepEqual(ids("TOKENS"), ["sd.tokenize"]);
});

test("words match categories", () => {
  assert.deepEqual(ids("math"), ["core.add"]);
});

test("every word must match, in any field", () => {
  assert.deepEqual(ids("vae dec"), ["sd.vae_decode"]);
  assert.deepEqual(ids("latents image"), ["sd.vae_decode"]);
  assert.deepEqual(ids("latents nothing-like-this"), []);
});

test("a name match ranks before a description match", () => {
  const list = [schema("x.a", "Loader", "misc", "reads text"), schema("x.b", "Text", "misc", "plain")];
  assert.deepEqual(matchNodes("text", list).map((s) => s.id), ["x.b", "x.a"]);
});

test("an empty query lists everything in the given order", () => {
  assert.deepEqual(ids("  "), SCHEMAS.map((s) => s.id));
});

test("the searched text is lower case and names the id", () => {
  assert.match(searchText(SCHEMAS[0]), /sd\.denoise/);
  assert.equal(searchText(SCHEMAS[0]), searchText(SCHEMAS[0]).toLowerCase());
});
