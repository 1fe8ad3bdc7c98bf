// Model pickers (web/js/models.js): which inputs name a model, and what their menu lists.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ModelList, modelEntries, modelKind, modelLabel } from "../../web/js/models.js";

const KINDS = new Set(["checkpoint", "lora", "embedding", "vae", "controlnet", "upscale_model"]);
const spec = (extra) => ({ name: "x", type: "STRING", has_default: false, default: null, widget: null, file: null, ...extra });

test("inputs declaring a model kind of file, or the model widget, get a picker of that kind", () => {
  assert.equal(modelKind(spec({ file: "lora", widget: "file" }), KINDS), "lora");
  assert.equal(modelKind(spec({ file: "embedding" }), KINDS), "embedding");
  assert.equal(modelKind(spec({ file: "controlnet", widget: "model" }), KINDS), "controlnet");
  assert.equal(modelKind(spec({ widget: "model" }), KINDS), "checkpoint"); // Load Model: a checkpoint name
  // images, masks and datasets are files but not models; plain strings are not files
  assert.equal(modelKind(spec({ file: "image", widget: "image" }), KINDS), null);
  assert.equal(modelKind(spec({ file: "dataset" }), KINDS), null);
  assert.equal(modelKind(spec({}), KINDS), null);
  // a server without a model listing: only the declared model widget keeps a picker
  assert.equal(modelKind(spec({ file: "lora" }), new Set()), null);
  assert.equal(modelKind(spec({ widget: "model" }), new Set()), "checkpoint");
});

test("labels carry the family when the server knows it", () => {
  assert.equal(modelLabel("xl.safetensors", { family: "sdxl", family_label: "SDXL" }), "xl.safetensors · SDXL");
  assert.equal(modelLabel("old.ckpt", { family: null, family_label: null }), "old.ckpt");
  assert.equal(modelLabel("typed/path", null), "typed/path");
  assert.equal(modelLabel("", null), "(none)");
});

test("entries: the default, the listed models, names seen, the current value; each once, in that order", () => {
  const listed = [
    { name: "a.safetensors", family: "sd1", family_label: "SD 1.x" },
    { name: "sub/xl.safetensors", family: "sdxl", family_label: "SDXL" },
  ];
  const entries = modelEntries(spec({ widget: "model", has_default: true, default: "default" }), listed, new Set(["a.safetensors", "seen.safetensors"]), "/typed/model");
  assert.deepEqual(entries.map((e) => e.value), ["default", "a.safetensors", "sub/xl.safetensors", "seen.safetensors", "/typed/model"]);
  assert.deepEqual(entries.map((e) => e.label), ["default", "a.safetensors · SD 1.x", "sub/xl.safetensors · SDXL", "seen.safetensors", "/typed/model"]);
  assert.deepEqual(entries.map((e) => e.listed), [false, true, true, false, false]);
});

test("an input without a default lists no 'default'; an empty current value is '(none)'", () => {
  const entries = modelEntries(spec({ file: "lora" }), [{ name: "style.safetensors" }], new Set(), "");
  assert.deepEqual(entries.map((e) => [e.value, e.label]), [["style.safetensors", "style.safetensors"], ["", "(none)"]]);
});

test("the listing is read from the server, and is empty when the server has none", async () => {
  const listing = { kinds: { checkpoint: [{ name: "a.safetensors", family_label: "SD 1.x" }], lora: [] }, folders: {} };
  const models = await new ModelList({ models: async () => listing }).refresh();
  assert.deepEqual([...models.kindNames()], ["checkpoint", "lora"]);
  assert.equal(models.find("checkpoint", "a.safetensors").family_label, "SD 1.x");
  assert.deepEqual(models.of("vae"), []);
  const none = await new ModelList({ models: async () => { throw new Error("404"); } }).refresh();
  assert.deepEqual([...none.kindNames()], []);
});
