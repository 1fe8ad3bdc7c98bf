// Model pickers: which inputs name a model file, and the entries their menu offers.
//
// The server says which kinds of model file there are and what each folder holds
// (GET /api/models: {kinds: {checkpoint: [{name, size, family, family_label, folder}]...}});
// a node input names one when its schema declares `file: KIND` for one of those kinds,
// or `widget: "model"` (a checkpoint: Load Model resolves its name in the checkpoint
// folders). Pure functions plus a small cache of the listing; no DOM here.

/** The kind of model file input `spec` names ("checkpoint", "lora"...), or null when it names none. */
export function modelKind(spec, kinds) {
  if (spec.file && kinds.has(spec.file)) return spec.file;
  if (spec.widget === "model") return spec.file || "checkpoint";
  return null;
}

/** "name · SDXL" for a listed model with a known family, else the name; "(none)" for the empty name. */
export function modelLabel(name, info) {
  if (name === "") return "(none)";
  return info?.family_label ? `${name} · ${info.family_label}` : String(name);
}

/**
 * The menu of a model input: its default, the models of its kind on the server, names
 * seen in this session, and the current value (a typed path stays a choice), each once.
 * @returns {{value: string, label: string, listed: boolean}[]}
 */
export function modelEntries(spec, listed, seen, current) {
  const rows = new Map();
  const add = (name, info = null) => {
    const value = String(name);
    if (!rows.has(value)) rows.set(value, { value, label: modelLabel(value, info), listed: Boolean(info) });
  };
  if (spec.has_default && spec.default !== null && spec.default !== undefined) add(spec.default);
  for (const info of listed) add(info.name, info);
  for (const name of seen) add(name);
  if (current !== undefined && current !== null) add(current);
  return [...rows.values()];
}

/** The server's model listing, read once and again on request; empty for a server without one. */
export class ModelList {
  /** @param {{models: () => Promise<object>}} api */
  constructor(api) {
    this.api = api;
    this.kinds = new Map();
  }

  /** Read GET /api/models; resolves to this. An older server without the route leaves the lists empty. */
  async refresh() {
    try {
      const listing = await this.api.models();
      this.kinds = new Map(Object.entries(listing?.kinds || {}));
    } catch {
      this.kinds = new Map();
    }
    return this;
  }

  /** The kinds the server has folders for. */
  kindNames() {
    return new Set(this.kinds.keys());
  }

  /** The listed models of `kind`. */
  of(kind) {
    return this.kinds.get(kind) || [];
  }

  /** The listing row of `name` in `kind`, or null. */
  find(kind, name) {
    return this.of(kind).find((m) => m.name === name) || null;
  }
}
