"""``GET /api/models``: the models in the configured model folders, by kind.

The folders are the server's ``model_kinds`` (``--models-dir`` in ComfyUI's layout,
``--comfy-paths``); the listing shows names relative to each kind's folder (what a graph
names), sizes and, for checkpoints, the family when it can be told without loading
weights (:func:`nodeflow.models.families.probe_family`). Server paths are never shown.
Families are remembered per file stamp, so a listing reads each file's header once.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, Field

from ..files import KINDS, ModelEntry, list_models, stamp
from .replies import ApiError, reply
from .routes import Route

if TYPE_CHECKING:
    from .app import Server


class ModelInfo(BaseModel):
    """One model: its name (relative to its kind's folders, what graphs name), size, family if known."""

    name: str
    size: int = Field(description="bytes (for a diffusers folder: the files its loaders read)")
    family: str | None = Field(None, description="sd1, sd2, sdxl, sdxl_refiner when known (checkpoints only)")
    family_label: str | None = Field(None, description='the family as menus show it ("SD 1.x", "SDXL"...)')
    folder: bool = Field(False, description="a diffusers folder rather than one file")


class ModelList(BaseModel):
    """The models by kind (``checkpoint``, ``lora``, ``embedding``, ``vae``, ``controlnet``, ``upscale_model``)."""

    kinds: dict[str, list[ModelInfo]]
    folders: dict[str, str] = Field(description="kind -> the folder name it has in ComfyUI's models/ layout")


MODEL_ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/models", "models_list", "Models in the model folders, by kind (name, size, family)", "models",
          responses={200: ModelList}),
    Route("GET", "/api/models/{kind}", "models_kind", "Models of one kind", "models", responses={200: ModelList, 404: None}),
)


class ModelCatalogue:
    """Lists the server's model folders; remembers each checkpoint's family by file stamp."""

    def __init__(self, kinds: dict[str, Any]):
        self.kinds = {kind: tuple(folders) for kind, folders in kinds.items()}
        self._families: dict[tuple[str, int, int], str | None] = {}
        self._lock = threading.Lock()

    def entries(self, kind: str | None = None) -> list[ModelEntry]:
        """The models of ``kind`` (every kind when None); blocking: call off the loop."""
        kinds = self.kinds if kind is None else {kind: self.kinds.get(kind, ())}
        return list_models(kinds)

    def names(self, kind: str) -> list[str]:
        """The names of one kind's models (blocking)."""
        return [e.name for e in self.entries(kind)]

    def info(self, entry: ModelEntry) -> ModelInfo:
        """The listing row of ``entry`` (blocking: may read a file header)."""
        from ..models.families import ModelFamily

        family = self._family(entry) if entry.kind == "checkpoint" else None
        label = ModelFamily(family).label if family is not None else None
        return ModelInfo(name=entry.name, size=entry.size, family=family, family_label=label, folder=entry.path.is_dir())

    def _family(self, entry: ModelEntry) -> str | None:
        from ..models.families import probe_family

        try:
            key = stamp(entry.path)
        except (OSError, ValueError):
            return None
        with self._lock:
            if key in self._families:
                return self._families[key]
        found = probe_family(entry.path)
        with self._lock:
            self._families[key] = found.value if found is not None else None
        return self._families[key]

    def listing(self, kind: str | None = None) -> ModelList:
        """The :class:`ModelList` of one kind or all (blocking)."""
        wanted = [k for k, (sub, _) in KINDS.items() if sub] if kind is None else [kind]
        rows: dict[str, list[ModelInfo]] = {k: [] for k in wanted}
        for entry in self.entries(kind):
            rows.setdefault(entry.kind, []).append(self.info(entry))
        return ModelList(kinds=rows, folders={k: KINDS[k][0] for k in rows})


class ModelRoutes:
    """The handlers of :data:`MODEL_ROUTES`, bound to one server."""

    def __init__(self, server: Server):
        self.server = server

    def add_routes(self, app: web.Application) -> None:
        """Register :data:`MODEL_ROUTES`."""
        for route in MODEL_ROUTES:
            app.router.add_route(route.method, route.path, getattr(self, route.handler))

    async def models_list(self, request: web.Request) -> web.Response:
        """Every kind's models."""
        return reply(await asyncio.to_thread(self.server.model_files.listing))

    async def models_kind(self, request: web.Request) -> web.Response:
        """One kind's models; 404 for a kind that has no model folders in ComfyUI's layout."""
        kind = request.match_info["kind"]
        if not KINDS.get(kind, ("", False))[0]:
            known = ", ".join(k for k, (sub, _) in KINDS.items() if sub)
            raise ApiError(404, "unknown_kind", f"no model kind '{kind}' (kinds: {known})")
        return reply(await asyncio.to_thread(self.server.model_files.listing, kind))


__all__ = ["MODEL_ROUTES", "ModelCatalogue", "ModelInfo", "ModelList", "ModelRoutes"]
