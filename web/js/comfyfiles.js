// Files opened in the editor that are not nodeflow graphs: ComfyUI's UI workflows, API
// prompts and PNGs. The editor does not translate them itself: the server does
// (POST /api/import/comfy, nodeflow/comfy), and the editor opens the graph it returns
// as a new graph and shows the importer's notes and the problems validation found.

/** What a picked or dropped file is: "graph" (a nodeflow document), "comfy" (for the server's importer) or null. */
export function classifyJson(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return null;
  if (data.format === "nodeflow/graph" || (data.nodes && typeof data.nodes === "object" && !Array.isArray(data.nodes))) return "graph";
  return "comfy"; // a UI workflow (nodes: [...]), an API prompt ({id: {class_type}}), or something the importer refuses with a reason
}

/** Whether a PNG's text chunks carry a ComfyUI workflow or prompt. */
export function isComfyPng(texts) {
  return typeof texts.workflow === "string" || typeof texts.prompt === "string";
}

/** The sentences the notes dialog lists: the importer's notes, then validation's problems. */
export function importReport(fileName, answer) {
  const problems = (answer.problems || []).map((p) => p.message);
  return {
    title: `Imported ${fileName} (ComfyUI ${answer.source === "api" ? "API prompt" : "workflow"})`,
    notes: answer.notes || [],
    problems,
    summary: problems.length ? `${problems.length} problem(s) to fix before it runs; Run marks them on the nodes.` : "It is ready to run.",
  };
}

/** The dialog that shows an import's report. */
export class ImportNotes {
  /** @param {HTMLDialogElement} dialog  #import-notes: [data-role=title|notes|problems|summary] */
  constructor(dialog) {
    this.dialog = dialog;
    this.el = Object.fromEntries([...dialog.querySelectorAll("[data-role]")].map((e) => [e.dataset.role, e]));
  }

  show(report) {
    const items = (lines) => lines.map((line) => Object.assign(document.createElement("li"), { textContent: line }));
    this.el.title.textContent = report.title;
    this.el.notes.replaceChildren(...items(report.notes));
    this.el.problems.replaceChildren(...items(report.problems));
    this.el.problems.hidden = report.problems.length === 0;
    this.el.summary.textContent = report.summary;
    if (!this.dialog.open) this.dialog.showModal();
  }
}
