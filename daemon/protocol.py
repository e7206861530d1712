"""The wire format, in one module: event envelopes on the PUB socket and control requests/replies.

Standard library only, so light clients (and editor plugins porting it) carry no weight.
Every event is two frames: an ASCII topic and a JSON object with `"v": 1` and a monotonically
increasing `seq`. Readers ignore unknown topics and unknown fields; writers never remove fields
within a version.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

PROTOCOL_VERSION = 1

TOPIC_TRANSCRIPT = "transcript"
TOPIC_VAD = "vad"
TOPIC_STATUS = "status"
TOPIC_ERROR = "error"
TOPICS = (TOPIC_TRANSCRIPT, TOPIC_VAD, TOPIC_STATUS, TOPIC_ERROR)

#: topics written to the journal and served by `history` (the rest are live-only)
JOURNALED_TOPICS = (TOPIC_TRANSCRIPT, TOPIC_ERROR)

COMMANDS = ("status", "pause", "resume", "language", "history")
MAX_HISTORY = 10_000  # events per history reply


class ProtocolError(ValueError):
    """A frame or message that does not follow this protocol; the text says what is wrong."""


@dataclass(frozen=True)
class Event:
    """A decoded event: topic, sequence number and the JSON body (envelope fields included)."""

    topic: str
    seq: int
    body: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class TranscriptBody:
    """The `transcript` event's fields (besides the envelope's `v` and `seq`)."""

    id: str
    text: str
    language: str
    start: float  # epoch seconds, first sample of the utterance (pre-roll included)
    end: float  # epoch seconds, end of speech
    audio_s: float
    latency_ms: float  # end of speech -> publish
    engine: str
    truncated: bool
    reason: str  # silence | max_length | end_of_input
    tokens: list[int] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


def make_event(topic: str, seq: int, body: dict[str, Any]) -> Event:
    if topic not in TOPICS:
        raise ProtocolError(f"unknown topic {topic!r}")
    return Event(topic, seq, {"v": PROTOCOL_VERSION, "seq": seq, **body})


def transcript_event(seq: int, body: TranscriptBody) -> Event:
    return make_event(TOPIC_TRANSCRIPT, seq, asdict(body))


def encode_event(event: Event) -> list[bytes]:
    return [event.topic.encode("ascii"), event.to_json().encode("utf-8")]


def decode_event(frames: list[bytes]) -> Event:
    """Parse the two frames of an event; raise ProtocolError on anything malformed."""
    if len(frames) != 2:
        raise ProtocolError(f"an event has 2 frames (topic, json), got {len(frames)}")
    try:
        topic = frames[0].decode("ascii")
        body = json.loads(frames[1])
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"undecodable event: {exc}") from exc
    return event_from_body(topic, body)


def event_from_body(topic: str, body: Any) -> Event:
    if not isinstance(body, dict) or not isinstance(body.get("seq"), int):
        raise ProtocolError("an event body is a JSON object with an integer 'seq'")
    if body.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {body.get('v')!r}")
    return Event(topic, body["seq"], body)


# -- where the daemon listens -----------------------------------------------------------------

EVENTS_SOCKET = "events"
CONTROL_SOCKET = "control"


def default_runtime_dir() -> str:
    """The per-user socket directory: $DICTATED_RUNTIME_DIR, $XDG_RUNTIME_DIR/dictated, /tmp/dictated-UID.

    Short on purpose: macOS's per-user temp dirs are too long for Unix socket paths.
    """
    if os.environ.get("DICTATED_RUNTIME_DIR"):
        return os.environ["DICTATED_RUNTIME_DIR"]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "dictated")
    return f"/tmp/dictated-{os.getuid()}"


def default_endpoint(name: str, runtime_dir: str | None = None) -> str:
    return f"ipc://{os.path.join(runtime_dir or default_runtime_dir(), name)}"


# -- control socket -------------------------------------------------------------------------


def encode_request(cmd: str, **args: Any) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "cmd": cmd, **args}).encode("utf-8")


def decode_request(frames: list[bytes]) -> dict[str, Any]:
    """Parse one control request; ProtocolError says exactly why it is refused."""
    if len(frames) != 1:
        raise ProtocolError(f"a request is one frame of JSON, got {len(frames)} frames")
    try:
        request = json.loads(frames[0])
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"request is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise ProtocolError('request must be a JSON object like {"v": 1, "cmd": "status"}')
    if request.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {request.get('v')!r}; this daemon speaks 1"
        )
    cmd = request.get("cmd")
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown command {cmd!r}; commands: {', '.join(COMMANDS)}")
    return request


def ok_reply(**fields: Any) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "ok": True, **fields}, ensure_ascii=False).encode()


def error_reply(message: str) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "ok": False, "error": message}).encode()


def decode_reply(frame: bytes) -> dict[str, Any]:
    try:
        reply = json.loads(frame)
    except ValueError as exc:
        raise ProtocolError(f"undecodable reply: {exc}") from exc
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ProtocolError("a reply is a JSON object with 'ok'")
    return reply
