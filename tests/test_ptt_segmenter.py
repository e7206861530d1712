"""Push-to-talk's segmenter and Capture's key, on real speech (espeak-ng) and the real webrtcvad.

Every keyed utterance's audio is checked sample for sample against the input: the press takes
the pre-roll, the release ends exactly where it came, and nothing outside press..release (in
push-to-talk mode) becomes an utterance.
"""

from __future__ import annotations

import asyncio
import types

import numpy as np
import pytest

import dictated.capture as capture_module
from dictated.audio.format import SAMPLE_RATE
from dictated.audio.source import AudioSource, Block
from dictated.capture import Capture, Heard
from dictated.events import SpeechPaused, SpeechResumed, SpeechStarted, UtteranceEnded
from dictated.keyed_segmenter import KeyedSegmenter, RecentAudio
from dictated.segmenter import SegmenterOptions
from tests.speech import SENTENCES, compose, silence, synthesize

SR = SAMPLE_RATE
OPTIONS = SegmenterOptions()
PREROLL = OPTIONS.preroll_ms * SR // 1000


def push_all(keyed: KeyedSegmenter, pcm: np.ndarray, block: int = 1600) -> list:
    events = []
    for i in range(0, len(pcm), block):
        events += keyed.push(pcm[i : i + block])
    return events


def ended(events) -> list:
    return [e.utterance for e in events if isinstance(e, UtteranceEnded)]


def test_a_press_starts_at_once_and_the_release_ends_exactly_there():
    """No onset wait and no hangover: the utterance is the pre-roll, then every sample pushed
    until the release, whatever was said; its reason says the key ended it."""
    signal = compose(SENTENCES[:2], 0.8, lead_s=0.5, tail_s=0.4)
    pcm = signal.pcm
    press = 16_000 + 123  # mid-silence, off the frame grid
    keyed, events = KeyedSegmenter.press(OPTIONS, press - PREROLL, pcm[press - PREROLL : press])
    assert events == [SpeechStarted(press - PREROLL, press)]
    events += push_all(keyed, pcm[press:])
    events += keyed.release()
    (utt,) = ended(events)
    assert utt.reason == "key" and utt.by_key
    assert utt.start_sample == press - PREROLL and utt.onset_sample == press
    assert np.array_equal(utt.pcm, pcm[press - PREROLL :])
    # speech ends where the second sentence does (its last voiced frame), not at the release
    assert abs(utt.speech_end_sample - signal.spoken[1].end_sample) < 0.15 * SR
    assert keyed.release() == []  # a second release ends nothing


def test_pauses_while_held_are_reported_for_the_speculative_decode():
    """The pause between two sentences is a SpeechPaused (at the end of the first one's speech)
    and the second sentence a SpeechResumed; silence before any speech reports no pause."""
    signal = compose(SENTENCES[:2], 0.8, lead_s=1.5, tail_s=0.6)
    keyed, events = KeyedSegmenter.press(OPTIONS, 0, np.zeros(0, dtype=np.int16))
    events += push_all(keyed, signal.pcm)
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused], kinds
    first_end, second_start = signal.spoken[0].end_sample, signal.spoken[1].start_sample
    assert abs(events[1].sample - first_end) < 0.15 * SR
    assert abs(events[2].sample - second_start) < 0.15 * SR
    open_audio = keyed.open_audio()
    assert open_audio is not None and open_audio.start_sample == 0
    assert keyed.end_early(0, len(signal.pcm), 0) == []  # the key decides, never a guess


def test_a_hold_past_the_cap_is_split_at_a_pause_and_nothing_is_lost():
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(12)]
    signal = compose(sentences, 0.7, lead_s=0.5, tail_s=0.5)
    assert len(signal.pcm) > 40 * SR
    keyed, events = KeyedSegmenter.press(OPTIONS, 0, np.zeros(0, dtype=np.int16))
    events += push_all(keyed, signal.pcm)
    events += keyed.release()
    utts = ended(events)
    assert [u.reason for u in utts] == ["max_length", "key"]
    assert all(u.by_key for u in utts)
    assert len(utts[0].pcm) <= OPTIONS.max_frames * 480
    assert np.array_equal(np.concatenate([u.pcm for u in utts]), signal.pcm)
    # the cut falls in a pause between sentences, not inside one
    cut = utts[1].start_sample
    assert not any(s.start_sample < cut < s.end_sample for s in signal.spoken)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert [s.sample for s in starts] == [0, cut]


def test_recent_audio_keeps_positions_and_forgets_across_a_gap():
    recent = RecentAudio(keep_samples=3000)
    for i in range(10):
        recent.add(i * 1000, np.full(1000, i, dtype=np.int16))
    assert recent.start <= 7000 and recent.end == 10_000
    first, pcm = recent.between(8500, 9500)
    assert first == 8500 and list(np.unique(pcm)) == [8, 9] and len(pcm) == 1000
    first, pcm = recent.between(0, 20_000)  # clamped to what is kept
    assert first == recent.start and len(pcm) == 10_000 - recent.start
    recent.add(15_000, np.ones(500, dtype=np.int16))  # a gap: what came before is apart
    assert recent.start == 15_000 and recent.between(0, 99_999)[1].size == 500


# -- Capture: the key over a source ----------------------------------------------------------


class Blocks(AudioSource):
    """100 ms blocks of a signal; the test runs a step between blocks (`steps[offset]()` before
    the block at that offset). `realtime`: blocks carry made-up capture times on a sample clock
    starting at t0 = 1000 s (no real waiting)."""

    def __init__(self, pcm: np.ndarray, steps: dict, realtime: bool = False, gaps=None):
        self.pcm, self.steps, self.realtime = pcm, steps, realtime
        self.gaps = gaps or {}  # offset -> seconds of audio lost before that block

    async def blocks(self):
        for offset in range(0, len(self.pcm), 1600):
            if offset in self.steps:
                self.steps[offset]()
            block = self.pcm[offset : offset + 1600]
            yield Block(block, 1000.0 + (offset + len(block)) / SR, self.gaps.get(offset, 0.0))
            await asyncio.sleep(0)


def capture_run(pcm, steps, mode="continuous", realtime=False, gaps=None) -> list[Heard]:
    heard: list[Heard] = []

    async def on_heard(items):
        heard.extend(items)

    ids = iter(range(1, 1000))

    async def main():
        capture = Capture(
            Blocks(pcm, {}, realtime, gaps),
            OPTIONS,
            lambda: f"u{next(ids)}",
            on_heard,
            mode=lambda: mode,
        )
        capture.source.steps = {k: (lambda f=f: f(capture)) for k, f in steps.items()}
        await capture.run(asyncio.Event())

    asyncio.run(main())
    return heard


def utterances(heard: list[Heard]) -> list[tuple[str, object]]:
    return [(h.id, h.event.utterance) for h in heard if isinstance(h.event, UtteranceEnded)]


def test_push_to_talk_mode_turns_only_the_held_audio_into_an_utterance():
    """Speech before the press and after the release is heard by no segmenter; the held part
    is exactly pre-roll + press..release."""
    signal = compose(SENTENCES[:3], 1.6, lead_s=0.5, tail_s=0.5)
    s = signal.spoken
    press = (s[0].end_sample // 1600 + 7) * 1600  # 0.7 s into the pause after the first
    release = (s[1].end_sample // 1600 + 3) * 1600
    heard = capture_run(
        signal.pcm, {press: Capture.press, release: Capture.release}, mode="push-to-talk"
    )
    ((uid, utt),) = utterances(heard)
    assert utt.reason == "key" and utt.by_key
    assert np.array_equal(utt.pcm, signal.pcm[press - PREROLL : release])
    assert [type(h.event) for h in heard][0] is SpeechStarted and {h.id for h in heard} == {uid}


def test_a_press_in_continuous_mode_splits_the_open_utterance_at_its_preroll():
    """Mid-sentence the VAD has an utterance open (reported started); the press splits it at
    press - pre-roll: the part before ends there, not by key (`--armed-by-key` types none of
    it), and the keyed utterance starts there, under a new id; the release ends it. No sample
    is lost or heard twice. The sentence after is the VAD's again."""
    signal = compose(SENTENCES[:3], 1.6, lead_s=0.5, tail_s=1.5)
    s = signal.spoken
    press = ((s[1].start_sample + s[1].end_sample) // 2) // 1600 * 1600
    release = (s[1].end_sample // 1600 + 3) * 1600
    heard = capture_run(signal.pcm, {press: Capture.press, release: Capture.release})
    utts = utterances(heard)
    assert [u.reason for _, u in utts] == ["silence", "key", "key", "silence"]
    assert [u.by_key for _, u in utts] == [False, False, True, False]
    starts = [h for h in heard if isinstance(h.event, SpeechStarted)]
    assert [h.id for h in starts] == [uid for uid, _ in utts]  # one start each: no duplicate
    before, keyed = utts[1][1], utts[2][1]
    assert before.start_sample < s[1].start_sample  # the VAD's start, its pre-roll included
    assert before.end_sample == keyed.start_sample == press - PREROLL
    assert keyed.end_sample == release
    assert np.array_equal(before.pcm, signal.pcm[before.start_sample : before.end_sample])
    assert np.array_equal(keyed.pcm, signal.pcm[keyed.start_sample : release])
    assert utts[3][1].start_sample >= release  # the next one begins after the key's


def test_a_live_sources_key_lands_on_the_samples_of_its_moment(monkeypatch):
    """A realtime source's press and release are placed by the clock inside the block that
    holds them, however late that block arrives."""
    signal = compose(SENTENCES[:1], 0.5, lead_s=2.0, tail_s=2.0)
    press_at, release_at = 1000.0 + 1.25, 1000.0 + (signal.spoken[0].end_sample / SR) + 0.33
    now = types.SimpleNamespace(t=0.0)
    monkeypatch.setattr(capture_module, "time", types.SimpleNamespace(time=lambda: now.t))

    def at(t, action):
        def step(capture):
            now.t = t
            action(capture)

        return step

    # each command comes while the audio up to it is still on its way (the microphone hands
    # over 120-480 ms at a time): the last block the capture has ends 0.3 s or more before it
    early = {int((press_at - 1000 - 0.3) * 10) * 1600: at(press_at, Capture.press)}
    early[int((release_at - 1000 - 0.3) * 10) * 1600] = at(release_at, Capture.release)
    heard = capture_run(signal.pcm, early, mode="push-to-talk", realtime=True)
    ((_, utt),) = utterances(heard)
    press, release = round(1.25 * SR), round((release_at - 1000) * SR)
    assert abs(utt.start_sample - (press - PREROLL)) <= 1 and abs(utt.end_sample - release) <= 1
    assert np.array_equal(utt.pcm, signal.pcm[utt.start_sample : utt.end_sample])


@pytest.mark.parametrize("mode", ["continuous", "push-to-talk"])
def test_a_key_still_held_at_the_end_of_input_ends_its_utterance(mode):
    pcm = np.concatenate([silence(1.0), synthesize(SENTENCES[4]), silence(0.5)])
    heard = capture_run(pcm, {16_000: Capture.press}, mode=mode)
    ((_, utt),) = utterances(heard)
    assert utt.reason == "end_of_input" and utt.by_key and utt.end_sample == len(pcm)


def test_a_device_gap_while_held_ends_the_utterance_and_the_held_key_goes_on_after_it():
    """Audio lost in the middle (a device gone and back): what came before is whole, and the
    key, still held, opens the next utterance at the first sample after the gap."""
    pcm = np.concatenate([silence(0.5), synthesize(SENTENCES[5]), silence(0.5)])
    gap_at, release = 3 * SR, (len(pcm) // 1600 - 4) * 1600
    heard = capture_run(
        pcm, {SR: Capture.press, release: Capture.release}, mode="push-to-talk", gaps={gap_at: 0.5}
    )
    (first_id, first), (second_id, second) = utterances(heard)
    assert (first.reason, second.reason) == ("end_of_input", "key") and first_id != second_id
    assert np.array_equal(first.pcm, pcm[SR - PREROLL : gap_at])
    assert second.start_sample == gap_at + SR // 2  # stream time counts the lost half second
    assert np.array_equal(second.pcm, pcm[gap_at:release]) and second.by_key


def overlap_free(utts) -> None:
    for (_, a), (_, b) in zip(utts, utts[1:], strict=False):
        assert a.end_sample <= b.start_sample, f"{a.end_sample - b.start_sample} samples twice"


def test_press_release_press_within_the_preroll_gives_no_sample_twice():
    """A key let go and taken again 100 ms later: the second pre-roll stops where the first
    utterance ended, so its last word is not transcribed again."""
    signal = compose(SENTENCES[:3], 0.8, lead_s=0.5, tail_s=0.5)
    r1 = 3 * SR
    steps = {SR: Capture.press, r1: Capture.release, r1 + 1600: Capture.press}
    steps[r1 + 2 * SR] = Capture.release
    heard = capture_run(signal.pcm, steps, mode="push-to-talk")
    (_, a), (_, b) = utts = utterances(heard)
    overlap_free(utts)
    assert a.end_sample == b.start_sample == r1  # and nothing lost between them
    assert np.array_equal(np.concatenate([a.pcm, b.pcm]), signal.pcm[SR - PREROLL : r1 + 2 * SR])


def live_clock(monkeypatch):
    now = types.SimpleNamespace(t=0.0)
    monkeypatch.setattr(capture_module, "time", types.SimpleNamespace(time=lambda: now.t))
    return now


def test_press_release_press_before_their_block_arrives_is_one_hold(monkeypatch):
    """Press, release and press again, all before the block that holds them arrives: the
    release is void (the key is down again), so there is one utterance from the first press
    to the last release -- no junk utterance of the pre-roll alone, no sample twice."""
    signal = compose(SENTENCES[:2], 0.8, lead_s=2.0, tail_s=2.0)
    now = live_clock(monkeypatch)

    def taps(capture):
        for t, action in ((1.61, Capture.press), (1.64, Capture.release), (1.67, Capture.press)):
            now.t = 1000 + t
            action(capture)

    def release(capture):
        now.t = 1000 + 4.0
        capture.release()

    steps = {int(1.6 * SR): taps, int(3.8 * SR): release}  # each before its block
    heard = capture_run(signal.pcm, steps, mode="push-to-talk", realtime=True)
    ((_, utt),) = utterances(heard)
    assert utt.start_sample == round(1.61 * SR) - PREROLL and utt.end_sample == 4 * SR
    assert np.array_equal(utt.pcm, signal.pcm[utt.start_sample : utt.end_sample])


def test_a_release_left_over_from_a_device_loss_does_not_end_the_next_press(monkeypatch):
    """Held, the device is lost (the utterance is flushed), the key comes up (nothing is open
    to release) and goes down again before the next block: the new press is not cut short by
    the old release."""
    pcm = np.concatenate([silence(0.5), synthesize(SENTENCES[5]), silence(1.0)])
    now = live_clock(monkeypatch)

    def at(t, *actions):
        def step(capture):
            now.t = 1000 + t
            for action in actions:
                action(capture)

        return step

    lost = at(2.02, Capture.end_utterance, Capture.release, Capture.press)
    last = (len(pcm) // 1600 - 2) * 1600
    steps = {SR: at(1.0, Capture.press), 2 * SR: lost, last: at(last / SR, Capture.release)}
    heard = capture_run(pcm, steps, mode="push-to-talk", realtime=True)
    utts = utterances(heard)
    assert [u.reason for _, u in utts] == ["end_of_input", "key"], utts
    overlap_free(utts)
    assert utts[1][1].end_sample == last and utts[1][1].start_sample <= round(2.02 * SR)


def test_a_slow_commands_press_lands_at_its_own_time_and_a_stale_one_is_dropped(monkeypatch):
    """`dictated ptt press` says when it was run (`at`): the daemon places the press there (up
    to a second back), and drops a press made before the last release (a slow process that
    lost the race against the key-up's)."""
    signal = compose(SENTENCES[:1], 0.5, lead_s=2.0, tail_s=2.0)
    now = live_clock(monkeypatch)

    def slow_press(capture):
        now.t = 1000 + 1.9  # arrives at 1.9 s, made at 1.5 s: the block of 1.5 s is here already
        capture.press(at=1000 + 1.5)

    def release(capture):
        now.t = 1000 + 3.5
        capture.release(at=1000 + 3.5)
        assert capture.press(at=1000 + 3.4) is False and not capture.held  # stale

    heard = capture_run(
        signal.pcm, {int(1.9 * SR): slow_press, int(3.3 * SR): release},
        mode="push-to-talk", realtime=True,
    )  # fmt: skip
    ((_, utt),) = utterances(heard)
    assert utt.start_sample == round(1.5 * SR) - PREROLL and utt.end_sample == round(3.5 * SR)
    assert np.array_equal(utt.pcm, signal.pcm[utt.start_sample : utt.end_sample])
