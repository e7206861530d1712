"""Edges of the static-cache decoder loop that `test_static_decoder.py` does not reach.

Each test compares with transformers (`generate`, or a fresh runtime) in fp32 on a tiny seeded
model, at a place where a wrong loop would differ: encoder frames padded beyond the audio (the
cross-attention mask is a slice of the valid frames), a prompt fed in two blocks (the causal mask
of a block that starts past position 0), a decode to the decoder's very last position, and the
shared KV buffer after a decode cancelled halfway.
"""

from __future__ import annotations

import copy
import dataclasses
import threading

import pytest

from tests import speech

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dictated.engines.base import Cancelled  # noqa: E402
from dictated.engines.cohere.decoding import DecodingOptions, GreedyDecoder  # noqa: E402
from dictated.engines.cohere.features import compute_features, pad_features  # noqa: E402
from dictated.engines.cohere.precision import FP32  # noqa: E402
from dictated.engines.cohere.runtime_torch import TorchRuntime  # noqa: E402
from tests.engines.cohere.fixtures import reference_tokens  # noqa: E402
from tests.engines.cohere.test_static_decoder import (  # noqa: E402
    EOS,
    PROMPT,
    build,
)

POSITIONS = 64  # tiny_cohere_config's max_position_embeddings


@pytest.fixture(scope="module")
def clips():
    return [compute_features(speech.synthesize(s)) for s in speech.SENTENCES[:2]]


def static_tokens(runtime, features, n: int | None, cancel=None) -> list[int]:
    policy = GreedyDecoder(DecodingOptions(max_new_tokens=n), EOS)
    result = policy.run(
        runtime, runtime.encode(features.values, features.valid_frames), PROMPT, cancel
    )
    return list(result.tokens) + ([] if result.truncated else [EOS])


@pytest.mark.parametrize("seed", [0, 1])
def test_padded_encoder_frames_are_masked_like_generate(clips, seed):
    """300 zero frames after the audio: generate masks them, the static loop slices them away."""
    model = build("64-d, 4 heads, 2 kv heads", seed)
    runtime = TorchRuntime.from_model(copy.deepcopy(model), FP32)
    clip = clips[0]
    values = pad_features(clip.values, clip.values.shape[0] + 300, clip.valid_frames)
    padded = dataclasses.replace(clip, values=values)
    encoded = runtime.encode(padded.values, padded.valid_frames)
    assert encoded.total_frames > encoded.valid_frames  # the padding reached the decoder
    assert static_tokens(runtime, padded, 24) == reference_tokens(model, padded, PROMPT, 24)


def test_a_prompt_fed_in_two_blocks_equals_one_block(clips):
    """The second block starts at position 4: its causal mask must be offset by its start."""
    runtime = TorchRuntime.from_model(build("64-d, 4 heads, 3 layers", 0), FP32)
    encoded = runtime.encode(clips[0].values, clips[0].valid_frames)
    whole = runtime.start(encoded).feed(PROMPT)
    split = runtime.start(encoded)
    split.feed(PROMPT[:4])
    torch.testing.assert_close(
        torch.from_numpy(split.feed(PROMPT[4:])), torch.from_numpy(whole), rtol=1e-5, atol=1e-5
    )


def test_a_decode_to_the_last_position_equals_generate(clips):
    """No token limit but the decoder's: every one of the 54 free positions is used (the last
    feed, at position 63, only asks whether the text ends) and the tokens are generate's."""
    model = build("32-d, 2 heads", 0)
    runtime = TorchRuntime.from_model(copy.deepcopy(model), FP32)
    ours = static_tokens(runtime, clips[1], None)
    assert len(ours) >= POSITIONS - len(PROMPT)  # this seed talks to the end
    assert ours[: POSITIONS - len(PROMPT)] == reference_tokens(
        model, clips[1], PROMPT, POSITIONS - len(PROMPT)
    )


class CancelAfter(threading.Event):
    """Set once `is_set` has been asked `n` times: a cancel that lands mid-decode."""

    def __init__(self, n: int):
        super().__init__()
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_a_cancelled_decode_leaves_nothing_behind(clips):
    """A long decode cancelled after 20 steps, then a shorter utterance on the same runtime: its
    tokens are a fresh runtime's (and generate's)."""
    model = build("64-d, 4 heads, 2 kv heads", 1)
    used = TorchRuntime.from_model(copy.deepcopy(model), FP32)
    with pytest.raises(Cancelled):
        static_tokens(used, clips[1], 40, cancel=CancelAfter(20))
    assert static_tokens(used, clips[0], 16) == reference_tokens(model, clips[0], PROMPT, 16)


def test_an_older_session_cannot_be_fed_once_a_newer_one_took_the_buffer(clips):
    """Two sessions share one KV buffer: feeding the older one after the newer started would
    attend to the newer utterance's K/V and give wrong scores silently; it raises instead."""
    runtime = TorchRuntime.from_model(build("32-d, 2 heads", 0), FP32)
    encoded = runtime.encode(clips[0].values, clips[0].valid_frames)
    older = runtime.start(encoded)
    older.feed(PROMPT)
    newer = runtime.start(encoded)
    newer.feed(PROMPT[:3])
    with pytest.raises(RuntimeError, match="taken by a newer session"):
        older.feed([PROMPT[0]])
    newer.feed(PROMPT[3:])  # the newest goes on
