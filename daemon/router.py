"""The router: what the channels hear becomes `vad` events and jobs; results become events.

Every channel hands its segmenter events here (awaited, so a busy worker pushes back on the
channel that is speaking and nothing is dropped); the one worker transcribes the jobs of all
channels in the order their utterances ended. Each final result passes the annotators
(annotators.py: speaker, echo) before it is published; the publisher journals it first, and
gives it the next seq.

Every event says which channel it came from (`channel`) and, where one is known, who spoke
(`speaker`: a channel's fixed speaker for `vad` and `partial`, the annotators' for results).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .annotators import Annotator, Annotators, Final, SpeakerFromChannel
from .audio.format import SAMPLE_RATE
from .capture import Heard
from .channel import Channel
from .channel_spec import ChannelSpec, speaker_of
from .config import Config, EchoChoice
from .control_state import ControlState, voice_channel
from .echo import EchoOptions
from .echo_stage import EchoStage
from .errors import ConfigError
from .events import SpeechPaused, SpeechResumed, SpeechStarted, UtteranceEnded
from .private_files import write_private_wav
from .protocol import Body, PartialBody, TranscriptBody, VadBody
from .translate import (
    failure_body,
    make_job,
    speech_end_body,
    streamed_partial_body,
    transcript_body,
    vad_body,
)
from .voice_commands import TypingState
from .worker import Job, JobResult, SpeculativeResult, Worker

log = logging.getLogger(__name__)
B = TypeVar("B", VadBody, PartialBody)


class Router:
    def __init__(
        self,
        worker: Worker,
        publish: Callable[[Body], None],
        annotators: Annotators,
        *,
        language: Callable[[], str],
        engine_name: Callable[[], str | None],
        partials: Callable[[], bool],
        audio_dir: Callable[[], Path],
    ):
        """`partials()`: whether streamed text is published; `audio_dir()`: where the audio of
        an utterance the engine failed on is kept (beside the journal)."""
        self.channels: dict[str, Channel] = {}
        self.annotators = annotators
        self._worker = worker
        self._publish = publish
        self._language = language
        self._engine_name = engine_name
        self._partials = partials
        self._audio_dir = audio_dir
        self._timer: asyncio.TimerHandle | None = None  # the annotators' next deadline

    # -- from the channels ----------------------------------------------------------------

    async def heard(self, channel: Channel, heard: list[Heard]) -> None:
        """A channel's segmenter events, in its stream order."""
        clock = channel.capture.clock
        speculator = channel.speculator
        for item in heard:
            event = item.event
            if isinstance(event, SpeechResumed):  # no vad event: only speculation cares
                if speculator is not None:
                    speculator.resumed(item.id)
                continue
            if not isinstance(event, UtteranceEnded):
                self._vad(tag(vad_body(item, clock), channel))
                if isinstance(event, SpeechStarted) and speculator is not None:
                    speculator.started(item.id, event.sample, event.onset_sample)
                elif isinstance(event, SpeechPaused) and speculator is not None:
                    speculator.paused(item.id)
                continue
            if speculator is not None:
                speculator.ended(item.id)
            now = time.time()
            job = make_job(event.utterance, item.id, self._language(), clock, now, channel.label)
            channel.utterances += 1
            self._vad(tag(speech_end_body(job), channel))
            await self._worker.submit(job)

    def publish_partial(self, channel: Channel, body: PartialBody) -> None:
        """A speculative decode's text, shown while the channel's speaker is still speaking."""
        self._publish(tag(body, channel))

    # -- from the worker ------------------------------------------------------------------

    def on_speculative(self, result: SpeculativeResult) -> bool:
        channel = self.channels.get(result.speculation.channel)
        if channel is None or channel.speculator is None:
            return False
        return channel.speculator.on_result(result)

    def on_stream(self, job: Job, text: str) -> None:
        """Text streamed by the final decode so far: a partial, unless partials are off."""
        channel = self.channels.get(job.channel)
        if text.strip() and self._partials() and channel is not None:
            self._publish(tag(streamed_partial_body(job, text.strip()), channel))

    async def on_result(self, result: JobResult) -> None:
        if result.transcript is None:
            await self.publish_failure(result.job, f"transcription failed: {result.error}")
            return
        engine = self._engine_name()
        assert engine is not None, "results come after the engine loaded"
        body = transcript_body(result, engine, time.time())
        self._finals(self.annotators.push(Final(body, result.job)))

    async def publish_failure(self, job: Job, message: str) -> None:
        """An utterance that got no transcript: an error event naming it, and its audio kept."""
        channel = self.channels.get(job.channel)
        if channel is not None:
            channel.errors += 1
        audio_path = await asyncio.to_thread(save_failed_audio, job, self._audio_dir())
        self._finals(self.annotators.push(Final(failure_body(job, message, audio_path), job)))

    def flush(self) -> None:
        """No more results: what the annotators hold is published now (the drain calls this)."""
        if self._timer is not None:
            self._timer.cancel()
        self._finals(self.annotators.flush(), schedule=False)

    # -- helpers --------------------------------------------------------------------------

    def _vad(self, body: VadBody) -> None:
        self._publish(body)
        self._finals(self.annotators.observe(body))

    def _poll(self) -> None:
        self._timer = None
        self._finals(self.annotators.poll(time.time()))

    def _schedule(self) -> None:
        """Call the annotators' `poll` at their next deadline (one timer, the earliest)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.annotators.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay, self._poll)

    def _finals(self, finals: list[Final], schedule: bool = True) -> None:
        """Publish what the annotators let through, then wake them when they asked to be."""
        if schedule:
            self._schedule()
        for final in finals:
            self._publish(final.body)
            body, u = final.body, final.job.utterance
            if isinstance(body, TranscriptBody):
                # the text only at DEBUG: a log is read more widely than the journal
                log.info(
                    "utterance %s (%.1f s, %s): %d chars",
                    body.id,
                    u.duration_s,
                    u.reason,
                    len(body.text),
                )
                log.debug("utterance %s: %s", body.id, body.text)


def stages_for(config: Config, control: ControlState | None = None) -> list[Annotator]:
    """The annotator stages, in order, assembled in this one place: the speaker first, then the
    echo suppressor where a mic and a system channel run together, then (given the daemon's
    `control`) the typing state and voice commands, last so they see what will be published."""
    specs = config.audio.channels()
    speakers = {c.label: speaker_of(c, config.speakers, len(specs)) for c in specs}
    stages: list[Annotator] = [SpeakerFromChannel(speakers)]
    echo = _echo_stage(config.echo, specs)
    if echo is not None:
        stages.append(echo)
    if control is not None:
        stages.append(TypingState(control, command_channel=voice_channel(specs).label))
    return stages


def _echo_stage(choice: EchoChoice, specs: Sequence[ChannelSpec]) -> EchoStage | None:
    """Between the labels `[echo]` names, else between a `mic` and a `system` channel."""
    if not choice.suppress:
        return None
    if not (choice.near or choice.far):
        return EchoStage.for_channels([(c.label, c.spec) for c in specs])
    labels = [c.label for c in specs]
    for key, named in (("echo.near", choice.near), ("echo.far", choice.far)):
        unknown = [label for label in named if label not in labels]
        if unknown or not named:
            raise ConfigError(
                f"{key}: {', '.join(unknown) or 'no label'} is not one of the channels "
                f"({', '.join(labels)}); name one channel label or more in each of near and far"
            )
    try:
        return EchoStage(EchoOptions(near=choice.near, far=choice.far))
    except ValueError as exc:
        raise ConfigError(f"echo: {exc}") from exc


def tag(body: B, channel: Channel) -> B:
    """A body of `channel`: its label, and its speaker where one is known."""
    return dataclasses.replace(body, channel=channel.label, speaker=channel.speaker)


def save_failed_audio(job: Job, directory: Path) -> str | None:
    """Keep the audio of an utterance the engine failed on, so the user can retry it: private,
    and on disk before the error event that names it is published."""
    path = directory / f"{job.id}.wav"
    try:
        write_private_wav(path, job.utterance.pcm, SAMPLE_RATE)
    except (OSError, RuntimeError) as exc:  # soundfile reports unwritable paths as RuntimeError
        log.error("could not save failed utterance audio %s: %s", path, exc)
        return None
    return str(path)
