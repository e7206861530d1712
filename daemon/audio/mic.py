"""Microphone capture through PortAudio (sounddevice), delivered as 16 kHz mono int16 blocks.

The PortAudio thread's side lives in mic_stream.py (it only copies bytes and hands them over).
Everything else runs on the loop as blocks are consumed: status flags, the all-zero check,
resampling, stall detection, and recovery.

Recovery: a device that vanishes (PortAudio ends the stream) or stalls (no callback for
`stall_timeout_s`) is reported through `on_device_state("lost", why)`; what it captured before
is still delivered. With `reconnect` the source then re-initialises PortAudio -- it enumerates
devices only at initialisation, so a re-plugged headset is invisible without it -- and reopens
with backoff: the same device (found again by name, its index may have changed) or, when none is
pinned, whatever is the system default by then; `on_device_state("ok")` says it is back.
`suspend()` closes the stream (the OS microphone indicator goes off) until `resume()`.
The first block after a gap carries its length (`Block.gap_s`), so stream time stays the
capture timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from ..errors import AudioError
from .devices import InputDevice, device_info, import_sounddevice, resolve_device
from .format import SAMPLE_RATE
from .mic_stream import BLOCK_MS, FINISHED, IDLE_BLOCK_MS, Captured, InputStream, closes_pending
from .source import AudioSource, Block

__all__ = ["BLOCK_MS", "AudioDeviceLost", "MicSource", "all_zero_message"]

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 5.0  # no block for this long from a started stream: the device is gone
STARTUP_GRACE_S = 3.0  # extra wait for a stream's first block (Bluetooth and USB start slowly)
CLOSE_TIMEOUT_S = 2.0  # a device whose driver hangs is abandoned after this, not waited for
ALL_ZERO_WARNING_S = 3.0  # this much exact digital silence almost always means "access denied"
STATUS_LOG_INTERVAL_S = 10.0  # at most one overflow warning per interval, with counts
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 3.0, 5.0)  # between attempts to reopen; the last repeats

_SUSPENDED = object()  # queued by suspend(): the stream was closed on purpose


class AudioDeviceLost(AudioError):
    """The capture stream died or stopped delivering audio (unplugged, driver failure, stall)."""


DeviceStateListener = Callable[[str, "str | None"], None]


class MicSource(AudioSource):
    """A PortAudio input device as an AudioSource (16 kHz mono int16 blocks)."""

    realtime = True

    def __init__(
        self,
        device: str | int | None = None,
        *,
        samplerate: int | None = None,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
        all_zero_warning_s: float = ALL_ZERO_WARNING_S,
        reconnect: bool = False,
        idle_block_ms: int | None = None,
        backoff_s: tuple[float, ...] = RECONNECT_BACKOFF_S,
    ):
        """Resolve the device now (a bad name fails before the daemon starts); open it in blocks().

        `device`: name substring, index, or None for the system default input.
        `samplerate`: open the device at exactly this rate (resampled to 16 kHz) instead of
        trying 16 kHz first -- for devices that accept 16 kHz but capture it badly.
        `reconnect`: survive a lost device (the daemon) instead of raising AudioDeviceLost
        (a one-shot probe such as `doctor`).
        `idle_block_ms`: while idle, audio reaches the loop this much at a time (default 480 ms;
        BLOCK_MS hands over every PortAudio block, as before idle batching).
        """
        self._sd = import_sounddevice()
        self._device_spec = device  # kept: a reconnect re-resolves it (indices change on re-plug)
        self._device: InputDevice = device_info(resolve_device(device))
        self._pinned_name = self._device.name if device is not None else None
        self._forced_rate = samplerate
        self._stall_timeout_s = stall_timeout_s
        self._close_timeout_s = close_timeout_s
        self._all_zero_warning_s = all_zero_warning_s
        self._reconnect = reconnect
        self._idle_batch = max(1, (idle_block_ms or IDLE_BLOCK_MS) // BLOCK_MS)
        self._backoff = backoff_s
        self.description = f"mic:{self._device.name}"
        self.device = self._device.name
        self.device_state: str | None = None  # ok | lost | closed
        self.on_device_state: DeviceStateListener | None = None
        self.device_rate: int | None = None  # the rate the open stream captures at
        self.overflows = 0  # input overflows (lost samples) since this source was created
        self._stream: InputStream | None = None
        self._resampler = None
        self._closing = False
        self._suspended = False
        self._resumed = asyncio.Event()  # set by resume() (and aclose())
        self._interrupt = asyncio.Event()  # cuts a reconnect back-off short (suspend, aclose)
        self._idle = True
        self._last_end: float | None = None  # capture time of the last sample delivered
        self._gap_from: float | None = None  # capture time at which the current gap began
        self._reset_stream_counters()

    # ---- what the daemon drives ----------------------------------------------------------------

    def set_idle(self, idle: bool) -> None:
        """Idle (no utterance under way): fewer, larger hand-offs. Not idle: every block at once."""
        self._idle = idle
        if self._stream is not None:
            self._stream.handoff.idle = idle

    async def suspend(self) -> None:
        """Close the stream (the device is released) until resume(); what it captured is kept."""
        if self._suspended:
            return
        self._suspended = True
        self._resumed.clear()
        self._interrupt.set()
        await self._stop_stream(_SUSPENDED)
        self._set_state("closed", "paused: the microphone is released")

    async def resume(self) -> None:
        self._suspended = False
        self._resumed.set()

    async def aclose(self) -> None:
        self._closing = True
        self._resumed.set()
        self._interrupt.set()
        await self._stop_stream(FINISHED)

    # ---- the loop side -------------------------------------------------------------------------

    async def blocks(self) -> AsyncIterator[Block]:
        self._closing = False
        self._open_stream()  # the first open fails loudly: a device that never worked is an error
        try:
            while not self._closing:
                if self._stream is None:
                    if self._suspended:
                        self._set_state("closed", "paused: the microphone is released")
                        await self._resumed.wait()
                    else:
                        await self._reopen()
                    continue
                try:
                    async for block in self._stream_blocks():
                        # audio a suspended stream captured before it closed is not the device
                        # coming back: the state stays "closed" (pause tests saw ok/closed/ok/closed)
                        if self.device_state != "ok" and not self._suspended:
                            if self.device_state == "lost":
                                log.info("audio device %r is back", self._device.name)
                            self._set_state("ok")
                        yield block
                except AudioDeviceLost as exc:
                    # what it captured up to the loss first (a stall can leave audio that no
                    # wake-up announced), so the utterance under way ends with all of it; the
                    # stream hands over nothing more (a driver that wakes up while this block is
                    # consumed must not slip audio in after "lost", dated before the gap)
                    if self._stream is not None:
                        self._stream.handoff.closed = True
                    for block in self._take_blocks(self._stream):
                        yield block
                    if not self._reconnect:
                        raise
                    if self.device_state != "lost":
                        log.warning("%s; reopening it when it is back", exc)
                    else:
                        log.debug("%s", exc)
                    # said before the close: the daemon ends the utterance under way at once,
                    # even if the driver now takes its time to let go of the stream
                    self._set_state("lost", str(exc))
                    for block in await self._close_for_good():
                        yield block
                    self._mark_gap()
                else:  # suspended or closing: the stream is closed already
                    for block in self._drain_leftovers():
                        yield block
                    self._mark_gap()
        finally:
            await self._close_for_good()

    async def _stream_blocks(self) -> AsyncIterator[Block]:
        """One stream's blocks until it is suspended or closed (returns) or lost (raises)."""
        stream = self._stream
        assert stream is not None
        first = True
        while True:
            item = await self._next_item(stream, first)
            first = False
            if isinstance(item, list):
                if (block := self._process(item)) is not None:
                    yield block
                continue
            for block in self._take_blocks(stream):  # an end marker: what came before it first
                yield block
            if item is FINISHED:
                if self._closing:
                    return
                raise self._lost("PortAudio ended the stream (unplugged, or its driver failed)")
            if item is _SUSPENDED:
                return

    async def _next_item(self, stream: InputStream, first: bool) -> list[Captured] | object:
        """The next batch of audio, or an end marker; raises AudioDeviceLost on a stall."""
        handoff = stream.handoff
        if not handoff.queue.empty():
            item = handoff.queue.get_nowait()
        else:
            timeout = self._stall_timeout_s + (STARTUP_GRACE_S if first else 0.0)
            try:
                async with asyncio.timeout(timeout):
                    item = await handoff.queue.get()
            except TimeoutError:
                if self._closing:  # aclose() from another task; the stream may end without a word
                    return FINISHED
                state = "is still open" if stream.active else "is no longer active"
                why = f"no audio for {timeout:.1f} s although the stream {state}"
                raise self._lost(why) from None
        return handoff.take(item) if isinstance(item, int) else item

    def _process(self, batch: list[Captured]) -> Block | None:
        if not batch:
            return None
        for item in batch:
            if item.status:
                self._note_status(item.status)
        data = batch[0].data if len(batch) == 1 else b"".join(item.data for item in batch)
        pcm = np.frombuffer(data, dtype="<i2")
        self._watch_all_zero(pcm)
        captured_at = batch[-1].captured_at
        if self._resampler is None:
            out, at = pcm.astype(np.int16), captured_at
        else:
            self._in_samples += len(pcm)
            out = self._resampler.resample_chunk(pcm)
            self._out_samples += len(out)
            if not len(out):
                return None
            # the resampler holds back a few ms: date the output's last sample, not the input's
            held_back_s = self._in_samples / self.device_rate - self._out_samples / SAMPLE_RATE
            out, at = out.astype(np.int16, copy=False), captured_at - max(0.0, held_back_s)
        gap_s = 0.0
        if self._gap_from is not None:
            gap_s = max(0.0, at - len(out) / SAMPLE_RATE - self._gap_from)
            self._gap_from = None
        self._last_end = at
        return Block(out, at, gap_s)

    def _note_status(self, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
            self._overflows_unlogged += 1
        if status.input_underflow:
            self._underflows_unlogged += 1
        now = time.monotonic()
        if now - self._last_status_log < STATUS_LOG_INTERVAL_S:
            return
        if self._overflows_unlogged or self._underflows_unlogged:
            log.warning(
                "audio input from %r lost samples: %d overflow(s), %d underflow(s) since the last "
                "report (%d overflows in total); the machine or the event loop is too busy",
                self._device.name,
                self._overflows_unlogged,
                self._underflows_unlogged,
                self.overflows,
            )
            self._last_status_log = now
            self._overflows_unlogged = self._underflows_unlogged = 0

    def _watch_all_zero(self, pcm: np.ndarray) -> None:
        if pcm.any():
            self._zero_run = 0
            return
        self._zero_run += len(pcm)
        limit = self._all_zero_warning_s * self.device_rate
        if not self._warned_all_zero and self._zero_run >= limit:
            self._warned_all_zero = True
            log.warning(all_zero_message(self._device.name, self._zero_run / self.device_rate))

    def _lost(self, reason: str) -> AudioDeviceLost:
        return AudioDeviceLost(f"audio device {self._device.name!r} vanished/stopped: {reason}")

    def _set_state(self, state: str, detail: str | None = None) -> None:
        if state == self.device_state:
            return
        self.device_state = state
        if self.on_device_state is not None:
            self.on_device_state(state, detail)

    def _mark_gap(self) -> None:
        """Audio stops here; the next block says how long it was away."""
        if self._gap_from is None and self._last_end is not None:
            self._gap_from = self._last_end

    # ---- opening, closing, reopening -----------------------------------------------------------

    def _open_stream(self) -> None:
        """Open and start the device at 16 kHz, else at a rate it supports (then resample)."""
        stream = InputStream(
            self._sd,
            self._device,
            asyncio.get_running_loop(),
            forced_rate=self._forced_rate,
            idle_batch=self._idle_batch,
            idle=self._idle,
        )
        self._stream, self.device_rate = stream, stream.rate
        self._resampler = None
        if stream.rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(
                stream.rate, SAMPLE_RATE, 1, dtype="int16", quality="HQ"
            )
        self._reset_stream_counters()
        log.info(
            "microphone %r (%s) capturing at %d Hz%s",
            self._device.name,
            self._device.hostapi,
            stream.rate,
            "" if stream.rate == SAMPLE_RATE else f", resampled to {SAMPLE_RATE} Hz",
        )

    async def _reopen(self) -> None:
        """Until a stream is open again (or the source is suspended or closed): re-initialise
        PortAudio so devices plugged in meanwhile are seen, find the device, open it; back off."""
        attempt = 0
        while not self._closing and not self._suspended:
            try:
                self._reinitialise()
                self._device = device_info(resolve_device(self._reopen_spec()))
                self._open_stream()
            except AudioError as exc:
                (log.info if attempt == 0 else log.debug)("audio device not back yet: %s", exc)
                delay = self._backoff[min(attempt, len(self._backoff) - 1)]
                attempt += 1
                self._interrupt.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._interrupt.wait(), delay)
                continue
            self.device = self._device.name
            self.description = f"mic:{self._device.name}"
            return

    def _reopen_spec(self) -> str | int | None:
        """The pinned device by its name (its index may differ after re-plugging), else the
        system default as it is now."""
        return self._pinned_name

    def _reinitialise(self) -> None:
        """Pa_Terminate + Pa_Initialize: PortAudio lists devices only when it initialises. Not while
        a stream is still closing (a driver stuck in a read): the device list stays as it was."""
        if closes_pending():
            log.debug("not re-initialising PortAudio: a stream is still closing")
            return
        try:
            self._sd._terminate()
            self._sd._initialize()
        except self._sd.PortAudioError as exc:
            raise AudioError(f"cannot re-initialise PortAudio: {exc}") from exc

    async def _stop_stream(self, marker: object) -> None:
        """Close the stream from outside blocks(); blocks() takes what it captured when it sees
        `marker`."""
        stream = self._stream
        if stream is None:
            return
        if not await stream.close(self._close_timeout_s):
            self._abandoned(stream)
        if self._stream is stream:  # blocks() takes what it captured, then sees the marker
            stream.handoff.queue.put_nowait(marker)

    async def _close_for_good(self) -> list[Block]:
        """Close the current stream; what it captured and was not yet taken, as blocks (also
        when the close is abandoned: the audio is on the loop's side of the hand-off)."""
        stream, self._stream = self._stream, None
        if stream is None:
            return []
        if not await stream.close(self._close_timeout_s):
            self._abandoned(stream)
        return self._take_blocks(stream)

    def _drain_leftovers(self) -> list[Block]:
        """After suspend/aclose: the stream hands over no more; take what it captured, drop it."""
        stream, self._stream = self._stream, None
        return self._take_blocks(stream)

    def _take_blocks(self, stream: InputStream | None) -> list[Block]:
        """What `stream` captured and the loop has not taken yet (zero or one block)."""
        block = None if stream is None else self._process(stream.handoff.take())
        return [] if block is None else [block]

    def _abandoned(self, stream: InputStream) -> None:
        log.warning(
            "audio device %r did not stop within %.1f s; abandoning its stream",
            stream.device.name,
            self._close_timeout_s,
        )

    @property
    def driver_stuck(self) -> bool:  # type: ignore[override]
        """A stream abandoned in a hung driver that has still not let go."""
        return closes_pending()

    def _reset_stream_counters(self) -> None:
        self._zero_run = 0
        self._warned_all_zero = False
        self._in_samples = self._out_samples = 0
        self._overflows_unlogged = self._underflows_unlogged = 0
        self._last_status_log = -math.inf


def all_zero_message(device: str, seconds: float) -> str:
    """Why a microphone delivers exact digital zeros, and how to fix it on this platform."""
    macos = (
        "On macOS this almost always means microphone access (TCC) was denied to the program "
        "that started dictated: open System Settings › Privacy & Security › Microphone and allow "
        "it — your terminal app, or, for a launchd agent, the Python binary of its environment "
        f"({sys.executable}) — then restart dictated."
    )
    other = "Check that the input is not muted and is the microphone you meant (dictated devices)."
    hint = f"{macos} {other}" if platform.system() == "Darwin" else f"{other} ({macos})"
    return (
        f"microphone {device!r} has delivered only exact digital silence (all-zero samples) for "
        f"{seconds:.1f} s. {hint}"
    )
