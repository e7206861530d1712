"""Our numpy features against transformers' CohereAsrFeatureExtractor(dither=0.0) on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from dictated.audio.format import int16_to_float32
from dictated.audio.load import to_mono_16k
from dictated.engines.cohere.features import (
    MAX_FRAMES,
    MIN_SAMPLES,
    Features,
    compute_features,
    hann_window,
    mel_filterbank,
    pad_features,
)
from dictated.errors import AudioError
from tests import speech

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-3  # max abs difference allowed on normalised log-mels


@pytest.fixture(scope="module")
def extractor():
    return transformers.CohereAsrFeatureExtractor(dither=0.0)


def reference(extractor, pcm_float32: np.ndarray) -> tuple[np.ndarray, int]:
    out = extractor(pcm_float32, sampling_rate=16000, return_tensors="np")
    return out["input_features"][0], int(out["attention_mask"][0].sum())


def assert_matches(extractor, ours: Features, pcm_float32: np.ndarray) -> None:
    ref, ref_valid = reference(extractor, pcm_float32)
    assert ours.values.shape == ref.shape
    assert ours.values.dtype == np.float32
    assert ours.valid_frames == ref_valid
    diff = np.abs(ours.values - ref).max()
    assert diff <= TOLERANCE, f"max abs diff {diff}"


def test_mel_filterbank_is_transformers_slaney_bank():
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(
        num_frequency_bins=257,
        num_mel_filters=128,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
        dtype=np.float32,
    )
    np.testing.assert_allclose(mel_filterbank(), ref, rtol=1e-6, atol=1e-9)


def test_window_is_torch_symmetric_hann():
    ref = torch.hann_window(400, periodic=False).numpy()
    np.testing.assert_allclose(hann_window(), ref, atol=1e-6)  # torch computes it in float32


@pytest.mark.parametrize("sentence", speech.SENTENCES[:3])
def test_speech_int16_and_float_match(extractor, sentence):
    pcm = speech.synthesize(sentence)
    x = int16_to_float32(pcm)
    assert_matches(extractor, compute_features(pcm), x)  # int16 input
    assert_matches(extractor, compute_features(x), x)  # float32 input
    assert_matches(extractor, compute_features(x.astype(np.float64)), x)


def test_speech_with_digital_silence_matches(extractor):
    composed = speech.compose(list(speech.SENTENCES[3:5]), 1.2, lead_s=0.8, tail_s=1.0)
    assert (composed.pcm[:1000] == 0).all()  # really digital silence around and between the speech
    x = int16_to_float32(composed.pcm)
    assert_matches(extractor, compute_features(composed.pcm), x)


def test_quiet_noisy_speech_matches(extractor):
    composed = speech.compose([speech.SENTENCES[5]], 0.5, noise_dbfs=-70, seed=3)
    x = int16_to_float32(composed.pcm) * np.float32(0.05)  # very quiet: log floor matters
    assert_matches(extractor, compute_features(x), x)


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_other_sample_rates_are_resampled_like_load_audio(extractor, rate):
    x16 = int16_to_float32(speech.synthesize(speech.SENTENCES[6]))
    x = _resample(x16, 16000, rate)
    ours = compute_features(x, sample_rate=rate)
    assert_matches(extractor, ours, to_mono_16k(x, rate))
    assert abs(ours.valid_frames - len(x16) // 160) <= 1


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    import soxr

    return soxr.resample(x, src, dst, quality="HQ").astype(np.float32)


@pytest.mark.parametrize("n_samples", [320, 350, 399, 400, 481])
def test_clips_shorter_than_a_window_match(extractor, n_samples):
    x = int16_to_float32(speech.synthesize(speech.SENTENCES[7]))[2000 : 2000 + n_samples]
    assert_matches(extractor, compute_features(x), x)


def test_below_two_frames_is_a_clear_error(extractor):
    x = np.full(MIN_SAMPLES - 1, 0.1, dtype=np.float32)
    with pytest.raises(AudioError, match="too short"):
        compute_features(x)
    # transformers has nothing to normalise either: its std over < 2 frames is NaN.
    ref, _ = reference(extractor, x)
    assert np.isnan(ref).any()


def test_digital_silence_normalises_to_exact_zero(extractor):
    ours = compute_features(np.zeros(16000, dtype=np.int16))
    assert ours.valid_frames == 100
    assert not ours.values.any()
    # transformers accumulates in float32, so its std is rounding noise instead of 0 and the
    # normalised values are that noise amplified by 1/1e-5; still bounded by 1 in magnitude.
    ref, _ = reference(extractor, np.zeros(16000, dtype=np.float32))
    assert np.abs(ref).max() < 1.0


def test_frames_beyond_valid_are_zero():
    x = int16_to_float32(speech.synthesize(speech.SENTENCES[8]))
    f = compute_features(x)
    assert f.values.shape[0] == len(x) // 160 + 1
    assert f.valid_frames == len(x) // 160
    assert not f.values[f.valid_frames :].any()
    assert np.abs(f.values[: f.valid_frames].mean(axis=0)).max() < 1e-4


def test_pad_features():
    values = np.ones((5, 128), dtype=np.float32)
    padded = pad_features(values, 8)
    assert padded.shape == (8, 128) and padded[:5].all() and not padded[5:].any()
    assert pad_features(values, 4, valid_frames=4).shape == (4, 128)  # invalid row cut
    with pytest.raises(ValueError, match="split the audio"):
        pad_features(values, 4)


def test_35_seconds_fit_the_published_encoder():
    x = np.random.default_rng(0).normal(0, 0.05, 35 * 16000).astype(np.float32)
    f = compute_features(x)
    assert (f.values.shape[0], f.valid_frames) == (MAX_FRAMES + 1, MAX_FRAMES)
    padded = pad_features(f.values, MAX_FRAMES, f.valid_frames)
    np.testing.assert_array_equal(padded, f.values[:MAX_FRAMES])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((100, 2), dtype=np.float32),
        np.zeros(1000, dtype=np.int32),
        np.zeros(1000, dtype=np.uint8),
    ],
)
def test_bad_input_is_an_audio_error(bad):
    with pytest.raises(AudioError):
        compute_features(bad)
