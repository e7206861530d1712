"""The wire format round-trips every message type and refuses malformed input by name."""

from __future__ import annotations

import json

import pytest

from dictated.protocol import (
    BODIES,
    COMMANDS,
    JOURNALED_TOPICS,
    TOPICS,
    ErrorBody,
    PartialBody,
    ProtocolError,
    StatusBody,
    TranscriptBody,
    VadBody,
    body_event,
    decode_event,
    decode_reply,
    decode_request,
    encode_event,
    encode_request,
    error_reply,
    make_event,
    ok_reply,
    parse_body,
)
from tests.daemon_proc import TRANSCRIPT_SCHEMA


@pytest.mark.parametrize("topic", TOPICS)
def test_every_topic_round_trips(topic):
    event = make_event(topic, 7, {"x": "ü", "n": 1})
    frames = encode_event(event)
    assert frames[0] == topic.encode()
    decoded = decode_event(frames)
    assert decoded == event
    assert decoded.body["v"] == 1 and decoded.body["seq"] == 7


TRANSCRIPT = TranscriptBody(
    id="a-1",
    text="hello",
    language="en",
    start=1.0,
    end=2.5,
    speech_start=1.4,
    stream_start=0.63,
    stream_end=1.77,
    audio_s=1.5,
    latency_ms=320.0,
    engine="whisper",
    truncated=False,
    reason="silence",
    tokens=[1, 2],
    timings_ms={"engine": 12.5},
)
BODY_EXAMPLES = [
    TRANSCRIPT,
    VadBody(event="speech_start", id="a-1", time=1.4, stream_time=0.63),
    PartialBody(id="a-1", text="hel", language="en", stream_start=0.63, stream_end=1.2),
    StatusBody(state="ready", engine="whisper", lag_s=0.0, uptime_s=3.2, utterances=1, errors=0),
    StatusBody(state="paused", heartbeat=True),
    ErrorBody(message="device lost", fatal=True),
    ErrorBody(
        message="transcription failed: boom",
        id="a-2",
        start=3.0,
        end=4.0,
        stream_start=2.1,
        stream_end=3.0,
        audio_s=1.3,
        audio_path="/tmp/a-2.wav",
    ),
]


def test_every_topic_has_a_typed_body():
    assert set(BODIES) == set(TOPICS)
    assert {type(b).topic for b in BODY_EXAMPLES} == set(TOPICS)
    assert set(JOURNALED_TOPICS) <= set(TOPICS) and "partial" not in JOURNALED_TOPICS


@pytest.mark.parametrize("body", BODY_EXAMPLES, ids=lambda b: type(b).__name__)
def test_every_body_round_trips_through_the_wire(body):
    event = decode_event(encode_event(body_event(9, body)))
    assert event.topic == body.topic and event.body["v"] == 1 and event.body["seq"] == 9
    assert parse_body(event) == body


def test_transcript_event_has_the_schema_fields():
    decoded = json.loads(encode_event(body_event(3, TRANSCRIPT))[1])
    assert set(TRANSCRIPT_SCHEMA) <= set(decoded)


def test_optional_fields_left_unset_are_omitted():
    fields = json.loads(encode_event(body_event(1, ErrorBody(message="x")))[1])
    assert fields == {"v": 1, "seq": 1, "message": "x", "fatal": False}
    status = json.loads(encode_event(body_event(2, StatusBody(state="ready")))[1])
    assert status == {"v": 1, "seq": 2, "state": "ready", "heartbeat": False}


def test_readers_ignore_unknown_fields_and_refuse_missing_required_ones():
    future = make_event("vad", 4, {"event": "pause", "id": "r-1", "time": 1.0, "stream_time": 2.0})
    future.body["loudness"] = -20  # a field a later version may add
    assert parse_body(future) == VadBody("pause", "r-1", 1.0, 2.0)
    assert parse_body(make_event("error", 5, {"message": "m"})) == ErrorBody("m")
    with pytest.raises(ProtocolError, match="vad event"):
        parse_body(make_event("vad", 6, {"event": "pause"}))


def test_unknown_fields_are_kept_for_readers_to_ignore():
    frames = [b"transcript", json.dumps({"v": 1, "seq": 2, "text": "x", "future": [1]}).encode()]
    assert decode_event(frames).body["future"] == [1]


@pytest.mark.parametrize(
    "frames",
    [
        [b"transcript"],
        [b"transcript", b"{not json"],
        [b"transcript", b"[1,2]"],
        [b"t", b'{"v": 2, "seq": 1}'],
        [b"\xff", b"{}"],
    ],
)
def test_malformed_events_raise_protocol_error(frames):
    with pytest.raises(ProtocolError):
        decode_event(frames)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_round_trips(cmd):
    assert decode_request([encode_request(cmd, since=3)])["cmd"] == cmd


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([b"\x00\xff\xfe"], "not valid UTF-8 JSON"),
        ([b"[]"], "JSON object"),
        ([b'{"cmd": "reboot"}'], "unknown command"),
        ([b'{"v": 9, "cmd": "status"}'], "version"),
        ([b"{}", b"{}"], "one frame"),
        ([b"[" * 100_000 + b"]" * 100_000], "nested too deeply"),
        ([b'{"cmd": "status", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"], "too deeply"),
    ],
)
def test_malformed_requests_name_the_problem(frames, message):
    with pytest.raises(ProtocolError, match=message):
        decode_request(frames)


def test_replies_round_trip():
    assert decode_reply(ok_reply(state="ready")) == {"v": 1, "ok": True, "state": "ready"}
    assert decode_reply(error_reply("nope"))["error"] == "nope"
    with pytest.raises(ProtocolError):
        decode_reply(b"[]")
