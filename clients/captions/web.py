"""A small local web page with live captions, pushed through server-sent events.

The standard library's ThreadingHTTPServer serves two paths: `/` (the page) and `/events` (an
SSE stream). Each caption is an SSE event whose id is the transcript's `seq`, so the browser's
EventSource, which reconnects by itself, resumes with `Last-Event-ID` and misses nothing; a page
opened mid-meeting first gets everything said so far (the last MAX_CAPTIONS).

Bounded, since anyone who can reach the port can open connections: at most MAX_CONNECTIONS at
once, each with its own thread (more are answered 503 and closed); a request line and headers
must arrive within REQUEST_TIMEOUT_S in all, so idle and trickling connections are closed; a
write to a browser that stopped reading gives up after SEND_TIMEOUT_S; out of file descriptors,
the accept loop backs off instead of spinning. The event stream stays open (that is how the page
gets live captions): it counts against the cap, and its keepalive notices a page that went away.

The Host header must name this server (web_hosts.HostPolicy), so a web site cannot read the
captions through DNS rebinding, on loopback and when shared alike.
"""

from __future__ import annotations

import errno
import io
import itertools
import json
import logging
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .web_hosts import HostPolicy, is_loopback

__all__ = ["Caption", "CaptionFeed", "CaptionServer", "is_loopback"]

log = logging.getLogger(__name__)

RETRY_MS = 2000  # how soon a browser reconnects after the stream drops
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and idle timers from closing it
MAX_CONNECTIONS = 64  # pages, streams and requests at once: a thread each
REQUEST_TIMEOUT_S = 5.0  # for the whole request line and headers, and between keep-alive requests
SEND_TIMEOUT_S = 10.0  # for one write to a browser
MAX_REQUEST_BYTES = 64 * 1024  # request line and headers (a browser sends 1-2 KB)
MAX_CAPTIONS = 10_000  # the backlog a newly opened page gets (~10 h of speech)
ACCEPT_BACKOFF_S = (0.05, 1.0)  # first and longest pause when accept() is out of descriptors
#: accept() errors that persist while the listening socket stays readable: retrying at once spins
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
BUSY_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


#: speakers get colours 0..PALETTE-1 (page.html's .s0-.s7) in the order they first speak
PALETTE = 8
MAX_SPEAKERS = 1024  # remembered colours; a speaker beyond gets one from its name's hash


@dataclass(frozen=True)
class Caption:
    """What the page shows for one transcript (its seq is the SSE event id)."""

    seq: int
    id: str
    text: str
    start: float  # captions timeline seconds
    end: float
    speaker: str | None = None  # the label shown before the text (None: none)
    colour: int | None = None  # the speaker's colour, 0..PALETTE-1, set by the feed

    def to_json(self) -> str:
        """Without a speaker, exactly the fields captions had before speakers."""
        fields = {k: v for k, v in self.__dict__.items() if v is not None or k not in _OPTIONAL}
        return json.dumps(fields, ensure_ascii=False)


_OPTIONAL = frozenset({"speaker", "colour"})


@dataclass(frozen=True)
class Snapshot:
    version: int
    captions: tuple[Caption, ...]  # those after the seq asked for, oldest first
    state: dict[str, Any]
    partial: dict[str, Any] | None  # the utterance being spoken (id, text), when the daemon says
    closed: bool


class CaptionFeed:
    """Captions so far, the daemon's state and the words in flight, shared with the page streams."""

    def __init__(self, max_captions: int = MAX_CAPTIONS) -> None:
        self._captions: deque[Caption] = deque(maxlen=max_captions)
        self._state: dict[str, Any] = {"state": "connecting"}
        self._partial: dict[str, Any] | None = None
        self._colours: dict[str, int] = {}
        self._version = 0
        self._closed = False
        self._changed = threading.Condition()

    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def colour(self, speaker: str | None) -> int | None:
        """The speaker's colour: the next one free when first heard, so every page opened at any
        time colours the meeting alike, and two speakers differ until the palette runs out."""
        if speaker is None:
            return None
        if speaker not in self._colours:
            if len(self._colours) >= MAX_SPEAKERS:
                return zlib.crc32(speaker.encode()) % PALETTE
            self._colours[speaker] = len(self._colours) % PALETTE
        return self._colours[speaker]

    def add(self, caption: Caption) -> None:
        with self._changed:
            caption = replace(caption, colour=self.colour(caption.speaker))
            self._captions.append(caption)
            if self._partial and self._partial.get("id") == caption.id:
                self._partial = None
            self._bump()

    def set_state(self, **state: Any) -> None:
        with self._changed:
            self._state = state
            self._bump()

    def set_partial(self, utterance_id: str, text: str, speaker: str | None = None) -> None:
        with self._changed:
            recent = itertools.islice(reversed(self._captions), 3)
            if not any(c.id == utterance_id for c in recent):  # not already final
                self._partial = {"id": utterance_id, "text": text}
                if speaker is not None:
                    self._partial |= {"speaker": speaker, "colour": self.colour(speaker)}
                self._bump()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait(self, version: int, timeout_s: float, after: int = -1) -> Snapshot:
        """Block until something newer than `version` (or `timeout_s`), then a consistent copy
        holding the captions after seq `after` (only those: a stream copies what it sends)."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version or self._closed, timeout_s)
            newer = itertools.takewhile(lambda c: c.seq > after, reversed(self._captions))
            return Snapshot(
                self._version,
                tuple(reversed(list(newer))),
                dict(self._state),
                None if self._partial is None else dict(self._partial),
                self._closed,
            )


def _sse(data: str, event: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


class _DeadlineReader(io.RawIOBase):
    """The socket's reading side, bounded per request: each read by what is left until
    `deadline` (monotonic seconds), so a request trickled in a byte at a time still ends in
    time, and all reads together by MAX_REQUEST_BYTES (http.server alone allows 6 MB of headers)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline: float | None = None
        self._left = MAX_REQUEST_BYTES

    def next_request(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s
        self._left = MAX_REQUEST_BYTES

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request did not arrive in time")
            self._sock.settimeout(left)
        if self._left <= 0:
            raise ConnectionAbortedError(f"request over {MAX_REQUEST_BYTES} bytes")
        view = memoryview(buffer)[: self._left]
        received = self._sock.recv_into(view)
        self._left -= received
        return received


class _Handler(BaseHTTPRequestHandler):
    server: CaptionServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        # the next request (a first one, or the next on a kept-alive connection) has this long
        self._reader.next_request(self.server.request_timeout_s)
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("web %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._reader.deadline = None  # the request is in; what is left is writing
        self.connection.settimeout(self.server.send_timeout_s)
        if not self.server.hosts.allows(self.headers.get("Host") or ""):
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
            return
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.server.page)
        elif url.path == "/events":
            self._stream(self._resume_after(url.query))
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

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
                snap = feed.wait(version, KEEPALIVE_S, after)
                version = snap.version
                chunks = [_sse(c.to_json(), "caption", c.seq) for c in snap.captions]
                if snap.captions:
                    after = snap.captions[-1].seq
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
        except OSError:  # reset, broken pipe, or not read for SEND_TIMEOUT_S
            return  # the page went away; EventSource comes back with Last-Event-ID


class CaptionServer(ThreadingHTTPServer):
    """Serves the page and its event stream from a thread (`start`) until `stop`.

    The limits are class attributes, socketserver's way (`request_queue_size`, `timeout`).
    """

    daemon_threads = True  # an open event stream never holds up exit
    request_queue_size = 128  # connections the kernel completes while the accept loop catches up
    max_connections = MAX_CONNECTIONS
    request_timeout_s = REQUEST_TIMEOUT_S
    send_timeout_s = SEND_TIMEOUT_S

    def __init__(
        self,
        feed: CaptionFeed,
        host: str = "127.0.0.1",
        port: int = 0,
        allowed_hosts: Iterable[str] = (),
    ):
        self.feed = feed
        self.page = resources.files(__package__).joinpath("page.html").read_bytes()
        self.hosts = HostPolicy.for_address(host, allowed_hosts)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self._active = 0  # connections being handled (each has a thread)
        self._lock = threading.Lock()
        self._accept_pause_s = 0.0
        self._stopping = threading.Event()
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in str(host) else host}:{port}/"

    @property
    def active_connections(self) -> int:
        return self._active

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="captions-web", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # ends an accept back-off at once
        self.feed.close()
        self.shutdown()
        self.server_close()

    # -- socketserver hooks: accept with back-off, cap, count ---------------------------------

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = super().get_request()
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                self._back_off(exc)
            raise  # socketserver drops it and selects again
        self._accept_pause_s = 0.0
        return request

    def _back_off(self, exc: OSError) -> None:
        """The pending connection stays queued and the socket readable: wait before trying again."""
        first, longest = ACCEPT_BACKOFF_S
        if not self._accept_pause_s:
            log.warning(
                "captions page: cannot accept connections (%s); retrying at most every %g s",
                exc.strerror,
                longest,
            )
        self._accept_pause_s = min(max(self._accept_pause_s * 2, first), longest)
        self._stopping.wait(self._accept_pause_s)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._lock:
            busy = self._active >= self.max_connections
            if not busy:
                self._active += 1
        if busy:
            _refuse(request)
        return not busy

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()  # no thread started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A page that vanished mid-request is routine: a debug line, not a traceback on stderr."""
        log.debug("captions page: connection from %s failed", client_address, exc_info=True)


def _refuse(request: socket.socket) -> None:
    """Answer 503 without waiting for the client (it may never read); the caller closes it."""
    try:
        request.setblocking(False)
        request.send(BUSY_REPLY)
    except OSError:
        pass
