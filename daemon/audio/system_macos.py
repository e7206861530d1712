"""What the computer plays, on macOS: ScreenCaptureKit's system audio as 16 kHz mono int16 blocks.

ScreenCaptureKit (macOS 13+) captures the mix of every app's audio whatever the output device,
so a change of default output needs no following. It needs the Screen & System Audio Recording
permission (TCC) for the program that started dictated; without it the shareable-content request
fails, and we say how to grant it (`doctor` says it too). pyobjc's ScreenCaptureKit and CoreMedia
wrappers come with the `macos` extra and are imported only here, when the source opens.

Threads: ScreenCaptureKit calls the output on its own queue; the handler only converts the
buffer and hands it to the loop (`call_soon_threadsafe`) into a bounded queue: when the loop
falls behind, the newest audio is dropped and counted in `overflows`, never stored without bound.
A stream that stops with an error ends `blocks()` with AudioError (exit 1: the service restarts).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from ..errors import AudioError, MissingDependencyError
from .format import SAMPLE_RATE, float_to_int16
from .source import AudioSource, Block

QUEUE_BLOCKS = 200  # hand-offs waiting for the loop (~20 ms each: ~4 s) before audio is dropped
START_TIMEOUT_S = 10.0  # ScreenCaptureKit answers the permission prompt and start within this
STALL_TIMEOUT_S = (
    5.0  # the audio output delivers silence when nothing plays: none at all is a fault
)
USER_DECLINED = -3801  # SCStreamErrorUserDeclined: the permission was denied
_STOPPED = object()


def permission_message() -> str:
    return (
        "system audio on macOS needs the Screen & System Audio Recording permission: open System "
        "Settings › Privacy & Security › Screen & System Audio Recording and allow your terminal "
        f"(for the service: {sys.executable}), then restart dictated"
    )


def float_planes_to_int16(
    data: bytes, channels: int, interleaved: bool, rate: float, resampler: Any = None
) -> np.ndarray:
    """CoreAudio float32 samples (planar or interleaved) -> mono int16 at 16 kHz."""
    x = np.frombuffer(data, dtype=np.float32)
    if channels > 1:
        x = x[: len(x) - len(x) % channels]
        x = x.reshape(-1, channels).mean(axis=1) if interleaved else x.reshape(channels, -1).mean(0)
    if round(rate) != SAMPLE_RATE:
        if resampler is None:
            raise AudioError(f"system audio arrived at {rate:g} Hz and no resampler was given")
        x = resampler.resample_chunk(x.astype(np.float32))
    return float_to_int16(x)


def _import_frameworks() -> tuple[Any, Any, Any]:
    try:
        import CoreMedia
        import objc
        import ScreenCaptureKit
    except ImportError as exc:
        raise MissingDependencyError(
            "pyobjc-framework-ScreenCaptureKit",
            "the system audio source on macOS",
            "pip install -e '/path/to/clone[macos]'",
        ) from exc
    return ScreenCaptureKit, CoreMedia, objc


def _wait(start: Any, what: str) -> Any:
    """Call an SCK method with a completion handler; its (single or last) argument, or raise."""
    done = threading.Event()
    answer: list[Any] = []

    def handler(*args: Any) -> None:
        answer.append(args)
        done.set()

    start(handler)
    if not done.wait(START_TIMEOUT_S):
        raise AudioError(f"system audio: ScreenCaptureKit did not answer ({what}) in time")
    args = answer[0]
    error = args[-1]
    if error is not None:
        if error.code() == USER_DECLINED or "TCC" in str(error) or "declined" in str(error):
            raise AudioError(permission_message())
        raise AudioError(f"system audio: {what} failed: {error.localizedDescription()}")
    return args[0] if len(args) > 1 else None


class MacSystemSource(AudioSource):
    """ScreenCaptureKit's audio of the whole system (this process's own sound excluded)."""

    realtime = True

    def __init__(self) -> None:
        self._sck, self._cm, self._objc = _import_frameworks()
        content = _wait(
            self._sck.SCShareableContent.getShareableContentWithCompletionHandler_,
            "listing displays",
        )
        displays = list(content.displays()) if content is not None else []
        if not displays:
            raise AudioError("system audio: ScreenCaptureKit found no display to capture with")
        self._display = displays[0]
        self.description = "system:screencapturekit"
        self.device = "system audio (ScreenCaptureKit)"
        self.device_state: str | None = None
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_BLOCKS)
        self._stream: Any = None
        self._resampler: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set when the capture starts
        self._handler: Any = None  # the output object, kept alive while the stream runs

    async def blocks(self) -> AsyncIterator[Block]:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._start, loop)
        try:
            while True:
                try:
                    async with asyncio.timeout(STALL_TIMEOUT_S):
                        item = await self._queue.get()
                except TimeoutError:
                    raise AudioError("system audio: ScreenCaptureKit stopped delivering") from None
                if item is _STOPPED:
                    return
                if isinstance(item, AudioError):
                    self._set_state("lost", str(item))
                    raise item
                if self.device_state != "ok":
                    self._set_state("ok")
                yield item
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(_wait, stream.stopCaptureWithCompletionHandler_, "stopping")
            self._hand(_STOPPED)

    # ---- ScreenCaptureKit's side ---------------------------------------------------------------

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        sck = self._sck
        self._loop = loop
        config = sck.SCStreamConfiguration.alloc().init()
        config.setCapturesAudio_(True)
        config.setExcludesCurrentProcessAudio_(True)  # not our own sounds
        config.setSampleRate_(SAMPLE_RATE)
        config.setChannelCount_(1)
        config.setWidth_(2)  # video is required by the API: the smallest, slowest there is
        config.setHeight_(2)
        config.setMinimumFrameInterval_(self._cm.CMTimeMake(1, 1))
        content_filter = sck.SCContentFilter.alloc().initWithDisplay_excludingWindows_(
            self._display, []
        )
        handler = _output_class(self._objc).alloc().init()
        handler.source = self
        stream = sck.SCStream.alloc().initWithFilter_configuration_delegate_(
            content_filter, config, handler
        )
        ok, error = stream.addStreamOutput_type_sampleHandlerQueue_error_(
            handler, sck.SCStreamOutputTypeAudio, _handler_queue(), None
        )
        if not ok:
            raise AudioError(f"system audio: cannot add the audio output: {error}")
        self._handler = handler
        _wait(stream.startCaptureWithCompletionHandler_, "starting the capture")
        self._stream = stream

    def _on_buffer(self, buffer: Any) -> None:
        """On ScreenCaptureKit's queue: convert, stamp, hand over. Never blocks."""
        cm = self._cm
        asbd = cm.CMAudioFormatDescriptionGetStreamBasicDescription(
            cm.CMSampleBufferGetFormatDescription(buffer)
        )
        block = cm.CMSampleBufferGetDataBuffer(buffer)
        length = cm.CMBlockBufferGetDataLength(block)
        status, data = cm.CMBlockBufferCopyDataBytes(block, 0, length, None)
        if status != 0 or not data:
            return
        rate, channels = float(asbd.mSampleRate), int(asbd.mChannelsPerFrame)
        if round(rate) != SAMPLE_RATE and self._resampler is None:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        interleaved = not (asbd.mFormatFlags & 0x20)  # kAudioFormatFlagIsNonInterleaved
        pcm = float_planes_to_int16(bytes(data), channels, interleaved, rate, self._resampler)
        if len(pcm):
            self._hand(Block(pcm, time.time()))

    def _on_stopped(self, error: Any) -> None:
        self._hand(AudioError(f"system audio: ScreenCaptureKit stopped: {error}"))

    def _hand(self, item: Any) -> None:
        def put() -> None:
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self.overflows += 1

        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(put)

    def _set_state(self, state: str, detail: str | None = None) -> None:
        self.device_state = state
        if self.on_device_state is not None:
            self.on_device_state(state, detail)


def _handler_queue() -> Any:
    """A serial dispatch queue of our own for the audio handler (buffers arrive in order, off
    ScreenCaptureKit's internal queue); None lets it pick one when libdispatch's wrapper is absent."""
    try:
        import dispatch
    except ImportError:
        return None
    return dispatch.dispatch_queue_create(b"dictated.system-audio", None)


_OUTPUT_CLASS: Any = None


def _output_class(objc: Any) -> Any:
    """The SCStreamOutput/SCStreamDelegate object, defined once (an Objective-C class name is
    process-wide)."""
    global _OUTPUT_CLASS
    if _OUTPUT_CLASS is None:
        from Foundation import NSObject

        protocols = [objc.protocolNamed("SCStreamOutput"), objc.protocolNamed("SCStreamDelegate")]

        class DictatedSystemAudioOutput(NSObject, protocols=protocols):
            source: Any = None

            def stream_didOutputSampleBuffer_ofType_(self, stream, buffer, kind):  # noqa: N802
                if kind == 1 and self.source is not None:  # SCStreamOutputTypeAudio
                    self.source._on_buffer(buffer)

            def stream_didStopWithError_(self, stream, error):  # noqa: N802
                if self.source is not None:
                    self.source._on_stopped(error)

        _OUTPUT_CLASS = DictatedSystemAudioOutput
    return _OUTPUT_CLASS
