// Finding node types by words: one matcher for the library panel and the canvas search
// box (double-click the canvas, or release a link on empty space).
//
// Every word must appear somewhere in what a node is: its name, id, category,
// description, and the names and types of its inputs and outputs ("latents" finds every
// node that takes or makes latents, "sampler" finds the denoise loop by its
// description). Nodes whose name matches come first.

/** The lower-case text a query is matched against. */
export function searchText(schema) {
  const sockets = [...(schema.inputs || []), ...(schema.outputs || [])].map((s) => `${s.name} ${s.display_name || ""} ${s.type}`);
  return [schema.display_name, schema.id, schema.category, schema.description, ...sockets].join(" ").toLowerCase();
}

/** The words of a query, lower-cased. */
export function queryWords(query) {
  return String(query ?? "").toLowerCase().split(/\s+/).filter(Boolean);
}

function rank(schema, words) {
  const name = String(schema.display_name || "").toLowerCase();
  const id = String(schema.id || "").toLowerCase();
  if (words.every((w) => name.includes(w))) return name.startsWith(words[0]) ? 0 : 1;
  if (words.every((w) => id.includes(w) || name.includes(w))) return 2;
  if (words.every((w) => String(schema.category || "").toLowerCase().includes(w) || name.includes(w))) return 3;
  return 4;
}

/**
 * The schemas matching `query`, best first (an empty query matches all, in the given order).
 * @param {string} query
 * @param {Array<object>} schemas  node schemas as GET /api/nodes lists them
 */
export function matchNodes(query, schemas) {
  const words = queryWords(query);
  if (!words.length) return [...schemas];
  const hits = [];
  schemas.forEach((schema, index) => {
    const text = searchText(schema);
    if (words.every((w) => text.includes(w))) hits.push({ schema, index, rank: rank(schema, words) });
  });
  hits.sort((a, b) => a.rank - b.rank || a.index - b.index);
  return hits.map((h) => h.schema);
}
