"""The static-cache decoder loop (`decoder_torch.py`) against transformers on tiny seeded models.

`test_decoding.py` already runs the default (static) loop against `generate`; this file adds the
shapes it does not cover (wider models, grouped-query attention), compares the scores step by step
with transformers' own decoder forward, and checks that the shared KV buffer carries nothing from
one utterance to the next.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests import speech

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dictated.engines.cohere.decoding import DecodingOptions, GreedyDecoder  # noqa: E402
from dictated.engines.cohere.features import compute_features  # noqa: E402
from dictated.engines.cohere.precision import FP32  # noqa: E402
from dictated.engines.cohere.runtime_torch import TorchRuntime  # noqa: E402
from tests.engines.cohere.fixtures import reference_tokens, tiny_cohere_config  # noqa: E402

VOCAB = 96
EOS = 3
PROMPT = [5, 7, 4, 16, 40, 40, 6, 9, 11, 13]  # ten ids, as long as the Cohere prompt

SHAPES = {  # name -> (tiny_cohere_config overrides, num_key_value_heads)
    "32-d, 2 heads": ({}, None),
    "64-d, 4 heads, 3 layers": ({"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3}, None),
    "64-d, 4 heads, 2 kv heads": ({"hidden_size": 64, "num_attention_heads": 4}, 2),
}  # fmt: skip


def build(shape: str, seed: int):
    overrides, kv_heads = SHAPES[shape]
    config = tiny_cohere_config(VOCAB, PROMPT[0], **overrides)
    if kv_heads is not None:
        config.num_key_value_heads = kv_heads
    torch.manual_seed(seed)
    from transformers import CohereAsrForConditionalGeneration

    return CohereAsrForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def clips():
    return [compute_features(speech.synthesize(s)) for s in speech.SENTENCES[:2]]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("seed", [0, 1])
def test_static_loop_tokens_equal_generate(clips, shape, seed):
    model = build(shape, seed)
    runtime = TorchRuntime.from_model(copy.deepcopy(model), FP32)
    assert runtime.static is not None
    policy = GreedyDecoder(DecodingOptions(max_new_tokens=24), EOS)
    for clip in clips:
        ref = reference_tokens(model, clip, PROMPT, 24)
        result = policy.run(runtime, runtime.encode(clip.values, clip.valid_frames), PROMPT)
        assert list(result.tokens) + ([] if result.truncated else [EOS]) == ref


def test_static_scores_equal_transformers_decoder_forward(clips):
    """Step by step, prompt block included, the static loop's logits are transformers' (fp32)."""
    model = build("64-d, 4 heads, 2 kv heads", 0)
    static = TorchRuntime.from_model(copy.deepcopy(model), FP32)
    reference = TorchRuntime.from_model(copy.deepcopy(model), FP32, decoder="transformers")
    clip = clips[0]
    a = static.start(static.encode(clip.values, clip.valid_frames))
    b = reference.start(reference.encode(clip.values, clip.valid_frames))
    sa, sb = a.feed(PROMPT), b.feed(PROMPT)
    for step in range(20):
        np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-4, err_msg=f"step {step}")
        token = int(np.argmax(sa))
        sa, sb = a.feed([token]), b.feed([token])
    assert a.position == b.position == len(PROMPT) + 20


def test_prompt_as_a_block_equals_token_by_token(clips):
    runtime = TorchRuntime.from_model(build("32-d, 2 heads", 1), FP32)
    encoded = runtime.encode(clips[1].values, clips[1].valid_frames)
    block = runtime.start(encoded).feed(PROMPT)
    one_by_one = runtime.start(encoded)
    for token in PROMPT:
        last = one_by_one.feed([token])
    np.testing.assert_allclose(block, last, rtol=1e-5, atol=1e-5)


def test_the_shared_kv_buffer_carries_nothing_between_utterances(clips):
    """A long utterance then a short one on one runtime: the short one's tokens are those of a
    fresh runtime (stale K/V beyond the new position must never be attended to)."""
    model = build("32-d, 2 heads", 0)
    used = TorchRuntime.from_model(copy.deepcopy(model), FP32)
    fresh = TorchRuntime.from_model(copy.deepcopy(model), FP32)
    long_policy = GreedyDecoder(DecodingOptions(max_new_tokens=40), EOS)
    short_policy = GreedyDecoder(DecodingOptions(max_new_tokens=12), EOS)
    long_clip, short_clip = clips
    long_policy.run(used, used.encode(long_clip.values, long_clip.valid_frames), PROMPT)
    again = short_policy.run(used, used.encode(short_clip.values, short_clip.valid_frames), PROMPT)
    first = short_policy.run(
        fresh, fresh.encode(short_clip.values, short_clip.valid_frames), PROMPT
    )
    assert again.tokens == first.tokens and len(first.tokens) > 3


def test_a_model_whose_projection_was_taken_is_refused():
    model = build("32-d, 2 heads", 0)
    TorchRuntime.from_model(model, FP32)
    with pytest.raises(ValueError, match="projection was already moved"):
        TorchRuntime.from_model(model, FP32)
