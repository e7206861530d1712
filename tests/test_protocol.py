"""The wire format round-trips every message type and refuses malformed input by name."""

from __future__ import annotations

import json

import pytest

from dictated.protocol import (
    COMMANDS,
    TOPICS,
    ProtocolError,
    TranscriptBody,
    decode_event,
    decode_reply,
    decode_request,
    encode_event,
    encode_request,
    error_reply,
    make_event,
    ok_reply,
    transcript_event,
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


def test_transcript_event_has_the_schema_fields():
    body = TranscriptBody(
        id="a-1",
        text="hello",
        language="en",
        start=1.0,
        end=2.5,
        audio_s=1.5,
        latency_ms=320.0,
        engine="whisper",
        truncated=False,
        reason="silence",
    )
    decoded = json.loads(encode_event(transcript_event(3, body))[1])
    assert set(TRANSCRIPT_SCHEMA) <= set(decoded)


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
