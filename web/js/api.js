// The server's REST API and websocket, and nothing else: every request the editor
// makes goes through here, so the token and error handling live in one place.
//
// A server started with --token wants it on every request. The editor is opened as
// http://host:port/?token=T; we keep T for this tab (sessionStorage) and drop it from
// the address bar so it is not copied into bookmarks or screenshots.

const TOKEN_KEY = "nodeflow.token";

function readToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.toString());
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

const token = readToken();

/** An API answer that was not 2xx; `errors` holds the structured errors when the server sent them. */
export class ApiError extends Error {
  constructor(status, body) {
    const errors = Array.isArray(body?.errors) ? body.errors : [];
    const message = body?.message || body?.error || errors.map((e) => e.message).join("; ") || `HTTP ${status}`;
    super(typeof message === "string" ? message : JSON.stringify(message));
    this.status = status;
    this.body = body;
    this.errors = errors;
  }
}

/** Relative to the page, so the editor works whatever path the server mounts it on. */
function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), new URL(".", window.location.href)).toString();
}

/** A URL that <img> or <a download> can load: images cannot send headers, so the token rides in the query. */
export function withToken(url) {
  if (!token || !url || url.startsWith("data:") || url.startsWith("blob:")) return url;
  const u = new URL(url, window.location.href);
  u.searchParams.set("token", token);
  return u.toString();
}

/** Said when the server cannot be reached at all (the browser's own words, "Failed to fetch", say less). */
export const UNREACHABLE = "server not reachable";

async function request(method, path, body, { raw = false } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body instanceof Blob) {
    headers["Content-Type"] = "application/octet-stream";
    payload = body;
  }
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path), { method, headers, body: payload });
  } catch {
    throw new ApiError(0, { message: UNREACHABLE, code: "unreachable" });
  }
  if (raw) return response;
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text };
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  nodes: () => request("GET", "/api/nodes"),
  system: () => request("GET", "/api/system"),
  listWorkflows: () => request("GET", "/api/workflows"),
  getWorkflow: (name) => request("GET", `/api/workflows/${encodeURIComponent(name)}`),
  putWorkflow: (name, graph) => request("PUT", `/api/workflows/${encodeURIComponent(name)}`, graph),
  deleteWorkflow: (name) => request("DELETE", `/api/workflows/${encodeURIComponent(name)}`),
  /** 202 -> {id}; 400 -> ApiError whose .errors are [{code, node, input, message}]. */
  queueRun: (graph, inputs) => request("POST", "/api/runs", inputs ? { graph, inputs } : { graph }),
  listRuns: (limit = 50) => request("GET", `/api/runs?limit=${limit}`),
  getRun: (id) => request("GET", `/api/runs/${encodeURIComponent(id)}`),
  cancelRun: (id) => request("POST", `/api/runs/${encodeURIComponent(id)}/cancel`),
  /** Forget a finished or queued run and delete its output files. */
  deleteRun: (id) => request("DELETE", `/api/runs/${encodeURIComponent(id)}`),
  upload: (file) => {
    const form = new FormData();
    form.append("file", file, file.name);
    return request("POST", "/api/uploads", form);
  },
  listUploads: () => request("GET", "/api/uploads"),
  /** A ComfyUI file (Blob: UI/API JSON or PNG) -> {graph, source, problems, notes}; 400 says why it cannot be read. */
  importComfy: (blob) => request("POST", "/api/import/comfy", blob),
  /** Store upload `original` with the alpha of PNG `file` (the mask painter's image mode) -> {name}. */
  uploadMask: (file, original) => {
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("original_ref", JSON.stringify({ filename: original, subfolder: "", type: "input" }));
    return request("POST", "/upload/mask", form);
  },
  /** {kinds: {checkpoint: [{name, size, family, family_label, folder}], lora: [...]...}, folders}. */
  models: () => request("GET", "/api/models"),
};

/**
 * Keeps one websocket open to /api/ws, reconnecting with back-off, and hands each
 * parsed JSON message to `onMessage`. `onStatus(connected)` drives the indicator.
 */
export function connectEvents(onMessage, onStatus) {
  let delay = 500;
  let socket = null;
  let stopped = false;
  const open = () => {
    const url = new URL(apiUrl("/api/ws"));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (token) url.searchParams.set("token", token);
    socket = new WebSocket(url.toString());
    socket.addEventListener("open", () => {
      delay = 500;
      onStatus(true);
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // the protocol is JSON; anything else is not for us
      }
      onMessage(message);
    });
    socket.addEventListener("close", () => {
      onStatus(false);
      if (stopped) return;
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 8000);
    });
  };
  open();
  return {
    close() {
      stopped = true;
      socket?.close();
    },
    get open() {
      return socket?.readyState === WebSocket.OPEN;
    },
  };
}
