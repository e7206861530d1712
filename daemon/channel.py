"""A channel: one audio source with a label, and what listens to it alone.

Source + stream clock + boundary detector (the segmenter, through `Capture`) + speculator + id
prefix + label + speaker. Everything per source lives here so several run side by side without
sharing a clock, an open utterance or a pending speculative request; what they hear goes to the
one router (router.py), which owns the events and the worker.

Ids: `RUNID-N` with one channel (as before channels existed), `RUNID-LABEL-N` with several, so
ids stay unique across channels and say where they came from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from .audio.open_source import open_source
from .audio.source import AudioSource
from .capture import Capture, Heard
from .channel_spec import ChannelSpec, speaker_of
from .config import Config
from .control_state import Mode
from .engines.base import Engine
from .errors import DictatedError
from .protocol import PartialBody
from .segmenter import SegmenterOptions
from .speculation import SpeculationOptions, Speculator
from .worker import Worker

log = logging.getLogger(__name__)

OnChannelHeard = Callable[["Channel", list[Heard]], Awaitable[None]]
OnDeviceState = Callable[["Channel", str, "str | None"], None]


class Channel:
    """One source and its own clock, segmenter, speculator, ids and counters."""

    def __init__(
        self,
        spec: ChannelSpec,
        source: AudioSource,
        options: SegmenterOptions,
        *,
        id_prefix: str,
        speaker: str | None,
        on_heard: OnChannelHeard,
        on_device_state: OnDeviceState,
        mode: Callable[[], Mode] = lambda: "continuous",
    ):
        self.spec = spec
        self.label = spec.label
        self.speaker = speaker
        self.source = source
        self.capture = Capture(
            source, options, self._new_id, self._heard, after_block=self._after_block, mode=mode
        )
        self.speculator: Speculator | None = None  # once the engine is loaded (its hints)
        self.utterances = 0  # finished and handed to the engine
        self.errors = 0  # got an error instead of a transcript
        self._id_prefix = id_prefix
        self._ids = 0
        self._on_heard = on_heard
        self._on_device_state = on_device_state
        source.on_device_state = self._device_state

    def speculate(
        self,
        options: SpeculationOptions,
        engine: Engine,
        worker: Worker,
        publish: Callable[[Channel, PartialBody], None],
        language: Callable[[], str],
    ) -> None:
        """Once the engine is loaded (its hints): this channel's own speculator."""
        self.speculator = Speculator(
            options,
            engine,
            worker,
            open_audio=self.capture.open_audio,
            end_early=self.capture.end_early,
            publish=partial(publish, self),
            language=language,
            channel=self.label,
        )

    @property
    def paused(self) -> bool:
        return self.capture.paused

    def status(self) -> dict[str, Any]:
        """This channel in the `status` reply and heartbeat."""
        source = self.source
        fields = {
            "label": self.label,
            "speaker": self.speaker,
            "source": source.description,
            "device": source.device,
            "device_state": source.device_state,
            "overflows": source.overflows if source.device else None,
            "paused": self.paused,
            "held": self.capture.held or None,  # a push-to-talk key is down on this channel
            "utterances": self.utterances,
            "errors": self.errors,
        }
        return {k: v for k, v in fields.items() if v is not None}

    def _new_id(self) -> str:
        self._ids += 1
        return f"{self._id_prefix}{self._ids}"

    async def _heard(self, heard: list[Heard]) -> None:
        await self._on_heard(self, heard)

    def _after_block(self, stream_samples: int) -> None:
        if self.speculator is not None:
            self.speculator.audio(stream_samples)

    def _device_state(self, state: str, detail: str | None) -> None:
        """The device went away, came back, or was released by a pause."""
        if state == "lost":
            self.capture.end_utterance()  # what was said before the loss is transcribed now
        log.info(
            "channel %s: audio device %s%s", self.label, state, f": {detail}" if detail else ""
        )
        self._on_device_state(self, state, detail)


async def run_channels(
    channels: Sequence[Channel],
    stop: asyncio.Event,
    on_failure: Callable[[Channel, DictatedError], None],
) -> DictatedError | None:
    """Capture on every channel until all reached their end (file and stdin sources) or `stop`
    is set; the first source failure, if any (`on_failure` is told of each at once)."""

    async def one(channel: Channel) -> DictatedError | None:
        try:
            failure = await channel.capture.run(stop)
        except Exception as exc:  # a bug or an unforeseen source error: the others still drain
            log.exception("channel %s: audio capture failed", channel.label)
            failure = DictatedError(f"channel {channel.label}: audio capture failed: {exc}")
        if failure is not None:
            on_failure(channel, failure)
        return failure

    failures = await asyncio.gather(*(one(c) for c in channels))
    return next((f for f in failures if f is not None), None)


def channels_status(channels: Sequence[Channel]) -> dict[str, Any]:
    """The status fields of the channels: each in `channels`; the older top-level fields
    describe the first channel (its source) and all of them (the counters)."""
    first = channels[0].source if channels else None
    return {
        "source": first.description if first else None,
        "device": first.device if first else None,
        "device_state": first.device_state if first else None,
        "overflows": first.overflows if first and first.device else None,
        "utterances": sum(c.utterances for c in channels),
        "errors": sum(c.errors for c in channels),
        "channels": [c.status() for c in channels],
    }


async def open_channels(
    config: Config,
    run_id: str,
    on_heard: OnChannelHeard,
    on_device_state: OnDeviceState,
    first_source: AudioSource | None = None,
    mode: Callable[[], Mode] | None = None,
) -> list[Channel]:
    """Every configured source, each a channel (`first_source`, from a test, replaces the
    first's); ids name the channel once there are several. If one cannot open, those opened
    already are closed again (a microphone released) before the error goes on. `mode()`: the
    daemon's (its ControlState owns it; without one, the config's)."""
    if mode is None:
        mode = lambda: config.control.mode  # noqa: E731
    audio, specs = config.audio, config.audio.channels()
    channels: list[Channel] = []
    for i, spec in enumerate(specs):
        source = first_source if i == 0 else None
        if source is None:
            try:
                source = open_source(
                    spec.spec,
                    realtime=audio.realtime,
                    device=audio.device,
                    idle_block_ms=audio.idle_block_ms,
                )
            except BaseException:
                for opened in channels:
                    await opened.source.aclose()
                raise
        prefix = f"{run_id}-{spec.label}-" if len(specs) > 1 else f"{run_id}-"
        channel = Channel(
            spec,
            source,
            config.segmenter,
            id_prefix=prefix,
            speaker=speaker_of(spec, config.speakers, len(specs)),
            on_heard=on_heard,
            on_device_state=on_device_state,
            mode=mode,
        )
        channels.append(channel)
    return channels
