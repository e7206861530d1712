"""The cohere-torch engine loaded from a saved model directory, checked against transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import soundfile

from tests import speech

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import sentencepiece as spm  # noqa: E402

from dictated.audio.format import int16_to_float32  # noqa: E402
from dictated.engines.base import EngineOptions  # noqa: E402
from dictated.engines.cohere.checkpoint import resolve_checkpoint  # noqa: E402
from dictated.engines.cohere.decoding import EosBias  # noqa: E402
from dictated.engines.cohere.engine import CohereTorchEngine  # noqa: E402
from dictated.engines.registry import create_engine  # noqa: E402
from dictated.errors import AudioError, ConfigError, ModelError  # noqa: E402
from tests.engines.cohere.fixtures import (  # noqa: E402
    load_tiny_model,
    make_tiny_cohere_dir,
    train_tiny_tokenizer,
)

EOS, PAD = 3, 2


@pytest.fixture(scope="module")
def tokenizer_model(tmp_path_factory):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.model")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tokenizer_model):
    return {
        seed: make_tiny_cohere_dir(
            tmp_path_factory.mktemp(f"m{seed}"), seed, tokenizer_model=tokenizer_model
        )
        for seed in (0, 1)
    }


@pytest.fixture(scope="module")
def extractor():
    return transformers.CohereAsrFeatureExtractor(dither=0.0)


def transformers_transcribe(
    model_dir, extractor, pcm: np.ndarray, language: str = "en"
) -> list[list[int]]:
    """The whole reference pipeline: transformers' features (chunked past 35 s) and generate."""
    engine_prompt = CohereTorchEngine.load(EngineOptions(model=str(model_dir))).tokenizer.prompt(
        language
    )
    inputs = extractor(pcm, sampling_rate=16000, return_tensors="pt")
    model = load_tiny_model(model_dir)
    batch = inputs["input_features"].shape[0]
    out = model.generate(
        input_features=inputs["input_features"],
        attention_mask=inputs["attention_mask"],
        decoder_input_ids=torch.tensor([engine_prompt] * batch),
        repetition_penalty=1.1,
        no_repeat_ngram_size=3,
        do_sample=False,
        max_new_tokens=model.config.max_position_embeddings - len(engine_prompt),
    )
    rows = []
    for row in out[:, len(engine_prompt) :].tolist():
        rows.append(
            row[: row.index(EOS)] if EOS in row else row
        )  # finished rows are padded after eos
    return rows


def sp_text(model_dir, tokens: list[int]) -> str:
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    return sp.decode(
        [t for t in tokens if t > 4 and not sp.id_to_piece(t).startswith("<|")]
    ).strip()


@pytest.mark.parametrize("seed", [0, 1])
def test_engine_matches_the_transformers_pipeline(model_dirs, extractor, seed):
    engine = create_engine("cohere-torch", EngineOptions(model=str(model_dirs[seed])))
    assert isinstance(engine, CohereTorchEngine) and engine.name == "cohere-torch"
    pcm = int16_to_float32(speech.synthesize(speech.SENTENCES[seed]))
    transcript = engine.transcribe(pcm, "en")
    (ref,) = transformers_transcribe(model_dirs[seed], extractor, pcm)
    assert list(transcript.tokens) == ref
    assert transcript.text == sp_text(model_dirs[seed], ref)
    assert transcript.truncated == (len(ref) == 64 - 10)
    assert {"features", "encoder", "decoder", "total", "tokens_per_s"} <= set(transcript.timings_ms)


def test_language_and_length_errors(model_dirs):
    engine = CohereTorchEngine.load(EngineOptions(model=str(model_dirs[0])))
    with pytest.raises(ValueError, match="supported: .*en"):
        engine.transcribe(np.zeros(16000, dtype=np.float32), "sv")
    assert engine.transcribe(np.zeros(100, dtype=np.float32), "en").text == ""
    with pytest.raises(AudioError, match="split"):
        engine.transcribe(np.zeros(36 * 16000, dtype=np.float32), "en")
    engine.warmup()  # 1 s of silence goes through every stage


def test_eos_bias_follows_precision_unless_set(model_dirs):
    engine = CohereTorchEngine.load(EngineOptions(model=str(model_dirs[0])))
    assert engine.runtime.decoder_precision == "fp32" and engine.decoding.eos_bias == 0.0
    assert not any(isinstance(f, EosBias) for f in engine.decoder.filters)
    biased = CohereTorchEngine.load(EngineOptions(model=str(model_dirs[0]), eos_bias=4.0))
    assert biased.decoding.eos_bias == 4.0
    assert any(isinstance(f, EosBias) for f in biased.decoder.filters)


def test_unavailable_reason(model_dirs, tmp_path):
    assert CohereTorchEngine.unavailable_reason(EngineOptions(model=str(model_dirs[0]))) is None
    reason = CohereTorchEngine.unavailable_reason(EngineOptions(model=str(tmp_path / "nope")))
    assert "does not exist" in reason
    reason = CohereTorchEngine.unavailable_reason(EngineOptions(cache_dir=tmp_path))
    assert "CohereLabs/cohere-transcribe-03-2026" in reason and "not downloaded" in reason


def _copy_dir(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "config.json"),
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors"),
        (
            lambda d: ((d / "tokenizer.model").unlink(), (d / "vocab.json").unlink()),
            "tokenizer.model",
        ),
        (lambda d: (d / "config.json").write_text("{broken"), "config.json"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\0" * 100), "cannot load"),
        (lambda d: (d / "config.json").write_text('{"model_type": "whisper"}'), "whisper"),
    ],
)
def test_broken_model_directory_is_a_model_error(model_dirs, tmp_path, damage, message):
    broken = _copy_dir(model_dirs[0], tmp_path / "broken")
    damage(broken)
    with pytest.raises(ModelError, match=message):
        CohereTorchEngine.load(EngineOptions(model=str(broken)))


def test_a_directory_with_only_tokenizer_json_works(model_dirs, tmp_path):
    """transformers' own save layout: tokenizer.json instead of tokenizer.model."""
    only_json = _copy_dir(model_dirs[0], tmp_path / "json")
    transformers.TokenizersBackend.from_pretrained(model_dirs[0]).save_pretrained(only_json)
    (only_json / "tokenizer.model").unlink()
    (only_json / "vocab.json").unlink()
    pcm = int16_to_float32(speech.synthesize(speech.SENTENCES[2]))
    a = CohereTorchEngine.load(EngineOptions(model=str(model_dirs[0]))).transcribe(pcm, "de")
    b = CohereTorchEngine.load(EngineOptions(model=str(only_json))).transcribe(pcm, "de")
    assert (a.tokens, a.text) == (b.tokens, b.text)
    assert a.text


def test_half_precision_on_cpu_and_missing_gpu_are_config_errors(model_dirs):
    with pytest.raises(ConfigError, match="GPU"):
        CohereTorchEngine.load(
            EngineOptions(model=str(model_dirs[0]), device="cpu", compute_type="float16")
        )
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            CohereTorchEngine.load(EngineOptions(model=str(model_dirs[0]), device="cuda"))


def test_gated_hub_repo_is_a_clear_error(tmp_path):
    from huggingface_hub.errors import GatedRepoError

    response = mock.MagicMock(status_code=403, headers={}, url="https://huggingface.co/api/models")
    gated = GatedRepoError(
        "Access to model CohereLabs/cohere-transcribe-03-2026 is restricted", response=response
    )
    with (
        mock.patch("huggingface_hub.snapshot_download", side_effect=gated),
        pytest.raises(ModelError, match="hf auth login"),
    ):
        resolve_checkpoint(None, cache_dir=tmp_path)


def run_cli(*args: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "dictated", "transcribe", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_cli_no_vad_matches_transformers_including_a_split(model_dirs, extractor, tmp_path):
    """`dictated transcribe --no-vad --json` on a 40 s file: two chunks cut where transformers cuts."""
    composed = speech.compose(list(speech.SENTENCES[:9]), 1.0, lead_s=0.5, tail_s=0.5)
    assert len(composed.pcm) > 35 * 16000
    wav = tmp_path / "long.wav"
    soundfile.write(str(wav), composed.pcm, 16000, subtype="PCM_16")
    model_dir = model_dirs[1]
    (result,) = run_cli("--engine", "cohere-torch", "--model", str(model_dir), "--language", "en",
                        "--no-vad", "--json", str(wav))  # fmt: skip
    refs = transformers_transcribe(model_dir, extractor, int16_to_float32(composed.pcm))
    assert len(refs) == 2
    assert result["engine"] == "cohere-torch"
    assert result["tokens"] == refs[0] + refs[1]
    texts = [sp_text(model_dir, r) for r in refs]
    processing = pytest.importorskip("transformers.models.cohere_asr.processing_cohere_asr")
    (joined,) = processing.CohereAsrProcessor._reassemble_chunk_texts(texts, [(0, 0), (0, 1)], " ")
    assert result["text"] == joined
