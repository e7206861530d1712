"""vLLM's own Cohere Transcribe against our cohere-torch engine, on one tiny NeMo-layout checkpoint.

vLLM (CPU build, its `cohere_asr.py`: own features, conformer, decoder, sampler, detokeniser)
serves tests/engines/cohere/nemo_checkpoint.py's model; our engine loads the very same directory. Greedy
decoding (temperature 0) with the same repetition penalty must give the same text. vLLM has no
no-repeat-ngram rule (it silently ignores a `no_repeat_ngram_size` field), so our engine runs with
that rule off here; `test_default_policy_differs_only_by_the_ngram_rule` says what that costs.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile

pytest.importorskip("torch")
pytest.importorskip("transformers")

from dictated.audio.format import int16_to_float32  # noqa: E402
from dictated.engines.base import EngineOptions  # noqa: E402
from dictated.engines.cohere.engine import CohereTorchEngine  # noqa: E402
from tests import speech  # noqa: E402

pytestmark = pytest.mark.vllm

SENTENCES = (0, 1, 2)


def wav_bytes(pcm16: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm16, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def engine(vllm_cohere):
    return CohereTorchEngine.load(EngineOptions(model=str(vllm_cohere.model_dir)))


@pytest.fixture(scope="module")
def clips():
    return {i: speech.synthesize(speech.SENTENCES[i]) for i in SENTENCES}


def ours(engine, pcm16, **policy):
    engine.with_decoding(**policy)
    return engine.transcribe(int16_to_float32(pcm16), "en")


@pytest.mark.parametrize("penalty", [1.1, 1.0])
@pytest.mark.parametrize("sentence", SENTENCES)
def test_vllm_text_equals_our_engine(vllm_cohere, engine, clips, sentence, penalty):
    """The parity test: the text vLLM answers for an utterance is our engine's text."""
    expected = ours(engine, clips[sentence], repetition_penalty=penalty, no_repeat_ngram_size=0)
    assert not expected.truncated and len(expected.tokens) > 5  # real decoding, ended by eos
    text = vllm_cohere.transcribe(
        wav_bytes(clips[sentence]), language="en", repetition_penalty=penalty
    )
    assert text == expected.text


def test_vllm_streams_our_tokens_one_at_a_time(vllm_cohere, engine, clips):
    """Token by token, as far as the API shows tokens (it returns no ids for Cohere): vLLM streams
    one SSE chunk per generated token that adds text (control pieces add none), and after each
    chunk the text so far is our decode of our greedy tokens up to that one; then an empty chunk
    with finish_reason "stop"."""
    expected = ours(engine, clips[0], repetition_penalty=1.1, no_repeat_ngram_size=0)
    sse = vllm_cohere.transcribe_raw(
        wav_bytes(clips[0]), language="en", repetition_penalty=1.1, stream="true"
    ).decode()
    data = [line[len("data: ") :] for line in sse.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    choices = [json.loads(d)["choices"][0] for d in data[:-1]]
    assert choices[-1].get("finish_reason") == "stop"  # ended at eos, as ours (not truncated)
    deltas = [c["delta"]["content"] for c in choices if c["delta"].get("content")]
    streamed = ["".join(deltas[: i + 1]).strip() for i in range(len(deltas))]
    tokens = list(expected.tokens)
    steps = [engine.tokenizer.decode(tokens[: i + 1]) for i in range(len(tokens))]
    growing = [text for i, text in enumerate(steps) if text != (steps[i - 1] if i else "")]
    assert streamed == growing
    assert len(tokens) - len(growing) == sum(
        engine.tokenizer.decode([t]) == "" for t in tokens
    )  # the tokens without a chunk are exactly those that print nothing


def test_default_policy_differs_only_by_the_ngram_rule(vllm_cohere, engine, clips):
    """Our default policy (penalty 1.1, no-repeat-3-gram) against vLLM with penalty 1.1: equal
    unless our ngram rule fired, i.e. unless a 3-gram of the prompt+output would have repeated."""
    for sentence in SENTENCES:
        plain = ours(engine, clips[sentence], repetition_penalty=1.1, no_repeat_ngram_size=0)
        default = ours(engine, clips[sentence], repetition_penalty=1.1, no_repeat_ngram_size=3)
        text = vllm_cohere.transcribe(
            wav_bytes(clips[sentence]), language="en", repetition_penalty=1.1
        )
        tokens = list(plain.tokens)
        repeats = any(
            tokens[i : i + 3] == tokens[j : j + 3]
            for i in range(len(tokens) - 2)
            for j in range(i + 1, len(tokens) - 2)
        )
        assert (text == default.text) or repeats
