"""The `system` source on macOS (ScreenCaptureKit). The capture runs on the macOS workflow; here
only the buffer conversion, which is plain numpy, runs everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys

import numpy as np
import pytest
import soxr

from dictated.audio.format import SAMPLE_RATE
from dictated.audio.system_macos import float_planes_to_int16, permission_message
from dictated.errors import AudioError


def test_planar_stereo_float_becomes_mono_int16_at_16k():
    t = np.arange(48_000) / 48_000
    left = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    planar = np.concatenate([left, left]).tobytes()  # ScreenCaptureKit's non-interleaved layout
    resampler = soxr.ResampleStream(48_000, SAMPLE_RATE, 1, dtype="float32")
    pcm = float_planes_to_int16(planar, 2, False, 48_000.0, resampler)
    assert pcm.dtype == np.int16
    assert (
        SAMPLE_RATE - 500 < len(pcm) <= SAMPLE_RATE
    )  # one second, minus what the resampler holds back
    assert 0.45 * 32768 < np.abs(pcm).max() < 0.55 * 32768  # the level survives the downmix


def test_mono_16k_passes_unchanged():
    x = np.array([0.0, 0.5, -0.5, 1.0], np.float32)
    assert float_planes_to_int16(x.tobytes(), 1, True, 16_000.0).tolist() == [
        0,
        16384,
        -16384,
        32767,
    ]


@pytest.mark.skipif(
    importlib.util.find_spec("ScreenCaptureKit") is None,
    reason="pyobjc-framework-ScreenCaptureKit is not installed (pip install -e '.[macos]')",
)
@pytest.mark.skipif(sys.platform != "darwin", reason="ScreenCaptureKit is macOS's")
def test_captures_system_audio_or_explains_the_permission():
    """On a runner with the permission: blocks of 16 kHz int16. Without: the one message that
    says where to grant it (never silence passed off as audio, never a traceback)."""
    from dictated.audio.open_source import open_source

    async def record():
        source = open_source("system")
        got = 0
        async with contextlib.aclosing(source.blocks()) as blocks:
            async for block in blocks:
                assert block.pcm.dtype == np.int16 and block.pcm.ndim == 1
                got += len(block.pcm)
                if got >= SAMPLE_RATE:
                    break
        await source.aclose()
        return got

    try:
        assert asyncio.run(record()) >= SAMPLE_RATE
    except AudioError as exc:
        assert str(exc) == permission_message() or "ScreenCaptureKit" in str(exc), exc


@pytest.mark.skipif(sys.platform != "darwin", reason="the recording permission is macOS's")
def test_doctor_reads_the_recording_permission_without_asking():
    from dictated.doctor.audio import check_system_audio

    result = check_system_audio()
    assert result.name == "system audio"
    if result.status == "fail":
        assert "Screen & System Audio Recording" in (result.fix or "") or "[macos]" in (
            result.fix or ""
        )
    else:
        assert result.status == "ok" and "ScreenCaptureKit" in result.summary
