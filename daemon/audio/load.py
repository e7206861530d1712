"""Read any audio file libsndfile understands as 16 kHz mono int16, block by block.

Decoding streams: soundfile reads a block, channels are averaged, soxr's streaming resampler
converts the rate, so memory stays flat however long the file (a whole hour decoded to float32
first used to peak near 1 GB). `load_audio` is the same path collected into one array.

A header is input like any other: what it claims (rate, channels) is checked against sane bounds
before anything is sized from it, and each read is capped in samples, not seconds, so a WAV
claiming 1 GHz or thousands of channels cannot make one block ask for gigabytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from ..errors import AudioInputError
from .format import SAMPLE_RATE, float_to_int16

BLOCK_S = 1.0  # decoded per read: small against any file, large enough that overhead is nil
MIN_RATE = 1_000  # Hz; below this a header lies (and 1 Hz would upsample 16000 x)
MAX_RATE = 384_000  # Hz; the highest rate audio interfaces record
MAX_CHANNELS = 64  # 7th-order ambisonics; more is a header that lies
#: samples (frames x channels) per read: 4 MB of float32 whatever the header claims
MAX_BLOCK_SAMPLES = 1 << 20
#: headerless PCM: libsndfile cannot know its rate or format
RAW_SUFFIXES = (".raw", ".pcm", ".sln", ".s16", ".u8")


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """float (frames,) or (frames, channels) at `rate` -> float32 mono 16 kHz (one whole signal)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return x


class AudioFile:
    """An open audio file; `blocks()` yields it as int16 mono 16 kHz, one block at a time.

    Opening reads only the header, so a missing or unreadable file fails before any work starts.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.exists():
            raise AudioInputError(f"audio file not found: {self.path}")
        if not self.path.is_file():
            raise AudioInputError(f"audio file {self.path} is not a regular file")
        if self.path.suffix.lower() in RAW_SUFFIXES:
            raise AudioInputError(_raw_message(self.path))
        try:
            self._file = soundfile.SoundFile(str(self.path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            # TypeError: libsndfile took it for headerless RAW, which needs a rate and format
            raise AudioInputError(
                f"cannot read audio file {self.path}: {exc} (supported: WAV, FLAC, OGG, MP3 ...)"
            ) from exc
        self.rate = self._file.samplerate
        self.channels = self._file.channels
        try:
            _check_header(self.path, self.rate, self.channels, self._file.frames)
        except AudioInputError:
            self.close()
            raise

    @property
    def duration_s(self) -> float:
        return self._file.frames / self.rate

    def blocks(self, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
        """int16 mono 16 kHz blocks of about `block_s` seconds (the last one shorter), then close."""
        frames = max(1, min(round(block_s * self.rate), MAX_BLOCK_SAMPLES // self.channels))
        resampler = (
            None
            if self.rate == SAMPLE_RATE
            else soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )
        try:
            while True:
                try:
                    data = self._file.read(frames, dtype="float32", always_2d=True)
                except (soundfile.LibsndfileError, RuntimeError) as exc:
                    raise AudioInputError(f"cannot read audio file {self.path}: {exc}") from exc
                last = len(data) < frames
                mono = data.mean(axis=1, dtype=np.float32) if self.channels > 1 else data[:, 0]
                if resampler is not None:
                    mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
                if len(mono):
                    yield float_to_int16(mono)
                if last:
                    return
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()


def load_audio(path: Path) -> np.ndarray:
    """Decode `path` whole to int16 mono 16 kHz; AudioInputError names the file and the reason."""
    blocks = list(AudioFile(path).blocks())
    if not blocks:  # a few samples at a high rate resample to none
        raise AudioInputError(f"audio file {path} is too short to hold one 16 kHz sample")
    return np.concatenate(blocks)


def _check_header(path: Path, rate: int, channels: int, frames: int) -> None:
    """Refuse what no recording claims, naming the field, before anything is sized from it."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioInputError(
            f"audio file {path}: its header claims a sample rate of {rate} Hz, outside "
            f"{MIN_RATE}-{MAX_RATE} Hz; the file is damaged or not what its name says"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioInputError(
            f"audio file {path}: its header claims {channels} channels, outside 1-{MAX_CHANNELS}; "
            "the file is damaged or not what its name says"
        )
    if frames <= 0:
        raise AudioInputError(f"audio file {path} contains no samples")


def _raw_message(path: Path) -> str:
    """Headerless PCM: say how to give it (stdin takes s16le 16 kHz mono) or convert it."""
    return (
        f"audio file {path}: headerless raw PCM has no sample rate or format to read; if it is "
        f"s16le 16 kHz mono, pipe it: `dictated run --source - < {path}`, else convert it: "
        f"`sox -t raw -r RATE -e signed -b 16 -c 1 {path} out.wav`"
    )
