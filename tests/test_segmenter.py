"""The segmenter on real speech (espeak-ng sentences) with known pause layouts, noise and clicks.

Ground truth comes from the composed signal (where each synthesized sentence really starts and
ends); decisions come from the real webrtcvad. Every utterance's audio is also checked sample for
sample against the input, so "no audio lost" and "no overlap" are asserted, not assumed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile
import webrtcvad

from dictated.audio.format import FRAME_BYTES, FRAME_SAMPLES, MAX_UTTERANCE_S, SAMPLE_RATE
from dictated.errors import AudioError, ConfigError
from dictated.events import SpeechPaused, SpeechResumed, SpeechStarted, Utterance, UtteranceEnded
from dictated.segmenter import Segmenter, SegmenterOptions
from tests.speech import (
    SENTENCES,
    Composed,
    add_noise,
    clicks,
    compose,
    noise_bursts,
    overlay,
    silence,
    synthesize,
)

SR = SAMPLE_RATE
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
# How far after the true end of speech an utterance may run beyond the hangover: the frames the
# end window needs to fall below its ratio (~0.2 s), webrtcvad's own overhang, clicks' own frames.
END_SLACK_S = 0.45


def run(pcm: np.ndarray, options: SegmenterOptions | None = None, block: int = 1600):
    """Push `pcm` in `block`-sample pieces (a 100 ms source block by default), then flush."""
    seg = Segmenter(options)
    events = []
    for i in range(0, len(pcm), block):
        events += seg.push(pcm[i : i + block])
    events += seg.flush()
    return [e.utterance for e in events if isinstance(e, UtteranceEnded)], events, seg


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def assert_well_formed(utts: list[Utterance], pcm: np.ndarray, max_s: float = MAX_UTTERANCE_S):
    """Indices count up, utterances are ordered, each pcm is exactly the input there.

    Consecutive utterances may share unvoiced audio (the previous one's hangover is the next one's
    pre-roll) but never voiced audio.
    """
    prev_end = prev_speech_end = 0
    for i, u in enumerate(utts):
        assert u.index == i
        assert u.start_sample >= prev_speech_end, "utterances overlap in voiced audio"
        assert u.end_sample > prev_end
        assert u.start_sample <= u.speech_end_sample <= u.end_sample <= len(pcm)
        assert u.duration_s <= max_s
        assert u.pcm.dtype == np.int16
        np.testing.assert_array_equal(u.pcm, pcm[u.start_sample : u.end_sample])
        prev_end, prev_speech_end = u.end_sample, u.speech_end_sample


def assert_groups(utts: list[Utterance], sig: Composed, groups: list[list[int]], preroll_s=0.3):
    """Utterance k holds exactly the sentences groups[k], with pre-roll before the first onset."""
    assert len(utts) == len(groups), [(u.start_sample / SR, u.end_sample / SR) for u in utts]
    prev_speech_end = 0
    for u, group in zip(utts, groups, strict=True):
        first, last = sig.spoken[group[0]], sig.spoken[group[-1]]
        # Onset not clipped: at least the pre-roll before it, unless the previous utterance's
        # speech ended closer than that (its voiced audio is never repeated).
        assert u.start_sample <= max(first.start_sample - round(preroll_s * SR), prev_speech_end)
        assert u.end_sample >= last.end_sample
        assert abs(u.speech_end_sample - last.end_sample) <= 0.25 * SR
        for other in sig.spoken:  # no other sentence leaks in
            if other not in [sig.spoken[g] for g in group]:
                assert other.end_sample <= u.start_sample or other.start_sample >= u.end_sample
        prev_speech_end = u.speech_end_sample


NOISES = [
    pytest.param((None, "white"), id="clean"),
    pytest.param((-60, "white"), id="white-60dB"),
    pytest.param((-45, "white"), id="white-45dB"),
    pytest.param((-50, "pink"), id="pink-50dB"),
]


@pytest.mark.parametrize("noise", NOISES)
def test_sentences_apart_by_long_pauses_are_one_utterance_each(noise):
    sig = compose(SENTENCES[:4], 1.2, noise_dbfs=noise[0], noise_color=noise[1], seed=3)
    utts, _, _ = run(sig.pcm)
    assert_well_formed(utts, sig.pcm)
    assert_groups(utts, sig, [[0], [1], [2], [3]])
    assert [u.reason for u in utts] == ["silence"] * 4
    for u, spoken in zip(utts, sig.spoken, strict=True):
        hangover_end = spoken.end_sample + (0.6 + END_SLACK_S) * SR
        assert u.end_sample <= hangover_end


@pytest.mark.parametrize("noise", NOISES)
def test_short_pauses_stay_merged(noise):
    sig = compose(SENTENCES[4:8], 0.25, noise_dbfs=noise[0], noise_color=noise[1], seed=4)
    utts, _, _ = run(sig.pcm)
    assert_well_formed(utts, sig.pcm)
    assert_groups(utts, sig, [[0, 1, 2, 3]])


def test_mixed_pause_layout_splits_only_at_long_pauses():
    sig = compose(SENTENCES[:5], [0.25, 1.5, 0.5, 1.0], noise_dbfs=-55, noise_color="pink", seed=5)
    utts, _, _ = run(sig.pcm)
    assert_well_formed(utts, sig.pcm)
    assert_groups(utts, sig, [[0, 1], [2, 3], [4]])


def test_hangover_option_decides_which_pauses_split():
    sig = compose(SENTENCES[:3], [0.8, 1.6])
    utts, _, _ = run(sig.pcm, SegmenterOptions(hangover_ms=1200))
    assert_groups(utts, sig, [[0, 1], [2]])
    utts, _, _ = run(sig.pcm, SegmenterOptions(hangover_ms=300))
    assert_groups(utts, sig, [[0], [1], [2]])


def test_events_report_start_pauses_and_end_in_order():
    sig = compose(SENTENCES[8:11], 0.45)  # pauses long enough to report, too short to split
    utts, events, _ = run(sig.pcm)
    assert_groups(utts, sig, [[0, 1, 2]])
    kinds = [type(e) for e in events]
    assert kinds[0] is SpeechStarted and kinds[-1] is UtteranceEnded
    # pauses and resumptions alternate: every pause inside the utterance is followed by speech
    assert kinds[1:-1] == [SpeechPaused, SpeechResumed] * ((len(kinds) - 3) // 2) + [SpeechPaused]
    assert events[0].sample == utts[0].start_sample
    pauses = [e.sample for e in events if isinstance(e, SpeechPaused)]
    # One pause where each sentence ends (the last one just before the utterance ends) ...
    for spoken in sig.spoken:
        assert sum(abs(p - spoken.end_sample) <= 0.15 * SR for p in pauses) == 1
    assert pauses[-1] == utts[0].speech_end_sample
    # ... and any other only where espeak-ng itself paused mid-sentence: quiet audio follows.
    loud = rms(utts[0].pcm)
    for p in pauses:
        assert rms(sig.pcm[p : p + SR // 5]) < 0.2 * loud  # 14 dB down


@pytest.mark.parametrize("max_s", [MAX_UTTERANCE_S, 12.0])
def test_length_cap_cuts_inside_a_pause_and_carries_the_rest_on(max_s):
    # ~54 s of sentences 400 ms apart; a 1 s hangover never ends it, only the cap can.
    sig = compose(SENTENCES, 0.4)
    options = SegmenterOptions(hangover_ms=1000, max_utterance_s=max_s)
    utts, events, seg = run(sig.pcm, options)
    assert_well_formed(utts, sig.pcm, max_s)
    assert len(utts) >= 2
    assert [u.reason for u in utts[:-1]] == ["max_length"] * (len(utts) - 1)
    assert utts[-1].reason == "silence"
    assert seg.length_cuts == len(utts) - 1
    pauses = [
        (a.end_sample, b.start_sample) for a, b in zip(sig.spoken[:-1], sig.spoken[1:], strict=True)
    ]
    for a, b in zip(utts[:-1], utts[1:], strict=True):
        assert a.end_sample == b.start_sample, "audio lost or repeated at a cut"
        assert a.duration_s > max_s - 6.0 - 0.1  # cut within the search window before the cap
        assert any(lo <= a.end_sample <= hi for lo, hi in pauses), a.end_sample / SR
    # All speech is covered by the utterances, which are contiguous from first to last.
    assert utts[0].start_sample <= sig.spoken[0].start_sample - 0.3 * SR
    assert utts[-1].end_sample >= sig.spoken[-1].end_sample
    joined = np.concatenate([u.pcm for u in utts])
    np.testing.assert_array_equal(joined, sig.pcm[utts[0].start_sample : utts[-1].end_sample])
    # The carried-on part is reported as a new start at the cut.
    starts = [e.sample for e in events if isinstance(e, SpeechStarted)]
    assert starts == [u.start_sample for u in utts]


def test_length_cap_without_any_pause_still_cuts_and_loses_nothing():
    # Sentences back to back and a search window too short to reach a pause between them.
    sig = compose(SENTENCES[:4], 0.0)
    options = SegmenterOptions(max_utterance_s=5.0, cut_search_ms=300)
    utts, _, _ = run(sig.pcm, options)
    assert_well_formed(utts, sig.pcm, 5.0)
    assert len(utts) >= 3 and all(u.reason == "max_length" for u in utts[:-1])
    for a, b in zip(utts[:-1], utts[1:], strict=True):
        assert a.end_sample == b.start_sample
        assert a.duration_s >= 5.0 - 0.3 - 0.03  # cut within the last 300 ms before the cap
    joined = np.concatenate([u.pcm for u in utts])
    np.testing.assert_array_equal(joined, sig.pcm[utts[0].start_sample : utts[-1].end_sample])
    assert utts[-1].end_sample >= sig.spoken[-1].end_sample


def test_end_of_input_flushes_the_open_utterance():
    sig = compose(SENTENCES[:2], 1.2, tail_s=0.0)
    cut = sig.spoken[1].start_sample + 2 * SR + 123  # mid-sentence, mid-frame
    pcm = sig.pcm[:cut]
    seg = Segmenter()
    events = seg.push(pcm)
    done = [e.utterance for e in events if isinstance(e, UtteranceEnded)]
    assert len(done) == 1 and seg.in_speech
    open_start = [e.sample for e in events if isinstance(e, SpeechStarted)][-1]
    whole_frames = (len(pcm) - open_start) // FRAME_SAMPLES * FRAME_SAMPLES
    np.testing.assert_array_equal(seg.current_audio(), pcm[open_start : open_start + whole_frames])
    assert seg.frames_processed == len(pcm) // FRAME_SAMPLES
    assert seg.stream_samples == len(pcm)

    tail = seg.flush()
    assert [type(e) for e in tail] == [UtteranceEnded]
    last = tail[0].utterance
    assert last.reason == "end_of_input" and last.index == 1
    assert last.start_sample == open_start and last.end_sample == len(pcm)
    np.testing.assert_array_equal(last.pcm, pcm[open_start:])  # the partial frame included
    assert not seg.in_speech and len(seg.current_audio()) == 0
    assert seg.flush() == []


def test_flush_in_silence_emits_nothing_and_offsets_continue():
    seg = Segmenter()
    assert seg.push(silence(1.0)[:-7]) == []
    assert seg.flush() == []
    clip = synthesize(SENTENCES[0])
    events = seg.push(np.concatenate([clip, silence(1.5)]))
    utts = [e.utterance for e in events if isinstance(e, UtteranceEnded)]
    assert len(utts) == 1
    # Offsets carry on past the flushed partial frame; nothing from before the flush is reused.
    assert utts[0].start_sample == SR - 7
    assert utts[0].speech_end_sample >= SR - 7 + len(clip) - 0.25 * SR


def webrtcvad_speech_fraction(pcm: np.ndarray) -> float:
    vad, raw = webrtcvad.Vad(3), pcm.tobytes()
    n = len(raw) // FRAME_BYTES * FRAME_BYTES
    return float(
        np.mean([vad.is_speech(raw[i : i + FRAME_BYTES], SR) for i in range(0, n, FRAME_BYTES)])
    )


QUIET_ROOMS = [
    pytest.param((None, "white"), id="clean"),
    pytest.param((-55, "white"), id="white-55dB"),
    pytest.param((-50, "pink"), id="pink-50dB"),
]


@pytest.mark.parametrize("every_ms", [70, 100, 200])  # 14, 10 and 5 keystrokes a second
@pytest.mark.parametrize("noise", QUIET_ROOMS)
def test_clicks_after_speech_do_not_hold_the_utterance_open(every_ms, noise):
    sig = compose(SENTENCES[:1], 0.0, tail_s=8.0, noise_dbfs=noise[0], noise_color=noise[1], seed=6)
    end = sig.spoken[0].end_sample
    typing = clicks(7.5, every_ms, seed=7)
    # The clicks are real input to webrtcvad: on their own it calls most of their frames speech.
    assert webrtcvad_speech_fraction(typing) >= 0.3
    pcm = overlay(sig.pcm, typing, end + SR // 10)
    utts, _, _ = run(pcm)
    assert_well_formed(utts, pcm)
    assert len(utts) == 1 and utts[0].reason == "silence"
    assert utts[0].end_sample <= end + (0.6 + END_SLACK_S) * SR


@pytest.mark.parametrize(("every_ms", "burst_ms"), [(250, 40), (300, 60), (600, 120)])
def test_noise_bursts_after_speech_do_not_hold_the_utterance_open(every_ms, burst_ms):
    sig = compose(SENTENCES[1:2], 0.0, tail_s=8.0, noise_dbfs=-55, seed=11)
    end = sig.spoken[0].end_sample
    bumps = noise_bursts(7.5, every_ms, burst_ms=burst_ms, dbfs=-20, seed=12)
    assert webrtcvad_speech_fraction(bumps) >= 0.2
    pcm = overlay(sig.pcm, bumps, end + SR // 10)
    utts, _, _ = run(pcm)
    assert len(utts) == 1 and utts[0].reason == "silence"
    assert utts[0].end_sample <= end + (0.6 + END_SLACK_S) * SR


@pytest.mark.parametrize(
    "signal",
    [
        pytest.param(lambda: clicks(10, 100, seed=1), id="clicks-100ms"),
        pytest.param(lambda: clicks(10, 350, peak=30000, seed=2), id="loud-clicks-350ms"),
        pytest.param(lambda: add_noise(clicks(10, 1000, seed=3), -55, 3), id="clicks-1s-noise"),
        pytest.param(
            lambda: add_noise(clicks(10, 100, seed=6), -50, 6, "pink"), id="clicks-100ms-pink"
        ),
        pytest.param(lambda: noise_bursts(10, 400, burst_ms=150, seed=4), id="bursts-150ms"),
        pytest.param(
            lambda: noise_bursts(10, 250, burst_ms=40, dbfs=-15, seed=5), id="bursts-40ms"
        ),
    ],
)
@pytest.mark.parametrize("vad", ["silero", "webrtc"])
def test_clicks_and_bursts_alone_make_no_utterance(signal, vad):
    pcm = signal()
    utts, events, seg = run(pcm, SegmenterOptions(vad=vad))
    assert events == []
    # webrtcvad did react to them (with webrtc alone, above the energy gate too); no start
    assert webrtcvad_speech_fraction(pcm) > 0
    assert vad == "silero" or seg.voiced_frames > 0


def test_a_single_unvoiced_frame_never_ends_an_utterance():
    clip = synthesize(SENTENCES[2])
    pcm = np.concatenate([silence(0.99), clip, silence(1.5)])  # onset on a frame boundary
    for at in range(SR + 9 * FRAME_SAMPLES, SR + len(clip) - FRAME_SAMPLES, 10 * FRAME_SAMPLES):
        pcm[at : at + FRAME_SAMPLES] = 0  # one dead frame every 300 ms
    utts, _, seg = run(pcm, SegmenterOptions(hangover_ms=90))
    assert len(utts) == 1
    onset = round(0.99 * SR)
    assert utts[0].start_sample <= onset - 0.3 * SR and utts[0].speech_end_sample > onset + 4 * SR


def test_blips_below_the_minimum_are_dropped_without_events():
    words = [synthesize(w) for w in ("Go.", "Yes.", "Stop.")]
    sentence = synthesize(SENTENCES[3])
    parts = [silence(1.0)]
    for w in words:
        parts += [w, silence(1.5)]
    parts += [sentence, silence(1.5)]
    pcm = np.concatenate(parts)
    options = SegmenterOptions(min_speech_ms=700)
    utts, events, seg = run(pcm, options)
    assert seg.blips_dropped == 3
    assert len(utts) == 1 and utts[0].index == 0
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, UtteranceEnded]
    assert utts[0].start_sample < len(pcm) - SR * 1.5 - len(sentence) < utts[0].speech_end_sample
    # With the default minimum the same short words are kept: they are words, not blips.
    utts, _, seg = run(pcm)
    assert len(utts) == 4 and seg.blips_dropped == 0


def test_push_size_does_not_change_the_result():
    sig = compose(SENTENCES[5:8], [0.3, 1.0], noise_dbfs=-50, seed=8)
    pcm = overlay(sig.pcm, clicks(3.0, 150, seed=9), sig.spoken[-1].end_sample)
    pcm = pcm[: sig.spoken[-1].start_sample + 2 * SR + 77]  # ends mid-speech, mid-frame

    def describe(events):
        out = []
        for e in events:
            if isinstance(e, UtteranceEnded):
                u = e.utterance
                fields = dataclasses.astuple(dataclasses.replace(u, pcm=None))
                out.append(("ended", fields, u.pcm.tobytes()))
            else:
                out.append((type(e).__name__, e.sample))
        return out

    _, ref, _ = run(pcm, block=FRAME_SAMPLES)
    assert sum(isinstance(e, UtteranceEnded) for e in ref) == 2
    rng = np.random.default_rng(10)
    seg, events, pos = Segmenter(), [], 0
    while pos < len(pcm):
        n = int(rng.choice([0, 1, 479, 481, 960, 1600, 7777]))
        events += seg.push(pcm[pos : pos + n])
        pos += n
    events += seg.flush()
    assert describe(events) == describe(ref)
    _, whole, _ = run(pcm, block=len(pcm))
    assert describe(whole) == describe(ref)


def test_push_rejects_anything_but_int16_mono():
    seg = Segmenter()
    with pytest.raises(AudioError, match="int16"):
        seg.push(np.zeros(480, dtype=np.float32))
    with pytest.raises(AudioError, match="int16"):
        seg.push(np.zeros((480, 2), dtype=np.int16))
    with pytest.raises(AudioError, match="int16"):
        seg.push(b"\0" * 960)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aggressiveness", 4),
        ("aggressiveness", 2.0),
        ("preroll_ms", 100),
        ("start_window_ms", 30),
        ("start_ratio", 0.0),
        ("start_ratio", 1.5),
        ("end_ratio", 0.9),  # above the start ratio: no hysteresis
        ("end_window_ms", 10),
        ("hangover_ms", 50),
        ("hangover_ms", "600"),
        ("pause_ms", 0),
        ("min_speech_ms", -1),
        ("max_utterance_s", 40.0),
        ("max_utterance_s", True),
        ("cut_search_ms", 20_000),
        ("energy_gate_db", -3.0),
        ("vad", "rnnoise"),
        ("vad", 1),
        ("speech_threshold", 0.0),
        ("speech_threshold_end", 0.9),  # above the start threshold: no hysteresis
    ],
)
def test_bad_options_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^segmenter\.{field} must ") as info:
        SegmenterOptions(**{field: value})
    assert info.value.permanent  # exit code 2 in the CLI: a restart cannot fix it


def test_default_options_keep_the_documented_limits():
    o = SegmenterOptions()
    assert o.preroll_ms >= 300 and 500 <= o.hangover_ms <= 700
    assert o.max_utterance_s == MAX_UTTERANCE_S and o.max_frames * FRAME_SAMPLES <= 35 * SR
    assert o.end_ratio < o.start_ratio


def test_demo_sample_is_segmented_into_its_sentences():
    wav = SAMPLES_DIR / "dictation-demo.wav"
    info = soundfile.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    assert 15.0 <= info.duration <= 25.0 and wav.stat().st_size < 1_000_000
    sentences = [s for s in (SAMPLES_DIR / "dictation-demo.txt").read_text().splitlines() if s]
    assert 3 <= len(sentences) <= 5
    pcm, _ = soundfile.read(str(wav), dtype="int16")
    utts, _, _ = run(pcm)
    assert_well_formed(utts, pcm)
    assert len(utts) == len(sentences)
    assert all(u.reason == "silence" for u in utts)
    # Ground truth from the file itself: the sentences are separated by digital silence.
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 64)
    gaps = np.flatnonzero(np.diff(loud) > SR // 2)
    starts = [loud[0], *loud[gaps + 1]]
    ends = [*(loud[gaps] + 1), loud[-1] + 1]
    assert len(starts) == len(sentences)
    for u, start, end in zip(utts, starts, ends, strict=True):
        assert u.start_sample <= start - 0.3 * SR and u.end_sample >= end


def test_onsets_are_the_true_speech_onsets_without_the_preroll():
    """`onset_sample` (SpeechStarted and Utterance) is where the speech begins, not the pre-roll:
    compared with the true onsets of the composed signal (espeak-ng's first audible sample)."""
    sig = compose(SENTENCES[:4], 1.5, lead_s=1.0)
    utts, events, _ = run(sig.pcm)
    assert len(utts) == 4
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert [e.onset_sample for e in starts] == [u.onset_sample for u in utts]
    for u, spoken in zip(utts, sig.spoken, strict=True):
        assert u.start_sample < u.onset_sample < u.speech_end_sample
        assert abs(u.onset_sample - spoken.start_sample) <= 0.1 * SR, (u, spoken)
        assert u.onset_sample - u.start_sample >= 0.3 * SR  # the pre-roll is before the onset


def test_a_segmenter_started_later_reports_source_positions():
    """After a pause the daemon starts a segmenter at the source's current position: every
    position it reports is offset by exactly that."""
    sig = compose(SENTENCES[:2], 1.5, lead_s=0.5)
    offset = 123 * SR + 7
    base, _, _ = run(sig.pcm)
    seg = Segmenter(start_sample=offset)
    shifted = [
        e.utterance for e in seg.push(sig.pcm) + seg.flush() if isinstance(e, UtteranceEnded)
    ]
    assert [(u.start_sample, u.onset_sample, u.speech_end_sample) for u in shifted] == [
        (u.start_sample + offset, u.onset_sample + offset, u.speech_end_sample + offset)
        for u in base
    ]
