// The vocabulary read from the server (web/js/vocabulary.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { readVocabulary, unknownEvents } from "../../web/js/vocabulary.js";
import { GRAPH_JSON, VOCABULARY_JSON } from "./fixtures.mjs";

test("the vocabulary becomes sets and constants", () => {
  const v = readVocabulary({ vocabulary: VOCABULARY_JSON, graph: GRAPH_JSON });
  assert.equal(v.graphFormat, "nodeflow/graph");
  assert.equal(v.graphVersion, 2);
  assert.ok(v.literalTypes.has("INT") && !v.literalTypes.has("IMAGE"));
  assert.ok(v.finished.has("cancelled") && !v.finished.has("running"));
  assert.ok(v.nodeStatuses.has("not_needed"));
  assert.deepEqual(unknownEvents(v), []);
});

test("a server without a vocabulary or graph format is refused with a sentence", () => {
  assert.throws(() => readVocabulary({ nodes: {} }), /no 'vocabulary' or 'graph'/);
  const { messages, ...partial } = VOCABULARY_JSON;
  assert.throws(() => readVocabulary({ vocabulary: partial, graph: GRAPH_JSON }), /lacks 'messages'/);
  assert.throws(() => readVocabulary({ vocabulary: VOCABULARY_JSON, graph: { format: "x" } }), /format or version/);
});

test("message types the server stopped sending are reported", () => {
  const v = readVocabulary({ vocabulary: { ...VOCABULARY_JSON, messages: VOCABULARY_JSON.messages.filter((e) => e !== "preview") }, graph: GRAPH_JSON });
  assert.deepEqual(unknownEvents(v), ["preview"]);
});
