"""One transcription request to one server: multipart upload, JSON or SSE answer, typed failures.

The standard library's http.client is enough for one POST per utterance, and it lets the socket
timeout be re-armed before every blocking step, so `timeout_s` bounds the whole request (connect to
last byte), not each read. Idle keep-alive connections are reused (a TLS handshake per utterance
would cost more than a short transcription); one that the server closed while idle is retried once
on a fresh connection. https verifies certificates with the system's default context. The API key
goes only into the Authorization header and never into a message.

Every answer is bounded, whatever the server sends: the body is read in chunks up to
`MAX_ANSWER_BYTES` (a longer one is refused before it is held in memory), a 200 must be the JSON
we asked for (a proxy's login page is an error, never a transcript), a streamed line and a whole
stream are capped the same way, and the text is cut at the upload's `max_chars`, marked truncated.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ... import __version__
from .sse import StreamedText, StreamFormatError, iter_events

MAX_ERROR_BODY = 64 * 1024  # an error page is read this far for its message, no further
#: a transcript of 35 s is a few KB of JSON (a few hundred KB of SSE events); more is no transcript
MAX_ANSWER_BYTES = 2 * 1024 * 1024
MAX_SSE_LINE = 64 * 1024  # one SSE line (one event's JSON); a longer one is refused
MAX_IDLE = 4  # keep-alive connections kept per server
#: what a server may ask us to wait at most, so a bogus Retry-After cannot park it for a day
MAX_RETRY_AFTER_S = 300.0
_TAG = re.compile(r"<[^>]{0,1000}>")  # markup of an HTML page, dropped from messages
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Answer:
    text: str
    truncated: bool = False  # cut at the upload's max_chars


@dataclass(frozen=True)
class Reply:
    text: str
    elapsed_ms: float
    truncated: bool = False


class RequestFailed(Exception):
    """A request that produced no transcript; `server_fault` says whether the server is to blame.

    A server at fault (unreachable, timed out, 5xx, 429, wrong path, refused key) is taken out for
    a while and the utterance tried elsewhere; a rejected request (other 4xx) would fail anywhere.
    """

    def __init__(
        self,
        reason: str,
        *,
        server_fault: bool = True,
        status: int | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.server_fault = server_fault
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Upload:
    """The form of one request: fields, then the audio as `file`."""

    fields: tuple[tuple[str, str], ...]
    wav: bytes
    stream: bool
    max_chars: int  # the most text this audio can hold; more is cut and marked truncated


class TranscriptionClient:
    """Requests to one endpoint (e.g. http://gpu:8000/v1/audio/transcriptions); thread-safe."""

    def __init__(
        self, endpoint: str, api_key: str | None, timeout_s: float, connect_timeout_s: float
    ):
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = parts.path or "/"
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._ssl = ssl.create_default_context() if self._https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def post(self, upload: Upload, on_delta: Callable[[str], None] | None = None) -> Reply:
        """Send one utterance; raise RequestFailed with a one-line reason on any failure."""
        started = time.monotonic()
        deadline = started + self._timeout_s
        body, content_type = _multipart(upload)
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Accept": "text/event-stream" if upload.stream else "application/json",
            "User-Agent": f"dictated/{__version__}",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        conn, reused = self._checkout()
        try:
            try:
                answer = self._exchange(conn, body, headers, deadline, on_delta, upload.max_chars)
            except _STALE:
                if not reused:
                    raise
                conn.close()  # closed by the server while idle: once more, on a new connection
                conn, reused = self._new_connection(), False
                answer = self._exchange(conn, body, headers, deadline, on_delta, upload.max_chars)
        except RequestFailed:
            conn.close()
            raise
        except Exception as exc:
            conn.close()
            raise RequestFailed(_describe(exc, self._timeout_s)) from exc
        self._checkin(conn)
        elapsed_ms = (time.monotonic() - started) * 1000
        return Reply(text=answer.text, elapsed_ms=elapsed_ms, truncated=answer.truncated)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- connections -------------------------------------------------------------------------

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout_s, context=self._ssl
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout_s)

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new_connection(), False

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:  # the server said Connection: close
            return
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    # -- one exchange ------------------------------------------------------------------------

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        body: bytes,
        headers: dict[str, str],
        deadline: float,
        on_delta: Callable[[str], None] | None,
        max_chars: int,
    ) -> Answer:
        if conn.sock is None:
            conn.timeout = min(self._connect_timeout_s, _remaining(deadline, self._timeout_s))
            conn.connect()
        sock = conn.sock  # kept: the response may take it over (Connection: close)

        def arm() -> None:
            left = _remaining(deadline, self._timeout_s)
            if sock.fileno() != -1:  # -1: the response is complete and closed its socket
                sock.settimeout(left)

        arm()
        conn.request("POST", self._path, body=body, headers=headers)
        arm()
        response = conn.getresponse()
        try:
            answer = _read_answer(response, arm, on_delta, max_chars)
        except BaseException:
            response.close()  # a body left unread (too large, not ours): hang up on it now
            raise
        if answer.truncated and not response.isclosed():
            response.close()  # the rest of the stream is not wanted ...
            conn.close()  # ... and this connection is not reused
        return answer


def _read_answer(
    response: http.client.HTTPResponse,
    arm: Callable[[], None],
    on_delta: Callable[[str], None] | None,
    max_chars: int,
) -> Answer:
    if response.status != 200:
        raise _http_failure(response, arm)
    content_type = response.getheader("Content-Type", "")
    if content_type.startswith("text/event-stream"):
        return _read_stream(response, arm, on_delta, max_chars)
    answer = _cap(_parse_text(_read_all(response, arm), content_type), max_chars)
    if on_delta is not None and answer.text:  # a server that ignores stream=true: one delta
        on_delta(answer.text)
    return answer


def _remaining(deadline: float, timeout_s: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"timed out after {timeout_s:g} s")
    return left


def _too_large() -> RequestFailed:
    return RequestFailed(
        f"the answer is over {MAX_ANSWER_BYTES // 1024 // 1024} MiB, which no transcript is "
        "(is something else answering on this URL?)"
    )


def _read_all(response: http.client.HTTPResponse, arm: Callable[[], None]) -> bytes:
    """The body, in chunks, refused as soon as it is over MAX_ANSWER_BYTES (never held whole)."""
    length = response.getheader("Content-Length", "")
    if length.strip().isdigit() and int(length) > MAX_ANSWER_BYTES:
        raise _too_large()  # said up front: refused before a byte of it is read
    chunks: list[bytes] = []
    size = 0
    while True:
        arm()  # re-armed per read: a server trickling bytes still meets the deadline
        chunk = response.read(65536)  # read(n), not read1: it marks the response done at its end
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _too_large()
        chunks.append(chunk)


def _read_stream(
    response: http.client.HTTPResponse,
    arm: Callable[[], None],
    on_delta: Callable[[str], None] | None,
    max_chars: int,
) -> Answer:
    """Deltas until the server says done; stops early (truncated) once the text is over max_chars."""
    size = 0

    def readline() -> bytes:
        nonlocal size
        arm()
        line = response.readline(MAX_SSE_LINE + 1)
        size += len(line)
        if len(line) > MAX_SSE_LINE:
            raise RequestFailed(f"a streamed line is over {MAX_SSE_LINE // 1024} KiB")
        if size > MAX_ANSWER_BYTES:
            raise _too_large()
        return line

    streamed = StreamedText()
    try:
        for data in iter_events(readline):
            delta = streamed.feed(data)
            if len(streamed.text) > max_chars:
                return _cap(streamed.text.strip(), max_chars)
            if delta and on_delta is not None:
                on_delta(streamed.text)
    except StreamFormatError as exc:
        raise RequestFailed(str(exc)) from exc
    if not streamed.done:
        raise RequestFailed("the stream ended before the transcript was complete")
    return _cap(streamed.text.strip(), max_chars)


def _cap(text: str, max_chars: int) -> Answer:
    """At most max_chars, cut after a word where one ends near the limit."""
    if len(text) <= max_chars:
        return Answer(text)
    cut = text[:max_chars]
    space = cut.rfind(" ", max_chars * 9 // 10)
    return Answer((cut[:space] if space > 0 else cut).rstrip(), truncated=True)


def _parse_text(raw: bytes, content_type: str) -> str:
    """`{"text": …}`, as response_format=json asks; anything else is an error of this request.

    A 200 that is not that JSON (a captive portal's or an auth proxy's login page, an HTML error
    page) must never become a transcript that is then typed into the user's window.
    """
    decoded = raw.decode("utf-8", errors="replace")
    try:
        answer = json.loads(decoded)
    except json.JSONDecodeError as exc:
        kind = content_type.split(";")[0].strip() or "no Content-Type"
        raise RequestFailed(
            f"the answer is {kind}, not the JSON transcript asked for (a login page or a "
            f"proxy in the way?): {_snippet(decoded)}"
        ) from exc
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        raise RequestFailed(f"the answer has no 'text': {_snippet(decoded)}")
    return answer["text"].strip()


def _snippet(text: str) -> str:
    """The start of a foreign answer for a message: its words (markup dropped), one short line,
    anything unusual escaped."""
    words = " ".join(_TAG.sub(" ", text[:4096]).split())
    return ascii(words[:100])


def _http_failure(response: http.client.HTTPResponse, arm: Callable[[], None]) -> RequestFailed:
    status = response.status
    retry_after = _retry_after(response.getheader("Retry-After"))
    try:
        arm()
        message = _error_message(response.read(MAX_ERROR_BODY))
    except (OSError, http.client.HTTPException):
        message = ""
    reason = f"HTTP {status} {response.reason}".rstrip()
    if message:
        reason += f": {message}"
    if status == 404:
        reason += " (is the URL the API's base, e.g. http://host:8000/v1, and the model served?)"
    if retry_after is not None:
        reason += f"; retry after {retry_after:g} s"
    # 4xx other than these are about the request itself: another server would refuse it too
    server_fault = status >= 500 or status in (401, 403, 404, 408, 429)
    return RequestFailed(
        reason, server_fault=server_fault, status=status, retry_after_s=retry_after
    )


def _error_message(raw: bytes) -> str:
    """vLLM/OpenAI: {"error": {"message": …}}; FastAPI: {"detail": …}; else the text itself."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        return " ".join(text.split())[:200]
    if isinstance(answer, dict):
        error = answer.get("error", answer)
        if isinstance(error, dict):
            text = str(error.get("message") or error.get("detail") or error)
        else:
            text = str(error)
    return " ".join(text.split())[:200]


def _retry_after(value: str | None) -> float | None:
    """Retry-After is delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _describe(exc: BaseException, timeout_s: float) -> str:
    """One line for the user: what went wrong on the wire."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "the server closed the connection before answering"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror}"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer was cut off"
    if isinstance(exc, http.client.HTTPException):
        return f"broken HTTP answer: {type(exc).__name__}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _multipart(upload: Upload) -> tuple[bytes, str]:
    boundary = f"dictated-{uuid.uuid4().hex}"
    parts = []
    for name, value in (*upload.fields, *((("stream", "true"),) if upload.stream else ())):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="utterance.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
    )
    parts.append(upload.wav)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
