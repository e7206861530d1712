"""Capture: the audio source, its clock and the segmenter, from blocks to utterance events.

One object owns the three because pausing touches all of them at once: while paused, blocks
still advance the clock (stream times are source times, paused audio included) but reach no
segmenter; a pause ends the open utterance right away, and the first block after it starts a new
segmenter at the source's current position. Each event leaves here with its utterance's id,
assigned at speech start, so every later event of that utterance (pause, end, partials,
transcript) carries it.

A key (`press`/`release`, push-to-talk) swaps a `KeyedSegmenter` in for the hold, in either mode;
in push-to-talk mode nothing else opens an utterance (no VAD runs; the recent audio is kept for
the pre-roll). A live source's key is placed by the clock: the press and release land on the
samples captured at that moment, even when the block holding them arrives a little later (the
microphone hands over 120 ms at a time, 480 ms while idle), so the last word before a release is
not clipped and audio from well before a press is not taken in. A press from a command that was
slow to start (`dictated ptt press` is a new process) says when it was made (`at`): it lands
there, up to `PRESS_REACH_S` back, and one made before the last release is stale (dropped).

A keyed utterance never reaches back before the end of the one before it (pre-roll included):
press, release and press again in quick succession give no sample twice. In continuous mode a
press while the VAD has an utterance open splits it at the press's pre-roll: the part before
ends there (not by_key, so `--armed-by-key` types none of it) and the keyed one begins there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from .audio.format import FRAME_SAMPLES, SAMPLE_RATE
from .audio.source import AudioSource
from .clock import StreamClock
from .control_state import Mode
from .errors import DictatedError
from .events import (
    OpenAudio,
    SegmenterEvent,
    SpeechPaused,
    SpeechStarted,
    Utterance,
    UtteranceEnded,
)
from .keyed_segmenter import KeyedSegmenter, RecentAudio
from .segmenter import Segmenter, SegmenterOptions
from .shutdown import STOP_CAPTURE_TIMEOUT_S  # the bound the service managers allow for

log = logging.getLogger(__name__)

#: recent audio kept for a press: the longest pre-roll (5 s) and an unconfirmed VAD utterance
RECENT_SAMPLES = 10 * SAMPLE_RATE
#: a live source's release waits for the block holding its moment at most this long (a stalled
#: device must not hold the final back)
RELEASE_WAIT_S = 0.5
#: how far back a live press's own time (`at`) may place it: a command that was slow to start
PRESS_REACH_S = 1.0


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
        mode: Callable[[], Mode] = lambda: "continuous",
    ):
        """`after_block(stream_samples)` runs after each block the segmenter took (partial
        results tick there); `mode()` is the daemon's (its ControlState owns it)."""
        self.source = source
        self.clock = StreamClock(source.realtime)  # the source's timeline, for the whole run
        self.paused = False
        self._mode = mode
        self.held = False  # a key is down (its press may wait for the block that holds it)
        self._keyed: KeyedSegmenter | None = None  # the held utterance
        self._recent = RecentAudio(RECENT_SAMPLES)
        self._press_at: float | None = None  # a live source's press, until its block is here
        self._release_at: float | None = None  # ... and release
        self._release_timer: asyncio.TimerHandle | None = None
        self._last_release_at: float | None = None  # the latest release's own time (`at`)
        self._last_end = 0  # where the last utterance ended: a press's pre-roll stops there
        self._open_onset = 0  # the open utterance's onset, as its SpeechStarted said
        self._open_paused = False  # the open utterance's last report was a pause
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
        self.held = False  # the key's utterance ends with the pause
        self._press_at = None
        self._cancel_release()
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

    # -- the key ----------------------------------------------------------------------------

    def press(self, at: float | None = None) -> bool:
        """Open an utterance now, pre-roll included (no onset wait); a no-op while held. `at`:
        when the key went down (time.time()), if the sender knows; a press made before the last
        release is stale and dropped (False). The caller refuses a press while paused."""
        if self.held or self.paused:
            return True
        if at is not None and self._last_release_at is not None and at < self._last_release_at:
            log.info("a stale press (made before the last release) is dropped")
            return False
        if self._keyed is None:
            self._cancel_release()  # a release with nothing open (a device gap ended it) is moot
        self.held = True
        if self._press_at is not None:
            return True  # its block is not here yet: the earlier press stands, the hold goes on
        if self._keyed is not None:  # a release still waiting for its block: it ends first
            self._release_now()
        self.source.set_idle(False)  # every block at once from here
        if self.source.realtime:
            now = time.time()
            self._press_at = now if at is None else min(now, max(at, now - PRESS_REACH_S))
        else:  # no sample clock: the press is where the stream is now
            self._hand_on(self._open_key(self.clock.samples, self.clock.samples), "press")
        return True

    def release(self, at: float | None = None) -> None:
        """End the held utterance now, no hangover; a no-op when no key is held. `at`: when the
        key came up, if the sender knows (a press made before it is stale)."""
        if at is not None:
            self._last_release_at = max(at, self._last_release_at or at)
        if not self.held:
            return
        self.held = False
        if self.source.realtime:
            self._release_at = time.time()
            loop = asyncio.get_running_loop()
            self._release_timer = loop.call_later(RELEASE_WAIT_S, self._release_now)
        else:
            self._release_now()

    def mode_changed(self) -> None:
        """The mode changed (a reloaded config): out of continuous mode, an utterance the VAD
        has open ends here."""
        if self._mode() != "continuous" and self._segmenter is not None:
            segmenter, self._segmenter = self._segmenter, None
            self._hand_on(self._identify(segmenter.flush()), "mode")

    def _open_key(self, press: int, upto: int) -> list[Heard]:
        """The keyed utterance: the pre-roll before `press`, and what came from there up to
        `upto` (the stream so far; later than `press` for a press placed back by its `at`),
        never before the end of the last utterance. An utterance the VAD has open is split
        there: the part before ends (not by key); one that began within the pre-roll goes on
        keyed, whole (the same id once it was reported started)."""
        options = self._options
        start = max(press - options.preroll_ms * SAMPLE_RATE // 1000, self._last_end)
        heard: list[Heard] = []
        segmenter, self._segmenter = self._segmenter, None  # its open utterance ends or goes on
        audio = segmenter.open_audio() if segmenter is not None else None
        if segmenter is not None and audio is not None and start > audio.start_sample:
            heard, audio = self._end_before(segmenter, audio, start), None
        elif segmenter is not None and audio is None and (n := len(segmenter.current_audio())):
            # not yet confirmed (never reported): its audio goes on keyed, unjudged
            start = max(min(start, upto - n - FRAME_SAMPLES), self._last_end)
        head = audio.pcm if audio is not None else np.zeros(0, dtype=np.int16)
        if audio is not None:
            start = audio.start_sample + len(audio.pcm)
        tail_start, tail = self._recent.between(start, upto)
        if audio is not None:
            if tail_start != start:
                log.warning("the key's utterance misses %d samples", tail_start - start)
            tail_start = audio.start_sample
        keyed, events = KeyedSegmenter.press(
            options,
            tail_start,
            np.concatenate([head, tail]),
            continues=audio is not None,
            paused=audio is not None and self._open_paused,
        )
        self._keyed = keyed
        return heard + self._identify(events)

    def _end_before(self, segmenter: Segmenter, audio: OpenAudio, at: int) -> list[Heard]:
        """End the VAD's open utterance at `at` (a press's pre-roll, after its start): what was
        said before the key went down, not by key."""
        end = audio.start_sample + len(audio.pcm)
        pcm = audio.pcm[: at - audio.start_sample]
        if at > end:  # its segmenter holds back a part of a frame; the rest is recent
            pcm = np.concatenate([pcm, self._recent.between(end, at)[1]])
        cut = audio.start_sample + len(pcm)
        ended = Utterance(
            index=segmenter.utterances_emitted,
            pcm=np.array(pcm, dtype=np.int16),
            start_sample=audio.start_sample,
            speech_end_sample=min(audio.speech_end_sample, cut),
            reason="key",
            speech_start_sample=min(max(self._open_onset, audio.start_sample), cut),
        )
        return self._identify([UtteranceEnded(ended)])

    def _close_key(self) -> list[Heard]:
        keyed, self._keyed = self._keyed, None
        self._cancel_release()
        return self._identify(keyed.release()) if keyed is not None else []

    def _release_now(self) -> None:
        """A release whose block has not come (the timer), or a new press: end it with what is
        here. A press that never reached its block opened nothing, so nothing ends."""
        self._press_at = None
        self._hand_on(self._close_key(), "release")

    def _cancel_release(self) -> None:
        self._release_at = None
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None

    # -- speculation's hooks ---------------------------------------------------------------

    def open_audio(self) -> OpenAudio | None:
        """The utterance under way so far (for speculative decoding), or None."""
        segmenter = self._keyed or self._segmenter
        return segmenter.open_audio() if segmenter is not None else None

    def end_early(self, start_sample: int, heard_until: int, hangover_ms: int) -> None:
        """End the open utterance `hangover_ms` after its speech (see `Segmenter.end_early`);
        when that point has passed, it ends now and is handed on. Never a keyed one."""
        if self._segmenter is None or self._keyed is not None:
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
            if block.gap_s and (self._segmenter is not None or self._keyed is not None):
                self.end_utterance()  # audio missing in the middle: what came before is whole
            # paused audio too: it is source time
            position = clock.add(len(block.pcm), block.captured_at, block.gap_s)
            if self.paused:
                continue
            self._recent.add(position, block.pcm)
            heard = self._block(block.pcm, position, block.captured_at)
            segmenter = self._keyed or self._segmenter
            source.set_idle(segmenter.idle if segmenter is not None else not self.held)
            if heard:
                if self._flushes:  # an early end's events come first: they are older
                    await asyncio.gather(*self._flushes)
                await self._on_heard(heard)
            if self._after_block is not None:
                self._after_block(clock.samples)

    def _block(self, pcm: np.ndarray, position: int, captured_at: float) -> list[Heard]:
        """One block's events: a live source's key press or release lands inside it where its
        moment falls (each a cut: before it one segmenter, after it the next)."""
        heard: list[Heard] = []
        if self.held and self._keyed is None and self._press_at is None:
            heard += self._open_key(position, position)  # still held after a gap: on from here
        if (
            self._press_at is not None
            and (press := _sample_of(pcm, position, captured_at, self._press_at)) is not None
        ):
            cut = max(0, press - position)  # a press placed back by its `at` cuts at once
            heard += self._feed(pcm[:cut], position)
            pcm, position = pcm[cut:], position + cut
            self._press_at = None
            heard += self._open_key(press, position)
        if (
            self._release_at is not None
            and self._keyed is not None
            and (cut := _samples_before(pcm, captured_at, self._release_at)) is not None
        ):
            heard += self._feed(pcm[:cut], position)
            pcm, position = pcm[cut:], position + cut
            heard += self._close_key()
        return heard + self._feed(pcm, position)

    def _feed(self, pcm: np.ndarray, position: int) -> list[Heard]:
        """Samples at `position` to the segmenter of the moment: the key's while one is held,
        else the VAD's in continuous mode (made here after a (re)start), else none."""
        if not len(pcm):
            return []
        segmenter: Segmenter | KeyedSegmenter | None = self._keyed
        if segmenter is None and self._mode() == "continuous":
            vad = self._segmenter
            if vad is None or (vad.idle and vad.options is not self._options):
                vad = self._segmenter = Segmenter(self._options, start_sample=position)
            segmenter = vad
        return self._identify(segmenter.push(pcm)) if segmenter is not None else []

    def _flush(self) -> list[Heard]:
        """End the open utterance (synchronously, so exactly where asked); the next block after
        it starts a fresh segmenter (a key still held opens its next utterance there)."""
        events: list[SegmenterEvent] = []
        if self._keyed is not None:
            keyed, self._keyed = self._keyed, None
            events += keyed.flush()
            self._cancel_release()
        segmenter, self._segmenter = self._segmenter, None
        if segmenter is not None:
            events += segmenter.flush()
        return self._identify(events)

    def _identify(self, events: list[SegmenterEvent]) -> list[Heard]:
        """Each event with its utterance's id, assigned at speech start (in stream order)."""
        heard = []
        for event in events:
            if isinstance(event, SpeechStarted) or self._open_id is None:
                self._open_id = self._new_id()
            heard.append(Heard(event, self._open_id))
            self._open_paused = isinstance(event, SpeechPaused)
            if isinstance(event, SpeechStarted):
                self._open_onset = event.onset_sample
            if isinstance(event, UtteranceEnded):
                self._open_id = None
                self._last_end = max(self._last_end, event.utterance.end_sample)
        return heard


def _sample_of(pcm: np.ndarray, position: int, captured_at: float, moment: float) -> int | None:
    """The stream position of `moment` on a live block's clock (its last sample was captured at
    `captured_at`; earlier than the block for a moment before it), or None when the whole block
    came before it."""
    if captured_at < moment:
        return None
    return position + len(pcm) - round((captured_at - moment) * SAMPLE_RATE)


def _samples_before(pcm: np.ndarray, captured_at: float, moment: float) -> int | None:
    """How many of a live block's samples were captured before `moment` (its last sample was
    captured at `captured_at`), or None when the whole block came before it."""
    if captured_at < moment:
        return None
    after = round((captured_at - moment) * SAMPLE_RATE)
    return max(0, len(pcm) - after)
