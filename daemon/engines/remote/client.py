"""One transcription request to one server: multipart upload, JSON or SSE answer, typed failures.

The standard library's http.client is enough for one POST per utterance, and it lets the socket
timeout be re-armed before every blocking step, so `timeout_s` bounds the whole request (connect to
last byte), not each read. Idle keep-alive connections are reused (a TLS handshake per utterance
would cost more than a short transcription); one that the server closed while idle is retried once
on a fresh connection. https verifies certificates with the system's default context. The API key
goes only into the Authorization header and never into a message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
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
MAX_IDLE = 4  # keep-alive connections kept per server
#: what a server may ask us to wait at most, so a bogus Retry-After cannot park it for a day
MAX_RETRY_AFTER_S = 300.0
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Reply:
    text: str
    elapsed_ms: float


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
                text = self._exchange(conn, body, headers, deadline, on_delta)
            except _STALE:
                if not reused:
                    raise
                conn.close()  # closed by the server while idle: once more, on a new connection
                conn, reused = self._new_connection(), False
                text = self._exchange(conn, body, headers, deadline, on_delta)
        except RequestFailed:
            conn.close()
            raise
        except Exception as exc:
            conn.close()
            raise RequestFailed(_describe(exc, self._timeout_s)) from exc
        self._checkin(conn)
        return Reply(text=text, elapsed_ms=(time.monotonic() - started) * 1000)

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
    ) -> str:
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
        if response.status != 200:
            raise _http_failure(response, arm)
        content_type = response.getheader("Content-Type", "")
        if content_type.startswith("text/event-stream"):
            return _read_stream(response, arm, on_delta)
        arm()
        raw = _read_all(response, arm)
        text = _parse_text(raw, content_type)
        if on_delta is not None and text:  # a server that ignores stream=true: one delta
            on_delta(text)
        return text


def _remaining(deadline: float, timeout_s: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"timed out after {timeout_s:g} s")
    return left


def _read_all(response: http.client.HTTPResponse, arm: Callable[[], None]) -> bytes:
    chunks = []
    while True:
        arm()  # re-armed per read: a server trickling bytes still meets the deadline
        chunk = response.read(65536)  # read(n), not read1: it marks the response done at its end
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _read_stream(
    response: http.client.HTTPResponse,
    arm: Callable[[], None],
    on_delta: Callable[[str], None] | None,
) -> str:
    def readline() -> bytes:
        arm()
        return response.readline(1 << 20)

    streamed = StreamedText()
    try:
        for data in iter_events(readline):
            delta = streamed.feed(data)
            if delta and on_delta is not None:
                on_delta(streamed.text)
    except StreamFormatError as exc:
        raise RequestFailed(str(exc)) from exc
    if not streamed.done:
        raise RequestFailed("the stream ended before the transcript was complete")
    return streamed.text.strip()


def _parse_text(raw: bytes, content_type: str) -> str:
    """`{"text": …}` for response_format=json; plain text from servers that answer so anyway."""
    decoded = raw.decode("utf-8", errors="replace")
    if content_type.startswith("application/json") or decoded.lstrip().startswith("{"):
        try:
            answer = json.loads(decoded)
        except json.JSONDecodeError as exc:
            raise RequestFailed(f"the answer is not valid JSON: {decoded[:80]!r}") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise RequestFailed(f"the answer has no 'text': {decoded[:80]!r}")
        return answer["text"].strip()
    return decoded.strip()


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
