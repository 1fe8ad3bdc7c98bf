// The vocabulary read from the server (web/js/vocabulary.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { readVocabulary, unknownEvents } from "../../web/js/vocabulary.js";
import { VOCABULARY_JSON as VOCABULARY } from "./fixtures.mjs";

test("the vocabulary becomes sets and constants", () => {
  const v = readVocabulary({ vocabulary: VOCABULARY });
  assert.equal(v.graphFormat, "nodeflow/graph");
  assert.equal(v.graphVersion, 1);
  assert.ok(v.literalTypes.has("INT") && !v.literalTypes.has("IMAGE"));
  assert.ok(v.finished.has("cancelled") && !v.finished.has("running"));
  assert.deepEqual(unknownEvents(v), []);
});

test("a server without a vocabulary is refused with a sentence", () => {
  assert.throws(() => readVocabulary({ nodes: {} }), /no 'vocabulary'/);
  const { events, ...partial } = VOCABULARY;
  assert.throws(() => readVocabulary({ vocabulary: partial }), /lacks 'events'/);
});

test("event types the server stopped sending are reported", () => {
  const v = readVocabulary({ vocabulary: { ...VOCABULARY, events: VOCABULARY.events.filter((e) => e !== "preview") } });
  assert.deepEqual(unknownEvents(v), ["preview"]);
});
