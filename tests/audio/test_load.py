"""Files are decoded as a stream, and the stream is exactly the old whole-file decode."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile

from dictated.audio.format import float_to_int16, int16_to_float32
from dictated.audio.load import AudioFile, load_audio, to_mono_16k
from dictated.audio.source import BLOCK_SAMPLES, FileSource
from dictated.errors import AudioError
from tests.conftest import DEMO_WAV


def whole_file_decode(path) -> np.ndarray:
    """What `load_audio` did before it streamed: everything to float32 at once, then converted."""
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return float_to_int16(to_mono_16k(data, rate))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The demo as sox writes it at other rates and channel counts (not made by our code)."""
    out = tmp_path_factory.mktemp("converted")
    files = {"16k-mono.wav": DEMO_WAV}
    for name, rate, channels in [("44k-stereo.flac", 44100, 2), ("8k-mono.wav", 8000, 1)]:
        files[name] = out / name
        subprocess.run(
            ["sox", str(DEMO_WAV), "-r", str(rate), "-c", str(channels), str(files[name])],
            check=True,
        )
    return files


@pytest.mark.parametrize("name", ["16k-mono.wav", "44k-stereo.flac", "8k-mono.wav"])
@pytest.mark.parametrize("block_s", [0.013, 1.0, 7.7])
def test_streamed_blocks_are_the_whole_file_decode_sample_for_sample(converted, name, block_s):
    blocks = list(AudioFile(converted[name]).blocks(block_s))
    assert len(blocks) > 1 and all(b.dtype == np.int16 and b.ndim == 1 for b in blocks)
    assert np.array_equal(np.concatenate(blocks), whole_file_decode(converted[name]))


@pytest.mark.parametrize("name", ["16k-mono.wav", "44k-stereo.flac"])
def test_the_daemons_file_source_streams_the_same_samples(converted, name):
    async def collect() -> list[np.ndarray]:
        return [block.pcm async for block in FileSource(converted[name]).blocks()]

    blocks = asyncio.run(collect())
    assert max(len(b) for b in blocks) == BLOCK_SAMPLES  # 100 ms blocks, as before
    assert np.array_equal(np.concatenate(blocks), whole_file_decode(converted[name]))


def test_bad_files_fail_when_opened_with_the_reason(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        AudioFile(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError, match="cannot read audio file"):
        AudioFile(junk)
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(empty)


@pytest.mark.slow
def test_streamed_transcription_is_what_the_whole_file_gave(isolated_env):
    """`dictated transcribe` (streaming) against the old path run here: whole decode, one push."""
    from dictated.config import load_config
    from dictated.engines.registry import create_engine
    from dictated.events import UtteranceEnded
    from dictated.segmenter import Segmenter, SegmenterOptions

    result = subprocess.run(
        [sys.executable, "-m", "dictated", "transcribe", str(DEMO_WAV), "--engine", "whisper"]
        + ["--json"],
        capture_output=True,
        text=True,
        env=isolated_env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    streamed = [json.loads(line) for line in result.stdout.splitlines()]

    seg = Segmenter(SegmenterOptions())
    pcm = whole_file_decode(DEMO_WAV)
    utterances = [e.utterance for e in seg.push(pcm) + seg.flush() if isinstance(e, UtteranceEnded)]
    engine = create_engine("whisper", load_config(None).engine_options)
    try:
        before = [engine.transcribe(int16_to_float32(u.pcm), "en").text for u in utterances]
    finally:
        engine.close()
    assert [r["text"] for r in streamed] == before
    assert [(r["start"], r["end"]) for r in streamed] == [
        (round(u.start_sample / 16000, 3), round(u.end_sample / 16000, 3)) for u in utterances
    ]


def crafted_wav(path, rate: int, channels: int, frames: int) -> bytes:
    """A PCM WAV written byte by byte, so its header can claim what no writer library would."""
    data = bytes(2 * channels * frames)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize(
    ("rate", "channels", "field"),
    [
        (1_000_000_000, 1, "sample rate of 1000000000 Hz"),  # asked for 3.7 GB per block
        (1, 1, "sample rate of 1 Hz"),  # 16000 x upsampling: 1 byte in, 32 kB out
        (16_000, 1000, "1000 channels"),
    ],
)
def test_a_header_claiming_the_absurd_is_refused_naming_the_file_and_field(
    tmp_path, rate, channels, field
):
    path = crafted_wav(tmp_path / "hostile.wav", rate, channels, frames=1600)
    with pytest.raises(AudioError, match=field) as info:
        AudioFile(path)
    assert str(path) in str(info.value) and info.value.permanent  # exit 2: input, not a device


def test_one_read_is_bounded_in_samples_whatever_rate_and_channels_claim(tmp_path):
    """A legal 384 kHz 8-channel file: a 1 s read was 12 MB of float32; now at most 4 MB."""
    path = crafted_wav(tmp_path / "wide.wav", 384_000, 8, frames=400_000)
    blocks = AudioFile(path).blocks()
    tracemalloc.start()
    try:
        first = next(blocks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        blocks.close()
    assert len(first) > 0
    assert peak < 10e6, f"one block took {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("name", ["speech.raw", "speech.PCM"])
def test_headerless_raw_pcm_is_one_error_saying_how_to_give_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(3200))
    with pytest.raises(AudioError, match="headerless raw PCM") as info:
        AudioFile(path)
    assert "--source -" in str(info.value) and "sox -t raw" in str(info.value)


def test_files_that_are_not_audio_or_not_files_are_input_errors(tmp_path):
    """Unknown extensions and headerless bytes are refused at open, as input (exit 2)."""
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    with pytest.raises(AudioError, match="cannot read audio file") as info:
        AudioFile(text)
    assert info.value.permanent
    with pytest.raises(AudioError, match="not a regular file"):
        AudioFile(tmp_path)


def test_a_file_too_short_for_one_16k_sample_is_an_error_not_a_traceback(tmp_path):
    path = crafted_wav(tmp_path / "blip.wav", 384_000, 1, frames=3)  # 3 samples -> 0 at 16 kHz
    with pytest.raises(AudioError, match="too short"):
        load_audio(path)
