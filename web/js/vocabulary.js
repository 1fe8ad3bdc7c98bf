// The names the editor shares with the server, read from GET /api/nodes instead of
// copied from Python: the graph format and version ("graph"), which socket types take
// typed-in literals, run and node statuses (the engine's enums), and the websocket
// message types ("vocabulary").

/** The websocket message types this editor acts on; `unknownEvents` reports those the server does not list. */
export const HANDLED_EVENTS = Object.freeze([
  "queue", "run_started", "node_started", "node_cached", "node_finished", "node_failed", "node_cancelled",
  "progress", "preview", "output", "run_cancelling", "run_succeeded", "run_failed", "run_cancelled",
]);

const REQUIRED = ["literal_types", "run_statuses", "final_run_statuses", "node_statuses", "messages"];

/**
 * The vocabulary of a catalogue, as sets and constants. Throws with a sentence when the
 * server does not publish it (a server older than this editor).
 */
export function readVocabulary(catalogue) {
  const v = catalogue?.vocabulary;
  const graph = catalogue?.graph;
  if (!v || typeof v !== "object" || !graph || typeof graph !== "object") {
    throw new Error("the server's /api/nodes has no 'vocabulary' or 'graph': the server is older than this editor");
  }
  for (const key of REQUIRED) if (!Array.isArray(v[key])) throw new Error(`the server's vocabulary lacks '${key}'`);
  if (typeof graph.format !== "string" || !Number.isInteger(graph.version)) throw new Error("the server's 'graph' lacks its format or version");
  return Object.freeze({
    graphFormat: graph.format,
    graphVersion: graph.version,
    literalTypes: new Set(v.literal_types),
    runStatuses: new Set(v.run_statuses),
    finished: new Set(v.final_run_statuses),
    nodeStatuses: new Set(v.node_statuses),
    events: new Set(v.messages),
  });
}

/** Event types this editor handles that the server does not list (a protocol drift worth a console warning). */
export function unknownEvents(vocabulary) {
  return HANDLED_EVENTS.filter((type) => !vocabulary.events.has(type));
}
