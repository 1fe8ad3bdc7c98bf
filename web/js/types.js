// Applies the server's type compatibility table (GET /api/nodes -> "types").
//
// The rule itself lives in nodeflow/types.py and nowhere else. The table lists, for
// every known output type, the input types it may feed ("matrix"); for names the
// table does not know (a plugin's own type) it also says what the wildcard input is
// ("any") and which widenings exist, which is all a client needs to answer for any
// pair without inventing a rule of its own.

const FALLBACK_COLOUR = "#9aa0a6";

export class TypeTable {
  constructor(table) {
    this.table = table || {};
    this.any = this.table.any ?? "*";
    this.matrix = new Map(Object.entries(this.table.matrix || {}).map(([out, ins]) => [out, new Set(ins)]));
    this.widenings = new Set((this.table.widenings || []).map(([a, b]) => `${a}\u0000${b}`));
    this.info = this.table.types || {};
  }

  /** Whether an output of type `output` may feed an input of type `input`. */
  canConnect(output, input) {
    output = String(output ?? "");
    input = String(input ?? "");
    if (this.matrix.has(output) && this.matrix.has(input)) return this.matrix.get(output).has(input);
    // A name outside the matrix (the wildcard, a plugin's own type): the table's
    // "any" and "widenings" entries answer for it.
    return output === input || input === this.any || this.widenings.has(`${output}\u0000${input}`);
  }

  colour(type) {
    return this.info[type]?.color || FALLBACK_COLOUR;
  }

  description(type) {
    return this.info[type]?.description || "";
  }
}
