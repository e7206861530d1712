"""A synchronous client for the daemon's control socket (REQ with a timeout).

Before a request goes out on an `ipc://` endpoint the socket directory is checked (it must be
ours alone: dictated.socket_dir) and a plain Unix-socket connect tells at once whether anything
listens: a file with no listener is a stale socket of a previous run, not a hung daemon, so the
REQ timeout is spent only on a listener that does not answer.
"""

from __future__ import annotations

import errno
from typing import Any

import zmq

from dictated.protocol import (
    CONTROL_SOCKET,
    ProtocolError,
    decode_reply,
    default_endpoint,
    encode_request,
)
from dictated.socket_dir import UnsafeSocketDir, check_endpoint, ipc_path, probe_listener

#: the largest reply accepted (ZMQ_MAXMSGSIZE): a full history page (10,000 events of 35 s
#: utterances, ~2.5 KB each) is ~25 MB; a larger reply is dropped before it is read
MAX_REPLY_BYTES = 64 * 1024 * 1024


class DaemonUnavailable(ConnectionError):
    """No daemon answered on the control endpoint in time."""


class CommandFailed(RuntimeError):
    """The daemon answered with ok=false; the message is its reason."""


class UnsafeEndpoint(zmq.ZMQError, CommandFailed):
    """Refused before connecting: another account could control this endpoint's socket directory.

    A ZMQError (a connect that did not happen) and a CommandFailed, so every client's existing
    handlers stop with its one-line message instead of waiting, as they do for DaemonUnavailable.
    """

    def __init__(self, message: str):
        super().__init__(errno.EACCES, message)


def guard(endpoint: str) -> None:
    """Raise UnsafeEndpoint unless an `ipc://` endpoint's directory and socket are ours alone."""
    try:
        check_endpoint(endpoint)
    except UnsafeSocketDir as exc:
        raise UnsafeEndpoint(str(exc)) from None


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

    def _check_listener(self) -> None:
        """Refuse an untrusted ipc endpoint; tell a missing or stale socket at once."""
        guard(self.endpoint)
        path = ipc_path(self.endpoint)
        if path is None:
            return
        listening = probe_listener(path, self.timeout_ms / 1000)
        if listening is None:
            raise DaemonUnavailable(
                f"no dictated daemon is running (no socket at {self.endpoint}); start one with "
                "`dictated run`"
            )
        if not listening:
            raise DaemonUnavailable(
                f"no dictated daemon is running (stale socket left by a previous run: {path}); "
                "start one with `dictated run`, which replaces it"
            )

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command; return the reply's fields or raise CommandFailed / DaemonUnavailable.

        A fresh REQ socket per request: a timed-out REQ socket cannot be reused.
        """
        self._check_listener()
        sock = self._context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
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
