"""Audio sources behind one interface: each yields 16 kHz mono int16 blocks with capture times.

The source is the one place that knows about devices, files and pacing, so recovery from a
vanished device (later work) has a single home. The interface and the file and stdin sources are
here; the microphone is `mic.py`, and `open_source.py` picks one from the config's spec (this
module imports neither, so `mic.py` can build on it without an import cycle).
"""

from __future__ import annotations

import asyncio
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AudioError
from .format import SAMPLE_RATE, SAMPLE_WIDTH
from .load import AudioFile

BLOCK_SAMPLES = SAMPLE_RATE // 10  # 100 ms blocks from file and stdin sources


@dataclass(frozen=True)
class Block:
    """A run of samples and the wall-clock time (epoch s) at which its last sample was captured."""

    pcm: np.ndarray  # int16, mono, 16 kHz
    captured_at: float


class AudioSource(ABC):
    #: paced by a real clock (microphone, --realtime) rather than read as fast as it is consumed
    realtime: bool = False
    description: str = "audio"
    #: a device whose driver hung on close; the process must not wait for it at exit
    driver_stuck: bool = False

    @abstractmethod
    def blocks(self) -> AsyncIterator[Block]:
        """Yield blocks until end of input; raise AudioError when the input fails."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Stop capturing and release the device or file."""


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
        t0 = time.time()
        decoded = self._file.blocks()
        end = 0
        try:
            while not self._closed:
                chunk = await asyncio.to_thread(next, decoded, None)
                if chunk is None:
                    return
                for offset in range(0, len(chunk), BLOCK_SAMPLES):
                    if self._closed:
                        return
                    block = chunk[offset : offset + BLOCK_SAMPLES]
                    end += len(block)
                    if self.realtime:
                        delay = t0 + end / SAMPLE_RATE - time.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
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

    Pipes are read through the event loop (non-blocking, so a stop signal is never stuck behind a
    blocked read); a regular file redirected to stdin cannot be polled and is read directly.
    """

    description = "stdin (s16le, 16 kHz, mono)"

    def __init__(self, stream=None):
        self._stream = stream if stream is not None else sys.stdin.buffer
        self._closed = False
        self._transport: asyncio.ReadTransport | None = None

    async def _chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        size = BLOCK_SAMPLES * SAMPLE_WIDTH
        reader = asyncio.StreamReader(limit=4 * size)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), self._stream
            )
        except (ValueError, OSError):  # a regular file: never blocks, read it directly
            while not self._closed and (data := self._stream.read(size)):
                yield data
                await asyncio.sleep(0)
            return
        self._transport = transport
        try:
            while data := await reader.read(size):
                yield data
        finally:
            transport.close()

    async def blocks(self) -> AsyncIterator[Block]:
        carry = b""
        async for data in self._chunks():
            data = carry + data
            usable = len(data) - len(data) % SAMPLE_WIDTH
            carry = data[usable:]
            if usable:
                yield Block(np.frombuffer(data[:usable], dtype="<i2").astype(np.int16), time.time())
        if carry and not self._closed:
            raise AudioError(
                "stdin ended in the middle of a sample: expected s16le (2 bytes per sample)"
            )

    async def aclose(self) -> None:
        """Stop reading: the pipe's reader sees end of input and `blocks` ends."""
        self._closed = True
        if self._transport is not None:
            self._transport.close()
