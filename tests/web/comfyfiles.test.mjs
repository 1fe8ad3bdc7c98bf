// ComfyUI files in the editor (web/js/comfyfiles.js): which files go to the server's importer.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { classifyJson, importReport, isComfyPng } from "../../web/js/comfyfiles.js";

const files = new URL("../comfy_files/", import.meta.url);
const read = (name) => JSON.parse(readFileSync(new URL(name, files), "utf8"));

test("nodeflow documents open as they are; ComfyUI's UI workflow and API prompt go to the importer", () => {
  assert.equal(classifyJson({ format: "nodeflow/graph", version: 2, nodes: {} }), "graph");
  assert.equal(classifyJson({ nodes: { a: { type: "core.add" } } }), "graph"); // an older document without `format`
  assert.equal(classifyJson(read("default_ui.json")), "comfy");
  assert.equal(classifyJson(read("default_api.json")), "comfy");
  assert.equal(classifyJson({ prompt: read("default_api.json") }), "comfy");
  // anything else is the importer's to refuse, with its reason
  assert.equal(classifyJson({ something: 1 }), "comfy");
  assert.equal(classifyJson([1, 2]), null);
  assert.equal(classifyJson("text"), null);
});

test("a PNG is ComfyUI's when it carries a workflow or prompt chunk", () => {
  assert.ok(isComfyPng({ workflow: "{}" }));
  assert.ok(isComfyPng({ prompt: "{}", parameters: "x" }));
  assert.ok(!isComfyPng({ nodeflow_graph: "{}" }));
  assert.ok(!isComfyPng({}));
});

test("the report lists the importer's notes and validation's problems", () => {
  const report = importReport("flow.json", { source: "ui", notes: ["Imported from a ComfyUI UI workflow (version 0.4)."], problems: [{ message: "CheckpointLoaderSimple 4: no file" }] });
  assert.equal(report.title, "Imported flow.json (ComfyUI workflow)");
  assert.deepEqual(report.notes, ["Imported from a ComfyUI UI workflow (version 0.4)."]);
  assert.deepEqual(report.problems, ["CheckpointLoaderSimple 4: no file"]);
  assert.match(report.summary, /1 problem/);
  assert.equal(importReport("p.json", { source: "api", notes: [], problems: [] }).summary, "It is ready to run.");
});
