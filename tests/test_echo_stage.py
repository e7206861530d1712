"""The echo suppressor as the daemon's annotator stage: real bodies, the real stage list."""

from __future__ import annotations

import logging

from dictated.annotators import Annotators, Final, SpeakerFromChannel
from dictated.echo import EchoOptions
from dictated.echo_stage import EchoStage
from dictated.protocol import TranscriptBody, VadBody
from dictated.worker import Job

T0 = 1_800_000_000.0  # an epoch time; bodies carry wall-clock times
FAR = "The children walked along the beach collecting shells and smooth colored stones."
OWN = "Please remember to pick up some milk and fresh fruit on your way home."


def final(channel: str, text: str, start: float, end: float, n: int = 1) -> Final:
    uid = f"run-{channel}-{n}"
    body = TranscriptBody(
        id=uid, text=text, language="en", start=T0 + start - 0.4, end=T0 + end,
        speech_start=T0 + start, stream_start=start, stream_end=end, audio_s=end - start + 1,
        latency_ms=300.0, engine="whisper", truncated=False, reason="silence", channel=channel,
    )  # fmt: skip
    job = Job(uid, None, "en", T0 + start - 0.4, T0 + start, T0 + end, T0 + end + 0.6,
              T0 + end + 0.6, channel)  # fmt: skip
    return Final(body, job)


def vad(channel: str, event: str, at: float) -> VadBody:
    return VadBody(
        event=event, id=f"run-{channel}-1", time=T0 + at, stream_time=at, channel=channel
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_only_a_mic_and_system_pair_gets_the_stage():
    assert EchoStage.for_channels([("mic", "mic")]) is None
    assert EchoStage.for_channels([("a", "file:a.wav"), ("b", "file:b.wav")]) is None
    assert EchoStage.for_channels([("me", "mic"), ("them", "system")]) is not None


def test_the_echo_is_dropped_your_words_kept_and_the_speaker_stays(caplog):
    clock = Clock()
    stage = EchoStage(EchoOptions(near=("me",), far=("them",)), clock=clock)
    stages = Annotators([SpeakerFromChannel({"me": "me", "them": "them"}), stage])
    assert stages.observe(vad("them", "speech_start", 1.0)) == []
    clock.now = T0 + 5.8
    assert stages.push(final("me", FAR, 1.05, 5.2)) == []  # held: the system final is not in yet
    assert stages.next_deadline() == T0 + 5.8 + 6.0
    clock.now = T0 + 6.5
    with caplog.at_level(logging.DEBUG, logger="dictated.echo_stage"):
        out = stages.push(final("them", FAR, 1.0, 5.0))
    # the echo is not lost: its final is published, empty, saying what the microphone heard
    assert [(f.channel, f.body.text, f.body.speaker) for f in out] == [
        ("me", "", "me"),
        ("them", FAR, "them"),
    ]
    assert (out[0].body.suppressed, out[0].body.suppressed_text) == ("echo", FAR)
    assert "echo dropped on me" in caplog.text
    mixed = "The children walked along the beach " + OWN
    clock.now = T0 + 10.0
    (kept,) = stages.push(final("me", mixed, 1.05, 9.0, n=2))
    assert (kept.body.text, kept.body.speaker, kept.body.id) == (OWN, "me", "run-me-2")
    assert (stage.stats.dropped, stage.stats.trimmed) == (1, 1)


def test_flush_releases_what_is_held():
    clock = Clock()
    stage = EchoStage(EchoOptions(), clock=clock)
    stage.observe(vad("system", "speech_start", 1.0))
    assert stage.push(final("mic", OWN, 1.05, 5.2)) == []
    (f,) = stage.flush()
    assert f.body.text == OWN
