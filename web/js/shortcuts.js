// Keyboard shortcuts of the page, and the list the `?` key shows. Keys litegraph
// handles on the canvas itself (copy, paste, delete, select all) are listed too.

export const SHORTCUTS = Object.freeze([
  { keys: "Ctrl+Enter", what: "Run the graph" },
  { keys: "Ctrl+S", what: "Save the workflow" },
  { keys: "Ctrl+Z", what: "Undo" },
  { keys: "Ctrl+Y / Ctrl+Shift+Z", what: "Redo" },
  { keys: "Ctrl+G", what: "Put the selected nodes in a group" },
  { keys: "Ctrl+M", what: "Mute the selected nodes (again: unmute)" },
  { keys: "Ctrl+B", what: "Bypass the selected nodes (again: stop bypassing)" },
  { keys: "Double-click a subgraph node", what: "Open the subgraph (← Back returns)" },
  { keys: "Ctrl+C / Ctrl+V", what: "Copy, paste (Ctrl+Shift+V keeps input links)" },
  { keys: "Delete / Backspace", what: "Delete the selection" },
  { keys: "Ctrl+A", what: "Select everything" },
  { keys: "Ctrl+drag / Shift+click", what: "Select by rectangle, add to the selection" },
  { keys: "Double-click the canvas", what: "Search for a node to add" },
  { keys: "Double-click a title", what: "Rename the node" },
  { keys: "Drag the background / Space+drag", what: "Pan" },
  { keys: "Wheel", what: "Zoom" },
  { keys: "?", what: "This list" },
  { keys: "Esc", what: "Close a dialog or the search box" },
]);

export function isTextField(el) {
  return Boolean(el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable));
}

/**
 * Bind the page's shortcuts to actions: {run, save, undo, redo, group, mute, bypass, help}.
 * Undo, redo, group, mute, bypass and `?` are left to text fields while one has the focus.
 */
export function bindShortcuts(actions) {
  document.addEventListener("keydown", (e) => {
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    const inText = isTextField(e.target);
    let action = null;
    if (mod && key === "enter") action = actions.run;
    else if (mod && key === "s") action = actions.save;
    else if (inText) return;
    else if (mod && key === "z" && !e.shiftKey) action = actions.undo;
    else if (mod && (key === "y" || (key === "z" && e.shiftKey))) action = actions.redo;
    else if (mod && key === "g") action = actions.group;
    else if (mod && key === "m" && !e.shiftKey) action = actions.mute;
    else if (mod && key === "b" && !e.shiftKey) action = actions.bypass;
    else if (!mod && e.key === "?") action = actions.help;
    if (!action) return;
    e.preventDefault();
    action();
  });
}
