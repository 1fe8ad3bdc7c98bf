"""The websocket hub: fans run events out to every connected client.

Runs on the event loop only. :meth:`Hub.broadcast` never awaits: each client has a
bounded queue drained by its own sender task, so one slow browser cannot stall the
others or the worker. A client that falls ``queue_size`` messages behind is
disconnected (it can reconnect and read the run records instead). A sender yields to
the loop every few messages, so a long backlog never holds the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

log = logging.getLogger("nodeflow.server")

#: Messages a sender writes before it lets the loop do something else (writes that need no
#: waiting do not yield by themselves).
_BATCH = 32


class _Client:
    def __init__(self, ws: web.WebSocketResponse, queue_size: int):
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)


class Hub:
    """Connected websockets and the broadcast to them."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], queue_size: int = 2000):
        self._snapshot = snapshot
        self._queue_size = queue_size
        self._clients: set[_Client] = set()

    def __len__(self) -> int:
        return len(self._clients)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for every client (call on the loop thread)."""
        text = json.dumps(message)
        for client in list(self._clients):
            try:
                client.queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("websocket client fell behind; disconnecting it")
                self._clients.discard(client)
                # closing ends the client's read loop in serve(), which stops its sender
                asyncio.ensure_future(client.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow"))

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """Upgrade ``request``, send the queue state, then stream messages until the client goes."""
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        client = _Client(ws, self._queue_size)
        client.queue.put_nowait(json.dumps(self._snapshot()))
        self._clients.add(client)
        sender = asyncio.create_task(self._send_loop(client))
        try:
            async for msg in ws:  # clients have nothing to say; read only to notice closing
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return ws

    async def _send_loop(self, client: _Client) -> None:
        sent = 0
        while True:
            text = await client.queue.get()
            try:
                await client.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            sent += 1
            if sent % _BATCH == 0:
                await asyncio.sleep(0)

    async def close(self) -> None:
        """Close every websocket (the server is stopping)."""
        for client in list(self._clients):
            await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        self._clients.clear()
