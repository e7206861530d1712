"""The segmenter at a real desk (issue 17): music, typing and a fan are not speech.

The noises are real recordings where Debian ships one (tests/desk_noise.py says which, with their
licences); webrtcvad calls most frames of the music and the typing speech, so these tests are
about the Silero stage behind it. Speech is espeak-ng's with true onsets and ends
(tests/speech.py); the text check runs the real bundled Whisper tiny.en.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from dictated.audio.format import FRAME_SAMPLES, SAMPLE_RATE, int16_to_float32
from dictated.config import load_config
from dictated.errors import ConfigError
from dictated.events import SpeechStarted, UtteranceEnded
from dictated.segmenter import Segmenter, SegmenterOptions
from dictated.segmenter_cut import cut_frame
from tests.desk_noise import fan, mix, music, typing
from tests.speech import SENTENCES, compose, silence
from tests.test_segmenter import END_SLACK_S, assert_well_formed, run, webrtcvad_speech_fraction

SR = SAMPLE_RATE
NOISES = {
    "music": lambda seconds, seed: music(seconds, -30, seed=seed),
    "typing": lambda seconds, seed: typing(seconds, -30, seed=seed),
    "fan": lambda seconds, seed: fan(seconds, -35, seed=seed),
}


@pytest.fixture(scope="module")
def whisper():
    from dictated.engines import EngineOptions, create_engine

    return create_engine("whisper", EngineOptions())


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


@pytest.mark.parametrize("name", NOISES)
def test_desk_noise_alone_makes_no_utterance(name):
    pcm = NOISES[name](20.0, 1)
    if name != "fan":  # the real challenge: webrtcvad alone calls much of it speech
        assert webrtcvad_speech_fraction(pcm) >= 0.3
    utts, events, _ = run(pcm)
    assert events == []


@pytest.mark.parametrize("name", NOISES)
def test_speech_over_desk_noise_ends_with_the_speech_and_reads_right(name, whisper):
    sig = compose(SENTENCES[:2], 2.5, lead_s=2.0, tail_s=5.0)
    pcm = mix(sig.pcm, NOISES[name](len(sig.pcm) / SR, 2))
    utts, events, _ = run(pcm)
    assert_well_formed(utts, pcm)
    assert len(utts) == 2, [(u.start_sample / SR, u.end_sample / SR) for u in utts]
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    for u, spoken, started in zip(utts, sig.spoken, starts, strict=True):
        assert u.reason == "silence"
        # ends after the speech's own end plus the hangover, not when the noise stops
        assert u.end_sample <= spoken.end_sample + (0.6 + END_SLACK_S) * SR
        assert abs(u.speech_end_sample - spoken.end_sample) <= 0.25 * SR
        # a click or a note right before the first word can pass for its start: 0.1 s, as in
        # test_segmenter's onset test (clean speech: 0.06 s, test_onsets_within_60_ms below)
        assert abs(u.onset_sample - spoken.start_sample) <= 0.1 * SR
        assert started.onset_sample == u.onset_sample
        assert u.onset_sample - u.start_sample >= 0.3 * SR  # the pre-roll is kept
        assert u.speech_prob is not None and u.speech_prob >= 0.7
        text = whisper.transcribe(int16_to_float32(u.pcm), "en").text
        assert words(text) == words(spoken.text), text


def test_onsets_within_60_ms_of_the_speech_with_silero():
    sig = compose(SENTENCES[:6], 1.5, lead_s=1.0)
    utts, _, _ = run(sig.pcm)
    assert len(utts) == 6
    for u, spoken in zip(utts, sig.spoken, strict=True):
        assert abs(u.onset_sample - spoken.start_sample) <= 0.06 * SR, (u, spoken)
        assert u.onset_sample - u.start_sample >= 0.3 * SR


def test_length_cap_under_music_cuts_inside_a_pause_and_loses_nothing():
    sig = compose(SENTENCES, 0.4)  # ~54 s of sentences 400 ms apart
    pcm = mix(sig.pcm, music(len(sig.pcm) / SR, -30, seed=4))
    options = SegmenterOptions(hangover_ms=1000, max_utterance_s=12.0)
    utts, _, seg = run(pcm, options)
    assert_well_formed(utts, pcm, 12.0)
    assert len(utts) >= 4 and seg.length_cuts == len(utts) - 1
    pauses = [
        (a.end_sample, b.start_sample) for a, b in zip(sig.spoken[:-1], sig.spoken[1:], strict=True)
    ]
    for a, b in zip(utts[:-1], utts[1:], strict=True):
        assert a.reason == "max_length" and a.end_sample == b.start_sample
        assert any(lo <= a.end_sample <= hi for lo, hi in pauses), a.end_sample / SR
    joined = np.concatenate([u.pcm for u in utts])
    np.testing.assert_array_equal(joined, pcm[utts[0].start_sample : utts[-1].end_sample])
    assert utts[0].start_sample <= sig.spoken[0].start_sample - 0.3 * SR
    assert utts[-1].end_sample >= sig.spoken[-1].end_sample


def test_cut_without_a_pause_goes_after_the_least_speech():
    rng = np.random.default_rng(0)
    n = 100
    audio = rng.integers(-3000, 3000, n * FRAME_SAMPLES).astype(np.int16)
    audio[40 * FRAME_SAMPLES : 41 * FRAME_SAMPLES] //= 10  # the quietest frame ...
    probs = bytearray([230] * n)
    probs[70] = 20  # ... is not the one with the least speech
    flags = bytearray([1] * n)
    assert cut_frame(flags, probs, audio.tobytes(), 50, 13) == 71
    assert cut_frame(flags, bytearray(n), audio.tobytes(), 80, 13) == 41  # no Silero: quietest
    # Equal unvoiced runs: the one with less speech in it wins over the quieter one.
    flags[30:34] = flags[60:64] = bytes(4)
    probs[60:64] = bytes([5] * 4)
    assert cut_frame(flags, probs, audio.tobytes(), 90, 13) == 64 - 2


def test_silero_sleeps_in_silence_and_wakes_for_speech():
    seg = Segmenter()
    stream = seg._stage.stream
    assert seg.push(silence(10.0)) == [] and stream.windows_run == 0
    quiet_fan = fan(10.0, -60, seed=3)
    assert seg.push(quiet_fan) == [] and stream.windows_run == 0
    sig = compose(SENTENCES[:1], 0.0, lead_s=0.5, tail_s=2.0)
    ended = [e for e in seg.push(sig.pcm) if isinstance(e, UtteranceEnded)]
    assert len(ended) == 1 and stream.windows_run > 0
    assert not stream.awake  # the utterance closed and nothing gated since: asleep again
    before = stream.windows_run
    assert seg.push(silence(5.0)) == [] and stream.windows_run == before


def test_webrtc_alone_reports_no_speech_probability():
    sig = compose(SENTENCES[:1], 0.0)
    utts, _, seg = run(sig.pcm, SegmenterOptions(vad="webrtc"))
    assert len(utts) == 1 and utts[0].speech_prob is None and seg._stage is None
    utts, _, _ = run(sig.pcm)
    assert utts[0].speech_prob is not None and utts[0].speech_prob >= 0.7


def test_config_reads_the_vad_choice(tmp_path, isolated_env):
    assert load_config().segmenter.vad == "silero"
    path = tmp_path / "c.toml"
    path.write_text('[segmenter]\nvad = "webrtc"\n', encoding="utf-8")
    assert load_config(path).segmenter.vad == "webrtc"
    path.write_text('[segmenter]\nvad = "rnnoise"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"segmenter\.vad must be one of 'silero', 'webrtc'"):
        load_config(path)
