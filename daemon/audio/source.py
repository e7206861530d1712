"""Audio sources behind one interface: each yields 16 kHz mono int16 blocks with capture times.

The source is the one place that knows about devices, files and pacing, so recovery from a
vanished device lives there (mic.py: the daemon only hears of it through `on_device_state`).
The interface and the file and stdin sources are here; the microphone is `mic.py`, and
`open_source.py` picks one from the config's spec (this module imports neither, so `mic.py` can
build on it without an import cycle).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AudioInputError
from .format import SAMPLE_RATE, SAMPLE_WIDTH
from .load import AudioFile

log = logging.getLogger(__name__)

BLOCK_SAMPLES = SAMPLE_RATE // 10  # 100 ms blocks from file and stdin sources


@dataclass(frozen=True)
class Block:
    """A run of samples and the wall-clock time (epoch s) at which its last sample was captured."""

    pcm: np.ndarray  # int16, mono, 16 kHz
    captured_at: float
    #: seconds not captured just before this block (the device was closed or lost): stream time
    #: for a live source is the capture timeline, so it moves on by this much
    gap_s: float = 0.0


class AudioSource(ABC):
    #: paced by a real clock (microphone, --realtime) rather than read as fast as it is consumed
    realtime: bool = False
    description: str = "audio"
    #: a device whose driver hung on close; the process must not wait for it at exit
    driver_stuck: bool = False
    #: the capture device's name and state (ok | lost | closed), for sources that have one
    device: str | None = None
    device_state: str | None = None
    overflows: int = 0  # blocks in which the device lost samples
    #: called on the loop as (state, detail) whenever device_state changes
    on_device_state: Callable[[str, str | None], None] | None = None

    @abstractmethod
    def blocks(self) -> AsyncIterator[Block]:
        """Yield blocks until end of input; raise AudioError when the input fails."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Stop capturing and release the device or file."""

    def set_idle(self, idle: bool) -> None:  # noqa: B027 - optional hook
        """Hint: nobody is speaking, so blocks may come later and larger (fewer wakeups)."""

    async def suspend(self) -> None:  # noqa: B027 - optional hook
        """Pause: release the device until resume(). Sources without one keep delivering
        (the daemon ignores what arrives while paused; stream time still counts it)."""

    async def resume(self) -> None:  # noqa: B027 - optional hook
        """Capture again after suspend()."""


class Pacer:
    """Holds blocks back to the wall clock, so a recording arrives like a microphone's audio:
    a block is released no earlier than its last sample would have been captured."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._samples = 0

    async def wait(self, n_samples: int) -> None:
        """Sleep until `n_samples` more samples are due (from the first call's time)."""
        if self._t0 is None:
            self._t0 = time.time()
        self._samples += n_samples
        delay = self._t0 + self._samples / SAMPLE_RATE - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


class FileSource(AudioSource):
    """A WAV/FLAC/... file, decoded as it is read and fed as fast as taken or paced in real time.

    Decoding streams (about a second at a time, in a worker thread so the loop keeps serving
    sockets), so memory stays flat however long the recording.
    """

    def __init__(self, path: Path, realtime: bool = False):
        self.path = Path(path)
        self.realtime = realtime
        self.description = f"file:{self.path}"
        self._file = AudioFile(self.path)  # reads the header: fails before the daemon serves
        self._closed = False

    async def blocks(self) -> AsyncIterator[Block]:
        decoded = self._file.blocks()
        pacer = Pacer() if self.realtime else None
        try:
            while not self._closed:
                chunk = await asyncio.to_thread(next, decoded, None)
                if chunk is None:
                    return
                for offset in range(0, len(chunk), BLOCK_SAMPLES):
                    if self._closed:
                        return
                    block = chunk[offset : offset + BLOCK_SAMPLES]
                    if pacer is not None:
                        await pacer.wait(len(block))
                    else:
                        await asyncio.sleep(0)  # let the loop serve sockets between blocks
                    yield Block(block, time.time())
        finally:
            decoded.close()
            self._file.close()

    async def aclose(self) -> None:
        self._closed = True


class StdinSource(AudioSource):
    """Raw s16le 16 kHz mono on standard input (`sox in.wav -t raw -r 16000 -c 1 -b 16 -e signed - | ...`).

    Pipes and sockets are read through the event loop (non-blocking, so a stop signal is never
    stuck behind a blocked read). What cannot be polled (a regular file, /dev/null: systemd's
    default stdin) is read directly and ends at its end; a terminal is refused, since typing is
    not audio. `realtime` paces the input like a microphone (`sox talk.flac ... - | dictated run
    --source - --realtime`); a live capture (`arecord ... |`) is already real time, and pacing it
    would only keep the backlog the pipe held at start (up to its 64 KiB, 2 s) as added latency.
    """

    def __init__(self, stream=None, realtime: bool = False):
        if stream is None and sys.stdin is None:  # fd 0 closed, not even /dev/null
            raise AudioInputError("source -: standard input is closed; pipe raw audio into it")
        self._stream = stream if stream is not None else sys.stdin.buffer
        self.realtime = realtime
        self.description = "stdin (s16le, 16 kHz, mono" + (", paced)" if realtime else ")")
        self._closed = False
        self._transport: asyncio.ReadTransport | None = None
        self._pollable = _pollable(self._stream)

    async def _chunks(self) -> AsyncIterator[bytes]:
        size = BLOCK_SAMPLES * SAMPLE_WIDTH
        if not self._pollable:  # never blocks for long: read it directly
            while not self._closed and (data := self._stream.read(size)):
                yield data
                await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=4 * size)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), self._stream
        )
        self._transport = transport
        try:
            while data := await reader.read(size):
                yield data
        finally:
            transport.close()

    async def blocks(self) -> AsyncIterator[Block]:
        carry = b""
        pacer = Pacer() if self.realtime else None
        heard = False
        async for data in self._chunks():
            heard = True
            data = carry + data
            usable = len(data) - len(data) % SAMPLE_WIDTH
            carry = data[usable:]
            if usable:
                pcm = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
                if pacer is not None:
                    await pacer.wait(len(pcm))
                yield Block(pcm, time.time())
        if not heard and not self._closed:
            log.warning("stdin ended before any audio (/dev/null?); pipe raw s16le 16 kHz mono in")
        if carry and not self._closed:
            raise AudioInputError(
                "stdin ended in the middle of a sample: expected s16le (2 bytes per sample)"
            )

    async def aclose(self) -> None:
        """Stop reading: the pipe's reader sees end of input and `blocks` ends."""
        self._closed = True
        if self._transport is not None:
            self._transport.close()


def _pollable(stream) -> bool:
    """A pipe or socket, which the loop can watch; a terminal is refused (AudioInputError).

    Decided up front: asyncio accepts a character device such as /dev/null as a "pipe" and only
    later fails to watch it, in a callback, leaving the reader waiting forever.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream
        return False
    if os.isatty(fd):
        raise AudioInputError(
            "source -: standard input is a terminal, not audio; pipe raw s16le 16 kHz mono into "
            "it (sox talk.wav -t raw -r 16000 -c 1 -b 16 -e signed - | dictated run --source -)"
        )
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
