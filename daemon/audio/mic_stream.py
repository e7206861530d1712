"""One open PortAudio input stream and the hand-off from PortAudio's thread to the event loop.

PortAudio calls the stream callback on its own thread. The callback only copies the bytes, stamps
their capture time and appends them to a deque, then wakes the loop with `call_soon_threadsafe`
-- no locks, no logging, no resampling, so it can never stall the audio thread. While nobody is
speaking (`idle`) it wakes the loop once per `idle_batch` callbacks: the daemon's idle CPU is
almost all event-loop wakeups (bench/bench_idle_cpu.py), and no decision waits on silence. Once
the segmenter hears voice the loop clears `idle` and every callback wakes it, so the end of speech
is detected as fast as before.

The audio itself never waits on the PortAudio thread: the loop `take()`s whatever was captured at
any moment (deque append and popleft are atomic). So a driver that stalls, or a stream whose close
is abandoned in a hung driver, cannot hold back audio it had delivered: every callback that
returned before the loss reaches the segmenter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..errors import AudioError
from .devices import InputDevice
from .format import FRAME_MS, SAMPLE_RATE

log = logging.getLogger(__name__)

# Four VAD frames per PortAudio callback: a quarter of the wakeups of one frame per callback, for
# at most 90 ms later end-of-speech detection next to a 600 ms hangover.
BLOCK_MS = 4 * FRAME_MS
#: while nobody speaks, this much audio reaches the loop per wakeup (four PortAudio blocks)
IDLE_BLOCK_MS = 4 * BLOCK_MS
FALLBACK_RATES = (48_000, 44_100)  # tried after 16 kHz and the device's own default rate


@dataclass(frozen=True, slots=True)
class Captured:
    """What one callback captured: raw bytes, capture time of the last sample, status flags."""

    data: bytes
    captured_at: float  # epoch seconds of the last sample
    status: Any  # sounddevice.CallbackFlags (fresh object per callback)


FINISHED = object()  # queued by PortAudio's finished callback: the stream has ended


class Handoff:
    """The PortAudio thread's side of one stream. The loop's side: `queue` (how many callbacks'
    audio to take, or an end marker) and `take()` (the audio)."""

    def __init__(self, sd: Any, loop: asyncio.AbstractEventLoop, rate: int, idle_batch: int):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.idle = True  # set by the loop; a plain attribute store is atomic under the GIL
        self.closed = False  # set before the stream is stopped: late callbacks hand nothing over
        self._sd, self._loop, self._rate = sd, loop, rate
        self._idle_batch = max(1, idle_batch)
        # appended on PortAudio's thread, taken on the loop's
        self._captured: deque[Captured] = deque()
        self._unannounced = 0  # PortAudio's thread only: callbacks since the last wake-up

    def callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        if self.closed:
            return
        now = time.time()
        captured_at = now
        adc, current = time_info.inputBufferAdcTime, time_info.currentTime
        if adc > 0 and 0.0 <= current - adc < 1.0:  # some host APIs report 0 or nonsense
            captured_at = min(now, now - (current - adc) + frames / self._rate)
        self._captured.append(Captured(bytes(indata), captured_at, status))
        self._unannounced += 1
        if self.idle and self._unannounced < self._idle_batch and not status:
            return
        count, self._unannounced = self._unannounced, 0
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, count)
        except RuntimeError:  # the loop is closed: nobody will ever read this stream again
            raise self._sd.CallbackAbort from None

    def finished(self) -> None:
        if self.closed:  # closed on purpose: whoever closed it says so
            return
        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is closed (shutdown)
            self._loop.call_soon_threadsafe(self.queue.put_nowait, FINISHED)

    def take(self, count: int | None = None) -> list[Captured]:
        """The oldest `count` callbacks' audio not yet taken (all of it by default): the loop's
        side only. A wake-up's count is always there until the first take of all, which ends the
        loop's use of this stream (a stall, an end, a suspend or a close)."""
        batch = []
        while self._captured and (count is None or len(batch) < count):
            batch.append(self._captured.popleft())
        return batch


class InputStream:
    """A started PortAudio input stream of one device, at 16 kHz or at a rate it supports."""

    def __init__(
        self,
        sd: Any,
        device: InputDevice,
        loop: asyncio.AbstractEventLoop,
        *,
        forced_rate: int | None,
        idle_batch: int,
        idle: bool = True,
    ):
        if forced_rate:
            rates = [int(forced_rate)]
        else:
            native = int(round(device.default_samplerate))
            rates = list(dict.fromkeys([SAMPLE_RATE, native, *FALLBACK_RATES]))
        failures = []
        for rate in rates:
            handoff = Handoff(sd, loop, rate, idle_batch)
            handoff.idle = idle  # before start(): the first callbacks may come at once
            try:
                stream = sd.RawInputStream(
                    device=device.index,
                    samplerate=rate,
                    channels=1,
                    dtype="int16",
                    blocksize=rate * BLOCK_MS // 1000,
                    callback=handoff.callback,
                    finished_callback=handoff.finished,
                )
            except (sd.PortAudioError, ValueError) as exc:
                log.debug("audio device %r refused %d Hz: %s", device.name, rate, exc)
                failures.append(f"{rate} Hz: {exc}")
                continue
            break
        else:
            raise AudioError(
                f"cannot open audio device {device.name!r} for capture: " + "; ".join(failures)
            )
        try:
            stream.start()
        except sd.PortAudioError as exc:
            stream.close()
            raise AudioError(f"cannot start audio device {device.name!r}: {exc}") from exc
        self.device, self.rate, self.handoff = device, rate, handoff
        self._stream = stream
        self._closed: asyncio.Future | None = None

    @property
    def active(self) -> bool:
        return bool(self._stream.active)

    def abort(self) -> None:
        """End the stream abruptly from the loop (PortAudio then calls `finished`)."""
        self._stream.abort()

    async def close(self, timeout_s: float) -> bool:
        """Stop and release the device off the loop. False: the driver hung and the stream was
        abandoned after `timeout_s` (its thread finishes on its own once the driver lets go;
        `closing` stays set until then, and PortAudio must not be re-initialised meanwhile)."""
        if self._closed is None:
            self.handoff.closed = True
            loop = asyncio.get_running_loop()
            self._closed = done = loop.create_future()
            stream = self._stream

            def close() -> None:
                try:
                    stream.abort()  # not stop(): nothing to drain on input; stop() waits
                    stream.close()
                except Exception as exc:  # noqa: BLE001 - reported, never raised on this thread
                    log.debug("closing audio device %r: %s", self.device.name, exc)
                finally:
                    _closing.discard(self)
                    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

            _closing.add(self)
            threading.Thread(target=close, name="dictated-mic-close", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout_s)
        except TimeoutError:
            return False
        return True


#: streams whose close has not finished (a driver stuck in a read); PortAudio may be
#: re-initialised only while this is empty
_closing: set[InputStream] = set()


def closes_pending() -> bool:
    return bool(_closing)
