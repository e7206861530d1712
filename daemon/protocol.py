"""The wire format, in one module: event envelopes on the PUB socket and control requests/replies.

Standard library only, so light clients (and editor plugins porting it) carry no weight.
Every event is two frames: an ASCII topic and a JSON object with `"v": 1` and a monotonically
increasing `seq`. Readers ignore unknown topics and unknown fields; writers never remove fields
within a version.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from enum import StrEnum
from typing import Any, ClassVar, Self

PROTOCOL_VERSION = 1

TOPIC_TRANSCRIPT = "transcript"
TOPIC_VAD = "vad"
TOPIC_STATUS = "status"
TOPIC_ERROR = "error"
TOPIC_PARTIAL = "partial"
TOPICS = (TOPIC_TRANSCRIPT, TOPIC_VAD, TOPIC_STATUS, TOPIC_ERROR, TOPIC_PARTIAL)

#: topics written to the journal and served by `history` (the rest are live-only)
JOURNALED_TOPICS = (TOPIC_TRANSCRIPT, TOPIC_ERROR)


def topic_matches(topic: str, subscriptions: Iterable[str]) -> bool:
    """ZeroMQ's rule: a subscription is a topic prefix ("" is everything)."""
    return any(topic.startswith(s) for s in subscriptions)


COMMANDS = ("status", "pause", "resume", "language", "history", "ptt", "toggle", "typing")
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


class Body:
    """Base of the typed event bodies: each knows its topic and turns into the JSON fields.

    Optional fields left at None are omitted (readers tolerate missing optional fields), and
    `from_fields` ignores unknown fields, so a reader of a newer daemon keeps working.
    """

    topic: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}  # type: ignore[call-overload]

    @classmethod
    def from_fields(cls, body: dict[str, Any]) -> Self:
        """The typed body of an event's JSON (envelope and unknown fields dropped)."""
        known = {f.name for f in dataclass_fields(cls)}  # type: ignore[arg-type]
        try:
            return cls(**{k: v for k, v in body.items() if k in known})
        except TypeError as exc:  # a required field is missing
            raise ProtocolError(f"{cls.topic} event: {exc}") from exc


@dataclass(frozen=True)
class TranscriptBody(Body):
    """The final text of one utterance.

    Wall-clock times (`start`, `end`, `speech_start`) are capture times for a live source and
    processing times for a file or stdin read faster than real time; `stream_start`/`stream_end`
    are positions in the audio itself (seconds from the source's first sample), exact for files.
    """

    topic: ClassVar[str] = "transcript"

    id: str
    text: str
    language: str
    start: float  # epoch seconds, first sample of the utterance (pre-roll included)
    end: float  # epoch seconds, end of speech
    speech_start: float  # epoch seconds, detected speech onset (no pre-roll)
    stream_start: float  # seconds from the source's first sample to the onset (no pre-roll)
    stream_end: float  # seconds from the source's first sample to the end of speech
    audio_s: float
    latency_ms: float  # end of speech -> publish
    engine: str
    truncated: bool
    reason: str  # silence | max_length | end_of_input | key (a push-to-talk release)
    tokens: list[int] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    channel: str | None = None  # the label of the audio source it was heard on
    speaker: str | None = None  # who spoke, where known (the annotators set it)
    #: "echo": the microphone heard the speakers; "nonspeech": the audio held no speech (noise the
    #: engine was not asked to decode, or text it made up from noise); `text` is empty, what was
    #: heard (if decoded) is kept here
    suppressed: str | None = None
    suppressed_text: str | None = None
    #: opened by a push-to-talk press (always, in push-to-talk mode)
    by_key: bool | None = None
    #: typing was armed when this was published (after a command this very utterance carried)
    armed: bool | None = None
    #: "stop_dictation" | "start_dictation": the whole utterance was that voice command (never typed)
    command: str | None = None


VAD_EVENTS = ("speech_start", "pause", "speech_end")


@dataclass(frozen=True)
class VadBody(Body):
    """Voice activity of one utterance, tied to its transcript by `id` from its first event."""

    topic: ClassVar[str] = "vad"

    event: str  # speech_start | pause | speech_end
    id: str  # the utterance's id, the same its partials and transcript (or error) carry
    time: float  # epoch seconds (speech_start: the onset, no pre-roll)
    stream_time: float  # seconds from the source's first sample
    channel: str | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class PartialBody(Body):
    """A provisional text of an utterance still being spoken; live-only, never journaled.

    Always followed, eventually, by the `transcript` (or `error`) with the same id.
    """

    topic: ClassVar[str] = "partial"

    id: str
    text: str
    language: str
    stream_start: float  # the audio covered, seconds from the source's first sample
    stream_end: float
    channel: str | None = None
    speaker: str | None = None


class State(StrEnum):
    """The daemon's state, as `status` events and replies spell it."""

    STARTING = "starting"
    WARMING = "warming"  # loading and warming up the engine
    READY = "ready"  # listening
    PAUSED = "paused"  # running, audio ignored until resumed
    STOPPED = "stopped"


STATES = tuple(State)


@dataclass(frozen=True)
class StatusBody(Body):
    """The daemon's state; published on every change and as a heartbeat. Built in one place."""

    topic: ClassVar[str] = "status"

    state: str  # starting | warming | ready | paused | stopped
    heartbeat: bool = False
    detail: str | None = None  # what the state is waiting for (warming: loading the engine)
    engine: str | None = None
    model: str | None = None
    language: str | None = None
    source: str | None = None
    device: str | None = None
    device_state: str | None = None
    lag_s: float | None = None  # age of the oldest utterance not yet transcribed
    uptime_s: float | None = None
    utterances: int | None = None  # utterances detected in this run
    errors: int | None = None  # utterances that got an error instead of a transcript
    overflows: int | None = None
    speculative: int | None = None
    speculative_wasted: int | None = None
    dropped_nonspeech: int | None = None  # utterances not decoded: they held too little speech
    dropped_hallucinations: int | None = None  # decoded, their text made up from noise: dropped
    #: each audio source: {"label", "source", "device_state", "utterances", "errors", ...}
    channels: list[dict[str, Any]] | None = None
    mode: str | None = None  # continuous | push-to-talk
    held: bool | None = None  # a push-to-talk key is down
    armed: bool | None = None  # typing clients should type
    listening: bool | None = None  # false once `toggle` (or pause) stopped every channel


@dataclass(frozen=True)
class ErrorBody(Body):
    """Something went wrong. `fatal`: the daemon stops. With `id`: that utterance got no
    transcript; its times say where it was and `audio_path` where its audio was saved."""

    topic: ClassVar[str] = "error"

    message: str
    fatal: bool = False
    id: str | None = None
    start: float | None = None
    end: float | None = None
    stream_start: float | None = None
    stream_end: float | None = None
    audio_s: float | None = None
    audio_path: str | None = None
    channel: str | None = None
    speaker: str | None = None


BODIES: dict[str, type[Body]] = {
    b.topic: b for b in (TranscriptBody, VadBody, PartialBody, StatusBody, ErrorBody)
}


def make_event(topic: str, seq: int, body: dict[str, Any]) -> Event:
    if topic not in TOPICS:
        raise ProtocolError(f"unknown topic {topic!r}")
    return Event(topic, seq, {"v": PROTOCOL_VERSION, "seq": seq, **body})


def body_event(seq: int, body: Body) -> Event:
    """The event of a typed body: the one way the daemon builds events."""
    return make_event(body.topic, seq, body.fields())


def parse_body(event: Event) -> Body | None:
    """The typed body of a known topic (None for a topic this version does not know)."""
    cls = BODIES.get(event.topic)
    return cls.from_fields(event.body) if cls else None


def encode_event(event: Event) -> list[bytes]:
    return [event.topic.encode("ascii"), event.to_json().encode("utf-8")]


def decode_event(frames: list[bytes]) -> Event:
    """Parse the two frames of an event; raise ProtocolError on anything malformed."""
    if len(frames) != 2:
        raise ProtocolError(f"an event has 2 frames (topic, json), got {len(frames)}")
    try:
        topic = frames[0].decode("ascii")
        body = _loads(frames[1])
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


#: longest `ipc://` path macOS takes (sockaddr_un.sun_path is 104 bytes there, NUL included)
MACOS_MAX_IPC_PATH = 103


def default_runtime_dir(platform: str = sys.platform) -> str:
    """The per-user socket directory: $DICTATED_RUNTIME_DIR; on macOS ~/.dictated/run; on Linux
    $XDG_RUNTIME_DIR/dictated; else (or when the home is too long for a socket path) /tmp/dictated-UID.

    Short on purpose: macOS's per-user temp dirs are too long for Unix socket paths. On macOS a
    directory under the home comes first because another account can create /tmp/dictated-UID
    before us (the daemon and the clients then refuse it: dictated.socket_dir).
    """
    if os.environ.get("DICTATED_RUNTIME_DIR"):
        return os.environ["DICTATED_RUNTIME_DIR"]
    if platform == "darwin":
        home = os.path.join(os.path.expanduser("~"), ".dictated", "run")
        if len(os.path.join(home, CONTROL_SOCKET).encode()) <= MACOS_MAX_IPC_PATH:
            return home
    else:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isdir(xdg):
            return os.path.join(xdg, "dictated")
    return f"/tmp/dictated-{os.getuid()}"


def default_endpoint(name: str, runtime_dir: str | None = None) -> str:
    return f"ipc://{os.path.join(runtime_dir or default_runtime_dir(), name)}"


# -- control socket -------------------------------------------------------------------------


def encode_request(cmd: str, **args: Any) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "cmd": cmd, **args}).encode("utf-8")


#: a history request's `topics`: a few short names (there are only len(TOPICS) of them); a
#: request is refused before it can make the journal thread match events against a huge list
MAX_REQUEST_TOPICS = 16
MAX_TOPIC_CHARS = 64


def decode_request(frames: list[bytes]) -> dict[str, Any]:
    """Parse one control request; ProtocolError says exactly why it is refused."""
    if len(frames) != 1:
        raise ProtocolError(f"a request is one frame of JSON, got {len(frames)} frames")
    try:
        request = _loads(frames[0])
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
    if cmd == "history":
        _check_topics(request.get("topics"))
    return request


def _check_topics(topics: Any) -> None:
    """Bound a history request's `topics` list (its types and names are the command's to judge)."""
    if not isinstance(topics, list):
        return
    if len(topics) > MAX_REQUEST_TOPICS:
        raise ProtocolError(
            f"'topics' must be a list of at most {MAX_REQUEST_TOPICS} topic names, "
            'e.g. ["transcript"]'
        )
    if any(isinstance(t, str) and len(t) > MAX_TOPIC_CHARS for t in topics):
        raise ProtocolError(f"'topics' entries must be strings of at most {MAX_TOPIC_CHARS} chars")


def _loads(data: bytes | str) -> Any:
    """json.loads, with JSON nested too deeply to parse (a RecursionError) as a ValueError: it is
    malformed input like any other, not a fault of the reader."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def ok_reply(**fields: Any) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "ok": True, **fields}, ensure_ascii=False).encode()


def error_reply(message: str) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "ok": False, "error": message}).encode()


def decode_reply(frame: bytes) -> dict[str, Any]:
    try:
        reply = _loads(frame)
    except ValueError as exc:
        raise ProtocolError(f"undecodable reply: {exc}") from exc
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ProtocolError("a reply is a JSON object with 'ok'")
    return reply


# -- text shown to people or typed (transcripts, remote messages) ---------------------------------
# A transcript is whatever a recognizer or a remote server said. Keyboards, terminals and logs must
# never act on control characters in it: ESC starts terminal sequences, a newline presses Return,
# and the bidirectional overrides, isolates and marks reorder what a line appears to say (Trojan
# Source, CVE-2021-42574). Ported to Lua (clients/nvim/lua/dictated/compose.lua) and Emacs Lisp.

#: whitespace controls: line and paragraph breaks, tabs, the separators str.isspace() counts
BREAKS = "\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029"
#: every other C0/C1 control, DEL, the bidi embeddings/overrides/isolates and marks (a regex class)
DROPPED = "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_DROPPED = re.compile(f"[{DROPPED}]")
_BLANK_RUN = re.compile(f"[ {BREAKS}]+")
_UNSAFE = re.compile(f"[{BREAKS}{DROPPED}]")
_UNSAFE_IN_LAYOUT = re.compile(f"[{BREAKS.replace(chr(10), '')}{DROPPED}]")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def plain_text(text: str) -> str:
    """`text` as words to type: controls dropped, a run of blanks holding a break one space.

    A space, not nothing, because a break parts words ("two\\nlines" is two words); only spoken
    commands ("new line") make line breaks.
    """
    text = _DROPPED.sub("", text)
    return _BLANK_RUN.sub(lambda m: m[0] if m[0].strip(" ") == "" else " ", text)


def _escape(match: re.Match[str]) -> str:
    ch = match[0]
    code = ord(ch)
    return _SHORT_ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    """`text` for a terminal or a log: each control or bidi character shown as \\x1b, \\u202e, \\n."""
    return _UNSAFE.sub(_escape, text)


def json_line(value: Any, indent: int | None = None) -> str:
    """`value` as JSON that a terminal cannot misread: what json.dumps leaves raw with
    ensure_ascii=False (DEL, C1, bidi, U+2028/9) is written as a \\uXXXX escape, same value.
    One line unless `indent` (json.dumps escapes C0 inside strings, so a raw newline is layout)."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    unsafe = _UNSAFE if indent is None else _UNSAFE_IN_LAYOUT
    return unsafe.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
