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
