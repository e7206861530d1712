"""A real TCP/HTTP proxy that puts faults between the remote engine and a real server.

It listens on a loopback port and, per HTTP request, does what its current `Fault` says: pass the
request on to the upstream server (vLLM), answer with a status of its own (500, 429 with
Retry-After), wait before passing it on (a slow server), drop the connection without answering
(a server that dies mid-request), or refuse connections altogether (`refuse()`: nothing listens,
as when the server is gone). It reads each request whole and forces `Connection: close`, so a
fault set between two requests applies to the next one even when the client keeps connections
alive. It also records what each request looked like (path, headers, form field names), so tests
can check what the engine sent.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

_HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Fault:
    kind: str = "pass"  # pass | status | delay | drop
    status: int = 500
    retry_after: str | None = None
    delay_s: float = 0.0
    body: bytes = b'{"error": {"message": "injected by the fault proxy"}}'

    @classmethod
    def passthrough(cls) -> Fault:
        return cls()

    @classmethod
    def http(cls, status: int, retry_after: str | None = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls("delay", delay_s=delay_s)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")


@dataclass(frozen=True)
class SeenRequest:
    fault: str
    request_line: str
    headers: dict[str, str]
    body: bytes = field(repr=False)


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self._fault = Fault()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.seen: list[SeenRequest] = []
        self.port = port
        self._listen()

    @property
    def url(self) -> str:
        """The base URL a client uses, like the server's own (`/v1` included)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def set(self, fault: Fault) -> None:
        with self._lock:
            self._fault = fault

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.seen if kind is None or s.fault == kind)

    def refuse(self) -> None:
        """Stop listening: connections are refused, as when nothing runs on the port."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown wakes the accepting thread and stops listening (close alone does neither)
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def restore(self) -> None:
        """Listen again on the same port."""
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._closed.set()
        self.refuse()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- serving -----------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed by refuse()/close()
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            head, body = request
            with self._lock:
                fault = self._fault
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:])
                }
                self.seen.append(SeenRequest(fault.kind, lines[0], headers, body))
            if fault.kind == "drop":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closed with a reset, nothing answered
            if fault.kind == "status":
                extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after else ""
                conn.sendall(
                    f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(fault.body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                    + fault.body
                )
                return
            if fault.kind == "delay" and self._closed.wait(fault.delay_s):
                return
            self._forward(conn, head, body)

    def _forward(self, conn: socket.socket, head: bytes, body: bytes) -> None:
        lines = [
            line
            for line in head.split(b"\r\n")
            if not line.lower().startswith((b"connection:", b"keep-alive:"))
        ]
        head = b"\r\n".join([*lines, b"Connection: close"])
        try:
            with socket.create_connection(self.upstream, timeout=300) as up:
                up.sendall(head + _HEADER_END + body)
                while chunk := up.recv(65536):
                    conn.sendall(chunk)
        except OSError:
            return  # upstream gone: the client sees the connection close


def _read_request(conn: socket.socket) -> tuple[bytes, bytes] | None:
    """One request's head and body (Content-Length bodies; what the engine sends)."""
    data = b""
    while _HEADER_END not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(_HEADER_END)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body
