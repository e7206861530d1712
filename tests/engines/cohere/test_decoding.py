"""Greedy decoding on the torch runtime against transformers' `generate` on tiny seeded models."""

from __future__ import annotations

import threading
from unittest import mock

import numpy as np
import pytest

from tests import speech

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.generation.logits_process import (  # noqa: E402
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
)

from dictated.engines.base import Cancelled, EngineOptions  # noqa: E402
from dictated.engines.cohere.decoding import (  # noqa: E402
    DecodingOptions,
    GreedyDecoder,
    NoRepeatNGram,
    RepetitionPenalty,
)
from dictated.engines.cohere.engine import CohereTorchEngine  # noqa: E402
from dictated.engines.cohere.features import Features, compute_features  # noqa: E402
from dictated.engines.cohere.runtime_torch import TorchRuntime  # noqa: E402
from dictated.engines.cohere.tokenizer import CohereTokenizer  # noqa: E402
from tests.engines.cohere.fixtures import (  # noqa: E402
    load_tiny_model,
    make_tiny_cohere_dir,
    reference_tokens,
    train_tiny_tokenizer,
)

MAX_POSITIONS = 64  # the tiny models' decoder capacity: 10 prompt + 54 output tokens
EOS = 3


@pytest.fixture(scope="module")
def tokenizer_model(tmp_path_factory):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.model")


@pytest.fixture(scope="module")
def make_dir(tmp_path_factory, tokenizer_model):
    built = {}

    def make(seed: int, eos_bias: float = 0.0):
        if (seed, eos_bias) not in built:
            path = tmp_path_factory.mktemp(f"tiny{seed}")
            built[seed, eos_bias] = make_tiny_cohere_dir(
                path, seed, eos_bias=eos_bias, tokenizer_model=tokenizer_model
            )
        return built[seed, eos_bias]

    return make


@pytest.fixture(scope="module")
def clips() -> list[Features]:
    return [compute_features(speech.synthesize(s)) for s in speech.SENTENCES[:3]]


def our_tokens(model_dir, features: Features, prompt: list[int], **options):
    runtime = TorchRuntime.from_pretrained(model_dir, device="cpu")
    decoder = GreedyDecoder(DecodingOptions(**options), EOS)
    result = decoder.run(runtime, runtime.encode(features.values, features.valid_frames), prompt)
    return list(result.tokens) + ([] if result.truncated else [EOS]), result


def prompt_for(model_dir, language: str = "en") -> list[int]:
    return CohereTokenizer.from_dir(model_dir).prompt(language)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tokens_equal_generate(make_dir, clips, seed):
    model_dir = make_dir(seed)
    model = load_tiny_model(model_dir)
    outputs = []
    for clip, language in zip(clips, ["en", "fr", "ja"], strict=True):
        prompt = prompt_for(model_dir, language)
        ref = reference_tokens(model, clip, prompt, 20)
        ours, result = our_tokens(model_dir, clip, prompt, max_new_tokens=20)
        assert ours == ref
        assert result.truncated == (ref[-1] != EOS)
        outputs.append(tuple(ref))
    assert len(set(outputs)) > 1, (
        "the audio must steer the tokens, or parity proves nothing about the encoder"
    )


def test_stops_at_eos_like_generate(make_dir, clips):
    stopped = 0
    for seed in (1, 2):
        model_dir = make_dir(seed, eos_bias=1.0)
        model = load_tiny_model(model_dir)
        prompt = prompt_for(model_dir)
        for clip in clips:
            ref = reference_tokens(model, clip, prompt, 40)
            ours, result = our_tokens(model_dir, clip, prompt, max_new_tokens=40)
            assert ours == ref
            if ref[-1] == EOS and len(ref) >= 3:
                stopped += 1
                assert not result.truncated
    assert stopped >= 2, "the biased models should end with eos after a few tokens"


def test_cap_from_decoder_positions_truncates_like_generate(make_dir, clips):
    model_dir = make_dir(0)
    prompt = prompt_for(model_dir)
    ref = reference_tokens(
        load_tiny_model(model_dir), clips[0], prompt, MAX_POSITIONS - len(prompt)
    )
    assert EOS not in ref and len(ref) == MAX_POSITIONS - len(prompt)
    ours, result = our_tokens(model_dir, clips[0], prompt)  # no max_new_tokens: capacity decides
    assert ours == ref
    assert result.truncated and len(result.tokens) == MAX_POSITIONS - len(prompt)


def test_eos_bias_is_transformers_sequence_bias_on_eos(make_dir, clips):
    model_dir = make_dir(2)
    model = load_tiny_model(model_dir)
    prompt = prompt_for(model_dir)
    for bias in (0.5, 1.0):
        ref = reference_tokens(model, clips[1], prompt, 30, sequence_bias={(EOS,): bias})
        ours, _ = our_tokens(model_dir, clips[1], prompt, max_new_tokens=30, eos_bias=bias)
        assert ours == ref
    assert ours[-1] == EOS  # the largest bias ends the text early


def test_masked_frames_do_not_count(make_dir, clips):
    """Frames beyond the valid length must not change the tokens (cross-attention mask)."""
    model_dir = make_dir(0)
    prompt = prompt_for(model_dir)
    clip = clips[0]
    rng = np.random.default_rng(0)
    padded = clip.values.copy()
    padded[clip.valid_frames :] = rng.normal(size=padded[clip.valid_frames :].shape)
    padded = np.concatenate([padded, 3 * rng.normal(size=(600, 128)).astype(np.float32)])
    base, _ = our_tokens(model_dir, clip, prompt, max_new_tokens=20)
    moved, _ = our_tokens(model_dir, Features(padded, clip.valid_frames), prompt, max_new_tokens=20)
    assert moved == base
    unmasked, _ = our_tokens(model_dir, Features(padded, len(padded)), prompt, max_new_tokens=20)
    assert unmasked != base, (
        "the padding must matter when it is not masked, or this test proves nothing"
    )


def random_histories(rng, vocab: int, count: int):
    for _ in range(count):
        length = int(rng.integers(1, 40))
        yield rng.integers(0, vocab, size=length)  # a small vocab makes repeats likely


@pytest.mark.parametrize("seed", range(3))
def test_filters_equal_transformers_processors(seed):
    rng = np.random.default_rng(seed)
    vocab = 12
    for history in random_histories(rng, vocab, 50):
        scores = rng.normal(size=vocab).astype(np.float32)
        ids = torch.from_numpy(history)[None]
        for ours, theirs in (
            (RepetitionPenalty(1.1), RepetitionPenaltyLogitsProcessor(1.1)),
            (NoRepeatNGram(3), NoRepeatNGramLogitsProcessor(3)),
        ):
            expected = theirs(ids, torch.from_numpy(scores.copy())[None])[0].numpy()
            got = scores.copy()
            ours.apply(got, history.tolist())
            np.testing.assert_array_equal(got, expected)


def test_prompt_that_fills_the_decoder_is_an_error(make_dir):
    runtime = TorchRuntime.from_pretrained(make_dir(0), device="cpu")
    with pytest.raises(ValueError, match="positions"):
        GreedyDecoder(DecodingOptions(), EOS).token_limit(runtime, MAX_POSITIONS)


def test_a_transcript_that_exactly_fills_the_decoder_is_not_truncated(make_dir, clips):
    """When the text ends on the decoder's last free position, the last token is still fed to
    learn that eos follows: `truncated` only when the text really was cut."""
    model_dir = make_dir(1, eos_bias=1.0)
    model = load_tiny_model(model_dir)
    prompt = prompt_for(model_dir)
    for clip in clips:
        ref = reference_tokens(model, clip, prompt, 40)
        if ref[-1] == EOS and len(ref) >= 3:
            break
    else:
        pytest.fail("a biased model should end with eos on one of the clips")
    words = ref[:-1]
    runtime = TorchRuntime.from_pretrained(model_dir, device="cpu")
    decoder = GreedyDecoder(DecodingOptions(), EOS)
    encoded = runtime.encode(clip.values, clip.valid_frames)
    runtime.max_positions = len(prompt) + len(words)  # capacity ends right after the last word
    exact = decoder.run(runtime, encoded, prompt)
    assert list(exact.tokens) == words and not exact.truncated
    runtime.max_positions -= 1  # one position fewer: the last word does not fit
    cut = decoder.run(runtime, encoded, prompt)
    assert list(cut.tokens) == words[:-1] and cut.truncated


class CancellingRuntime(TorchRuntime):
    """The real torch runtime whose decoder session sets `cancel` as it takes its `cancel_at`-th
    step, as another thread would mid-decode (speech resumed); it counts every step taken."""

    cancel_at = 0
    cancel = threading.Event()

    def start(self, encoded):
        session = super().start(encoded)
        feed = session.feed
        self.steps = 0

        def counted(token_ids):
            self.steps += 1
            if self.steps == self.cancel_at:
                self.cancel.set()
            return feed(token_ids)

        session.feed = counted
        return session


def test_cancel_stops_the_greedy_loop_between_tokens(make_dir, clips):
    runtime = CancellingRuntime.from_pretrained(make_dir(0), device="cpu")
    decoder = GreedyDecoder(DecodingOptions(), EOS)
    encoded = runtime.encode(clips[0].values, clips[0].valid_frames)
    prompt = prompt_for(make_dir(0))
    full = decoder.run(runtime, encoded, prompt)  # nobody cancels: all 54 tokens
    assert len(full.tokens) > 10 and runtime.steps >= len(full.tokens)

    runtime.cancel_at, runtime.cancel = 5, threading.Event()  # the prompt, then 4 output tokens
    with pytest.raises(Cancelled):
        decoder.run(runtime, encoded, prompt, cancel=runtime.cancel)
    assert runtime.steps == 5  # the check before the 6th step stopped it


def test_a_cancelled_engine_does_not_encode(make_dir):
    engine = CohereTorchEngine.load(EngineOptions(model=str(make_dir(0))))
    cancel = threading.Event()
    cancel.set()
    pcm = np.zeros(16000, dtype=np.float32)
    with mock.patch.object(engine.runtime, "encode", wraps=engine.runtime.encode) as encode:
        with pytest.raises(Cancelled):
            engine.transcribe(pcm, "en", cancel)
        assert encode.call_count == 0
        engine.transcribe(pcm, "en", threading.Event())  # not set: decodes as usual
        assert encode.call_count == 1
