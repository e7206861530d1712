"""Capture: the audio source, its clock and the segmenter, from blocks to utterance events.

One object owns the three because pausing touches all of them at once: while paused, blocks
still advance the clock (stream times are source times, paused audio included) but reach no
segmenter; a pause ends the open utterance right away, and the first block after it starts a new
segmenter at the source's current position. Each event leaves here with its utterance's id,
assigned at speech start, so every later event of that utterance (pause, end, partials,
transcript) carries it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .audio.source import AudioSource
from .clock import StreamClock
from .errors import DictatedError
from .events import OpenAudio, SegmenterEvent, SpeechStarted, UtteranceEnded
from .segmenter import Segmenter, SegmenterOptions
from .shutdown import STOP_CAPTURE_TIMEOUT_S  # the bound the service managers allow for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Heard:
    """A segmenter event and the id of the utterance it belongs to."""

    event: SegmenterEvent
    id: str


OnHeard = Callable[[list[Heard]], Awaitable[None]]


class Capture:
    """Feeds the source's blocks to the segmenter and hands what it hears to `on_heard`.

    `on_heard` may wait (a busy worker pushes back); capture then waits too, and a live source
    buffers meanwhile. Nothing heard is dropped: stop and pause end the open utterance.
    """

    def __init__(
        self,
        source: AudioSource,
        options: SegmenterOptions,
        new_id: Callable[[], str],
        on_heard: OnHeard,
        after_block: Callable[[int], None] | None = None,
    ):
        """`after_block(stream_samples)` runs after each block the segmenter took (partial
        results tick there)."""
        self.source = source
        self.clock = StreamClock(source.realtime)  # the source's timeline, for the whole run
        self.paused = False
        self._options = options
        self._new_id = new_id
        self._on_heard = on_heard
        self._after_block = after_block
        self._segmenter: Segmenter | None = None  # made at the first block after (re)start
        self._open_id: str | None = None  # the utterance under way, from its speech start
        # utterances ended outside the pump (by a pause, or early), being handed on; the pump
        # waits for them before it hands on anything later, so events keep stream order
        self._flushes: set[asyncio.Task] = set()

    async def run(self, stop: asyncio.Event) -> DictatedError | None:
        """Capture until end of input or `stop`; end what is open. Returns the source's failure."""
        pump = asyncio.create_task(self._pump(), name="audio")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait({pump, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if pump not in done:
            # Stop at the source rather than cancelling the pump, which may be handing a finished
            # utterance to a busy worker: that one must still be transcribed.
            await self.source.aclose()
            try:
                await asyncio.wait_for(asyncio.shield(pump), STOP_CAPTURE_TIMEOUT_S)
            except TimeoutError:
                log.warning("audio capture did not stop within %.0f s", STOP_CAPTURE_TIMEOUT_S)
                pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        failure = pump.exception() if pump.done() and not pump.cancelled() else None
        if failure is not None and not isinstance(failure, DictatedError):
            raise failure
        await self._on_heard(self._flush())
        if self._flushes:  # pauses' utterances reach the worker before it is told "no more"
            await asyncio.gather(*self._flushes)
        return failure

    async def pause(self) -> None:
        """Stop feeding the segmenter; the open utterance ends here and is transcribed. A device
        is released (the microphone's stream is closed) until resume()."""
        if self.paused:
            return
        self.paused = True
        self.end_utterance()
        await self.source.suspend()

    async def resume(self) -> None:
        if self.paused:
            self.paused = False
            await self.source.resume()

    def end_utterance(self) -> None:
        """End the open utterance now (pause, a lost device) and hand it on; the next block
        starts a fresh segmenter. Handed on in a task: a busy worker may make that wait, and
        the caller (the control socket, the source) must go on meanwhile."""
        self._hand_on(self._flush(), "flush")

    def open_audio(self) -> OpenAudio | None:
        """The utterance under way so far (for speculative decoding), or None."""
        return self._segmenter.open_audio() if self._segmenter is not None else None

    def end_early(self, start_sample: int, heard_until: int, hangover_ms: int) -> None:
        """End the open utterance `hangover_ms` after its speech (see `Segmenter.end_early`);
        when that point has passed, it ends now and is handed on."""
        if self._segmenter is None:
            return
        heard = self._identify(self._segmenter.end_early(start_sample, heard_until, hangover_ms))
        if heard:
            self._hand_on(heard, "early-end")

    def _hand_on(self, heard: list[Heard], name: str) -> None:
        task = asyncio.create_task(self._on_heard(heard), name=name)
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    def set_options(self, options: SegmenterOptions) -> None:
        """New segmenter settings (a reloaded config): at once when nobody is speaking, else
        from the end of the utterance under way (it is not cut in two)."""
        self._options = options  # _pump swaps segmenters once the current one is idle

    async def aclose(self) -> None:
        await self.source.aclose()

    async def _pump(self) -> None:
        clock, source = self.clock, self.source
        async for block in source.blocks():
            if block.gap_s and self._segmenter is not None:
                self.end_utterance()  # audio missing in the middle: what came before is whole
            # paused audio too: it is source time
            position = clock.add(len(block.pcm), block.captured_at, block.gap_s)
            if self.paused:
                continue
            segmenter = self._segmenter
            if segmenter is None or (segmenter.idle and segmenter.options is not self._options):
                segmenter = self._segmenter = Segmenter(self._options, start_sample=position)
            heard = self._identify(segmenter.push(block.pcm))
            source.set_idle(segmenter.idle)
            if heard:
                if self._flushes:  # an early end's events come first: they are older
                    await asyncio.gather(*self._flushes)
                await self._on_heard(heard)
            if self._after_block is not None:
                self._after_block(clock.samples)

    def _flush(self) -> list[Heard]:
        """End the open utterance (synchronously, so exactly where asked); the next block after
        it starts a fresh segmenter."""
        segmenter, self._segmenter = self._segmenter, None
        return self._identify(segmenter.flush()) if segmenter is not None else []

    def _identify(self, events: list[SegmenterEvent]) -> list[Heard]:
        """Each event with its utterance's id, assigned at speech start (in stream order)."""
        heard = []
        for event in events:
            if isinstance(event, SpeechStarted) or self._open_id is None:
                self._open_id = self._new_id()
            heard.append(Heard(event, self._open_id))
            if isinstance(event, UtteranceEnded):
                self._open_id = None
        return heard
