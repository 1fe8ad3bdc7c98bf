"""Composition: build the server's objects, wire them into an aiohttp app, run it.

:class:`Server` owns one of each: registry, execution backend (holding the executor,
cache and model store), run store, workflow store, upload store, websocket hub and
worker. Nothing is global; two servers in one process (as in the tests) share nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..backends import Backend, make_backend
from ..registry import Registry, build_registry
from .comfy_api import ComfyApi
from .config import ServerConfig, ServerConfigError, check_config
from .hub import Hub
from .model_routes import ModelCatalogue, ModelRoutes
from .replies import error_middleware
from .routes import Api
from .schemas import WsQueue
from .security import Guard, add_security_headers, log_requests
from .storage import PathScrubber
from .store import RunStore
from .uploads import UploadStore
from .worker import Worker
from .workflows import WorkflowStore

log = logging.getLogger("nodeflow.server")


class Server:
    """The composed application (see the module docstring). Build it, then serve :meth:`app`."""

    def __init__(self, config: ServerConfig, *, registry: Registry | None = None, backend: Backend | None = None):
        check_config(config)
        config.data_dir = config.data_dir.resolve()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.outputs_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.registry = registry if registry is not None else build_registry(config.plugin_dirs)
        self.backend = backend if backend is not None else _backend(config, self.registry)
        self.paths = config.paths()
        #: what every accepted graph must fit (pixels x batch, estimated memory), checked before it is queued
        self.budget = config.budget(_auto_dtype(config.models))
        self.model_files = ModelCatalogue(config.model_kinds)
        self.store = RunStore(config.database)
        self.workflows = WorkflowStore(config.workflows_dir, config.builtin_workflows_dir)
        self.uploads = UploadStore(config.inputs_dir, config.max_upload_bytes, config.max_upload_pixels, config.body_timeout)
        self.hub = Hub(lambda: self.queue_message(None))
        #: no answer names a server folder: the data dir reads as relative paths
        self.scrub = PathScrubber([(config.data_dir, ""), (config.builtin_workflows_dir, "workflows/"), (config.web_dir, "web/")])
        self.worker = Worker(self.store, self.backend, config.outputs_dir, self._publish_threadsafe,
                             preview_interval=config.preview_interval, paths=self.paths, scrub=self.scrub)
        #: threads for work whose size a client chooses (decoding, parsing, validating, serialising)
        self.heavy = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nodeflow-http")
        #: False once a stop gave up waiting for the worker (its node ignored cancellation for the grace)
        self.worker_stopped = True
        #: called on the loop with every message the websocket gets (the ComfyUI bridge listens)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.comfy = ComfyApi(self)
        self._loop: asyncio.AbstractEventLoop | None = None

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this server (start it once)."""
        app = web.Application(
            client_max_size=self.config.max_json_bytes,
            middlewares=[log_requests, error_middleware(self.scrub), Guard(self.config).middleware],
        )
        self.comfy.add_routes(app)  # before the editor's catch-all static route
        ModelRoutes(self).add_routes(app)
        Api(self).add_routes(app)
        app.on_response_prepare.append(add_security_headers)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    # -- events to the websocket ------------------------------------------------------------
    def publish(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every websocket client (call on the loop)."""
        self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        self.hub.broadcast(message)
        for listener in self.listeners:
            listener(message)

    def _publish_threadsafe(self, message: dict[str, Any]) -> None:
        """What the worker calls: hop to the loop, or drop the message if the loop is gone."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, message)
        except RuntimeError:
            pass  # loop closed: the server is stopping and nobody is listening

    def queue_message(self, run_id: str | None) -> dict[str, Any]:
        """The ``queue`` websocket message as of now (the store keeps the queue's state in memory)."""
        queued, running = self.store.queue_state()
        return WsQueue(run=run_id, queued=queued, running=running[0] if running else None, running_ids=running).model_dump(mode="json")

    # -- lifecycle ----------------------------------------------------------------------------
    async def _startup(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        requeued, failed = self.store.recover(self.config.max_attempts)
        for run_id in requeued:
            log.info("run %s was interrupted by a crash; queued again", run_id)
        for run_id in failed:
            log.warning("run %s was interrupted %d times; marked failed", run_id, self.config.max_attempts)
        self.worker.start()

    async def _shutdown(self, app: web.Application) -> None:
        await self.hub.close()
        await self.comfy.close()

    async def _cleanup(self, app: web.Application) -> None:
        stopped = await asyncio.to_thread(self.worker.stop, self.config.shutdown_grace)
        self.heavy.shutdown(wait=False, cancel_futures=True)
        if stopped:
            self.store.close()  # only when the worker is done with it
            self.backend.close()
            return
        # A node ignores its cancel token: stop waiting. Its run goes back to the queue; whatever it
        # does later is not recorded, and run_server ends the process without waiting for it.
        self.worker_stopped = False
        for run_id in self.worker.abandon():
            self.store.requeue(run_id)
            log.warning("run %s ignored cancellation for %gs; it is back in the queue and runs again at the next start",
                        run_id, self.config.shutdown_grace)


def _backend(config: ServerConfig, registry: Registry) -> Backend:
    """The backend ``config`` names, sharing the server's registry (local) or plugin folders (Ray)."""
    try:
        ray_only = {} if config.gpus_per_worker is None else {"gpus_per_worker": config.gpus_per_worker}
        return make_backend(config.backend, registry=registry, plugin_dirs=config.plugin_dirs, address=config.address,
                            workers=config.workers, threads=config.threads, models=config.models, **ray_only)
    except ValueError as exc:
        raise ServerConfigError(str(exc)) from None
    except RuntimeError as exc:  # RayUnavailable: Ray missing or unreachable
        raise ServerConfigError(f"cannot use the '{config.backend}' backend: {exc}") from None


def create_app(config: ServerConfig, *, registry: Registry | None = None, backend: Backend | None = None) -> web.Application:
    """An aiohttp application for ``config`` (for ``aiohttp.test_utils`` or your own runner)."""
    return Server(config, registry=registry, backend=backend).app()


@dataclass
class RunningServer:
    """A server listening on a socket; :meth:`close` stops it gracefully."""

    runner: web.AppRunner
    host: str
    port: int
    #: the composed server behind the socket
    server: Server

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting, close websockets, requeue the running run, release everything."""
        await self.runner.cleanup()


LINGER_SECONDS = 1.0
"""How long the server reads and drops the rest of a body it answered early before closing the connection."""


async def start_server(config: ServerConfig, *, registry: Registry | None = None,
                       backend: Backend | None = None) -> RunningServer:
    """Build and start a server on ``config.host:config.port`` (port 0 picks a free one)."""
    server = Server(config, registry=registry, backend=backend)
    # keepalive_timeout also bounds how long a connection may take to send its request headers
    # (aiohttp arms it when a connection opens and re-arms it after each response).
    # lingering_time: after answering before the body was read (413, 408), aiohttp reads and drops the rest so the
    # client sees the answer, then closes; its default, 10 s, let a client that never finishes hold the connection
    # 10 s past its 408.
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False,  # our middleware logs each request once
                           keepalive_timeout=config.header_timeout, lingering_time=LINGER_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1]
    return RunningServer(runner, config.host, port, server)


def _auto_dtype(models: Any) -> str:
    """The precision a model loaded with ``auto`` gets on this server (for the memory estimate)."""
    if models is not None and hasattr(models, "default_dtype"):
        return str(models.default_dtype())
    import torch

    from ..models.store import precision_for

    return precision_for("cuda" if torch.cuda.is_available() else "cpu")


def run_server(
    *,
    host: str = "127.0.0.1",
    port: int = 8188,
    token: str | None = None,
    data_dir: str | Path | None = None,
    plugin_dirs: Iterable[str | Path] = (),
    backend: str = "local",
    address: str | None = None,
    **options: Any,
) -> None:
    """Serve until SIGINT/SIGTERM (what ``nodeflow serve`` calls).

    Raises :class:`~nodeflow.server.config.ServerConfigError` before binding anything
    for a non-loopback ``host`` without ``token``, or a backend that is not available.
    ``options`` are further :class:`ServerConfig` fields (limits, ``web_dir``...).
    """
    config = ServerConfig(
        host=host, port=port, token=token or None, data_dir=Path(data_dir) if data_dir else Path("nodeflow-data"),
        plugin_dirs=[Path(d) for d in plugin_dirs], backend=backend, address=address, **options,
    )
    check_config(config)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    if not asyncio.run(_serve_until_stopped(config)):
        # A node is still running in a thread Python would wait for at exit; the grace is over.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


async def _serve_until_stopped(config: ServerConfig) -> bool:
    """Serve until a signal; False when the worker did not stop within the grace (its run was requeued)."""
    server = await start_server(config)
    # What exists now (modules, torch, the registry) lives as long as the process: freezing it keeps the
    # collector's full passes, which hold the GIL and so stall the event loop, from walking it each time.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C arrives as KeyboardInterrupt
            pass
    log.info("nodeflow server on %s (data in %s%s)", server.url, config.data_dir,
             ", token required" if config.token else "")
    try:
        await stop.wait()
    finally:
        log.info("stopping; queued runs stay queued")
        await server.close()
    return server.server.worker_stopped
