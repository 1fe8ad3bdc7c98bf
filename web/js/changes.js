// When to look for edits on the canvas.
//
// litegraph says when its graph changed, in its own ways: `graph.onAfterChange` ends
// every drag, resize, paste, delete and connection made with the mouse, `graph.on_change`
// follows every click on the canvas and every node or group added or removed, and the
// canvas element receives a "litegraph:canvas" event with subType "after-change" for
// reroutes and pastes. DOM pointer events cannot stand in for these: litegraph handles
// `pointerup` in the capture phase and stops it there, so a listener of ours never hears
// of a node moved with the mouse.
//
// Menus and dialogs litegraph opens (node colours, "Add Reroute", "Delete" on a link)
// live outside the canvas; a click in one of them is followed by a check too.
//
// Several notifications in one task (an operation that calls afterChange and
// on_change, a paste of ten nodes) make one check, run as a microtask: before the
// browser hands over the next input event, so each gesture stays one undo step.

const LITEGRAPH_POPUPS = ".litecontextmenu, .graphdialog, .litesearchbox";

/**
 * Call `check()` after every change litegraph reports on `graph` (drawn on `element`).
 * Returns `schedule`, for other code that knows something may have changed.
 */
export function trackChanges(graph, element, check) {
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      check();
    });
  };
  const afterChange = graph.onAfterChange;
  const onChange = graph.on_change;
  graph.onAfterChange = (...args) => {
    afterChange?.(...args);
    schedule();
  };
  graph.on_change = (...args) => {
    onChange?.(...args);
    schedule();
  };
  element.addEventListener("litegraph:canvas", (e) => {
    if (e.detail?.subType === "after-change") schedule();
  });
  // capture: we hear of the click before the menu acts on it, so check once it has
  const afterPopup = (e) => {
    if (e.target instanceof Element && e.target.closest(LITEGRAPH_POPUPS)) setTimeout(schedule, 0);
  };
  element.ownerDocument.addEventListener("click", afterPopup, true);
  element.ownerDocument.addEventListener("keyup", afterPopup, true);
  return schedule;
}
