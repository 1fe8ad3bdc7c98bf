"""Helpers for the server tests: start a real server on an ephemeral loopback port, build graphs.

Not a test module (no ``test_`` prefix); the server test modules import it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from nodeflow.registry import Registry
from nodeflow.server import RunningServer, Server, ServerConfig, start_server

PLUGINS = Path(__file__).resolve().parent / "server_plugins"
FINISHED = ("succeeded", "failed", "cancelled")


def small_registry() -> Registry:
    """The core pack plus the test pack: fast to build, independent of the SD pack."""
    import nodeflow_nodes.core

    registry = Registry()
    registry.add_module(nodeflow_nodes.core, "core")
    registry.load_directory(PLUGINS)
    assert not registry.errors, registry.errors
    return registry


def int_graph(value: int = 1) -> dict[str, Any]:
    """``core.int(value) -> core.show``, with ``value`` exposed as a graph input."""
    return {
        "nodes": {
            "n": {"type": "core.int", "inputs": {"value": value}},
            "show": {"type": "core.show", "inputs": {"value": {"node": "n", "output": "out"}}},
        },
        "inputs": {"value": {"node": "n", "input": "value"}},
    }


def slow_graph(steps: int = 10, delay: float = 0.05, value: int = 0, previews: bool = False) -> dict[str, Any]:
    """One ``srvtest.slow`` node feeding ``core.show``."""
    return {
        "nodes": {
            "slow": {"type": "srvtest.slow", "inputs": {"steps": steps, "delay": delay, "value": value, "previews": previews}},
            "show": {"type": "core.show", "inputs": {"value": {"node": "slow", "output": "out"}}},
        }
    }


def text_graph(text: str = "hello", name: str = "out.txt") -> dict[str, Any]:
    """One ``srvtest.write_text`` output node."""
    return {"nodes": {"w": {"type": "srvtest.write_text", "inputs": {"text": text, "name": name}}}}


def wait_graph(release: Path, pairs: int = 0, started: Path | None = None) -> dict[str, Any]:
    """``srvtest.wait_for_file`` (ignores cancellation; ends once ``release`` exists), plus ``pairs`` int->show pairs.

    With ``started``, the node creates that file as it begins (a run's status turns
    ``running`` when a worker claims it, before its first node starts).
    """
    graph = pairs_graph(pairs)
    inputs = {"path": str(release)} | ({"started": str(started)} if started else {})
    graph["nodes"]["wait"] = {"type": "srvtest.wait_for_file", "inputs": inputs}
    return graph


def pairs_graph(pairs: int, offset: int = 0) -> dict[str, Any]:
    """``pairs`` independent ``core.int -> core.show`` pairs (a graph with many nodes, all core)."""
    nodes: dict[str, Any] = {}
    for i in range(pairs):
        nodes[f"i{i}"] = {"type": "core.int", "inputs": {"value": offset + i}}
        nodes[f"s{i}"] = {"type": "core.show", "inputs": {"value": {"node": f"i{i}", "output": "out"}}}
    return {"nodes": nodes}


@dataclass
class Client:
    """A running server and an aiohttp session pointed at it."""

    server: RunningServer
    session: aiohttp.ClientSession
    data_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def app_server(self) -> Server:
        """The composed :class:`nodeflow.server.Server` behind the socket (for fault injection)."""
        return self.server.server

    async def submit(self, graph: dict[str, Any], **extra: Any) -> str:
        async with self.session.post("/api/runs", json={"graph": graph, **extra}) as resp:
            body = await resp.json()
            assert resp.status == 202, body
            return body["id"]

    async def run(self, run_id: str) -> dict[str, Any]:
        async with self.session.get(f"/api/runs/{run_id}") as resp:
            assert resp.status == 200
            return await resp.json()

    async def wait(self, run_id: str, timeout: float = 120.0, until: tuple[str, ...] = FINISHED) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = await self.run(run_id)
            if record["status"] in until:
                return record
            assert time.monotonic() < deadline, f"run {run_id} still {record['status']} after {timeout}s"
            await asyncio.sleep(0.02)

    async def raw(self, request_line: str, headers: dict[str, str] | None = None, host: str | None = None) -> tuple[int, bytes]:
        """Send one request byte-for-byte (no client-side URL normalisation); returns status and body."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [request_line, f"Host: {host or f'127.0.0.1:{self.port}'}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body


@asynccontextmanager
async def serving(data_dir: Path, *, headers: dict[str, str] | None = None, registry: Registry | None = None,
                  backend: Any = None, **config: Any) -> AsyncIterator[Client]:
    """A real server on 127.0.0.1:0 with the small registry, and a client session."""
    config.setdefault("web_dir", data_dir.parent / "web")
    config.setdefault("builtin_workflows_dir", data_dir.parent / "builtin_workflows")
    server = await start_server(
        ServerConfig(host="127.0.0.1", port=0, data_dir=data_dir, **config),
        registry=registry if registry is not None else small_registry(),
        backend=backend,
    )
    session = aiohttp.ClientSession(base_url=server.url, headers=headers)
    try:
        yield Client(server, session, data_dir)
    finally:
        await session.close()
        await server.close()
