"""The two translations of the data flow: a heard utterance into a job, a result into an event.

Pure functions of their inputs (times are passed in), so they are the whole definition of what
the events say about an utterance's times, and tests can check them without a daemon.
"""

from __future__ import annotations

from typing import Any

from .audio.format import SAMPLE_RATE
from .capture import Heard
from .clock import StreamClock
from .events import SpeechPaused, SpeechStarted, Utterance
from .protocol import ErrorBody, PartialBody, TranscriptBody, VadBody
from .worker import Job, JobResult


def stream_s(sample: int) -> float:
    """A source position in seconds from its first sample (ms precision)."""
    return round(sample / SAMPLE_RATE, 3)


def vad_body(heard: Heard, clock: StreamClock, channel: str | None = None) -> VadBody:
    """The `vad` event of a speech start (at the onset, no pre-roll) or pause."""
    event = heard.event
    if isinstance(event, SpeechStarted):
        kind, sample = "speech_start", event.onset_sample
    elif isinstance(event, SpeechPaused):
        kind, sample = "pause", event.sample
    else:
        raise TypeError(f"no vad event for {event!r}; an ended utterance becomes a job")
    return VadBody(kind, heard.id, clock.wall(sample), stream_s(sample), channel=channel)


def make_job(
    utterance: Utterance,
    utterance_id: str,
    language: str,
    clock: StreamClock,
    now: float,
    channel: str = "",
) -> Job:
    """The job of an utterance the segmenter closed at `now` (capture times clamped to it)."""
    return Job(
        id=utterance_id,
        utterance=utterance,
        language=language,
        start_wall=clock.wall(utterance.start_sample),
        speech_start_wall=min(clock.wall(utterance.onset_sample), now),
        speech_end_wall=min(clock.wall(utterance.speech_end_sample), now),
        closed_wall=now,
        queued_wall=now,
        channel=channel,
    )


def speech_end_body(job: Job) -> VadBody:
    u = job.utterance
    return VadBody(
        "speech_end",
        job.id,
        job.speech_end_wall,
        stream_s(u.speech_end_sample),
        channel=job.channel or None,
    )


def streamed_partial_body(job: Job, text: str) -> PartialBody:
    """A partial result streamed by the final decode itself (a remote server's SSE deltas)."""
    u = job.utterance
    return PartialBody(
        id=job.id,
        text=text,
        language=job.language,
        stream_start=stream_s(u.onset_sample),
        stream_end=stream_s(u.speech_end_sample),
        channel=job.channel or None,
    )


def transcript_body(result: JobResult, engine: str, now: float) -> TranscriptBody:
    """The transcript of a job the engine finished, published at `now`."""
    job, u, t = result.job, result.job.utterance, result.transcript
    assert t is not None, "a failed job becomes an error event"
    decode_ms = (result.engine_finished - result.engine_started) * 1000
    if result.speculative:
        # decoded during the pause: the wait is only for a decode still running at the end
        ready = max(result.engine_finished, job.queued_wall)
        split = {"queue": (ready - job.queued_wall) * 1000, "engine": 0.0, "speculative": decode_ms}
    else:
        ready = result.engine_finished
        split = {"queue": (result.engine_started - job.queued_wall) * 1000, "engine": decode_ms}
    timings = {
        "hangover": (job.closed_wall - job.speech_end_wall) * 1000,
        **split,
        "publish": (now - ready) * 1000,
        **{f"engine_{k}": v for k, v in t.timings_ms.items()},
    }
    return TranscriptBody(
        **_place(job),
        text=t.text,
        language=t.language,
        speech_start=job.speech_start_wall,
        latency_ms=round((now - job.speech_end_wall) * 1000, 1),
        engine=t.engine or engine,  # a fallback engine names itself
        truncated=t.truncated,
        reason=u.reason,
        tokens=list(t.tokens),
        timings_ms={k: round(v, 2) for k, v in timings.items()},
        # no speech (nonspeech.py): empty text, and what the engine made up, if it decoded
        suppressed="nonspeech" if result.dropped else None,
        suppressed_text=(result.dropped.text or None) if result.dropped else None,
    )


def failure_body(job: Job, message: str, audio_path: str | None) -> ErrorBody:
    """The error event of an utterance that got no transcript: where it was, where its audio is."""
    return ErrorBody(message=message, fatal=False, **_place(job), audio_path=audio_path)


def _place(job: Job) -> dict[str, Any]:
    """Where an utterance is, as its transcript and its error event both say it."""
    u = job.utterance
    return {
        "id": job.id,
        "start": job.start_wall,
        "end": job.speech_end_wall,
        "stream_start": stream_s(u.onset_sample),
        "stream_end": stream_s(u.speech_end_sample),
        "audio_s": round(u.duration_s, 3),
        "channel": job.channel or None,
    }
