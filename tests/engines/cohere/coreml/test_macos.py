"""The same tiny exports through real CoreML (compile, load, predict, make_state) on macOS: outputs
within fp16 tolerance of the traced modules they were converted from, and the greedy tokens of the
PyTorch runtime. Skipped elsewhere: CoreML's predict exists only on macOS. CI: .github/workflows/macos.yml.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "darwin", reason="CoreML compile/predict/make_state run only on macOS"
)

torch = pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")
pytest.importorskip("transformers")

from dictated.audio.format import int16_to_float32  # noqa: E402
from dictated.engines.base import EngineOptions  # noqa: E402
from dictated.engines.cohere.coreml import contract  # noqa: E402
from dictated.engines.cohere.coreml.compile import CompileCache  # noqa: E402
from dictated.engines.cohere.coreml.engine import CohereCoreMLEngine  # noqa: E402
from dictated.engines.cohere.coreml.runtime import CoreMLToolsBackend  # noqa: E402
from dictated.engines.cohere.coreml.signature import read_signature  # noqa: E402
from dictated.engines.cohere.engine import CohereTorchEngine  # noqa: E402
from tests import speech  # noqa: E402
from tests.engines.cohere.coreml.exports import (  # noqa: E402
    first_divergence,
    reference_gap,
    tiny_export,
    tiny_model,
    with_decoder,
)

STATEFUL = "cohere_decoder_stateful.mlpackage"
EXTERNAL = "cohere_decoder_cache_external_v2.mlpackage"
FP16_TIE = 0.05  # CoreML computes in fp16 end to end: near-ties within this may go either way


def close(got: np.ndarray, want: np.ndarray) -> bool:
    """Within fp16 compute tolerance: 2 % of the output's scale."""
    return (
        float(np.abs(got.astype(np.float32) - want).max())
        <= 0.02 * float(np.abs(want).max()) + 1e-3
    )


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return tiny_export(tmp_path_factory)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("coreml-cache")


def traced(out, package):
    return torch.jit.load(str(out / "traced" / f"{package}.pt")).eval()


def test_compile_cache_compiles_once_and_the_compiled_signature_matches(export, cache_dir):
    calls = []

    def compiler(package, destination):
        calls.append(package)
        from coremltools.models.utils import compile_model

        compile_model(str(package), str(destination))

    cache = CompileCache(cache_dir / "probe", compiler)
    compiled = cache.compiled(export / STATEFUL)
    assert cache.compiled(export / STATEFUL) == compiled and len(calls) == 1
    package, mlmodelc = read_signature(export / STATEFUL), read_signature(compiled)
    for name in ("inputs", "outputs", "states"):
        want = {k: (v.shape, v.dtype, v.flexible) for k, v in getattr(package, name).items()}
        got = {k: (v.shape, v.dtype, v.flexible) for k, v in getattr(mlmodelc, name).items()}
        assert got == want, name
    ct.models.CompiledMLModel(str(compiled))  # loads


@pytest.mark.parametrize("seconds,valid", [(2, 150), (5, 500), (5, 208)])
def test_encoder_predict_matches_the_traced_module(export, cache_dir, seconds, valid):
    backend = CoreMLToolsBackend(cache_dir)
    model = backend.load(export / f"cohere_encoder_{seconds}s.mlpackage", "all")
    frames = seconds * 100
    features = np.random.default_rng(valid).standard_normal((1, 128, frames)).astype(np.float32)
    features[..., valid:] = 0
    length = np.array([valid], np.int32)
    got = model.predict({"input_features": features, "feature_length": length})["hidden_states"]
    with torch.no_grad():
        want = traced(export, f"cohere_encoder_{seconds}s")(
            torch.from_numpy(features), torch.from_numpy(length)
        )
    n = contract.subsampled_frames(valid)
    assert close(got[:, :n], want.numpy()[:, :n])


@pytest.mark.parametrize("decoder", [STATEFUL, EXTERNAL])
@pytest.mark.parametrize("units", ["all", "cpu_only"])
def test_decoder_steps_match_the_traced_module(export, cache_dir, decoder, units):
    engine = CohereCoreMLEngine.from_layout(
        with_decoder(export, decoder),
        CoreMLToolsBackend(cache_dir),
        EngineOptions(compute_units=units),
    )
    runtime = engine.runtime
    pcm = int16_to_float32(speech.synthesize(speech.SENTENCES[0]))
    from dictated.engines.cohere.features import compute_features

    features = compute_features(pcm)
    encoded = runtime.encode(features.values, features.valid_frames)
    session = runtime.start(encoded)
    step = traced(export, decoder[:-10])
    tokens = engine.tokenizer.prompt("en") + [100, 200, 50, 7]
    hidden = torch.from_numpy(np.asarray(encoded.hidden).astype(np.float32))
    frames = hidden.shape[1]
    if decoder == EXTERNAL:  # fixed frames: the largest bucket's
        frames = runtime.layout.decoder_signature.inputs["encoder_hidden_states"].shape[1]
        hidden = torch.nn.functional.pad(hidden, (0, 0, 0, frames - hidden.shape[1]))
    cross = torch.full((1, 1, 1, frames), contract.MASK_NEGATIVE)
    cross[..., : encoded.valid_frames] = 0
    caches = [torch.zeros(1, 2, 256, 32, dtype=torch.float16) for _ in range(4)]
    for pos, token in enumerate(tokens):
        got = session.feed([token])
        tid, p = (
            torch.tensor([[token]], dtype=torch.int32),
            torch.tensor([[pos]], dtype=torch.int32),
        )
        with torch.no_grad():
            if decoder == STATEFUL:
                want = step(tid, hidden, cross, torch.zeros(1, 1, 1, pos + 1), p)
            else:
                mask = torch.where(torch.arange(256) <= pos, 0.0, contract.MASK_NEGATIVE).view(
                    1, 1, 1, -1
                )
                want, *caches = step(tid, p, hidden, cross, mask, *caches)
        assert close(got, want.numpy()[0]), pos


@pytest.mark.parametrize("decoder", [STATEFUL, EXTERNAL])
def test_greedy_tokens_match_the_torch_runtime(export, tmp_path_factory, cache_dir, decoder):
    """Identical tokens, except where CoreML's fp16 arithmetic meets a near-tie of the fp32
    reference: any divergence must be one, and most sentences must match in full."""
    reference = CohereTorchEngine.load(EngineOptions(model=str(tiny_model(tmp_path_factory))))
    engine = CohereCoreMLEngine.from_layout(
        with_decoder(export, decoder), CoreMLToolsBackend(cache_dir), EngineOptions()
    )
    engine.warmup()
    for e in (reference, engine):
        e.with_decoding(max_new_tokens=40)
    identical = 0
    for sentence in speech.SENTENCES[:3]:
        pcm = int16_to_float32(speech.synthesize(sentence))
        want, got = reference.transcribe(pcm, "en"), engine.transcribe(pcm, "en")
        if got.tokens == want.tokens:
            identical += 1
            continue
        step, a, b = first_divergence(want, got, engine.tokenizer.eos_id)
        gap = reference_gap(reference, pcm, want.tokens, step, a, b)
        assert gap < FP16_TIE, (sentence, step, gap)
    assert identical >= 2


def test_engine_load_on_macos(export, cache_dir):
    engine = CohereCoreMLEngine.load(EngineOptions(model=str(export), cache_dir=cache_dir))
    assert CohereCoreMLEngine.unavailable_reason(EngineOptions(model=str(export))) is None
    transcript = engine.transcribe(int16_to_float32(speech.synthesize(speech.SENTENCES[1])), "en")
    assert transcript.tokens and transcript.timings_ms["encoder"] > 0
