"""Only this account may subscribe over a loopback `tcp://` endpoint: the others are cut at once.

The ipc sockets live in a 0700 directory, but a TCP port on this machine is open to every local
account. ZeroMQ keeps every subscription prefix a PUB peer sends, a trie node per byte, so the
size bound (ZMQ_MAXMSGSIZE) alone does not bound a peer that sends many small prefixes: 100k
distinct 120-byte subscriptions grew a PUB socket by ~600 MB (issue 15's review).

On Linux the kernel says which account owns the other end of a local connection
(`/proc/net/tcp`, `/proc/net/tcp6`: its socket's row, with a uid column). A monitor thread,
the one owner of the PUB socket's monitor, looks at each accepted connection and shuts down
one that another account opened, before more than a few of its messages are read (the PUB's
receive high-water mark bounds what it can queue meanwhile); its subscriptions go with it.
A peer on another machine is not in those tables: it was allowed by `allow_remote`.
Elsewhere (macOS) the owner cannot be read: the endpoint works, with a warning that other
local accounts can subscribe.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import sys
import threading
from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_POLL_MS = 200  # how often the monitor thread looks at its stop flag


def _hex_address(text: str) -> tuple[str, int]:
    """An address as /proc/net/tcp writes it ("0100007F:1F90"): the address as 32-bit words in
    the host's byte order, then the port."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return _plain(str(ipaddress.ip_address(raw))), int(port, 16)


def _plain(host: str) -> str:
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def socket_owner(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid owning the local TCP socket `local` connected to `remote`; None if not found."""
    want = ((_plain(local[0]), local[1]), (_plain(remote[0]), remote[1]))
    for table in _TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8:
                continue
            if (_hex_address(fields[1]), _hex_address(fields[2])) == want:
                return int(fields[7])
    return None


def can_see_owners() -> bool:
    return _TABLES[0].exists()


def peer_owner(fd: int) -> int | None:
    """The uid that opened the other end of accepted TCP connection `fd`, when it is local."""
    try:
        conn = socket.socket(fileno=os.dup(fd))
    except OSError:  # already closed by ZeroMQ
        return None
    try:
        if conn.family not in (socket.AF_INET, socket.AF_INET6) or conn.type != socket.SOCK_STREAM:
            return None
        ours, theirs = conn.getsockname()[:2], conn.getpeername()[:2]
        # the peer's own socket: its local address is our remote one, and the reverse
        return socket_owner(theirs, ours)
    except OSError:
        return None
    finally:
        conn.close()


def cut(fd: int) -> None:
    """End the connection behind `fd` (ZeroMQ sees it closed and drops the peer's pipe)."""
    try:
        conn = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        conn.close()


class PeerGuard:
    """Watches a socket's accepted TCP connections and cuts those of other local accounts."""

    def __init__(self, sock: zmq.Socket):
        self.refused = 0  # connections cut
        self._socket = sock
        self._monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED)  # owned by the thread
        self._stop = threading.Event()
        self._warned: set[int] = set()
        self._thread = threading.Thread(target=self._run, name="tcp-peers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        uid = os.getuid()
        while not self._stop.is_set():
            if not self._monitor.poll(_POLL_MS):
                continue
            try:
                event = recv_monitor_message(self._monitor)
            except zmq.ZMQError:
                return
            fd = event["value"]
            owner = peer_owner(fd)
            if owner is not None and owner != uid:
                cut(fd)
                self.refused += 1
                if owner not in self._warned:  # once per account: a flood must not flood the log
                    self._warned.add(owner)
                    log.warning(
                        "refused a subscriber of uid %d on %s: only this account (uid %d) may "
                        "subscribe here",
                        owner,
                        event["endpoint"].decode(errors="replace"),
                        uid,
                    )

    def close(self) -> None:
        """Stop watching (before the watched socket closes)."""
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(zmq.ZMQError):
            self._socket.disable_monitor()
        self._monitor.close(0)


def guard(sock: zmq.Socket, endpoints: list[str]) -> PeerGuard | None:
    """A PeerGuard for `sock` when it binds tcp:// endpoints (and owners can be read)."""
    tcp = [e for e in endpoints if e.startswith("tcp://")]
    if not tcp:
        return None
    if not can_see_owners():
        log.warning(
            "%s: every local account can subscribe to a tcp:// endpoint here (its owner cannot "
            "be checked on this system); prefer the default ipc socket",
            ", ".join(tcp),
        )
        return None
    return PeerGuard(sock)
