"""Helpers for the ComfyUI tests: a tiny single-file checkpoint in a ComfyUI models/ folder, and a
real ``nodeflow serve`` on 127.0.0.1 in a background thread (ComfyUI's clients are synchronous).

Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FILES = Path(__file__).resolve().parent / "comfy_files"
#: The checkpoint name ComfyUI's default workflow asks for.
CKPT = "v1-5-pruned-emaonly.safetensors"


def default_workflow(kind: str, size: int = 32, steps: int = 2) -> dict[str, Any]:
    """ComfyUI's default workflow (``ui`` or ``api``), made small: ``size`` px, ``steps`` steps."""
    data = json.loads((FILES / f"default_{kind}.json").read_text())
    if kind == "api":
        data["5"]["inputs"].update(width=size, height=size)
        data["3"]["inputs"]["steps"] = steps
        return data
    for node in data["nodes"]:
        if node["type"] == "EmptyLatentImage":
            node["widgets_values"] = [size, size, 1]
        if node["type"] == "KSampler":
            node["widgets_values"][2] = steps
    return data


def make_models_dir(root: Path) -> Path:
    """``root/models`` in ComfyUI's layout with a tiny random SD 1.x checkpoint named like SD 1.5's (built once per root)."""
    import torch
    from models_tiny import ldm_checkpoint, tiny_text_encoder, tiny_unet, tiny_vae
    from safetensors.torch import save_file

    models = root / "models"
    target = models / "checkpoints" / CKPT
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        for sub in ("loras", "embeddings", "vae"):
            (models / sub).mkdir(exist_ok=True)
        # seeds no other test uses: a model of its own
        state = ldm_checkpoint(tiny_unet(seed=11), tiny_vae(seed=12), tiny_text_encoder(seed=13))
        save_file({k: v.contiguous() for k, v in state.items()}, str(target))
        del torch
    return models


@contextmanager
def serve_in_thread(data_dir: Path, registry: Any = None, **config: Any) -> Iterator[Any]:
    """A real server on 127.0.0.1:0, its loop on a daemon thread; yields the RunningServer."""
    from nodeflow.server import ServerConfig, start_server

    loop = asyncio.new_event_loop()
    config.setdefault("web_dir", data_dir.parent / "web")
    server = loop.run_until_complete(start_server(ServerConfig(host="127.0.0.1", port=0, data_dir=data_dir, **config),
                                                  registry=registry))
    thread = threading.Thread(target=loop.run_forever, name="comfy-test-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def deep(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy (tests edit workflows)."""
    return copy.deepcopy(data)


def api_to_ui(api: dict[str, Any]) -> dict[str, Any]:
    """An API prompt as the ComfyUI editor would save it (version 0.4): sockets, links, ``widgets_values`` in widget order.

    Widgets follow :data:`nodeflow.comfy.classes.CLASSES` (a seed widget followed by its
    ``control_after_generate`` value, ``fixed``), which is also how the editor orders them.
    """
    from nodeflow.comfy.classes import CLASSES

    nodes: dict[str, dict[str, Any]] = {}
    links: list[list[Any]] = []
    for number, (cid, entry) in enumerate(api.items()):
        cls = CLASSES[entry["class_type"]]
        widgets: list[Any] = []
        for spec in cls.widgets:
            widgets.append(entry["inputs"][spec.name])
            if spec.control:
                widgets.append("fixed")
        nodes[cid] = {"id": int(cid), "type": cls.name, "pos": [300 * number, 100], "size": [300, 120], "mode": 0,
                      "inputs": [], "outputs": [{"name": t, "type": t, "links": []} for t in cls.outputs], "widgets_values": widgets}
    for cid, entry in api.items():
        cls = CLASSES[entry["class_type"]]
        for slot, spec in enumerate(s for s in cls.inputs if not s.widget):
            value = entry["inputs"].get(spec.name)
            socket: dict[str, Any] = {"name": spec.name, "type": spec.type, "link": None}
            if isinstance(value, list):
                link_id = len(links) + 1
                links.append([link_id, int(value[0]), value[1], int(cid), slot, spec.type])
                socket["link"] = link_id
                nodes[value[0]]["outputs"][value[1]]["links"].append(link_id)
            nodes[cid]["inputs"].append(socket)
    return {"last_node_id": max(int(c) for c in api), "last_link_id": len(links), "nodes": list(nodes.values()), "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}
