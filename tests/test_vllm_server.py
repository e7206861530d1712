"""The vLLM test server itself (tests/vllm_server.py) and the torchaudio stand-in it may need."""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest

from tests.conftest import DEMO_WAV
from tests.vllm_server import SHIM_DIR


def _load_shim():
    spec = importlib.util.spec_from_file_location(
        "shim_functional", SHIM_DIR / "torchaudio" / "functional.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mel_scale", ["slaney", "htk"])
@pytest.mark.parametrize("norm", ["slaney", None])
def test_shim_melscale_fbanks_matches_transformers(mel_scale, norm):
    """The stand-in gives transformers' mel_filter_bank (float64) to float32 precision."""
    pytest.importorskip("torch")
    audio_utils = pytest.importorskip("transformers.audio_utils")
    ours = _load_shim().melscale_fbanks(
        257, 0.0, 8000.0, 128, 16000, norm=norm, mel_scale=mel_scale
    )
    with warnings.catch_warnings():  # 128 filters over 257 bins: some are empty, as upstream
        warnings.simplefilter("ignore", UserWarning)
        reference = audio_utils.mel_filter_bank(
            257, 128, 0.0, 8000.0, 16000, norm=norm, mel_scale=mel_scale
        )
    assert ours.shape == reference.shape == (257, 128)
    np.testing.assert_allclose(ours.numpy(), reference, atol=2e-5 * np.abs(reference).max())


def test_shim_refuses_unknown_norm():
    with pytest.raises(ValueError, match="norm"):
        _load_shim().melscale_fbanks(257, 0.0, 8000.0, 128, 16000, norm="area")


def test_server_lists_the_model_and_transcribes(vllm_whisper):
    models = vllm_whisper.get_json("/v1/models")
    assert [m["id"] for m in models["data"]] == ["tiny-whisper"]
    text = vllm_whisper.transcribe(DEMO_WAV)
    assert isinstance(text, str) and text.strip()
    # greedy decoding on the same audio is deterministic
    assert vllm_whisper.transcribe(DEMO_WAV.read_bytes()) == text


def test_server_streams_the_same_text_as_sse_chunks(vllm_whisper):
    """vLLM's own SSE shape (DESIGN.md): `transcription.chunk` deltas, then `[DONE]`."""
    text = vllm_whisper.transcribe(DEMO_WAV)
    sse = vllm_whisper.transcribe_raw(DEMO_WAV, stream="true").decode()
    lines = [line[len("data: ") :] for line in sse.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"transcription.chunk"}
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert streamed.strip() == text.strip()
