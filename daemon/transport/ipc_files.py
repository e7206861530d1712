"""The socket files the daemon binds, removed again on a clean exit.

ZeroMQ leaves an `ipc://` socket file behind when it closes the socket; the next `status` then
found a file with nobody behind it and `doctor` blamed a crash. A file is removed only while it
is still the one we bound (same device, inode and change time: an inode number freed by an
unlink is soon reused): a second daemon that took the path over keeps its socket.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..socket_dir import ipc_path

log = logging.getLogger(__name__)

#: inbound bounds for the daemon's sockets (ZMQ_MAXMSGSIZE): larger messages drop the peer
MAX_SUBSCRIPTION_BYTES = 256  # PUB: a subscription is a topic prefix such as "transcript"
MAX_QUEUED_SUBSCRIPTIONS = 100  # PUB's receive high-water mark: a client sends one or two
MAX_REQUEST_BYTES = 64 * 1024  # control: a request is a small JSON object


@dataclass(frozen=True)
class BoundFile:
    """One socket file as bound: its path and identity."""

    path: str
    identity: tuple[int, int, int]  # st_dev, st_ino, st_ctime_ns

    @classmethod
    def of(cls, endpoint: str) -> BoundFile | None:
        """The file an `ipc://` endpoint just bound (None for tcp:// or abstract endpoints)."""
        path = ipc_path(endpoint)
        if path is None:
            return None
        try:
            info = os.lstat(path)
        except OSError:  # bound, then removed by someone: nothing of ours to clean up later
            return None
        return cls(path, _identity(info))

    def remove(self) -> None:
        """Unlink the file if it is still ours; say why when it cannot be."""
        try:
            info = os.lstat(self.path)
            if _identity(info) == self.identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove socket %s: %s", self.path, exc)


def _identity(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_dev, info.st_ino, info.st_ctime_ns


def remove_all(files: list[BoundFile]) -> None:
    """Remove every bound file that is still ours (after the socket is closed)."""
    for bound in files:
        bound.remove()
