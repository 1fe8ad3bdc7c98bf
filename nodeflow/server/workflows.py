"""Saved workflows: the user's under ``DATA_DIR/workflows``, the repository's read-only.

A workflow is a graph document stored as ``NAME.json``. Names are checked against
one pattern, matched in full (letters, digits, ``_`` and ``-``; no dots, no slashes,
no trailing newline), so a name can never be a path. Built-in workflows cannot be
overwritten or deleted; a user workflow cannot take a built-in's name, so
``{"workflow": "txt2img"}`` always means one thing.

User workflows are stored as compact JSON (sorted keys, no indentation: the size of a
deeply nested document stays linear in its content) and written atomically. A file in
the user folder that is a link leading out of it is neither listed nor read. Messages
never carry a file's path, only the workflow's name.

Every method touches the disk: the API calls them off the event loop.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import ErrorInfo, GraphInvalid
from ..graph import GraphDoc, parse_graph
from .replies import ApiError
from .schemas import WorkflowInfo
from .storage import inside, write_atomic

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def valid_name(name: str) -> bool:
    """Whether ``name`` is a workflow name (the whole string matches :data:`NAME_RE`)."""
    return NAME_RE.fullmatch(name) is not None


class WorkflowStore:
    """Lists, reads, saves and deletes workflows in two folders (see the module docstring)."""

    def __init__(self, user_dir: Path, builtin_dir: Path | None):
        self.user_dir = Path(user_dir)
        self.builtin_dir = Path(builtin_dir) if builtin_dir is not None else None
        self.user_dir.mkdir(parents=True, exist_ok=True)

    def list(self) -> list[WorkflowInfo]:
        """Every workflow, user ones first, sorted by name within each source."""
        found: dict[str, WorkflowInfo] = {}
        for source, folder in (("builtin", self.builtin_dir), ("user", self.user_dir)):  # built-ins win a clash
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                if valid_name(path.stem) and path.stem not in found and inside(folder, path):
                    found[path.stem] = self._info(path.stem, source, path)
        return [found[n] for n in sorted(found, key=lambda n: (found[n].source != "user", n))]

    def get(self, name: str) -> tuple[GraphDoc, WorkflowInfo]:
        """The parsed document and info of workflow ``name``; 400 for a bad name, 404 if absent."""
        source, path = self._locate(name)
        if source is None or path is None:
            raise ApiError(404, "unknown_workflow", f"no workflow named '{name}'")
        try:
            doc = _load(path)
        except GraphInvalid as exc:
            raise ApiError(500, "broken_workflow", f"workflow '{name}' cannot be read", exc.errors) from None
        return doc, self._info(name, source, path, doc)

    def save(self, name: str, doc: GraphDoc) -> tuple[WorkflowInfo, bool]:
        """Write a user workflow (an already parsed document); returns its info and whether it is new."""
        source, _ = self._locate(name)
        if source == "builtin":
            raise ApiError(403, "read_only", f"'{name}' is a built-in workflow and is read-only; save under another name")
        target = self.user_dir / f"{name}.json"
        created = not target.exists()
        text = json.dumps(doc.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        write_atomic(target, text.encode("utf-8"))  # a reader never sees half a workflow
        return self._info(name, "user", target, doc), created

    def delete(self, name: str) -> None:
        """Delete a user workflow; 403 for a built-in, 404 if absent."""
        source, path = self._locate(name)
        if source == "builtin":
            raise ApiError(403, "read_only", f"'{name}' is a built-in workflow and is read-only")
        if path is None:
            raise ApiError(404, "unknown_workflow", f"no workflow named '{name}'")
        path.unlink()

    def _locate(self, name: str) -> tuple[str | None, Path | None]:
        """Which source holds ``name`` and its file (built-ins win)."""
        if not valid_name(name):
            raise ApiError(400, "bad_name", "a workflow name is 1-64 letters, digits, '_' or '-', starting with a letter or digit")
        if self.builtin_dir is not None:
            path = self.builtin_dir / f"{name}.json"
            if path.is_file():
                return "builtin", path
        path = self.user_dir / f"{name}.json"
        if path.is_file() and inside(self.user_dir, path):
            return "user", path
        return None, None

    @staticmethod
    def _info(name: str, source: str, path: Path, doc: GraphDoc | None = None) -> WorkflowInfo:
        error = None
        if doc is None:
            try:
                doc = _load(path)
            except GraphInvalid as exc:
                error = "; ".join(e.message for e in exc.errors)
        return WorkflowInfo(
            name=name,
            source=source,  # type: ignore[arg-type]
            read_only=source == "builtin",
            description=str(doc.meta.get("description", "")) if doc else "",
            inputs={k: v.model_dump() for k, v in doc.inputs.items()} if doc else {},
            error=error,
        )


def _load(path: Path) -> GraphDoc:
    """Read and parse a workflow file; errors name no path (they reach clients)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise GraphInvalid(ErrorInfo("invalid_json", f"the workflow file cannot be read ({reason})")) from None
    return parse_graph(text)

