"""The daemon's outside: the PUB socket with the journal behind it, and the control socket.

Opened in order at start (each failure a ConfigError naming the key to fix); `aclose` closes
whatever was opened, since start-up may fail half way. A live daemon's sockets are never stolen:
binding an ipc path over them is refused first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
import zmq.asyncio

from . import paths
from .config import Config
from .errors import ConfigError, DictatedError
from .journal import Journal
from .protocol import CONTROL_SOCKET, EVENTS_SOCKET
from .transport.control import ControlServer, Handler
from .transport.publisher import Publisher

log = logging.getLogger(__name__)


class Sockets:
    def __init__(self) -> None:
        self.events_endpoint: str | None = None
        self.control_endpoint: str | None = None
        self.journal: Journal | None = None
        self.context: zmq.asyncio.Context | None = None
        self.publisher: Publisher | None = None
        self.control: ControlServer | None = None

    def open(self, config: Config, handlers: dict[str, Handler]) -> None:
        wanted = config.transport.socket_dir()
        try:
            socket_dir = paths.ensure_private_dir(wanted)
        except OSError as exc:
            raise ConfigError(
                f"transport.runtime_dir: cannot use {wanted} for sockets: {exc}"
            ) from exc
        self.events_endpoint = paths.ipc_endpoint(socket_dir, EVENTS_SOCKET)
        self.control_endpoint = paths.ipc_endpoint(socket_dir, CONTROL_SOCKET)
        _refuse_if_running(self.control_endpoint)
        journal_path = config.journal.resolved()
        try:
            self.journal = Journal(journal_path, config.journal.rotation())
        except OSError as exc:
            raise ConfigError(
                f"journal.path: cannot open the journal {journal_path}: {exc}"
            ) from exc
        self.context = zmq.asyncio.Context()
        endpoints = [self.events_endpoint, *config.transport.pub]
        self.publisher = Publisher(self.context, endpoints, self.journal)
        self.control = ControlServer(self.context, self.control_endpoint, handlers)
        log.info(
            "events on %s; control on %s; journal %s",
            ", ".join(endpoints),
            self.control_endpoint,
            self.journal.path,
        )

    async def aclose(self) -> None:
        """Close whatever `open` managed to open."""
        if self.control is not None:
            self.control.close()
        if self.publisher is not None:
            await self.publisher.aclose()  # sends what is queued; closes the journal
        elif self.journal is not None:
            self.journal.close()
        if self.context is not None:
            self.context.term()


def _refuse_if_running(control_endpoint: str) -> None:
    """Binding an ipc path steals it from a live daemon; ask first, and remove a stale socket."""
    from .clients.control import ControlClient, DaemonUnavailable

    path = Path(control_endpoint.removeprefix("ipc://"))
    if not path.exists():
        return
    try:
        status = ControlClient(control_endpoint, timeout_s=0.5).request("status")
    except DaemonUnavailable:
        return  # stale socket from a crashed daemon; bind replaces it
    raise DictatedError(
        f"a dictated daemon is already running (pid {status.get('pid')}, control {control_endpoint}); "
        "stop it first (launchctl/systemctl, or kill the pid), or set transport.runtime_dir for a second one"
    )
