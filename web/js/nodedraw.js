// What the canvas draws on top of a node: its state in the run shown (queued, running
// with progress, cached, done, error, cancelled, connection lost, muted, bypassed), the
// latest preview or result image, validation errors next to the inputs they concern, its
// mode (muted, bypassed) in the title bar, and the marks of subgraph nodes.

import { LiteGraph } from "../vendor/litegraph.es.js";
import { ACTIVE, modeOf } from "./modes.js";

const STATUS_COLOURS = {
  queued: "#8a8f98",
  running: "#3ddc84",
  cached: "#5aa9e6",
  done: "#2f9e44",
  error: "#ff5c5c",
  cancelled: "#d9a400",
  lost: "#9aa0a6",
  muted: "#8a8f98",
  bypassed: "#b36bd6",
};
const VALUE_LINES = 6;

/** Draw a node's run state (outline, badge, progress), its latest image or value and its validation errors. */
export function drawNodeState(node, ctx, lowQuality) {
  const nf = node.nf;
  if (!nf) return;
  const status = nf.errors.length ? "error" : nf.run?.status;
  if (status) drawStatus(node, ctx, status, lowQuality);
  if (!lowQuality) drawMode(node, ctx);
  if (node.flags?.collapsed) return;
  const image = nf.preview || nf.imageElements?.[0];
  if (image && image.complete && image.naturalWidth) drawImage(node, ctx, image, lowQuality);
  if (lowQuality) return;
  if (nf.value !== undefined) drawValue(node, ctx, nf.value);
  const shown = nf.errors.length ? nf.errors : nf.run?.status === "error" && nf.run.message ? [{ message: nf.run.message }] : [];
  if (shown.length) drawErrors(node, ctx, shown);
}

function drawStatus(node, ctx, status, lowQuality) {
  const nf = node.nf;
  const [w, h] = node.size;
  const titleH = LiteGraph.NODE_TITLE_HEIGHT;
  ctx.save();
  ctx.strokeStyle = STATUS_COLOURS[status] || "#888";
  ctx.lineWidth = status === "running" || status === "error" ? 3 : 2;
  if (status === "lost") ctx.setLineDash([6, 4]);
  ctx.beginPath();
  ctx.roundRect(-3, -titleH - 3, w + 6, h + titleH + 6, 10);
  ctx.stroke();
  ctx.setLineDash([]);
  if (!lowQuality) {
    const label = statusLabel(nf, status);
    ctx.font = "bold 11px sans-serif";
    const tw = ctx.measureText(label).width + 12;
    ctx.fillStyle = STATUS_COLOURS[status] || "#888";
    ctx.beginPath();
    ctx.roundRect(w - tw, -titleH - 20, tw, 16, 8);
    ctx.fill();
    ctx.fillStyle = "#111";
    ctx.textAlign = "left";
    ctx.fillText(label, w - tw + 6, -titleH - 8);
  }
  if (status === "running" && nf.run?.max) {
    const frac = Math.max(0, Math.min(1, nf.run.value / nf.run.max));
    ctx.fillStyle = STATUS_COLOURS.running;
    ctx.fillRect(0, -3, w * frac, 3);
  }
  ctx.restore();
}

function drawImage(node, ctx, image, lowQuality) {
  const nf = node.nf;
  const [w, h] = node.size;
  const top = node.contentHeight();
  const maxW = w - 20;
  const maxH = h - top - 8;
  if (maxH <= 8) return;
  const scale = Math.min(maxW / image.naturalWidth, maxH / image.naturalHeight);
  const iw = image.naturalWidth * scale;
  const ih = image.naturalHeight * scale;
  ctx.save();
  ctx.imageSmoothingEnabled = scale < 1; // tiny images stay crisp when enlarged
  ctx.drawImage(image, (w - iw) / 2, top + (maxH - ih) / 2, iw, ih);
  ctx.restore();
  const count = nf.imageElements?.length || 0;
  if (!lowQuality && !nf.preview && count > 1) {
    ctx.fillStyle = "#ddd";
    ctx.font = "11px sans-serif";
    ctx.fillText(`1 of ${count}`, 10, h - 6);
  }
}

/** "muted" or "bypassed" at the right of the title bar (the colours say it too, as in ComfyUI). */
function drawMode(node, ctx) {
  const mode = modeOf(node);
  if (mode === ACTIVE) return;
  const titleH = LiteGraph.NODE_TITLE_HEIGHT;
  const width = node.flags?.collapsed ? node._collapsed_width ?? node.size[0] : node.size[0];
  ctx.save();
  ctx.font = "italic 11px sans-serif";
  ctx.textAlign = "right";
  ctx.fillStyle = LiteGraph.NODE_TITLE_COLOR;
  ctx.fillText(mode, width - 8, -titleH / 2 + 4);
  ctx.restore();
}

/** A subgraph node says so, and how to open it, below its sockets. */
export function drawSubgraphMark(node, ctx) {
  if (node.flags?.collapsed) return;
  ctx.save();
  ctx.font = "11px sans-serif";
  ctx.textAlign = "left";
  ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR;
  ctx.fillText("▣ subgraph · double-click to open", 10, node.size[1] - 6);
  ctx.restore();
}

/** A boundary node of an open subgraph says what it carries. */
export function drawBoundaryHint(node, ctx, text) {
  if (node.flags?.collapsed) return;
  ctx.save();
  ctx.font = "italic 11px sans-serif";
  ctx.textAlign = "left";
  ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR;
  ctx.fillText(text, 10, node.size[1] - 6);
  ctx.restore();
}

/** A value the run reported for this node (core.show), below its widgets. */
function drawValue(node, ctx, text) {
  const top = node.contentHeight();
  ctx.save();
  ctx.font = "12px ui-monospace, monospace";
  ctx.fillStyle = LiteGraph.NODE_TEXT_COLOR;
  ctx.textAlign = "left";
  const lines = String(text).split("\n").slice(0, VALUE_LINES);
  lines.forEach((line, i) => ctx.fillText(line.length > 60 ? `${line.slice(0, 59)}…` : line, 10, top + 14 + i * 15));
  ctx.restore();
}

/** Grow `node` so `lines` lines of a value fit below its widgets. */
export function valueHeight(lines) {
  return Math.min(lines, VALUE_LINES) * 15 + 10;
}

function statusLabel(nf, status) {
  if (status === "error") return nf.errors.length ? "invalid" : "error";
  if (status === "running" && nf.run?.max) return `running ${nf.run.value}/${nf.run.max}`;
  if (status === "done" && nf.run?.seconds != null) return `done ${Number(nf.run.seconds).toFixed(2)}s`;
  if (status === "lost") return "connection lost";
  return status;
}

function drawErrors(node, ctx, errors) {
  const [w, h] = node.size;
  ctx.save();
  ctx.strokeStyle = STATUS_COLOURS.error;
  ctx.lineWidth = 2;
  for (const error of errors) {
    if (!error.input) continue;
    const index = (node.inputs || []).findIndex((s) => s.name === error.input);
    if (index < 0) continue;
    const slot = node.inputs[index];
    const widget = slot.widget ? node.widgets?.find((x) => x.name === slot.widget.name) : null;
    if (widget && widget.last_y !== undefined) {
      ctx.beginPath();
      ctx.roundRect(10, widget.last_y - 2, w - 20, (widget.computedHeight ?? 24) - 0, 6);
      ctx.stroke();
    } else {
      const pos = node.getInputPos(index);
      ctx.beginPath();
      ctx.arc(pos[0] - node.pos[0], pos[1] - node.pos[1], 8, 0, Math.PI * 2);
      ctx.stroke();
    }
  }
  ctx.font = "12px sans-serif";
  // the server's sentence usually names the input already; say it only when it does not
  const lines = errors.map((e) => (e.input && !e.message.includes(`'${e.input}'`) ? `${e.input}: ${e.message}` : e.message));
  const boxW = Math.max(w, ...lines.map((l) => ctx.measureText(l).width + 16));
  const boxH = lines.length * 16 + 8;
  ctx.fillStyle = "rgba(120, 20, 20, 0.92)";
  ctx.beginPath();
  ctx.roundRect(0, h + 8, boxW, boxH, 6);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.textAlign = "left";
  lines.forEach((line, i) => ctx.fillText(line, 8, h + 8 + 16 * (i + 1)));
  ctx.restore();
}

