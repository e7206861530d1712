"""The Whisper engine's encoder window: twice the audio (10-30 s) instead of always 30 s."""

from __future__ import annotations

import pytest

from dictated.audio.format import SAMPLE_RATE, int16_to_float32
from dictated.engines import EngineOptions, create_engine
from dictated.engines.whisper import bundled_model_path, window_frames
from dictated.errors import ConfigError
from tests.speech import SENTENCES, compose

SR = SAMPLE_RATE


@pytest.mark.parametrize(
    ("audio_s", "window_s", "frames"),
    [(1.0, None, 1000), (5.0, None, 1000), (5.1, None, 1500), (12.0, None, 2500),
     (15.1, None, 3000), (35.0, None, 3000), (4.0, 30.0, 3000), (4.0, 8.0, 800)],
)  # fmt: skip
def test_window_is_twice_the_audio_in_5_s_steps(audio_s, window_s, frames):
    assert window_frames(round(audio_s * SR), window_s) == frames


def test_window_option_is_checked():
    with pytest.raises(ConfigError, match="engine.window_s"):
        EngineOptions(window_s=2.0)


@pytest.mark.slow
def test_windowed_text_matches_faster_whisper_on_its_full_window(monkeypatch):
    """The reference is faster-whisper itself, padding to 30 s as it always does."""
    from faster_whisper import WhisperModel

    reference = WhisperModel(str(bundled_model_path()), device="cpu", compute_type="int8")
    engine = create_engine("whisper", EngineOptions())
    encoded = []  # feature frames faster-whisper's encode() was given, reference and ours
    encode = WhisperModel.encode

    def recording(self, features):
        encoded.append(features.shape[-1])
        return encode(self, features)

    monkeypatch.setattr(WhisperModel, "encode", recording)
    windows = []
    for sentence in SENTENCES[:3]:
        pcm = int16_to_float32(compose([sentence], [], lead_s=0.4, tail_s=0.8).pcm)
        windows += [3000, window_frames(len(pcm), None)]
        segments, _ = reference.transcribe(
            pcm, language="en", beam_size=1, without_timestamps=True, vad_filter=False,
            condition_on_previous_text=False,
        )  # fmt: skip
        want = " ".join(s.text.strip() for s in segments)
        assert engine.transcribe(pcm, "en").text == want == sentence
    assert encoded == windows and max(windows[1::2]) < 3000  # the reference's 30 s, ours shorter
