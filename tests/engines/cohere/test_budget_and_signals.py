"""The token budget that follows the audio, and the guard signals the decoding policy fills.

`no_speech_prob` and `avg_logprob` are computed in `decoding.py` from the filtered scores, so every
runtime fills them; here they are checked against transformers' own processed scores
(`generate(output_scores=True)`), and on a stand-in runtime that returns log-probabilities the
way CoreML decoders do.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests import speech

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dictated.engines.base import EngineOptions  # noqa: E402
from dictated.engines.cohere.decoding import (  # noqa: E402
    TOKEN_MARGIN,
    TOKENS_PER_SECOND,
    DecodingOptions,
    GreedyDecoder,
    token_budget,
)
from dictated.engines.cohere.engine import CohereTorchEngine  # noqa: E402
from dictated.engines.cohere.features import compute_features  # noqa: E402
from dictated.engines.cohere.runtime import CohereRuntime, DecoderSession, EncoderOutput  # noqa: E402
from dictated.engines.cohere.tokenizer import CohereTokenizer  # noqa: E402
from tests.engines.cohere.fixtures import (  # noqa: E402
    load_tiny_model,
    make_tiny_cohere_dir,
    reference_generate,
    train_tiny_tokenizer,
)

EOS = 3
NOSPEECH = 1  # <|nospeech|>, as in the published vocabulary (fixtures.py)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tok = train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.model")
    return {
        "talker": make_tiny_cohere_dir(tmp_path_factory.mktemp("b0"), 0, tokenizer_model=tok),
        "stopper": make_tiny_cohere_dir(
            tmp_path_factory.mktemp("b1"), 1, eos_bias=1.0, tokenizer_model=tok
        ),
        "silent": make_tiny_cohere_dir(
            tmp_path_factory.mktemp("b2"), 2, eos_bias=8.0, tokenizer_model=tok
        ),
    }


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def test_budget_is_a_generous_rate_plus_a_margin():
    assert token_budget(0.0) == TOKEN_MARGIN
    assert token_budget(5.0) == 5 * TOKENS_PER_SECOND + TOKEN_MARGIN
    # a 35 s utterance fits the published decoder's 1024 positions with its 10-token prompt
    assert token_budget(35.0) + 10 < 1024
    # generous: 5 words/s at 2 tokens a word still fits with room to spare
    assert token_budget(10.0) >= 10 * 5 * 2 * 1.5


def test_a_noise_clip_stops_at_the_budget_and_is_truncated(dirs):
    """The seed-0 tiny model never says eos (like a decoder talking over noise): 1 s of noise is
    cut at the 1 s budget (36 tokens), not at the decoder's 54 free positions."""
    engine = CohereTorchEngine.load(EngineOptions(model=str(dirs["talker"])))
    transcript = engine.transcribe(noise(1.0), "en")
    assert transcript.truncated
    assert len(transcript.tokens) == token_budget(1.0) < 64 - 10
    longer = engine.transcribe(noise(0.5), "en")
    assert longer.truncated and len(longer.tokens) == token_budget(0.5)


def test_budget_never_exceeds_the_decoder_positions(dirs):
    """35 s of budget is far more than the tiny decoder's 54 free positions: those decide."""
    engine = CohereTorchEngine.load(EngineOptions(model=str(dirs["talker"])))
    features = compute_features(noise(3.0))
    encoded = engine.runtime.encode(features.values, features.valid_frames)
    prompt = engine.tokenizer.prompt("en")
    result = engine.decoder.run(engine.runtime, encoded, prompt, audio_seconds=35.0)
    assert result.truncated and len(result.tokens) == 64 - len(prompt)


def reference_signals(model_dir, features, prompt, n: int):
    """(no_speech_prob, avg_logprob, tokens) from transformers' processed scores."""
    model = load_tiny_model(model_dir)
    out = reference_generate(
        model, features, prompt, n, output_scores=True, return_dict_in_generate=True
    )
    chosen = out.sequences[0, len(prompt) :].tolist()
    logprobs = [
        torch.log_softmax(score[0].float(), -1)[token].item()
        for score, token in zip(out.scores, chosen, strict=True)
    ]
    first = torch.softmax(out.scores[0][0].float(), -1)[[EOS, NOSPEECH]].sum().item()
    return first, float(np.mean(logprobs)), chosen


@pytest.mark.parametrize("name", ["talker", "stopper", "silent"])
def test_signals_equal_transformers_processed_scores(dirs, name):
    clip = compute_features(speech.synthesize(speech.SENTENCES[0]))
    prompt = CohereTokenizer.from_dir(dirs[name]).prompt("en")
    no_speech, avg, ref_tokens = reference_signals(dirs[name], clip, prompt, 30)
    engine = CohereTorchEngine.load(EngineOptions(model=str(dirs[name])))
    engine.with_decoding(max_new_tokens=30)
    encoded = engine.runtime.encode(clip.values, clip.valid_frames)
    result = engine.decoder.run(engine.runtime, encoded, prompt)
    assert list(result.tokens) + ([] if result.truncated else [EOS]) == ref_tokens
    assert result.no_speech_prob == pytest.approx(no_speech, abs=1e-5)
    assert result.avg_logprob == pytest.approx(avg, abs=1e-4)


def test_the_engine_fills_the_transcript_fields(dirs):
    speech_pcm = speech.synthesize(speech.SENTENCES[1]).astype(np.float32) / 32768
    talker = CohereTorchEngine.load(EngineOptions(model=str(dirs["talker"])))
    silent = CohereTorchEngine.load(EngineOptions(model=str(dirs["silent"])))
    said = talker.transcribe(speech_pcm, "en")
    nothing = silent.transcribe(speech_pcm, "en")
    assert said.no_speech_prob is not None and said.no_speech_prob < 0.05
    assert said.avg_logprob is not None and said.avg_logprob < 0
    assert nothing.text == "" and not nothing.tokens and nothing.no_speech_prob > 0.5
    # with eos the only output token, its log-probability is the average; no_speech_prob adds
    # the probability of <|nospeech|> to that of eos
    assert nothing.avg_logprob < math.log(nothing.no_speech_prob)


class LogProbRuntime(CohereRuntime):
    """A stand-in runtime returning fixed log-softmax scores, as CoreML's stateful decoders do."""

    scores_are_log_probs = True
    max_positions = 32

    def __init__(self, steps: list[np.ndarray]):
        self.steps = steps

    def max_feature_frames(self) -> int:
        return 100

    def encode(self, features, valid_frames):
        return EncoderOutput(hidden=None, valid_frames=1, total_frames=1)

    def start(self, encoded):
        runtime = self

        class Session(DecoderSession):
            def feed(self, token_ids):
                self.position += len(token_ids)
                return runtime.steps[min(self.position - 3, len(runtime.steps) - 1)]

        return Session()


def test_signals_from_a_runtime_that_returns_log_probs():
    probs = [np.array([0.1, 0.6, 0.1, 0.2]), np.array([0.1, 0.1, 0.1, 0.7])]  # eos = id 3
    steps = [np.log(p).astype(np.float32) for p in probs]
    policy = GreedyDecoder(DecodingOptions(repetition_penalty=1.0, no_repeat_ngram_size=0), EOS)
    result = policy.run(LogProbRuntime(steps), EncoderOutput(None, 1, 1), [0, 2, 2])
    assert result.tokens == (1,) and not result.truncated
    assert result.no_speech_prob == pytest.approx(0.2, abs=1e-6)
    assert result.avg_logprob == pytest.approx((math.log(0.6) + math.log(0.7)) / 2, abs=1e-6)


def test_nospeech_as_first_token_counts_as_no_speech():
    """Cohere answers silence with `<|nospeech|>` (id 1) as well as with eos: a first step that
    puts 0.5 on <|nospeech|> and 0.2 on eos is 0.7 likely no speech (eos alone said 0.2)."""
    probs = [np.array([0.1, 0.5, 0.2, 0.2]), np.array([0.1, 0.1, 0.7, 0.1])]  # eos = id 2 here
    steps = [np.log(p).astype(np.float32) for p in probs]
    options = DecodingOptions(repetition_penalty=1.0, no_repeat_ngram_size=0)
    runtime = LogProbRuntime(steps)
    with_nospeech = GreedyDecoder(options, 2, nospeech_id=1).run(
        runtime, EncoderOutput(None, 1, 1), [0, 3, 3]
    )
    eos_only = GreedyDecoder(options, 2).run(runtime, EncoderOutput(None, 1, 1), [0, 3, 3])
    assert with_nospeech.tokens == eos_only.tokens == (1,)  # decoding itself is unchanged
    assert with_nospeech.no_speech_prob == pytest.approx(0.7, abs=1e-6)
    assert eos_only.no_speech_prob == pytest.approx(0.2, abs=1e-6)


def test_the_engine_passes_the_vocabularys_nospeech_id(dirs):
    engine = CohereTorchEngine.load(EngineOptions(model=str(dirs["talker"])))
    assert engine.tokenizer.nospeech_id == NOSPEECH
    assert engine.decoder.nospeech_id == NOSPEECH
    engine.with_decoding(max_new_tokens=4)
    assert engine.decoder.nospeech_id == NOSPEECH


def test_warmup_runs_one_token_steps_even_when_silence_ends_at_once(dirs):
    """The "silent" model says eos first, as a trained one does for the warm-up's silence: the
    warm-up must still step the decoder one token at a time (every real token's path)."""
    engine = CohereTorchEngine.load(EngineOptions(model=str(dirs["silent"])))
    fed: list[int] = []
    start = engine.runtime.start

    def recording_start(encoded):
        session = start(encoded)
        feed = session.feed

        def recording_feed(token_ids):
            fed.append(len(token_ids))
            return feed(token_ids)

        session.feed = recording_feed
        return session

    engine.runtime.start = recording_start
    assert engine.transcribe(np.zeros(16000, dtype=np.float32), "en").tokens == ()
    assert 1 not in fed  # transcribing silence alone never takes a one-token step
    engine.warmup()
    assert fed.count(1) >= 3
