"""No invented text (nonspeech.py): utterances without speech are not decoded, text an engine
makes up from noise is dropped, and a known phrase said aloud is kept.

The rules are checked on transcripts with the numbers measured on real noise and speech; the
worker with a scripted engine (is the engine called, what is delivered, what is counted); and the
real Whisper tiny.en on real desk noise and espeak-ng speech, with the utterance's speech
probability from the real Silero stage (speech_prob.py, the segmenter's own measure).
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from dictated.engines import EngineOptions, create_engine
from dictated.engines.base import Transcript
from dictated.events import Utterance
from dictated.jobs import Job
from dictated.nonspeech import NonSpeechGuard, is_hallucination_phrase
from dictated.translate import transcript_body
from dictated.worker import Speculation
from tests import desk_noise
from tests.fake_engine import FakeEngine
from tests.speech import SENTENCES, add_noise, clicks, silence, synthesize
from tests.test_speculation import SR, Lane, run, speech


def utterance(pcm: np.ndarray, speech_prob: float | None) -> Utterance:
    return Utterance(0, pcm, 0, len(pcm), "silence", speech_prob=speech_prob)


def job(pcm: np.ndarray, speech_prob: float | None, utterance_id: str = "u1") -> Job:
    return Job(utterance_id, utterance(pcm, speech_prob), "en", 0.0, 0.0, 0.0, 0.0, 0.0)


class Says(FakeEngine):
    """A FakeEngine that says a chosen text with chosen no-speech signals."""

    def __init__(self, text: str, no_speech_prob=None, avg_logprob=None, **kwargs):
        super().__init__(**kwargs)
        self.said = Transcript(text, "en", (1,), {}, False, None, no_speech_prob, avg_logprob)

    def transcribe(self, pcm, language=None, cancel=None):
        super().transcribe(pcm, language, cancel)
        return self.said


# -- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("speech_prob", "gated"),
    [(0.01, True), (0.29, True), (0.3, False), (0.9, False), (None, False)],
)
def test_the_gate_goes_by_the_speech_probability_alone(speech_prob, gated):
    guard = NonSpeechGuard()
    dropped = guard.gate(utterance(speech(1.0), speech_prob), "u1")
    assert (dropped is not None) is gated
    assert guard.stats.skipped == int(gated)
    if gated:
        assert dropped.rule == "speech_prob" and not dropped.decoded


# (text, speech_prob, no_speech_prob, avg_logprob) -> the rule that drops it, or None (kept).
# The numbers are those measured on this machine (see nonspeech.py).
RULES = [
    ("Thank you.", 0.05, 0.91, -1.10, "no_speech"),  # music: Whisper's classic, both signals
    ("Thank you.", 0.25, 0.70, -0.50, "phrase"),  # little speech, and the engine doubts it
    ("Thank you.", 0.25, 0.50, -0.50, None),  # little speech, but the engine heard it
    ("Thank you.", 0.44, 0.24, -0.50, None),  # whispered for real: Silero hears little of it
    ("Thank you.", 0.75, 0.44, -0.22, None),  # said aloud
    ("Thank you.", None, 0.91, -0.90, "phrase"),  # webrtc (no speech probability): engine sure
    ("Thank you.", None, 0.44, -0.22, None),  # webrtc, said aloud
    ("you", 0.83, 0.75, -0.71, None),  # a lone "you" said aloud: no-speech 0.75, kept
    ("You", 0.83, 0.64, -1.04, None),  # ... and measured once more: the VAD outranks Whisper
    ("You", None, 0.64, -1.04, "no_speech"),  # webrtc: the engine's rule is all there is
    ("Thank you.", None, 0.70, -0.50, None),  # webrtc: the engine not sure enough alone
    ("Thanks for watching!", 0.10, None, None, "phrase"),  # an engine without signals
    ("Subtitles by the Amara.org community", 0.02, 0.65, -0.4, "phrase"),
    ("Thanks for watching!", 0.60, None, None, None),  # ... on speech
    ("Hello, everyone.", None, 0.78, -1.79, "no_speech"),  # keyboard clicks
    ("Hello, everyone.", 0.95, 0.10, -0.20, None),
    ("Hello, everyone.", 0.05, 0.50, -0.50, None),  # not a known phrase: text is not judged
    (". . . .", None, 0.95, -0.79, "no_words"),  # silence
    ("", 0.0, 0.99, -2.0, None),  # nothing to drop
    (SENTENCES[0], 0.94, 0.04, -0.17, None),
]


@pytest.mark.parametrize(("text", "speech_prob", "ns", "lp", "rule"), RULES)
def test_decoded_text_is_dropped_only_on_evidence_of_no_speech(text, speech_prob, ns, lp, rule):
    guard = NonSpeechGuard()
    transcript = Transcript(text, "en", no_speech_prob=ns, avg_logprob=lp)
    dropped = guard.check(transcript, speech_prob, "utterance u1")
    assert (dropped and dropped.rule) == rule
    assert guard.stats.dropped == int(rule is not None)
    if dropped is not None:
        assert dropped.decoded and dropped.text == text


def test_hallucination_phrases_match_whole_texts_only():
    assert is_hallucination_phrase("Thank you.") and is_hallucination_phrase(" THANK YOU!! ")
    assert is_hallucination_phrase("Subtitles by the Amara.org community")
    assert not is_hallucination_phrase("Thank you for the report.")
    assert not is_hallucination_phrase("you should go")


# -- the worker ---------------------------------------------------------------------------------


def test_an_utterance_without_speech_is_not_decoded_and_its_final_is_empty():
    engine = Says("Thank you.")

    async def main():
        async with Lane(engine) as lane:
            await lane.worker.submit(job(speech(2.0), speech_prob=0.02))
        return lane

    lane = run(main())
    assert engine.calls == 0
    (final,) = lane.finals
    assert final.transcript.text == "" and final.error is None
    assert final.dropped.rule == "speech_prob"
    assert lane.worker.nonspeech.stats.skipped == 1
    body = transcript_body(final, "fake", 1.0)
    assert (body.text, body.suppressed, body.suppressed_text) == ("", "nonspeech", None)


def test_the_speculative_decode_of_an_utterance_without_speech_is_stopped_not_awaited():
    engine = Says("Thank you.", delay_s=30.0, interruptible=True)
    pcm = speech(2.0)

    async def main():
        async with Lane(engine) as lane:
            lane.worker.speculate(Speculation("u1", pcm, 0, len(pcm), "en", "pause"))
            while engine.calls == 0:
                await asyncio.sleep(0.005)
            await lane.worker.submit(job(pcm, speech_prob=0.02))
        return lane

    lane = run(main())
    assert engine.cancelled == 1
    (final,) = lane.finals
    assert final.dropped.rule == "speech_prob" and not final.speculative
    assert lane.speculative == []
    assert lane.worker.speculation.wasted == 1


@pytest.mark.parametrize(("speech_prob", "kept"), [(0.4, False), (0.9, True), (None, True)])
def test_a_hallucination_phrase_is_dropped_only_when_the_audio_held_little_speech(
    speech_prob, kept
):
    engine = Says("Thank you.", no_speech_prob=0.7, avg_logprob=-0.3)  # doubted, not rule 2

    async def main():
        async with Lane(engine) as lane:
            await lane.worker.submit(job(speech(1.0), speech_prob))
        return lane

    lane = run(main())
    assert engine.calls == 1
    (final,) = lane.finals
    stats = lane.worker.nonspeech.stats
    if kept:
        assert final.transcript.text == "Thank you." and final.dropped is None
        assert (stats.skipped, stats.dropped) == (0, 0)
    else:
        assert final.transcript.text == "" and final.transcript.tokens == ()
        assert final.dropped.rule == "phrase" and final.dropped.text == "Thank you."
        assert (stats.skipped, stats.dropped) == (0, 1)
        body = transcript_body(final, "fake", 1.0)
        assert (body.text, body.suppressed, body.suppressed_text) == (
            "",
            "nonspeech",
            "Thank you.",
        )


def test_a_reused_speculative_result_passes_the_guard_too():
    engine = Says("Thank you.", no_speech_prob=0.95, avg_logprob=-1.5)
    pcm = np.concatenate([speech(1.0), np.zeros(SR // 2, dtype=np.int16)])

    async def main():
        async with Lane(engine) as lane:
            lane.worker.speculate(Speculation("u1", pcm, 0, len(pcm), "en", "pause"))
            await lane.idle()
            await lane.worker.submit(job(pcm, speech_prob=None))
        return lane

    lane = run(main())
    (final,) = lane.finals
    assert engine.calls == 1 and final.speculative
    assert final.transcript.text == "" and final.dropped.rule == "no_speech"
    (shown,) = lane.speculative  # what a partial or the adaptive end would have seen
    assert shown.transcript.text == ""


# -- real Whisper, real Silero ------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper():
    return create_engine("whisper", EngineOptions())


def silero_speech_prob(pcm: np.ndarray) -> float:
    """The segmenter's measure: the mean Silero speech probability over the utterance's frames."""
    from dictated.speech_prob import probabilities

    return float(probabilities(pcm).mean())


def noises() -> dict[str, np.ndarray]:
    made = {
        "white noise": add_noise(silence(3.0), -40),
        "pink noise": add_noise(silence(3.0), -35, color="pink"),
        "clicks": clicks(3.0, 200, peak=20000, click_ms=8),
        "fan": desk_noise.fan(4.0),
    }
    try:  # the recordings come from Debian packages (.ci/run installs them)
        made |= {
            "typing": desk_noise.typing(4.0),
            "music": desk_noise.music(4.0, dbfs=-25),
            "chimes": desk_noise.chimes(4.0, every_s=1.5),
        }
    except FileNotFoundError as exc:
        pytest.skip(f"desk recordings missing: {exc}")
    return made


@pytest.mark.slow
def test_whisper_writes_no_text_for_desk_noise(whisper):
    """Real noise through the worker and the real Whisper: every final is empty, and with the
    speech probability known none of it reaches the engine."""
    calls = []
    transcribe = whisper.transcribe

    def counted(pcm, language=None, cancel=None):
        calls.append(len(pcm))
        return transcribe(pcm, language, cancel)

    sounds = noises()
    probs = {name: silero_speech_prob(pcm) for name, pcm in sounds.items()}
    assert max(probs.values()) < 0.3, probs

    async def main():
        whisper.transcribe = counted
        try:
            async with Lane(whisper) as lane:
                for i, (name, pcm) in enumerate(sounds.items()):
                    await lane.worker.submit(job(pcm, probs[name], f"u{i}"))
        finally:
            del whisper.transcribe
        return lane

    lane = run(main())
    assert [f.transcript.text for f in lane.finals] == [""] * len(sounds)
    assert calls == [SR]  # the warm-up's second of silence, nothing after it
    assert lane.worker.nonspeech.stats.skipped == len(sounds)


@pytest.mark.slow
def test_without_a_speech_probability_whispers_own_signals_drop_its_text_on_desk_noise(whisper):
    """`vad = "webrtc"` (no speech probability): every noise is decoded, and what Whisper makes
    of it ("Good morning.", "see you next time.", "You" measured) is dropped on its own
    no-speech signals, in the open: counted, its text kept out of the final."""
    sounds = noises()

    async def main():
        async with Lane(whisper) as lane:
            for i, pcm in enumerate(sounds.values()):
                await lane.worker.submit(job(pcm, None, f"u{i}"))
        return lane

    lane = run(main())
    assert [f.transcript.text for f in lane.finals] == [""] * len(sounds)
    made_up = [f.dropped for f in lane.finals if f.dropped is not None]
    assert all(d.decoded for d in made_up)
    assert lane.worker.nonspeech.stats.dropped == len(made_up)


@pytest.mark.slow
def test_whisper_without_a_speech_probability_drops_what_it_makes_up_from_silence(whisper):
    """`vad = "webrtc"` gives no speech probability: the engine's own signals decide. Over
    silence Whisper says ". . ." or "." (faster-whisper's own rule hides the latter): dropped,
    counted, not published."""

    async def main():
        async with Lane(whisper) as lane:
            await lane.worker.submit(job(silence(2.0), None, "u1"))
        return lane

    lane = run(main())
    (final,) = lane.finals
    assert final.transcript.text == "" and final.dropped is not None
    assert final.dropped.text.strip(" .") == ""
    assert lane.worker.nonspeech.stats.dropped == 1


@pytest.mark.slow
@pytest.mark.parametrize("said", ["thank you", "Thanks for watching!", "you"])
def test_whisper_keeps_a_hallucination_phrase_said_aloud(whisper, said):
    pcm = np.concatenate([silence(0.3), synthesize(said), silence(0.5)])
    prob = silero_speech_prob(pcm[int(0.3 * SR) : -int(0.5 * SR)])
    assert prob > 0.5

    async def main():
        async with Lane(whisper) as lane:
            await lane.worker.submit(job(pcm, prob))
        return lane

    lane = run(main())
    (final,) = lane.finals
    assert final.dropped is None
    assert final.transcript.text.lower().strip(" .!") == said.lower().strip(" .!")
    assert dataclasses.asdict(lane.worker.nonspeech.stats) == {"skipped": 0, "dropped": 0}


# -- the daemon ---------------------------------------------------------------------------------


def test_a_dropped_final_is_published_empty_journaled_and_counted(
    isolated_env, free_port, tmp_path
):
    """Real segmenter and sockets, an engine that says only punctuation: the utterance's final
    is published and journaled with no text, marked `nonspeech`, and status counts it."""
    from tests.speech import compose
    from tests.test_server import GatedSource, InProcess

    signal = compose(SENTENCES[:2], 1.5)
    source = GatedSource(signal.pcm, pace_s=0.02)
    run_ = InProcess(isolated_env, free_port, source, Says(". . ."), tmp_path).start()
    assert run_.finish() == 0
    finals = run_.of("transcript")
    assert len(finals) == 2
    for body in finals:
        assert (body["text"], body["suppressed"], body["suppressed_text"]) == (
            "",
            "nonspeech",
            ". . .",
        )
    status = run_.of("status")[-1]
    assert (status["dropped_nonspeech"], status["dropped_hallucinations"]) == (0, 2)
    journal = run_.journal_path.read_text()
    assert journal.count('"suppressed": "nonspeech"') == 2 and '"text": ""' in journal


@pytest.mark.slow
def test_a_whispered_thank_you_is_kept(whisper):
    """Silero hears little of a whisper (its speech probability ~0.47, below `speech_prob`), but
    Whisper hears it plainly (no-speech ~0.22): the engine does not doubt the phrase, so it stays."""
    from dictated.events import UtteranceEnded
    from dictated.segmenter import Segmenter, SegmenterOptions

    said = synthesize("thank you", voice="en-us+whisper")
    pcm = add_noise(np.concatenate([silence(1.0), said, silence(1.5)]), -60, seed=1)
    seg = Segmenter(SegmenterOptions(vad="silero"))
    (utt,) = [e.utterance for e in seg.push(pcm) + seg.flush() if isinstance(e, UtteranceEnded)]
    assert utt.speech_prob is not None and 0.3 <= utt.speech_prob < 0.5  # the case in point

    async def main():
        async with Lane(whisper) as lane:
            await lane.worker.submit(job(utt.pcm, utt.speech_prob))
        return lane

    (final,) = run(main()).finals
    assert final.dropped is None and is_hallucination_phrase(final.transcript.text)
