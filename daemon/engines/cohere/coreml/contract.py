"""The CoreML model contract for Cohere Transcribe, named once.

These names, shapes and rules are what FluidInference's published packages use and what our own
export (`dictated.engines.cohere.coreml.export`) produces, so one runtime serves both. The runtime reads everything that
can vary (frame counts, cache length, dtypes, flavour) from the packages' own signatures; this
module only holds what is fixed by the contract.
"""

from __future__ import annotations

import enum
import math

# -- encoder -------------------------------------------------------------------------------------
ENC_FEATURES = "input_features"  # (1, n_mels, feature_frames) float32
ENC_FEATURE_LENGTH = "feature_length"  # (1,) int32, valid frames before padding
ENC_HIDDEN = "hidden_states"  # (1, encoder_frames, d_model), projection already applied

# -- decoder (both flavours) --------------------------------------------------------------------
DEC_INPUT_ID = "input_id"  # (1, 1) int32
DEC_ENCODER_HIDDEN = "encoder_hidden_states"  # (1, encoder_frames, d_model)
DEC_CROSS_MASK = "cross_attention_mask"  # (1, 1, 1, encoder_frames) additive
DEC_ATTENTION_MASK = "attention_mask"  # (1, 1, 1, step+1) zeros, or (1, 1, 1, S) causal (v2)
DEC_POSITION_IDS = "position_ids"  # (1, 1) int32, stateful flavour
DEC_POSITION_ID = "position_id"  # (1, 1) int32, cache-external flavour (singular)
DEC_LOGITS = "logits"  # (1, vocab)

#: additive mask value for positions a query must ignore; finite so fp16 never makes -inf - -inf
MASK_NEGATIVE = -1e4

# -- user-defined metadata our export writes (absent from the published packages) --------------
META_PREFIX = "dictated."
META_SCORES = "dictated.scores"  # "logits" or "log_softmax"
META_PRECISION = "dictated.precision"  # "fp16" or "int8"
META_ROLE = "dictated.role"  # "encoder" or "decoder"
META_FLAVOUR = "dictated.flavour"  # DecoderFlavour value
META_BUCKET_S = "dictated.bucket_seconds"


def k_cache(layer: int) -> str:
    return f"k_cache_{layer}"


def v_cache(layer: int) -> str:
    return f"v_cache_{layer}"


def cache_out(name: str) -> str:
    """Output name under which a cache-external decoder returns the updated `name` cache."""
    return f"{name}_out"


class DecoderFlavour(enum.StrEnum):
    """How a decoder package keeps its self-attention KV cache."""

    STATEFUL = "stateful"  # CoreML State API (macOS 15+), `make_state()` per utterance
    CACHE_EXTERNAL_V1 = "cache-external-v1"  # caches in/out, attention_mask grows with the step
    CACHE_EXTERNAL_V2 = "cache-external-v2"  # caches in/out, fixed additive causal attention_mask

    @property
    def default_scores(self) -> str:
        """What `logits` holds when the package does not say: the published stateful decoder
        applies log-softmax, the cache-external ones return raw logits."""
        return "log_softmax" if self is DecoderFlavour.STATEFUL else "logits"


def valid_encoder_frames(feature_length: int, feature_frames: int, encoder_frames: int) -> int:
    """Encoder frames that carry audio: clamp(ceil(L * E / F), 1, E).

    The published runtime contract; F and E come from the encoder package's shapes (3500 -> 438
    for the published 35 s encoder), never from constants here.
    """
    frames = math.ceil(feature_length * encoder_frames / feature_frames)
    return max(1, min(encoder_frames, frames))


def subsampled_frames(feature_frames: int, factor: int = 8, kernel: int = 3) -> int:
    """Encoder output frames for `feature_frames` input frames: the conv stack's own arithmetic
    (stride 2, padding (kernel-1)//2, log2(factor) layers). 3500 -> 438."""
    frames = feature_frames
    pad = (kernel - 1) // 2
    for _ in range(int(math.log2(factor))):
        frames = (frames + 2 * pad - kernel) // 2 + 1
    return frames
