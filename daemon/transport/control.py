"""The control socket: JSON requests in, one JSON reply out, for every request, always.

A ROUTER rather than a REP socket: REP has a strict recv/send state machine that a broken peer
(random bytes on the ipc path, a client that vanishes before its reply) can wedge, and then the
daemon stops answering. ROUTER keeps no such state; clients still use plain REQ sockets.
Malformed input gets an error reply naming the problem and the daemon goes on; the handlers are
plain callables supplied by the daemon so this module knows nothing of its internals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

from ..errors import DictatedError
from ..protocol import ProtocolError, decode_request, error_reply, ok_reply
from .ipc_files import MAX_REQUEST_BYTES, BoundFile

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class CommandError(Exception):
    """A well-formed request the daemon refuses (bad language, bad `since`...)."""


class ControlServer:
    def __init__(self, context: zmq.asyncio.Context, endpoint: str, handlers: dict[str, Handler]):
        self.endpoint = endpoint
        self.handlers = handlers
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # a larger message drops its peer before it is read into memory
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(0)
            raise DictatedError(f"cannot listen for commands on {endpoint}: {exc}") from exc
        self._file = BoundFile.of(endpoint)

    async def serve(self) -> None:
        while True:
            try:
                frames = await self.socket.recv_multipart()
                envelope, body = _split_envelope(frames)
                reply = await self._handle(body)
                await self.socket.send_multipart([*envelope, reply])
            except zmq.ZMQError as exc:  # a peer that vanished mid-exchange: drop it, keep serving
                log.warning("control: %s", exc)

    async def _handle(self, frames: list[bytes]) -> bytes:
        try:
            request = decode_request(frames)
            result = await self.handlers[request["cmd"]](request)
            return ok_reply(**result)
        except (ProtocolError, CommandError) as exc:
            log.info("control: refused request: %s", exc)
            return error_reply(str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a handler must not take the daemon down
            log.exception("control: handler failed")
            return error_reply(f"internal error: {exc}")

    def close(self) -> None:
        """Close the socket and remove its file (if it is still ours): a clean exit leaves none."""
        self.socket.close(0)
        if self._file is not None:
            self._file.remove()


def _split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """ROUTER frames -> (routing envelope to echo back, request frames).

    A REQ client's message is [identity, b"", payload...]; a DEALER's may lack the delimiter.
    """
    identity, rest = frames[0], frames[1:]
    if b"" in rest:
        cut = rest.index(b"") + 1
        return [identity, *rest[:cut]], rest[cut:]
    return [identity], rest
