// What graphview.js decides without a canvas: menus offer only what the engine supports, values are short texts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatValue, supportedMenu } from "../../web/js/graphview.js";

const entry = (content) => ({ content, callback: () => content });

test("subgraph and node-mode entries are removed, separators stay tidy", () => {
  const options = [
    entry("Inputs"), entry("Outputs"), null, entry("Convert to Subgraph 🆕"), entry("Properties"), entry("Properties Panel"), null,
    entry("Title"), entry("Mode"), entry("Collapse"), entry("Shapes"), entry("Colors"), null, entry("Remove"), null,
  ];
  assert.deepEqual(supportedMenu(options).map((o) => o?.content ?? null), ["Title", "Collapse", "Colors", null, "Remove"]);
});

test("an entry can be replaced by the editor's own", () => {
  const rename = () => "renamed";
  const [title] = supportedMenu([entry("Title")], { Title: { content: "Rename", callback: rename } });
  assert.equal(title.content, "Rename");
  assert.equal(title.callback, rename);
});

test("values shown on nodes are short texts", () => {
  assert.equal(formatValue({ text: "a fox" }), "a fox");
  assert.equal(formatValue({ total: 5.5 }), "5.5");
  assert.equal(formatValue({ a: 1, b: "x" }), "a: 1\nb: x");
  assert.equal(formatValue([1, 2]), "[1,2]");
  assert.equal(formatValue({ text: "x".repeat(5000) }).length, 1000);
});
