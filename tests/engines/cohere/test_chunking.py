"""Long-audio splitting and text joining against transformers' Cohere feature extractor/processor."""

from __future__ import annotations

import numpy as np
import pytest

from dictated.audio.format import int16_to_float32
from dictated.engines.cohere.chunking import CHUNK_SAMPLES, join_texts, split_long_audio
from tests import speech

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
processing = pytest.importorskip("transformers.models.cohere_asr.processing_cohere_asr")


@pytest.fixture(scope="module")
def extractor():
    return transformers.CohereAsrFeatureExtractor(dither=0.0)


def reference_bounds(extractor, x: np.ndarray) -> list[int]:
    """Chunk lengths as transformers' extractor cuts them (it splits only past 30 s, at most 35 s)."""
    if len(x) / 16000 <= extractor.max_audio_clip_s - extractor.overlap_chunk_second:
        return [len(x)]
    return [len(c) for c in extractor._split_audio_chunks_energy(torch.from_numpy(x))]


def assert_same_split(extractor, x: np.ndarray) -> list[np.ndarray]:
    chunks = split_long_audio(x)
    assert [len(c) for c in chunks] == reference_bounds(extractor, x)
    np.testing.assert_array_equal(np.concatenate(chunks), x)
    assert all(len(c) <= CHUNK_SAMPLES for c in chunks)
    return chunks


@pytest.mark.parametrize(("count", "pause_s"), [(9, 1.0), (14, 0.6), (22, 0.4)])
def test_speech_splits_where_transformers_splits(extractor, count, pause_s):
    sentences = [speech.SENTENCES[i % len(speech.SENTENCES)] for i in range(count)]
    x = int16_to_float32(speech.compose(sentences, pause_s, noise_dbfs=-65, seed=count).pcm)
    chunks = assert_same_split(extractor, x)
    assert len(chunks) >= 2


def test_noise_and_digital_silence(extractor):
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, 80 * 16000).astype(np.float32)
    assert_same_split(extractor, noise)
    quiet = noise.copy()
    quiet[31 * 16000 : 33 * 16000] = 0.0  # ties: digital silence; the first quietest window wins
    chunks = assert_same_split(extractor, quiet)
    assert len(chunks[0]) == 31 * 16000


@pytest.mark.parametrize(
    "n", [16000, 31 * 16000, CHUNK_SAMPLES, CHUNK_SAMPLES + 1, CHUNK_SAMPLES + 1600]
)
def test_boundaries(extractor, n):
    x = np.random.default_rng(n).normal(0, 0.1, n).astype(np.float32)
    chunks = assert_same_split(extractor, x)
    assert len(chunks) == (1 if n <= CHUNK_SAMPLES else 2)


@pytest.mark.parametrize(
    ("texts", "language"),
    [
        (["Hello there. ", " How are you?", "Fine. "], "en"),
        (["こんにちは。", " 元気ですか？"], "ja"),
        (["你好", "", "  ", "世界"], "zh"),
        (["  leading kept", "x"], "de"),
    ],
)
def test_join_texts_like_the_processor(texts, language):
    index = [(0, i) for i in range(len(texts))]
    separator = "" if language in {"ja", "zh"} else " "
    (expected,) = processing.CohereAsrProcessor._reassemble_chunk_texts(texts, index, separator)
    assert join_texts(texts, language) == expected


def test_join_of_nothing_is_empty():
    assert join_texts([], "en") == "" and join_texts(["", " "], "ja") == ""
