"""What the computer plays: the default output's monitor, as 16 kHz mono int16 blocks (Linux).

Two real PulseAudio clients, one job each, both talking to PulseAudio or PipeWire's pulse server:

- **pulsectl** (maintained ctypes bindings to libpulse: no protocol of our own) watches the server
  on its own thread: which sink is the default output, a change of it (a "server" event), and a
  server that went away (PulseDisconnected) or came back. It has no capture-stream API, hence:
- **parec** (pulseaudio-utils; PipeWire desktops ship it too) records `SINK.monitor`, resampled
  and downmixed by the server to s16le 16 kHz mono, into a pipe we read in fixed-size chunks:
  memory is bounded by the pipe, and a dead server ends parec, which we see at once.

Following the default output: when it changes, a parec on the new monitor is started before the
old one is stopped, and the old one's audio is read to its end first (make before break), so our
side drops nothing. PulseAudio itself moves streams on the old default's monitor and restarts an
idle sink at its long block size, skipping ~2 s of audio (measured on PulseAudio 16 null sinks);
audio that arrives later than the samples before it account for is declared a gap
(`Block.gap_s`), so stream time stays the capture timeline. Recovery is the mic's:
a lost stream or server is reported through `on_device_state("lost", why)`, reopened with backoff
when the server (or an output) is back, then `on_device_state("ok")`. The first open fails
loudly (AudioError, exit 1): a sound server that is not up yet at login may be by the restart.

Not chosen: `soundcard` connects to the server when imported and has no default-change events;
PortAudio (sounddevice) as Debian builds it has no PulseAudio host API, only ALSA's `pulse`
plugin, which cannot name a monitor or follow the default output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import numpy as np

from ..errors import AudioError
from .format import SAMPLE_RATE, SAMPLE_WIDTH
from .source import AudioSource, Block
from .system_pulse import (
    CHUNK_BYTES,
    STOP_TIMEOUT_S,
    Output,
    Parec,
    ServerWatch,
    parec_path,
    probe_default_output,
)

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 5.0  # a monitor delivers silence when nothing plays: no data at all is a fault
STARTUP_GRACE_S = 3.0  # extra wait for a stream's first chunk
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 3.0, 5.0)  # between attempts to reach the server again
# audio arriving this much later than the samples before it account for was never delivered:
# PulseAudio skips it when it moves a stream or wakes an idle sink (~2 s measured, null sinks)
GAP_TOLERANCE_S = 0.5
# what an old output's stream still holds when we switch away from it: at most 4 s is kept
TAIL_LIMIT_BYTES = 4 * SAMPLE_RATE * SAMPLE_WIDTH


class SystemSource(AudioSource):
    """The default output's monitor through PulseAudio/PipeWire, following the default."""

    realtime = True

    def __init__(
        self,
        *,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        backoff_s: tuple[float, ...] = RECONNECT_BACKOFF_S,
    ):
        """Reach the server now, so a missing one fails before the engine loads (AudioError)."""
        parec_path()
        self._output: Output | None = probe_default_output()
        self._stall_timeout_s = stall_timeout_s
        self._backoff = backoff_s
        self.device = self._output.monitor
        self.description = f"system:{self._output.sink}"
        self.device_state: str | None = None
        self._want: Output | None = self._output  # the latest the watcher reported
        self._changed = asyncio.Event()  # the watcher reported, or suspend/resume/aclose
        self._parec: Parec | None = None
        self._watch: ServerWatch | None = None
        self._closing = self._suspended = False
        self._last_end: float | None = None  # capture time of the last sample delivered
        self._gap_from: float | None = None  # set when audio stops: the next block says how long
        self._tail = b""  # the previous output's last audio, delivered before the new one's

    # ---- what the daemon drives ----------------------------------------------------------------

    async def suspend(self) -> None:
        """Stop recording (the server's stream ends) until resume()."""
        self._suspended = True
        self._stop_parec()
        self._set_state("closed", "paused: system audio is not captured")

    async def resume(self) -> None:
        self._suspended = False
        self._changed.set()

    async def aclose(self) -> None:
        self._closing = True
        self._stop_parec()
        if self._watch is not None:
            self._watch.stop()

    # ---- the loop side -------------------------------------------------------------------------

    async def blocks(self) -> AsyncIterator[Block]:
        loop = asyncio.get_running_loop()
        self._watch = ServerWatch(
            lambda out, err: _call_soon(loop, self._on_watch, out, err), self._backoff
        )
        self._watch.start()
        assert self._output is not None
        self._parec = await Parec.start(self._output)  # the first open fails loudly
        self._log_open()
        attempt = 0
        try:
            while not self._closing:
                if self._parec is None:
                    attempt = await self._reopen(attempt)
                    continue
                async for block in self._stream_blocks():
                    attempt = 0
                    yield block
        finally:
            self._stop_parec()
            if self._parec is not None:
                await self._parec.wait()
            if self._watch is not None:
                self._watch.stop()

    async def _stream_blocks(self) -> AsyncIterator[Block]:
        """The current parec's blocks, switching output when the default changes; returns with
        `_parec` None when it ended (stopped, lost, or the server went away)."""
        parec = self._parec
        assert parec is not None
        first = True
        while True:
            if not parec.stopping and self._want is not None and self._want != parec.output:
                parec = await self._switch(parec, self._want)
            grace = STARTUP_GRACE_S if first else 0.0
            try:
                data = await parec.read(self._stall_timeout_s + grace)
            except TimeoutError:
                parec.terminate()
                why = f"no audio from {parec.output.monitor} for {self._stall_timeout_s:.1f} s"
                await parec.wait()
                self._parec = None
                self._gap_from = self._last_end
                self._lost(why)
                return
            if not data:
                said = await parec.wait()
                self._parec = None
                if not parec.stopping:
                    self._lost(f"capture of {parec.output.monitor} ended: {said}")
                self._gap_from = self._last_end
                return
            first = False
            if self.device_state != "ok":
                self._set_state("ok")
            yield self._block(data)

    async def _switch(self, old: Parec, output: Output) -> Parec:
        """Start recording `output`, then stop `old`; its remaining audio is read before the
        new one's (the new pipe holds ~2 s meanwhile). Returns the new parec."""
        log.info("system audio: default output is now %r; following it", output.description)
        try:
            new = await Parec.start(output)
        except OSError as exc:  # parec gone meanwhile: keep the old output (the next read retries)
            log.warning("system audio: cannot record %s: %s", output.monitor, exc)
            return old
        if self._closing or self._suspended:  # paused or closed while it started: not wanted
            new.terminate()
            await new.wait()
            return old  # already stopped by suspend()/aclose(): its stream ends
        old.terminate()
        self._parec = new
        self._output = output
        self.device, self.description = output.monitor, f"system:{output.sink}"
        tail: list[bytes] = []  # bounded: what the old stream captured before it stopped
        with contextlib.suppress(TimeoutError):
            while data := await old.read(STOP_TIMEOUT_S):
                tail.append(data)
                if len(tail) * CHUNK_BYTES > TAIL_LIMIT_BYTES:
                    break
        await old.wait()
        self._tail = b"".join(tail)
        return new

    async def _reopen(self, attempt: int) -> int:
        """Wait for the server (or an output) and start parec on the default's monitor. The
        first try after audio flowed is at once; a stream that keeps ending backs off."""
        while not self._closing:
            if self._suspended:
                self._set_state("closed", "paused: system audio is not captured")
                await self._wait_changed(None)
                continue
            if self._want is None:
                await self._wait_changed(None)
                continue
            if attempt:
                await self._wait_changed(self._backoff[min(attempt - 1, len(self._backoff) - 1)])
                if self._closing or self._suspended or self._want is None:
                    continue
            try:
                self._parec = await Parec.start(self._want)
            except (OSError, AudioError) as exc:
                log.info("system audio not back yet: %s", exc)
                return attempt + 1
            self._output = self._want
            self.device, self.description = self._want.monitor, f"system:{self._want.sink}"
            self._log_open()
            return attempt + 1
        return attempt

    async def _wait_changed(self, timeout_s: float | None) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    # ---- helpers -------------------------------------------------------------------------------

    def _block(self, data: bytes) -> Block:
        data = self._tail + data
        usable = len(data) - len(data) % SAMPLE_WIDTH  # an odd byte waits for its pair
        data, self._tail = data[:usable], data[usable:]
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
        at = time.time()
        gap_s = 0.0
        since = self._gap_from if self._gap_from is not None else self._last_end
        if since is not None:  # after a loss or a pause; or the server skipped audio (a stall)
            away = at - len(pcm) / SAMPLE_RATE - since
            gap_s = away if self._gap_from is not None or away > GAP_TOLERANCE_S else 0.0
            gap_s = max(0.0, gap_s)
            self._gap_from = None
        self._last_end = at
        return Block(pcm, at, gap_s)

    def _on_watch(self, output: Output | None, error: str | None) -> None:
        """On the loop: the watcher saw the default output (or the server gone)."""
        self._want = output
        if self._suspended:  # not recording: "closed" stays what status shows
            pass
        elif error is not None:
            self._lost(f"the sound server went away: {error}")
        elif output is None:
            self._lost("the sound server has no output device")
        self._changed.set()

    def _stop_parec(self) -> None:
        if self._parec is not None:
            self._parec.terminate()
        self._changed.set()

    def _lost(self, why: str) -> None:
        if self.device_state != "lost":
            log.warning("system audio lost: %s; capturing again when it is back", why)
        self._set_state("lost", why)

    def _set_state(self, state: str, detail: str | None = None) -> None:
        if state == self.device_state:
            return
        self.device_state = state
        if self.on_device_state is not None:
            self.on_device_state(state, detail)

    def _log_open(self) -> None:
        assert self._output is not None
        log.info(
            "system audio: capturing %r (%s) through %s at %d Hz mono",
            self._output.description,
            self._output.monitor,
            self._output.server,
            SAMPLE_RATE,
        )


def _call_soon(loop: asyncio.AbstractEventLoop, func, *args) -> None:
    """From the watcher thread; a loop that has closed (shutdown) no longer cares."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(func, *args)
