"""The Whisper engine's no-speech signals (for the non-speech guard) and its cancellation
between stages (so a final never waits for a speculative decode speech made useless)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dictated.audio.format import SAMPLE_RATE
from dictated.engines import EngineOptions, create_engine
from dictated.engines.base import Cancelled
from dictated.engines.whisper import Window, signals
from tests.speech import SENTENCES, synthesize

SR = SAMPLE_RATE


@pytest.fixture(scope="module")
def whisper():
    return create_engine("whisper", EngineOptions())


def test_signals_take_the_most_speech_like_window_and_all_tokens():
    speech = Window("Hello there.", (1, 2, 3), 0.1, -0.2, skipped=False)
    noise = Window("you", (4,), 0.9, -1.5, skipped=True)
    no_speech, logprob = signals([speech, noise])
    assert no_speech == 0.1
    assert logprob == pytest.approx((-0.2 * 4 - 1.5 * 2) / 6)
    assert signals([]) == (None, None)


@pytest.mark.slow
def test_whisper_reports_its_no_speech_signals(whisper):
    spoken = whisper.transcribe(synthesize(SENTENCES[0]).astype(np.float32) / 32768, "en")
    quiet = whisper.transcribe(np.zeros(SR, dtype=np.float32), "en")
    assert spoken.no_speech_prob < 0.3 and spoken.avg_logprob > -0.5
    assert quiet.no_speech_prob > 0.6


@pytest.mark.slow
def test_a_cancelled_whisper_decode_stops_between_stages(whisper, monkeypatch):
    """Cancelled while the encoder runs, the decode never reaches the decoder."""
    from faster_whisper import WhisperModel

    cancel = threading.Event()
    encode, decoded = WhisperModel.encode, []

    def encode_then_cancel(self, features):
        out = encode(self, features)
        cancel.set()  # as if speech resumed while the encoder ran
        return out

    monkeypatch.setattr(WhisperModel, "encode", encode_then_cancel)
    monkeypatch.setattr(WhisperModel, "generate_with_fallback", lambda *a: decoded.append(a))
    pcm = synthesize(SENTENCES[1]).astype(np.float32) / 32768
    with pytest.raises(Cancelled):
        whisper.transcribe(pcm, "en", cancel)
    assert decoded == []
    monkeypatch.undo()
    assert whisper.transcribe(pcm, "en").text == SENTENCES[1]  # and the next decode is whole
