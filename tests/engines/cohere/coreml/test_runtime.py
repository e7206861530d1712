"""The CoreML runtime's own code, run against a stand-in that executes the very traced TorchScript
modules the packages were converted from (CoreML's predict exists only on macOS), compared with the
PyTorch runtime through the same decoding policy: identical greedy tokens."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")
pytest.importorskip("transformers")

from dictated.audio.format import int16_to_float32  # noqa: E402
from dictated.engines.base import EngineOptions  # noqa: E402
from dictated.engines.cohere.coreml import contract  # noqa: E402
from dictated.engines.cohere.coreml.compile import CompileCache  # noqa: E402
from dictated.engines.cohere.coreml.engine import CohereCoreMLEngine  # noqa: E402
from dictated.engines.cohere.engine import CohereTorchEngine  # noqa: E402
from dictated.errors import ConfigError  # noqa: E402
from tests import speech  # noqa: E402
from tests.engines.cohere.coreml.exports import (  # noqa: E402
    first_divergence,
    reference_gap,
    tiny_export,
    tiny_model,
    with_decoder,
)
from tests.engines.cohere.coreml.standin import StandInError, TracedStandInBackend  # noqa: E402

STATEFUL = "cohere_decoder_stateful.mlpackage"
EXTERNAL = "cohere_decoder_cache_external_v2.mlpackage"


class RecordingBackend(TracedStandInBackend):
    """The stand-in, also recording every predict's inputs and every make_state call."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, dict]] = []
        self.states = 0

    def load(self, path, compute_units):
        model = super().load(path, compute_units)
        backend, predict, make_state = self, model.predict, model.make_state

        def recording_predict(inputs, state=None):
            backend.calls.append((Path(path).name, {k: np.array(v) for k, v in inputs.items()}))
            return predict(inputs, state)

        def recording_make_state():
            backend.states += 1
            return make_state()

        model.predict, model.make_state = recording_predict, recording_make_state
        return model


def coreml_engine(out, decoder, backend=None, **options):
    return CohereCoreMLEngine.from_layout(
        with_decoder(out, decoder), backend or TracedStandInBackend(), EngineOptions(**options)
    )


@pytest.fixture(scope="module")
def clips():
    """Real speech: two sentences (~4 s, the 5 s bucket) and a 1.5 s cut (the 2 s bucket), plus
    exactly 2.0 s (200 feature frames, a multiple of 8) and noise."""
    first = int16_to_float32(speech.synthesize(speech.SENTENCES[0]))
    second = int16_to_float32(speech.synthesize(speech.SENTENCES[2]))
    noise = np.random.default_rng(0).standard_normal(24_000).astype(np.float32) * 0.05
    return {
        "sentence": first,
        "other": second,
        "short": first[:24_000],
        "two_s": second[:32_000],
        "noise": noise,
    }


FP16_TIE = 1e-3  # score gap that fp16 rounding of encoder states and K/V can flip


@pytest.mark.parametrize("decoder", [STATEFUL, EXTERNAL])
@pytest.mark.parametrize("seed,eos_bias", [(0, 0.0), (1, 6.0)])
def test_same_tokens_as_the_torch_runtime(tmp_path_factory, clips, decoder, seed, eos_bias):
    """Identical greedy tokens. The packages keep encoder states and K/V in fp16 (as CoreML does),
    so a step where the fp32 reference itself has two tokens within FP16_TIE may go either way:
    such a divergence must be a near-tie in the reference, and rare."""
    out = tiny_export(tmp_path_factory, seed=seed, eos_bias=eos_bias)
    reference = CohereTorchEngine.load(
        EngineOptions(model=str(tiny_model(tmp_path_factory, seed, eos_bias)))
    )
    engine = coreml_engine(out, decoder)
    for each in (reference, engine):  # run to the decoder's positions, not the audio's budget
        each.with_decoding(tokens_per_second=None)
    ended = ties = 0
    for name, pcm in clips.items():
        want, got = reference.transcribe(pcm, "en"), engine.transcribe(pcm, "en")
        if got.tokens != want.tokens:
            step, a, b = first_divergence(want, got, engine.tokenizer.eos_id)
            gap = reference_gap(reference, pcm, want.tokens, step, a, b)
            assert gap < FP16_TIE, (name, step, gap)
            ties += 1
            continue
        assert (got.text, got.truncated) == (want.text, want.truncated), name
        if got.truncated:  # every one of the 256 positions was written and read
            assert len(got.tokens) == 256 - len(engine.tokenizer.prompt("en"))
        ended += not got.truncated
    assert ties <= 2  # of 5 clips
    if eos_bias:  # the eos-biased model stops on its own: both endings are covered
        assert ended > 0


def test_each_step_follows_the_contract(tmp_path_factory, clips):
    out = tiny_export(tmp_path_factory)
    backend = RecordingBackend()
    engine = coreml_engine(out, STATEFUL, backend)
    engine.with_decoding(max_new_tokens=5)
    pcm = clips["short"]  # 1.5 s: 150 valid feature frames -> the 2 s bucket
    backend.calls.clear()
    transcript = engine.transcribe(pcm, "en")
    (encoder_name, encoder_in), *steps = backend.calls
    assert encoder_name == "cohere_encoder_2s.mlpackage"
    assert encoder_in["feature_length"].tolist() == [150] and encoder_in[
        "input_features"
    ].shape == (1, 128, 200)
    assert not encoder_in["input_features"][0, :, 150:].any()  # padded with zeros
    prompt = engine.tokenizer.prompt("en")
    # every prompt and output token is fed once, except the last one when the limit stops decoding
    assert len(steps) == len(prompt) + len(transcript.tokens) - transcript.truncated
    fed = prompt + list(transcript.tokens)
    valid = contract.subsampled_frames(150)  # 19 of the bucket's 25 encoder frames
    for step, (name, inputs) in enumerate(steps):
        assert name == STATEFUL
        assert inputs["input_id"].tolist() == [[fed[step]]]
        assert inputs["position_ids"].tolist() == [[step]]
        assert (
            inputs["attention_mask"].shape == (1, 1, 1, step + 1)
            and not inputs["attention_mask"].any()
        )
        cross = inputs["cross_attention_mask"][0, 0, 0]
        assert (
            cross.shape == (25,)
            and not cross[:valid].any()
            and (cross[valid:] == contract.MASK_NEGATIVE).all()
        )
        assert inputs["encoder_hidden_states"].shape == (
            1,
            25,
            64,
        )  # flexible: the bucket's own frames
    assert backend.states == 1  # one make_state per utterance
    engine.transcribe(pcm, "en")
    assert backend.states == 2


def test_cache_external_v2_inputs(tmp_path_factory, clips):
    out = tiny_export(tmp_path_factory)
    backend = RecordingBackend()
    engine = coreml_engine(out, EXTERNAL, backend)
    engine.with_decoding(max_new_tokens=3)
    backend.calls.clear()
    engine.transcribe(clips["short"], "en")
    steps = [inputs for name, inputs in backend.calls if name == EXTERNAL]
    for step, inputs in enumerate(steps):
        assert inputs["position_id"].tolist() == [[step]]
        mask = inputs["attention_mask"][0, 0, 0]
        assert (
            mask.shape == (256,)
            and not mask[: step + 1].any()
            and (mask[step + 1 :] == contract.MASK_NEGATIVE).all()
        )
        # fixed 63 frames (the 5 s bucket's): the 2 s bucket's 25 are padded and masked out
        assert inputs["encoder_hidden_states"].shape == (1, 63, 64)
        assert not inputs["encoder_hidden_states"][0, 25:].any()
        assert (inputs["cross_attention_mask"][0, 0, 0, 19:] == contract.MASK_NEGATIVE).all()
        if step == 0:
            assert not any(
                inputs[f"{kv}_cache_{i}"].any() for kv in "kv" for i in range(2)
            )  # fresh caches
        else:
            assert (
                inputs["k_cache_0"][0, :, step - 1].any()
                and not inputs["k_cache_0"][0, :, step:].any()
            )


def test_bucket_choice_and_limits(tmp_path_factory):
    out = tiny_export(tmp_path_factory)
    runtime = coreml_engine(out, STATEFUL).runtime
    assert [runtime.bucket_for(n).feature_frames for n in (1, 200, 201, 500)] == [
        200,
        200,
        500,
        500,
    ]
    assert runtime.max_feature_frames() == 500
    with pytest.raises(ValueError, match="exceed the largest encoder bucket"):
        runtime.encode(np.zeros((501, 128), np.float32), 501)
    assert runtime.max_positions == 256 and runtime.num_layers == 2


def test_a_partial_costs_the_smallest_bucket_that_fits(tmp_path_factory):
    """The engine's cost hint for partial results: a clip that fits the 2 s bucket costs that
    bucket's pass (cheap), one that needs the largest costs a full one."""
    from dictated.engines.base import CHEAP_COST

    engine = coreml_engine(tiny_export(tmp_path_factory), STATEFUL)
    assert engine.relative_cost(150 * 160) == pytest.approx(200 / 500)
    assert engine.relative_cost(150 * 160) <= CHEAP_COST
    assert engine.relative_cost(300 * 160) == 1.0 > CHEAP_COST
    assert engine.relative_cost(900 * 160) == 1.0  # past the largest: no cheaper pass exists


@pytest.mark.parametrize("frames", [8, 16, 150, 200, 203, 208, 500])
def test_valid_encoder_frames_follow_the_encoders_own_arithmetic(
    tmp_path_factory, model_cache, frames
):
    """The cross-attention mask covers exactly the frames the encoder treats as valid: what
    transformers (and so the torch runtime) computes."""
    runtime = coreml_engine(tiny_export(tmp_path_factory), STATEFUL).runtime
    lengths = model_cache.model.encoder._get_subsampling_output_length(torch.tensor([frames]))
    assert runtime.valid_encoder_frames(frames, runtime.bucket_for(frames)) == int(lengths[0])


def test_the_ceil_rule_overcounts():
    """Why the runtime prefers the encoder's own arithmetic when the shapes follow it: the
    published clamp(ceil(L*E/F), 1, E) never drops a valid frame but, because 3500/8 is not
    whole, often counts one padded frame too many (L=8: 2 frames for an encoder output of 1)."""
    over = 0
    for frames in range(1, 3501):
        extra = contract.valid_encoder_frames(frames, 3500, 438) - contract.subsampled_frames(
            frames
        )
        assert extra in (0, 1), frames
        over += extra
    assert contract.valid_encoder_frames(8, 3500, 438) == 2 and contract.subsampled_frames(8) == 1
    assert over > 400


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    from tests.engines.cohere.fixtures import load_tiny_model

    return load_tiny_model(tiny_model(tmp_path_factory))


def test_scores_flavour_precision_and_compute_units(tmp_path_factory):
    fp16 = tiny_export(tmp_path_factory)
    int8 = tiny_export(tmp_path_factory, precision="int8")
    stateful = coreml_engine(fp16, STATEFUL)
    assert (stateful.runtime.scores_are_log_probs, stateful.runtime.decoder_precision) == (
        False,
        "fp16",
    )
    assert stateful.decoding.eos_bias == 0.0

    backend = TracedStandInBackend()
    quantized = coreml_engine(int8, EXTERNAL, backend)
    assert quantized.runtime.decoder_precision == "int8" and quantized.decoding.eos_bias == 4.0
    assert (
        dict(backend.loaded)[int8 / EXTERNAL] == "cpu_only"
    )  # int8 cache-external crashes elsewhere
    assert {units for path, units in backend.loaded if "encoder" in path.name} == {"all"}
    assert coreml_engine(int8, STATEFUL, eos_bias=1.5).decoding.eos_bias == 1.5

    # a package without our metadata is read as published: the stateful one emits log-softmax
    layout = with_decoder(fp16, STATEFUL)
    sig = layout.decoder_signature
    bare = dataclasses.replace(
        sig, metadata={k: v for k, v in sig.metadata.items() if not k.startswith("dictated.")}
    )
    engine = CohereCoreMLEngine.from_layout(
        dataclasses.replace(layout, decoder_signature=bare), TracedStandInBackend(), EngineOptions()
    )
    assert engine.runtime.scores_are_log_probs
    with pytest.raises(ConfigError, match="compute_units"):
        coreml_engine(fp16, STATEFUL, compute_units="gpu")


def test_warmup_runs_every_bucket(tmp_path_factory):
    backend = RecordingBackend()
    engine = coreml_engine(tiny_export(tmp_path_factory), STATEFUL, backend)
    backend.calls.clear()
    engine.warmup()
    names = [name for name, _ in backend.calls]
    assert {"cohere_encoder_2s.mlpackage", "cohere_encoder_5s.mlpackage"} <= set(
        names
    ) and STATEFUL in names


def test_the_stand_in_is_strict(tmp_path_factory):
    """The stand-in rejects what CoreML would, so the runtime's inputs are really checked."""
    out = tiny_export(tmp_path_factory)
    model = TracedStandInBackend().load(out / STATEFUL, "all")
    good = {
        "input_id": np.zeros((1, 1), np.int32),
        "encoder_hidden_states": np.zeros((1, 25, 64), np.float16),
        "cross_attention_mask": np.zeros((1, 1, 1, 25), np.float16),
        "attention_mask": np.zeros((1, 1, 1, 1), np.float16),
        "position_ids": np.zeros((1, 1), np.int32),
    }
    assert model.predict(good, model.make_state())["logits"].dtype == np.float32
    for change in (
        {"attention_mask": np.zeros((1, 1, 1, 1), np.float32)},
        {"encoder_hidden_states": np.zeros((1, 64, 64), np.float16)},
        {"attention_mask": np.zeros((1, 1, 1, 257), np.float16)},
    ):
        with pytest.raises(StandInError):
            model.predict({**good, **change}, model.make_state())
    with pytest.raises(StandInError, match="state missing"):
        model.predict(good)


def test_compile_cache_compiles_once_per_content(tmp_path_factory, tmp_path):
    """The cache's keying and reuse (the compiler itself is CoreML's, exercised on macOS)."""
    package = tmp_path / "cohere_encoder_2s.mlpackage"
    shutil.copytree(tiny_export(tmp_path_factory) / package.name, package)
    compiled_calls = []

    def compiler(source, destination):
        # coremltools' compile_model refuses a destination not named *.mlmodelc
        assert destination.suffix == ".mlmodelc" and not destination.exists()
        compiled_calls.append(source)
        destination.mkdir()
        (destination / "coremldata.bin").write_bytes(b"compiled")

    cache = CompileCache(tmp_path / "cache", compiler)
    first = cache.compiled(package)
    assert cache.compiled(package) == first and len(compiled_calls) == 1
    assert (
        CompileCache(tmp_path / "cache", compiler).compiled(package) == first
        and len(compiled_calls) == 1
    )
    weights = next(package.rglob("weight.bin"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")  # same size, new content
    second = cache.compiled(package)
    assert second != first and len(compiled_calls) == 2
    assert not first.exists()  # the stale compilation is removed
