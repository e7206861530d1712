"""A small local web page with live captions, pushed through server-sent events.

The standard library's ThreadingHTTPServer serves two paths: `/` (the page) and `/events` (an
SSE stream). Each caption is an SSE event whose id is the transcript's `seq`, so the browser's
EventSource, which reconnects by itself, resumes with `Last-Event-ID` and misses nothing; a page
opened mid-meeting first gets everything said so far. The Host header is checked against the
address bound, so a web site cannot read the captions through DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

RETRY_MS = 2000  # how soon a browser reconnects after the stream drops
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and idle timers from closing it


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Caption:
    """What the page shows for one transcript (its seq is the SSE event id)."""

    seq: int
    id: str
    text: str
    start: float  # captions timeline seconds
    end: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)


@dataclass(frozen=True)
class Snapshot:
    version: int
    captions: tuple[Caption, ...]
    state: dict[str, Any]
    partial: dict[str, Any] | None  # the utterance being spoken (id, text), when the daemon says
    closed: bool


class CaptionFeed:
    """Captions so far, the daemon's state and the words in flight, shared with the page streams."""

    def __init__(self) -> None:
        self._captions: list[Caption] = []
        self._state: dict[str, Any] = {"state": "connecting"}
        self._partial: dict[str, Any] | None = None
        self._version = 0
        self._closed = False
        self._changed = threading.Condition()

    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def add(self, caption: Caption) -> None:
        with self._changed:
            self._captions.append(caption)
            if self._partial and self._partial.get("id") == caption.id:
                self._partial = None
            self._bump()

    def set_state(self, **state: Any) -> None:
        with self._changed:
            self._state = state
            self._bump()

    def set_partial(self, utterance_id: str, text: str) -> None:
        with self._changed:
            if not any(c.id == utterance_id for c in self._captions[-3:]):  # not already final
                self._partial = {"id": utterance_id, "text": text}
                self._bump()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait(self, version: int, timeout_s: float) -> Snapshot:
        """Block until something newer than `version` (or `timeout_s`), then a consistent copy."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version or self._closed, timeout_s)
            return Snapshot(
                self._version,
                tuple(self._captions),
                dict(self._state),
                None if self._partial is None else dict(self._partial),
                self._closed,
            )


def _sse(data: str, event: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    server: CaptionServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("web %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        if not self._host_allowed():
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
            return
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.server.page)
        elif url.path == "/events":
            self._stream(self._resume_after(url.query))
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _host_allowed(self) -> bool:
        if not self.server.check_host:
            return True
        host = self.headers.get("Host") or ""
        bracketed = host.startswith("[")  # [::1]:8080
        return is_loopback(host[1:].partition("]")[0] if bracketed else host.partition(":")[0])

    def _resume_after(self, query: str) -> int:
        """The seq the page already has: Last-Event-ID on reconnect (or ?since= for a fresh page)."""
        raw = self.headers.get("Last-Event-ID") or parse_qs(query).get("since", ["-1"])[0]
        try:
            return int(raw)
        except ValueError:
            return -1

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, after: int) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        feed = self.server.feed
        version, sent_state, sent_partial = -1, None, None
        try:
            self.wfile.write(f"retry: {RETRY_MS}\n\n".encode())
            while True:
                snap = feed.wait(version, KEEPALIVE_S)
                version = snap.version
                chunks = [
                    _sse(c.to_json(), "caption", c.seq) for c in snap.captions if c.seq > after
                ]
                if snap.captions:
                    after = max(after, snap.captions[-1].seq)
                if snap.state != sent_state:
                    chunks.append(_sse(json.dumps(snap.state, ensure_ascii=False), "status"))
                    sent_state = snap.state
                if snap.partial != sent_partial:
                    partial = snap.partial or {"id": None, "text": ""}
                    chunks.append(_sse(json.dumps(partial, ensure_ascii=False), "partial"))
                    sent_partial = snap.partial
                self.wfile.write(b"".join(chunks) or b": keepalive\n\n")
                self.wfile.flush()
                if snap.closed:
                    return
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return  # the page went away; EventSource comes back with Last-Event-ID


class CaptionServer(ThreadingHTTPServer):
    """Serves the page and its event stream from a thread (`start`) until `stop`."""

    daemon_threads = True  # an open event stream never holds up exit

    def __init__(self, feed: CaptionFeed, host: str = "127.0.0.1", port: int = 0):
        self.feed = feed
        self.page = resources.files(__package__).joinpath("page.html").read_bytes()
        self.check_host = is_loopback(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in str(host) else host}:{port}/"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="captions-web", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.feed.close()
        self.shutdown()
        self.server_close()
