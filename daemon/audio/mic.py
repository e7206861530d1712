"""Microphone capture through PortAudio (sounddevice), delivered as 16 kHz mono int16 blocks.

Threads: PortAudio calls the stream callback on its own thread. That callback only copies the
bytes, stamps their capture time and hands them to the event loop with `call_soon_threadsafe`:
no locks, no logging, no resampling, so it can never stall the audio thread. Everything else
(status flags, the all-zero check, resampling, stall detection) runs on the loop as blocks are
consumed.

Devices that cannot capture at 16 kHz are opened at their native rate and resampled with soxr's
streaming resampler, whose state carries across blocks (no clicks at block edges).

A device that vanishes surfaces as `AudioDeviceLost` from `blocks()`. Opening and closing live in
`_open_stream()` / `_close_stream()` only, so automatic reconnection (later work) is a loop around
that pair inside `blocks()`. Note for that work: PortAudio enumerates devices once, at
initialisation; seeing a re-plugged device needs PortAudio re-initialised (sounddevice's
`_terminate()` / `_initialize()`) while no stream is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import platform
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AudioError
from .devices import InputDevice, device_info, import_sounddevice, resolve_device
from .format import FRAME_MS, SAMPLE_RATE
from .source import AudioSource, Block

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 5.0  # no block for this long from a started stream: the device is gone
STARTUP_GRACE_S = 3.0  # extra wait for the first block (Bluetooth and USB devices start slowly)
CLOSE_TIMEOUT_S = 2.0  # a device whose driver hangs is abandoned after this, not waited for
ALL_ZERO_WARNING_S = 3.0  # this much exact digital silence almost always means "access denied"
STATUS_LOG_INTERVAL_S = 10.0  # at most one overflow warning per interval, with counts
FALLBACK_RATES = (48_000, 44_100)  # tried after 16 kHz and the device's own default rate
# Four VAD frames per PortAudio callback: the daemon's idle CPU is almost all event-loop wakeups
# (bench/bench_idle_cpu.py), so a quarter of the wakeups of one frame per callback, for at most
# 90 ms later end-of-speech detection next to a 600 ms hangover.
BLOCK_MS = 4 * FRAME_MS


class AudioDeviceLost(AudioError):
    """The capture stream died or stopped delivering audio (unplugged, driver failure, stall)."""


@dataclass(frozen=True, slots=True)
class _Captured:
    """What the PortAudio thread hands to the loop: raw bytes, capture time, status flags."""

    data: bytes
    captured_at: float  # epoch seconds of the last sample
    status: Any  # sounddevice.CallbackFlags (fresh object per callback)


_FINISHED = object()  # queued by PortAudio's finished callback: the stream has ended


class MicSource(AudioSource):
    """A PortAudio input device as an AudioSource (16 kHz mono int16 blocks of ~30 ms)."""

    realtime = True

    def __init__(
        self,
        device: str | int | None = None,
        *,
        samplerate: int | None = None,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
        all_zero_warning_s: float = ALL_ZERO_WARNING_S,
    ):
        """Resolve the device now (a bad name fails before the daemon starts); open it in blocks().

        `device`: name substring, index, or None for the system default input.
        `samplerate`: open the device at exactly this rate (resampled to 16 kHz) instead of
        trying 16 kHz first — for devices that accept 16 kHz but capture it badly.
        """
        self._sd = import_sounddevice()
        self._device_spec = device  # kept: a reconnect re-resolves it (indices change on re-plug)
        self._device: InputDevice = device_info(resolve_device(device))
        self._forced_rate = samplerate
        self._stall_timeout_s = stall_timeout_s
        self._close_timeout_s = close_timeout_s
        self._all_zero_warning_s = all_zero_warning_s
        self.description = f"mic:{self._device.name}"
        self.device_rate: int | None = None  # the rate the open stream captures at
        self.overflows = 0  # input overflows (lost samples) since this source was created
        self._stream = None
        self._queue: asyncio.Queue | None = None
        self._resampler = None
        self._closing = False
        self._reset_stream_counters()

    # ---- the loop side -------------------------------------------------------------------------

    async def blocks(self) -> AsyncIterator[Block]:
        self._closing = False
        self._open_stream(asyncio.get_running_loop())
        try:
            first = True
            while True:
                item = await self._next_item(first)
                first = False
                if item is _FINISHED:
                    if self._closing:
                        return
                    raise self._lost("PortAudio ended the stream (unplugged, or its driver failed)")
                block = self._process(item)
                if block is not None:
                    yield block
        finally:
            await self._close_stream()

    async def aclose(self) -> None:
        self._closing = True
        await self._close_stream()

    async def _next_item(self, first: bool) -> _Captured | object:
        queue = self._queue
        if not queue.empty():
            return queue.get_nowait()
        timeout = self._stall_timeout_s + (STARTUP_GRACE_S if first else 0.0)
        try:
            async with asyncio.timeout(timeout):
                return await queue.get()
        except TimeoutError:
            if self._closing:  # aclose() from another task; the stream may end without a word
                return _FINISHED
            stream = self._stream
            state = (
                "is no longer active" if stream is None or not stream.active else "is still open"
            )
            raise self._lost(f"no audio for {timeout:.1f} s although the stream {state}") from None

    def _process(self, item: _Captured) -> Block | None:
        if item.status:
            self._note_status(item.status)
        pcm = np.frombuffer(item.data, dtype="<i2")
        self._watch_all_zero(pcm)
        if self._resampler is None:
            return Block(pcm.astype(np.int16), item.captured_at)
        self._in_samples += len(pcm)
        out = self._resampler.resample_chunk(pcm)
        self._out_samples += len(out)
        if not len(out):
            return None
        # the resampler holds back a few ms: date the output's last sample, not the input's
        held_back_s = self._in_samples / self.device_rate - self._out_samples / SAMPLE_RATE
        return Block(out.astype(np.int16, copy=False), item.captured_at - max(0.0, held_back_s))

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

    # ---- opening and closing (the one place reconnection will wrap) ----------------------------

    def _open_stream(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open and start the device at 16 kHz, else at a rate it supports (then resample)."""
        sd = self._sd
        if self._forced_rate:
            rates = [int(self._forced_rate)]
        else:
            native = int(round(self._device.default_samplerate))
            rates = list(dict.fromkeys([SAMPLE_RATE, native, *FALLBACK_RATES]))
        queue: asyncio.Queue = asyncio.Queue()
        failures = []
        for rate in rates:
            try:
                stream = sd.RawInputStream(
                    device=self._device.index,
                    samplerate=rate,
                    channels=1,
                    dtype="int16",
                    blocksize=rate * BLOCK_MS // 1000,
                    callback=_make_callback(sd, loop, queue, rate),
                    finished_callback=_make_finished_callback(loop, queue),
                )
            except (sd.PortAudioError, ValueError) as exc:
                log.debug("audio device %r refused %d Hz: %s", self._device.name, rate, exc)
                failures.append(f"{rate} Hz: {exc}")
                continue
            break
        else:
            raise AudioError(
                f"cannot open audio device {self._device.name!r} for capture: "
                + "; ".join(failures)
            )
        try:
            stream.start()
        except sd.PortAudioError as exc:
            stream.close()
            raise AudioError(f"cannot start audio device {self._device.name!r}: {exc}") from exc
        self._stream, self._queue, self.device_rate = stream, queue, rate
        self._resampler = None
        if rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="int16", quality="HQ")
        self._reset_stream_counters()
        log.info(
            "microphone %r (%s) capturing at %d Hz%s",
            self._device.name,
            self._device.hostapi,
            rate,
            "" if rate == SAMPLE_RATE else f", resampled to {SAMPLE_RATE} Hz",
        )

    async def _close_stream(self) -> None:
        """Stop and release the device off the loop; a driver that hangs is abandoned after
        close_timeout_s (on a daemon thread of its own, which exit does not wait for)."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def close() -> None:
            try:
                stream.abort()  # not stop(): nothing to drain on input; stop() waits for buffers
                stream.close()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits now
                    loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=close, name="dictated-mic-close", daemon=True).start()
        try:
            await asyncio.wait_for(done, self._close_timeout_s)
        except TimeoutError:
            self.driver_stuck = True
            log.warning(
                "audio device %r did not stop within %.1f s; abandoning its stream",
                self._device.name,
                self._close_timeout_s,
            )

    def _reset_stream_counters(self) -> None:
        self._zero_run = 0
        self._warned_all_zero = False
        self._in_samples = self._out_samples = 0
        self._overflows_unlogged = self._underflows_unlogged = 0
        self._last_status_log = -math.inf


# ---- the PortAudio thread side -----------------------------------------------------------------


def _make_callback(
    sd: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, rate: int
) -> Callable:
    """The stream callback, bound to one stream's loop and queue (a reopened stream gets a new one)."""

    def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
        now = time.time()
        captured_at = now
        adc, current = time_info.inputBufferAdcTime, time_info.currentTime
        if adc > 0 and 0.0 <= current - adc < 1.0:  # some host APIs report 0 or nonsense
            captured_at = min(now, now - (current - adc) + frames / rate)
        try:
            loop.call_soon_threadsafe(
                queue.put_nowait, _Captured(bytes(indata), captured_at, status)
            )
        except RuntimeError:  # the loop is closed: nobody will ever read this stream again
            raise sd.CallbackAbort from None

    return callback


def _make_finished_callback(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> Callable:
    def finished() -> None:
        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is closed (shutdown)
            loop.call_soon_threadsafe(queue.put_nowait, _FINISHED)

    return finished


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
