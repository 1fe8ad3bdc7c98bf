// Undo and redo as snapshots of the graph document.
//
// litegraph has no undo of its own (ComfyUI's frontend adds one the same way): after
// every gesture that may have changed the graph (pointer up, key up, a widget edit, an
// API call) the editor asks `check()`, which serialises the document and records it
// when it differs from the last one. Undo reloads the previous snapshot. Snapshots are
// the same JSON the editor saves, so undo can never produce a graph the editor could
// not have saved.

const LIMIT = 100;
/** Edits of one field closer together than this are one undo step (typing "42" is not two edits). */
const COALESCE_MS = 1200;

export class History {
  /**
   * @param {() => object} snapshot  the current document
   * @param {(doc: object) => void} restore  load a document back (without recording)
   */
  constructor(snapshot, restore) {
    this.snapshot = snapshot;
    this.restore = restore;
    this.undoStack = [];
    this.redoStack = [];
    this.current = null;
    this.onChange = null;
    this.lastKey = null;
    this.lastTime = 0;
  }

  /** Start over from the current graph (after opening a workflow). */
  reset() {
    this.undoStack = [];
    this.redoStack = [];
    this.current = JSON.stringify(this.snapshot());
    this.onChange?.();
  }

  /**
   * Record the current graph if it changed since the last record; returns whether it did.
   * `key` names what was edited (a field); a quick second edit of the same key joins
   * the previous step instead of making a new one.
   */
  check(key = null) {
    const now = JSON.stringify(this.snapshot());
    if (now === this.current) return false;
    const time = Date.now();
    const joins = key !== null && key === this.lastKey && time - this.lastTime < COALESCE_MS && this.undoStack.length > 0;
    if (this.current !== null && !joins) {
      this.undoStack.push(this.current);
      if (this.undoStack.length > LIMIT) this.undoStack.shift();
    }
    this.lastKey = key;
    this.lastTime = time;
    this.current = now;
    this.redoStack = [];
    this.onChange?.();
    return true;
  }

  get canUndo() {
    return this.undoStack.length > 0;
  }

  get canRedo() {
    return this.redoStack.length > 0;
  }

  undo() {
    this.check(); // an edit not recorded yet is the step to undo
    this.lastKey = null;
    if (!this.undoStack.length) return false;
    this.redoStack.push(this.current);
    this.current = this.undoStack.pop();
    this.restore(JSON.parse(this.current));
    this.onChange?.();
    return true;
  }

  redo() {
    if (!this.redoStack.length) return false;
    this.lastKey = null;
    this.undoStack.push(this.current);
    this.current = this.redoStack.pop();
    this.restore(JSON.parse(this.current));
    this.onChange?.();
    return true;
  }
}
