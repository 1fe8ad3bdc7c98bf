// The server's compatibility table, applied (web/js/types.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { TypeTable } from "../../web/js/types.js";
import { CATALOGUE } from "./fixtures.mjs";

const table = new TypeTable(CATALOGUE.types);

test("known types follow the matrix", () => {
  assert.equal(table.canConnect("INT", "FLOAT"), true);
  assert.equal(table.canConnect("FLOAT", "INT"), false);
});

test("names outside the matrix connect to themselves, the wildcard and listed widenings", () => {
  assert.equal(table.canConnect("PLUGIN_THING", "PLUGIN_THING"), true);
  assert.equal(table.canConnect("PLUGIN_THING", "*"), true);
  assert.equal(table.canConnect("PLUGIN_THING", "INT"), false);
});

test("colours come from the table, with a fallback", () => {
  assert.equal(table.colour("INT"), "#6ab0de");
  assert.match(table.colour("UNKNOWN"), /^#[0-9a-f]{6}$/);
});
