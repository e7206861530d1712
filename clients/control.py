"""A synchronous client for the daemon's control socket (REQ with a timeout)."""

from __future__ import annotations

import os
from typing import Any

import zmq

from dictated.protocol import (
    CONTROL_SOCKET,
    ProtocolError,
    decode_reply,
    default_endpoint,
    encode_request,
)


class DaemonUnavailable(ConnectionError):
    """No daemon answered on the control endpoint in time."""


class CommandFailed(RuntimeError):
    """The daemon answered with ok=false; the message is its reason."""


class ControlClient:
    def __init__(
        self,
        endpoint: str | None = None,
        timeout_s: float = 5.0,
        context: zmq.Context | None = None,
    ):
        self.endpoint = endpoint or default_endpoint(CONTROL_SOCKET)
        self.timeout_ms = int(timeout_s * 1000)
        self._context = context or zmq.Context.instance()

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command; return the reply's fields or raise CommandFailed / DaemonUnavailable.

        A fresh REQ socket per request: a timed-out REQ socket cannot be reused.
        """
        if self.endpoint.startswith("ipc://") and not os.path.exists(
            self.endpoint[len("ipc://") :]
        ):
            raise DaemonUnavailable(
                f"no dictated daemon is running (no socket at {self.endpoint}); start one with `dictated run`"
            )
        sock = self._context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        sock.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        try:
            sock.connect(self.endpoint)
            sock.send(encode_request(cmd, **args))
            frame = sock.recv()
        except zmq.Again as exc:
            raise DaemonUnavailable(
                f"no dictated daemon answered on {self.endpoint} (is it running? `dictated run`)"
            ) from exc
        finally:
            sock.close(0)
        try:
            reply = decode_reply(frame)
        except ProtocolError as exc:
            raise CommandFailed(str(exc)) from exc
        if not reply.get("ok"):
            raise CommandFailed(reply.get("error", "unknown error"))
        return {k: v for k, v in reply.items() if k not in ("ok", "v")}
