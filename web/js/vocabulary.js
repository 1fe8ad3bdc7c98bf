// The names the editor shares with the engine, read from the server (GET /api/nodes ->
// "vocabulary") instead of copied from Python: the graph format and version, which
// socket types take typed-in literals, run and node statuses, websocket message types.

/** The websocket message types this editor acts on; `check` reports those the server no longer sends. */
export const HANDLED_EVENTS = Object.freeze([
  "queue", "run_started", "node_started", "node_cached", "node_finished", "node_failed",
  "progress", "preview", "output", "run_cancelling", "run_succeeded", "run_failed", "run_cancelled",
]);

/**
 * The vocabulary of a catalogue, as sets and constants. Throws with a sentence when the
 * server does not publish one (an older server than this editor).
 */
export function readVocabulary(catalogue) {
  const v = catalogue?.vocabulary;
  if (!v || typeof v !== "object") {
    throw new Error("the server's /api/nodes has no 'vocabulary': the server is older than this editor");
  }
  for (const key of ["graph_format", "graph_version", "literal_types", "run_statuses", "finished_statuses", "node_statuses", "events"]) {
    if (v[key] === undefined) throw new Error(`the server's vocabulary lacks '${key}'`);
  }
  return Object.freeze({
    graphFormat: v.graph_format,
    graphVersion: v.graph_version,
    literalTypes: new Set(v.literal_types),
    runStatuses: new Set(v.run_statuses),
    finished: new Set(v.finished_statuses),
    nodeStatuses: new Set(v.node_statuses),
    events: new Set(v.events),
  });
}

/** Event types this editor handles that the server does not list (a protocol drift worth a console warning). */
export function unknownEvents(vocabulary) {
  return HANDLED_EVENTS.filter((type) => !vocabulary.events.has(type));
}
