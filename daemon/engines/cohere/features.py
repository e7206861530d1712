"""Log-mel features for Cohere Transcribe: NeMo's FilterbankFeatures, vectorised in numpy.

The public CoreML port's worst bugs were here, so every constant below is the one transformers'
`CohereAsrFeatureExtractor` uses (run with `dither=0.0`; our tests compare against it):
preemphasis 0.97, centred STFT with zero padding, symmetric Hann(400) inside a 512-point FFT,
power spectrum, 128 Slaney mel bins up to 8 kHz, natural log with a 2**-24 guard, per-bin
mean/std normalisation over the valid frames only, zeros beyond them.

Padding to the encoder's fixed input length is a separate step (`pad_features`) because the
published encoder wants 3500 frames while bucketed exports want other sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...audio.format import MAX_UTTERANCE_SAMPLES, SAMPLE_RATE, int16_to_float32
from ...errors import AudioError

N_MELS = 128
N_FFT = 512
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms -> 100 frames per second
PREEMPHASIS = 0.97
LOG_GUARD = 2.0**-24  # added before the log so digital silence stays finite
CMVN_EPSILON = 1e-5
MAX_FRAMES = MAX_UTTERANCE_SAMPLES // HOP_LENGTH  # 3500 (35 s): the published encoder's input
MIN_SAMPLES = 2 * HOP_LENGTH  # two valid frames: the std (ddof=1) needs two
BLOCK_FRAMES = 256  # frames per FFT block: 0.5 MB of float32, stays in cache


@dataclass(frozen=True)
class Features:
    """(frames, 128) float32 normalised log-mels; the first `valid_frames` rows carry audio.

    `frames` is `n_samples // 160 + 1` (the centred STFT's count); the last row is never valid,
    matching transformers' attention mask.
    """

    values: np.ndarray
    valid_frames: int


def hertz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    logstep = 27.0 / np.log(6.4)
    log_region = 15.0 + np.log(np.maximum(freq, 1e-12) / 1000.0) * logstep
    return np.where(freq >= 1000.0, log_region, 3.0 * freq / 200.0)


def mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(logstep * (mels - 15.0)), 200.0 * mels / 3.0)


@lru_cache(maxsize=4)
def mel_filterbank(
    n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """(n_fft//2+1, n_mels) float32 triangular filters, Slaney-normalised (area ~ constant energy).

    Triangles are built in float64 and cast before the normalisation, as librosa does, so the
    result is bit-identical to `librosa.filters.mel(norm="slaney")` and transformers' copy of it.
    """
    fft_freqs = np.linspace(0.0, sample_rate // 2, n_fft // 2 + 1)
    mel_points = np.linspace(hertz_to_mel(0.0), hertz_to_mel(sample_rate / 2), n_mels + 2)
    filter_freqs = mel_to_hertz(mel_points)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    widths = np.diff(filter_freqs)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up)).astype(np.float32)
    filters *= (2.0 / (filter_freqs[2:] - filter_freqs[:-2]))[None, :]
    filters.setflags(write=False)
    return filters


@lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    """Symmetric Hann(400) (torch `periodic=False`), float32 like transformers' window."""
    n = np.arange(WIN_LENGTH, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (WIN_LENGTH - 1))).astype(np.float32)
    window.setflags(write=False)
    return window


def to_float32_16k(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """int16 or float mono audio at any rate -> float32 16 kHz in [-1, 1)."""
    x = np.asarray(audio)
    if x.ndim != 1:
        raise AudioError(f"features need mono audio as a 1-D array, got shape {x.shape}")
    if x.dtype == np.int16:
        x = int16_to_float32(x)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
    else:
        raise AudioError(f"features need int16 or float samples, got {x.dtype}")
    if sample_rate != SAMPLE_RATE:
        if sample_rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate}")
        from ...audio.load import to_mono_16k

        x = to_mono_16k(x, sample_rate)
    return x


def log_mel_spectrogram(x: np.ndarray) -> np.ndarray:
    """float32 16 kHz samples -> (len//160 + 1, 128) natural-log mel power, before normalisation."""
    # centred STFT: N_FFT/2 zeros ("constant" padding) on each side of the preemphasised signal
    emphasised = np.empty(len(x) + N_FFT, dtype=np.float32)
    pad = N_FFT // 2
    emphasised[:pad] = 0.0
    emphasised[pad + len(x) :] = 0.0
    emphasised[pad] = x[0]
    np.subtract(x[1:], np.float32(PREEMPHASIS) * x[:-1], out=emphasised[pad + 1 : pad + len(x)])
    n_frames = 1 + len(x) // HOP_LENGTH
    # The 400-sample window sits in the middle of each 512-sample frame; a frame's power spectrum
    # does not change when its zero padding moves, so each FFT input is 400 windowed samples
    # followed by 112 zeros.
    offset = (N_FFT - WIN_LENGTH) // 2
    frames = np.lib.stride_tricks.as_strided(
        emphasised[offset:],
        shape=(n_frames, WIN_LENGTH),
        strides=(HOP_LENGTH * emphasised.strides[0], emphasised.strides[0]),
        writeable=False,
    )
    # One thread on purpose: splitting the FFT over two threads measured slower here (5.9 vs
    # 5.3 ms for 35 s), and the daemon's inference thread should not fan out on its own.
    power = np.empty((n_frames, N_FFT // 2 + 1), dtype=np.float32)
    _power_rows(frames, power)
    mel = power @ mel_filterbank()
    mel += np.float32(LOG_GUARD)
    return np.log(mel, out=mel)


def _power_rows(frames: np.ndarray, power: np.ndarray) -> None:
    """Window, FFT and |X|^2 for a run of frames, written into `power`.

    Blocks of BLOCK_FRAMES keep the working set in cache (one 35 s pass over whole arrays is about
    twice as slow, mostly page faults on fresh 14 MB buffers). Single precision, like
    transformers' torch.stft: numpy 2's pocketfft computes float32 natively, ~15 % faster here.
    """
    buffer = np.zeros((BLOCK_FRAMES, N_FFT), dtype=np.float32)  # columns 400.. stay zero
    window = hann_window()
    for start in range(0, frames.shape[0], BLOCK_FRAMES):
        n = min(BLOCK_FRAMES, frames.shape[0] - start)
        np.multiply(frames[start : start + n], window, out=buffer[:n, :WIN_LENGTH])
        spectrum = np.fft.rfft(buffer[:n], axis=-1)
        block = power[start : start + n]
        np.square(spectrum.real, out=block, casting="same_kind")
        block += np.square(spectrum.imag)


def normalize(log_mel: np.ndarray, valid_frames: int) -> np.ndarray:
    """Per-bin CMVN over the valid frames (std with ddof=1); frames beyond them become 0.

    Statistics are accumulated in float64: a bin that is constant over the valid frames (digital
    silence) then has std exactly 0 and normalises to exactly 0, rather than float32 rounding noise
    amplified by 1/1e-5.
    """
    valid = log_mel[:valid_frames].astype(np.float64)
    valid -= valid.mean(axis=0)
    std = np.sqrt(np.einsum("ij,ij->j", valid, valid) / (valid_frames - 1))
    valid /= std + CMVN_EPSILON
    out = np.zeros_like(log_mel)
    out[:valid_frames] = valid
    return out


def compute_features(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Features:
    """One utterance's features; AudioError if it is shorter than two frames (20 ms at 16 kHz)."""
    x = to_float32_16k(audio, sample_rate)
    if len(x) < MIN_SAMPLES:
        raise AudioError(
            f"audio too short for features: {len(x)} samples at 16 kHz, "
            f"need at least {MIN_SAMPLES} (20 ms)"
        )
    log_mel = log_mel_spectrogram(x)
    valid_frames = len(x) // HOP_LENGTH
    return Features(values=normalize(log_mel, valid_frames), valid_frames=valid_frames)


def pad_features(values: np.ndarray, n_frames: int, valid_frames: int | None = None) -> np.ndarray:
    """Zero-pad (frames, 128) features to exactly `n_frames` rows.

    Rows at and beyond `valid_frames` are zeros by construction and may be cut (35 s of audio gives
    3501 frames of which 3500 are valid, and the encoder takes 3500). ValueError if valid rows
    would be lost; `valid_frames` defaults to all rows.
    """
    valid = values.shape[0] if valid_frames is None else valid_frames
    if valid > n_frames:
        raise ValueError(
            f"features have {valid} valid frames, more than the {n_frames} this encoder accepts "
            f"({n_frames * HOP_LENGTH / SAMPLE_RATE:.1f} s); split the audio first"
        )
    out = np.zeros((n_frames, values.shape[1]), dtype=np.float32)
    keep = min(values.shape[0], n_frames)
    out[:keep] = values[:keep]
    return out
