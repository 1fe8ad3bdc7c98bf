// Node modes, as the graph format spells them (`mode` on a node; nodeflow/graph.py
// NodeMode, checked against it by tests/test_editor_units.py) and what Ctrl+M / Ctrl+B
// do to them. The engine gives them ComfyUI's meanings: a muted node does not run, nor
// does anything that needs it; a bypassed node passes each input through to its first
// output of the same type. A subgraph node has no mode of its own (the engine refuses
// one): the nodes inside it have theirs.
//
// On the canvas a mode is litegraph's `node.mode`, with ComfyUI's numbers (NEVER for
// muted, BYPASS for bypassed), so copy and paste keep it; the document spells it.

import { LGraphEventMode } from "../vendor/litegraph.es.js";

export const ACTIVE = "active";
export const MUTED = "muted";
export const BYPASSED = "bypassed";
export const MODES = Object.freeze([ACTIVE, MUTED, BYPASSED]);

const TO_LITEGRAPH = { [ACTIVE]: LGraphEventMode.ALWAYS, [MUTED]: LGraphEventMode.NEVER, [BYPASSED]: LGraphEventMode.BYPASS };
const FROM_LITEGRAPH = new Map(Object.entries(TO_LITEGRAPH).map(([mode, number]) => [number, mode]));

/** litegraph's number for a mode of the graph format (undefined for a spelling this editor does not know). */
export function litegraphMode(mode) {
  return TO_LITEGRAPH[mode ?? ACTIVE];
}

/** The graph format's spelling of a canvas node's mode (litegraph's other modes read as active). */
export function modeOf(node) {
  return FROM_LITEGRAPH.get(node?.mode ?? LGraphEventMode.ALWAYS) ?? ACTIVE;
}

/**
 * The modes nodes get when Ctrl+M (`mode` muted) or Ctrl+B (bypassed) is pressed on them:
 * all of them take `mode`, or, when all have it already, all go back to active (so the
 * same key undoes it, and a mixed selection ends up in one mode).
 */
export function toggledModes(modes, mode) {
  if (!MODES.includes(mode) || mode === ACTIVE) throw new Error(`cannot toggle mode '${mode}'`);
  const all = modes.length > 0 && modes.every((m) => m === mode);
  return modes.map(() => (all ? ACTIVE : mode));
}

/** Menu label for setting or clearing `mode` on nodes whose modes are `modes`. */
export function modeMenuLabel(modes, mode) {
  const all = modes.length > 0 && modes.every((m) => m === mode);
  if (mode === MUTED) return all ? "Unmute" : "Mute";
  return all ? "Stop bypassing" : "Bypass";
}
