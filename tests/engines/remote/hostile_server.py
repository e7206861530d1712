"""A real HTTP server, in a thread on a loopback port, that answers transcription requests badly.

It stands where a transcription server (or a proxy in front of one) would and answers each
`POST …/audio/transcriptions` with the next of its `Answer`s (the last one repeats): a normal JSON
transcript, a huge JSON body generated chunk by chunk (so the test process never holds it), a
200 HTML login page, or an endless SSE stream. It reads every request whole first, as a real server
does, and counts the bytes it managed to send, so a test can tell a client that stopped reading
from one that took everything.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Answer:
    kind: str  # json | huge | html | sse | sse_empty | sse_done
    text: str = "hello from the server"
    size: int = 0  # huge: bytes of JSON
    content_length: bool = True  # huge: say the size up front
    deltas: tuple[str, ...] = ()  # sse_done: these deltas, then finish_reason and [DONE] ...
    pause_s: float = 0.0  # ... after a pause this long

    @classmethod
    def json(cls, text: str = "hello from the server") -> Answer:
        return cls("json", text=text)

    @classmethod
    def huge(cls, size: int, content_length: bool = False) -> Answer:
        return cls("huge", size=size, content_length=content_length)

    @classmethod
    def html(cls) -> Answer:
        return cls("html")

    @classmethod
    def endless_sse(cls, word: str = "again ") -> Answer:
        """vLLM-shaped deltas that never end (no finish_reason, no [DONE])."""
        return cls("sse", text=word)

    @classmethod
    def sse(cls, deltas: tuple[str, ...], pause_s: float = 0.0) -> Answer:
        """A complete vLLM-shaped stream: the deltas at once, a pause, then the end."""
        return cls("sse_done", deltas=deltas, pause_s=pause_s)

    @classmethod
    def endless_empty_sse(cls) -> Answer:
        """Keep-alive comments and empty deltas forever: no text, only bytes."""
        return cls("sse_empty")


LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>"
    b"<form action='/login'>Corporate proxy: please sign in</form></body></html>"
)


class HostileServer:
    def __init__(self, *answers: Answer, port: int = 0):
        self._answers = list(answers) or [Answer.json()]
        self._lock = threading.Lock()
        self.requests = 0
        self.sent = 0  # bytes of answer bodies written to sockets
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = outer._next()
                with contextlib.suppress(ConnectionError, TimeoutError):
                    outer._answer(self, answer)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _next(self) -> Answer:
        with self._lock:
            self.requests += 1
            return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]

    def _answer(self, handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        if answer.kind == "json":
            body = json.dumps({"text": answer.text}).encode()
            self._send(handler, "application/json", [body], len(body))
        elif answer.kind == "html":
            self._send(handler, "text/html; charset=utf-8", [LOGIN_PAGE], len(LOGIN_PAGE))
        elif answer.kind == "huge":
            length = answer.size if answer.content_length else None
            self._send(handler, "application/json", _huge_json(answer.size), length)
        elif answer.kind == "sse_done":
            self._send(handler, "text/event-stream", _finite_sse(answer), None)
        else:
            self._send(handler, "text/event-stream", _endless_sse(answer), None)

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        content_type: str,
        chunks: Iterator[bytes] | list[bytes],
        length: int | None,
    ) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        if length is None:
            handler.send_header("Connection", "close")  # the body ends when the socket does
            handler.close_connection = True
        else:
            handler.send_header("Content-Length", str(length))
        handler.end_headers()
        for chunk in chunks:
            handler.wfile.write(chunk)
            with self._lock:
                self.sent += len(chunk)


def _huge_json(size: int) -> Iterator[bytes]:
    """`{"text": "aaaa…"}` of exactly `size` bytes, made a chunk at a time."""
    head, tail = b'{"text": "', b'"}'
    yield head
    left = size - len(head) - len(tail)
    while left > 0:
        n = min(_CHUNK, left)
        yield b"a" * n
        left -= n
    yield tail


def _endless_sse(answer: Answer) -> Iterator[bytes]:
    for i in itertools.count():
        if answer.kind == "sse_empty":
            yield b": keep-alive\n\n" if i % 2 else _chunk("")
        else:
            yield _chunk(answer.text)


def _finite_sse(answer: Answer) -> Iterator[bytes]:
    yield b"".join(_chunk(delta) for delta in answer.deltas)
    time.sleep(answer.pause_s)
    yield _chunk("", finish_reason="stop") + b"data: [DONE]\n\n"


def _chunk(content: str, finish_reason: str | None = None) -> bytes:
    choice: dict = {"delta": {"content": content}}
    if finish_reason:
        choice["finish_reason"] = finish_reason
    event = {"object": "transcription.chunk", "choices": [choice]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"
