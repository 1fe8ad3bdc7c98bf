// Light and dark, following the system setting (prefers-color-scheme). The page's
// colours are CSS variables (style.css); the canvas is drawn by litegraph, whose colours
// are set here.

import { LiteGraph } from "../vendor/litegraph.es.js";

const LITEGRAPH_KEYS = [
  "NODE_TITLE_COLOR", "NODE_SELECTED_TITLE_COLOR", "NODE_TEXT_COLOR", "NODE_TEXT_HIGHLIGHT_COLOR",
  "NODE_DEFAULT_COLOR", "NODE_DEFAULT_BGCOLOR", "NODE_DEFAULT_BOXCOLOR", "NODE_BOX_OUTLINE_COLOR",
  "WIDGET_BGCOLOR", "WIDGET_OUTLINE_COLOR", "WIDGET_TEXT_COLOR", "WIDGET_SECONDARY_TEXT_COLOR",
  "WIDGET_DISABLED_TEXT_COLOR", "LINK_COLOR", "DEFAULT_SHADOW_COLOR",
];

/** A light grid for the light canvas (litegraph's own grid image is drawn for a dark one). */
function lightGrid() {
  const size = 100;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  ctx.strokeStyle = "rgba(0, 0, 0, 0.07)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = 0.5; i < size; i += 10) {
    ctx.moveTo(i, 0);
    ctx.lineTo(i, size);
    ctx.moveTo(0, i);
    ctx.lineTo(size, i);
  }
  ctx.stroke();
  return canvas.toDataURL("image/png");
}

const LIGHT = {
  litegraph: {
    NODE_TITLE_COLOR: "#222", NODE_SELECTED_TITLE_COLOR: "#000", NODE_TEXT_COLOR: "#333", NODE_TEXT_HIGHLIGHT_COLOR: "#000",
    NODE_DEFAULT_COLOR: "#c9ced8", NODE_DEFAULT_BGCOLOR: "#f7f8fa", NODE_DEFAULT_BOXCOLOR: "#888", NODE_BOX_OUTLINE_COLOR: "#222",
    WIDGET_BGCOLOR: "#e8eaef", WIDGET_OUTLINE_COLOR: "#9aa0aa", WIDGET_TEXT_COLOR: "#222", WIDGET_SECONDARY_TEXT_COLOR: "#555",
    WIDGET_DISABLED_TEXT_COLOR: "#aaa", LINK_COLOR: "#7a8a7a", DEFAULT_SHADOW_COLOR: "rgba(0,0,0,0.15)",
  },
  background: "#e6e8ec",
  outputNode: "#9fd3b8",
};

/**
 * Keep the canvas in the system's colour scheme; `host.outputNodeColour` is the title
 * colour of output nodes in the scheme shown. Returns the name of the scheme applied.
 */
export function followSystemTheme(view, host) {
  const dark = {
    litegraph: Object.fromEntries(LITEGRAPH_KEYS.map((k) => [k, LiteGraph[k]])),
    background: view.canvas.clear_background_color,
    grid: view.canvas.background_image,
    outputNode: "#2d4a3e",
  };
  LIGHT.grid ??= lightGrid();
  const query = window.matchMedia("(prefers-color-scheme: light)");
  const apply = () => {
    const theme = query.matches ? LIGHT : dark;
    const before = host.outputNodeColour;
    Object.assign(LiteGraph, theme.litegraph);
    view.canvas.clear_background_color = theme.background;
    // litegraph keeps the grid pattern it made first: a switch while the page is open
    // changes the grid from the next page load on (the colours change at once)
    view.canvas.background_image = theme.grid;
    view.canvas.default_link_color = theme.litegraph.LINK_COLOR;
    view.canvas.node_title_color = theme.litegraph.NODE_TITLE_COLOR; // copied by the canvas when it was made
    host.outputNodeColour = theme.outputNode;
    // output nodes still in the old default colour take the new one (picked colours stay)
    for (const node of view.graph.nodes) {
      if (node.nf && before && node.color === before && node.nf.defaultColor === before) node.color = node.nf.defaultColor = theme.outputNode;
    }
    document.documentElement.dataset.theme = query.matches ? "light" : "dark";
    view.redraw(true);
  };
  query.addEventListener("change", apply);
  apply();
  return document.documentElement.dataset.theme;
}
