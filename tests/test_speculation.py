"""Speculative decoding, adaptive end of speech and partial results.

The worker's speculative lane is checked with the deterministic FakeEngine (a chosen time per
decode, interruptible or not), where the question is scheduling: which decodes run, in what
order, and which result becomes the final. The daemon is checked in-process with the real
segmenter on espeak-ng speech; one test runs the real Whisper tiny.en in real time.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from dictated.audio.format import SAMPLE_RATE, int16_to_float32
from dictated.engines import EngineOptions, create_engine
from dictated.events import SpeechPaused, Utterance, UtteranceEnded
from dictated.protocol import JOURNALED_TOPICS
from dictated.segmenter import Segmenter
from dictated.speculation import SpeculationOptions, ends_sentence
from dictated.worker import Job, JobResult, Speculation, SpeculativeResult, Worker
from tests.fake_engine import FakeEngine, fingerprint
from tests.speech import SENTENCES, compose
from tests.test_server import GatedSource, InProcess

SR = SAMPLE_RATE
PREROLL = 14 * 480  # the default 400 ms pre-roll in whole 30 ms frames


def speech(seconds: float = 2.0) -> np.ndarray:
    return np.random.default_rng(0).integers(-3000, 3000, round(seconds * SR), dtype=np.int16)


def speculation(pcm, speech_end: int, utterance_id: str = "u1") -> Speculation:
    return Speculation(utterance_id, pcm, 0, speech_end, "en", "pause")


def job(pcm, speech_end: int, utterance_id: str = "u1") -> Job:
    u = Utterance(0, pcm, 0, speech_end, "silence")
    return Job(utterance_id, u, "en", 0.0, 0.0, 0.0, 0.0, 0.0)


class Lane:
    """A started Worker over an engine, collecting finals and speculative results."""

    def __init__(self, engine: FakeEngine, on_speculative=lambda result: False):
        self.engine = engine
        self.finals: list[JobResult] = []
        self.speculative: list[SpeculativeResult] = []
        self.order: list[str] = []  # what was delivered, in order

        async def on_result(result: JobResult) -> None:
            self.finals.append(result)
            self.order.append(f"final {result.job.id}")

        def on_spec(result: SpeculativeResult) -> bool:
            self.speculative.append(result)
            self.order.append(f"speculative {result.speculation.id}")
            return on_speculative(result)

        self.worker = Worker(lambda: engine, on_result, on_speculative=on_spec)

    async def __aenter__(self) -> Lane:
        await self.worker.start()
        self.runner = asyncio.create_task(self.worker.run())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.worker.close_queue()
        await asyncio.wait_for(self.runner, 30)
        await self.worker.shutdown()

    async def idle(self) -> None:
        """Until no speculative decode is running or waiting."""
        while self.worker._running is not None or self.worker._pending:
            await asyncio.sleep(0.005)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# -- the worker's lane ------------------------------------------------------------------------


@pytest.mark.parametrize("still_running", [False, True])
def test_a_pause_that_ends_the_utterance_is_decoded_once(still_running):
    """The final is the speculative result, whether it is ready or still running at the end."""
    pcm = np.concatenate([speech(2.0), np.zeros(SR // 2, dtype=np.int16)])
    heard = pcm[: 2 * SR + SR // 4]  # speech and 250 ms of the pause

    async def main():
        async with Lane(FakeEngine(delay_s=0.2)) as lane:
            lane.worker.speculate(speculation(heard, speech_end=2 * SR))
            if not still_running:
                await lane.idle()
            await lane.worker.submit(job(pcm, speech_end=2 * SR))
        return lane

    lane = run(main())
    assert lane.engine.calls == 1 and lane.engine.heard == [len(heard)]
    (final,) = lane.finals
    assert final.speculative and final.transcript.text == fingerprint(int16_to_float32(heard))
    stats = lane.worker.speculation
    assert (stats.started, stats.reused, stats.wasted) == (1, 1, 0)
    # shown before the end if it was ready; never after its final was submitted
    assert lane.order == ["final u1"] if still_running else ["speculative u1", "final u1"]


def test_speech_after_the_speculative_audio_gets_a_decode_of_its_own():
    pcm = speech(3.0)
    heard = pcm[: 2 * SR]

    async def main():
        async with Lane(FakeEngine()) as lane:
            lane.worker.speculate(speculation(heard, speech_end=2 * SR - 480))
            await lane.idle()
            await lane.worker.submit(job(pcm, speech_end=3 * SR))  # it spoke on after the pause
        return lane

    lane = run(main())
    assert lane.engine.heard == [len(heard), len(pcm)]
    (final,) = lane.finals
    assert not final.speculative and final.transcript.text == fingerprint(int16_to_float32(pcm))
    assert (lane.worker.speculation.reused, lane.worker.speculation.wasted) == (0, 1)


@pytest.mark.parametrize("interruptible", [True, False])
def test_resumed_speech_cancels_the_speculative_decode(interruptible):
    """An interruptible engine stops (between tokens); any other finishes and is discarded."""
    engine = FakeEngine(delay_s=5.0 if interruptible else 0.3, interruptible=interruptible)

    async def main():
        async with Lane(engine) as lane:
            lane.worker.speculate(speculation(speech(1.0), speech_end=SR))
            while engine.calls == 0:
                await asyncio.sleep(0.005)
            lane.worker.cancel_speculation("u1")
            await lane.idle()
        return lane

    lane = run(main())
    assert engine.cancelled == (1 if interruptible else 0)
    assert lane.speculative == []  # neither a partial nor a final
    assert (lane.worker.speculation.started, lane.worker.speculation.wasted) == (1, 1)


def test_a_final_goes_first_and_one_speculation_at_a_time():
    engine = FakeEngine(delay_s=0.2)
    first = speech(1.0)
    later = [speech(s) for s in (1.1, 1.2, 1.3)]

    async def main():
        async with Lane(engine) as lane:
            await lane.worker.submit(job(first, SR, "u1"))
            for pcm in later:  # while the final runs: each replaces the one before
                lane.worker.speculate(speculation(pcm, len(pcm), "u2"))
            await lane.idle()
        return lane

    lane = run(main())
    assert engine.heard == [len(first), len(later[-1])]  # the final, then the newest request
    assert lane.order == ["final u1", "speculative u2"]


def test_a_final_that_cannot_use_the_running_decode_cancels_it():
    engine = FakeEngine(delay_s=5.0, interruptible=True)
    pcm = speech(3.0)

    async def main():
        async with Lane(engine) as lane:
            lane.worker.speculate(speculation(pcm[:SR], SR))
            while engine.calls == 0:
                await asyncio.sleep(0.005)
            engine.delay_s = 0.0
            await lane.worker.submit(job(pcm, 3 * SR))
        return lane

    lane = run(main())
    assert engine.cancelled == 1 and engine.heard == [SR, 3 * SR]
    assert lane.finals[0].transcript.text == fingerprint(int16_to_float32(pcm))


@pytest.mark.parametrize("interruptible", [True, False])
def test_a_later_final_keeps_the_running_decode_an_earlier_queued_final_reuses(interruptible):
    """u1's final is queued while the speculative decode that covers it runs; u2 (another
    channel) arrives next and cannot use that decode -- it must not cancel it from under u1."""
    pcm = np.concatenate([speech(2.0), np.zeros(SR // 2, dtype=np.int16)])
    other = speech(1.0)

    async def main():
        async with Lane(FakeEngine(delay_s=0.3, interruptible=interruptible)) as lane:
            lane.worker.speculate(speculation(pcm[: 2 * SR + SR // 4], 2 * SR))
            while lane.engine.calls == 0:
                await asyncio.sleep(0.005)  # the speculative decode is running
            await lane.worker.submit(job(pcm, 2 * SR))  # covered: u1 will reuse it
            u2 = Utterance(0, other, 10 * SR, 11 * SR, "silence")
            await lane.worker.submit(Job("u2", u2, "en", 0, 0, 0, 0, 0, "them"))
        return lane

    lane = run(main())
    u1 = next(f for f in lane.finals if f.job.id == "u1")
    assert u1.speculative and lane.engine.calls == 2 and lane.engine.cancelled == 0


# -- when a text ends a sentence ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language", "ends"),
    [
        ("Please send me the report.", "en", True),
        ("Could you send it?", "en", True),
        ("Stop!", "en", True),
        ('He said "no."', "en", True),
        ("I went to the store and.", "en", False),
        ("I went to the store, and", "en", False),
        ("I went to the store,", "en", False),
        ("I went to the store", "en", False),
        ("Well...", "en", False),
        ("Well…", "en", False),
        ("Ich gehe nach Hause und.", "de", False),
        ("Ich gehe nach Hause.", "de", True),
        ("今日は晴れです。", "ja", True),
        ("今日は晴れです、", "ja", False),
        ("你好吗？", "zh", True),
        ("هل أنت بخير؟", "ar", True),
        ("Τι κάνεις;", "el", True),
        ("", "en", False),
    ],
)
def test_ends_sentence(text, language, ends):
    assert ends_sentence(text, language) is ends


# -- the segmenter's early end ------------------------------------------------------------------


def test_end_early_closes_in_the_pause_and_the_next_sentence_is_its_own_utterance():
    """Real webrtcvad on espeak-ng speech: an early end closes the utterance `hangover_ms` after
    its last voiced frame; the sentence after it is a new utterance that starts after that
    speech (pre-roll only from the silence), so no word is split or heard twice."""
    signal = compose(SENTENCES[:2], 0.45)  # too short a pause to split with the full hangover
    whole = Segmenter()
    (merged,) = [
        e.utterance for e in whole.push(signal.pcm) + whole.flush() if isinstance(e, UtteranceEnded)
    ]
    seg = Segmenter()
    utterances, asked = [], False
    for at in range(0, len(signal.pcm), 480):
        for event in seg.push(signal.pcm[at : at + 480]):
            if isinstance(event, SpeechPaused) and not asked:
                opened = seg.open_audio()
                assert opened is not None and opened.speech_end_sample == event.sample
                heard_until = opened.start_sample + len(opened.pcm)
                utterances += seg.end_early(opened.start_sample, heard_until, 300)
                asked = True
            if isinstance(event, UtteranceEnded):
                utterances.append(event)
    utterances = [e.utterance for e in utterances + seg.flush() if isinstance(e, UtteranceEnded)]
    assert merged.start_sample < signal.spoken[1].start_sample < merged.speech_end_sample
    assert len(utterances) == 2
    first, second = utterances
    tail_ms = (first.end_sample - first.speech_end_sample) * 1000 / SR
    assert 300 <= tail_ms < 330  # 300 ms rounded up to whole frames, not the ~800 ms hangover
    assert abs(first.speech_end_sample - signal.spoken[0].end_sample) < 0.1 * SR
    assert abs(second.onset_sample - signal.spoken[1].start_sample) < 0.1 * SR
    assert second.start_sample >= first.speech_end_sample  # its pre-roll is silence


@pytest.mark.parametrize("case", ["heard too little", "speech resumed first"])
def test_end_early_does_not_apply_once_speech_went_on(case):
    signal = compose(SENTENCES[:2], 0.45)
    seg = Segmenter()
    events, asked = [], False
    for at in range(0, len(signal.pcm), 480):
        for event in seg.push(signal.pcm[at : at + 480]):
            events.append(event)
            if isinstance(event, SpeechPaused) and not asked:
                asked = True
                opened = seg.open_audio()
                if case == "heard too little":  # the decode ended before the last voiced frame
                    heard_until, hangover_ms = opened.speech_end_sample - 5 * 480, 300
                else:  # the early end would fall after the next sentence's onset
                    heard_until, hangover_ms = opened.start_sample + len(opened.pcm), 1000
                assert seg.end_early(opened.start_sample, heard_until, hangover_ms) == []
    utterances = [e.utterance for e in events + seg.flush() if isinstance(e, UtteranceEnded)]
    assert len(utterances) == 1


# -- the daemon ---------------------------------------------------------------------------------


def speculating(**changes) -> SpeculationOptions:
    return SpeculationOptions(mode="on", **changes)


def transcripts_by_id(run: InProcess) -> dict[str, dict]:
    bodies = run.of("transcript")
    ids = [b["id"] for b in bodies]
    assert len(ids) == len(set(ids)), "exactly one final per utterance"
    return {b["id"]: b for b in bodies}


def covered_s(transcript: dict) -> float:
    """Seconds of audio the FakeEngine heard for this transcript (its text says)."""
    return float(transcript["text"].split("s crc")[0])


@pytest.mark.parametrize(("suffix", "utterances"), [(".", 3), (", and", 1)])
def test_sentence_final_text_shortens_the_hangover_and_other_text_does_not(
    isolated_env, free_port, tmp_path, suffix, utterances
):
    signal = compose(SENTENCES[:3], 0.45)  # merged into one by the full hangover
    # held in each pause (past its SpeechPaused, before the next onset) until the speculative
    # decode has done its part: at 5x real time the pause is 90 ms of wall time, too short to
    # count on for a thread round trip on a loaded machine
    block = SR // 10
    gates = tuple(-(-(s.end_sample + SR // 3) // block) * block for s in signal.spoken[:-1])
    source = GatedSource(signal.pcm, gates=gates, pace_s=0.02)
    engine = FakeEngine(suffix=suffix)
    # ", and": partials on, so a decode's result having been handled is seen (its partial)
    options = speculating() if utterances == 3 else speculating(partials="on")
    run = InProcess(isolated_env, free_port, source, engine, tmp_path, options).start()
    for i, gate in enumerate(gates):
        assert source.wait_at(gate, 60)
        if utterances == 3:  # the sentence's text ended its utterance before the next onset
            run.receive(lambda ev, n=i: sum(t == "transcript" for t, _ in ev) > n, timeout_s=20)
            assert len(run.of("transcript")) == i + 1, run.events
        else:  # a decode up to the pause was handled, and kept the utterance open
            heard = signal.spoken[i].end_sample / SR - 0.1

            def handled(events, heard=heard) -> bool:
                return any(t == "partial" and b["stream_end"] >= heard for t, b in events)

            run.receive(handled, timeout_s=20)
            assert handled(run.events), run.events
            assert not run.of("transcript"), run.events
        source.go.set()
    assert run.finish() == 0
    finals = list(transcripts_by_id(run).values())
    assert len(finals) == utterances
    if utterances == 3:  # each sentence its own utterance, none split
        for t, spoken in zip(finals, signal.spoken, strict=True):
            assert abs(t["stream_start"] - spoken.start_sample / SR) < 0.1
            assert abs(t["stream_end"] - spoken.end_sample / SR) < 0.1
    assert all(t["text"].endswith(suffix) for t in finals)


def test_partials_precede_their_final_and_none_follow_it(isolated_env, free_port, tmp_path):
    """Two utterances, the first with pauses inside it: partials carry the final's id, come
    before it, never after; the final covers all of its speech; nothing live-only is journaled."""
    signal = compose(SENTENCES[:3], [0.45, 1.5])
    held = len(signal.pcm) - SR // 5  # in the final silence: both utterances have ended
    source = GatedSource(signal.pcm, gates=(held,), pace_s=0.02)
    engine = FakeEngine(delay_s=0.01)
    options = speculating(partials="on", partial_interval_ms=500, adaptive_end=False)
    run = InProcess(isolated_env, free_port, source, engine, tmp_path, options).start()
    assert source.wait_at(held, 60)
    run.receive(lambda events: sum(t == "transcript" for t, _ in events) == 2)
    history = run.control.request("history", since=0)["events"]
    assert [e["topic"] for e in history] == ["transcript", "transcript"]
    source.go.set()
    assert run.finish() == 0
    finals = transcripts_by_id(run)
    assert len(finals) == 2
    starts = [b["id"] for b in run.of("vad") if b["event"] == "speech_start"]
    assert list(finals) == starts
    partials = run.of("partial")
    assert len(partials) >= 4 and {p["id"] for p in partials} == set(finals)
    for p in partials:
        assert p["seq"] < finals[p["id"]]["seq"]
        assert p["stream_start"] < p["stream_end"] <= finals[p["id"]]["stream_end"] + 1.0
    for t in finals.values():  # complete: the audio it was decoded from reaches its speech end
        begin = t["stream_start"] - PREROLL / SR
        assert begin + covered_s(t) >= t["stream_end"] - 0.001
    journal = [json.loads(line) for line in run.journal_path.read_text().splitlines()]
    assert {j["topic"] for j in journal} <= set(JOURNALED_TOPICS)
    assert sorted(j["event"]["seq"] for j in journal) == sorted(t["seq"] for t in finals.values())
    status = run.of("status")[-1]
    assert status["speculative"] >= len(partials) and status["speculative_wasted"] >= 0


@pytest.mark.slow
def test_whisper_in_real_time_takes_its_finals_from_the_pauses(isolated_env, free_port, tmp_path):
    """The real Whisper tiny.en, speech at real speed: each utterance is decoded once, during its
    final pause, and the text is the sentence."""
    signal = compose(SENTENCES[:2], 1.5)
    engine = create_engine("whisper", EngineOptions())
    calls = []
    transcribe = engine.transcribe

    def counted(pcm, language=None, cancel=None):
        calls.append(len(pcm))
        return transcribe(pcm, language, cancel)

    engine.transcribe = counted
    source = GatedSource(signal.pcm, pace_s=0.1)  # 100 ms blocks, every 100 ms
    run = InProcess(isolated_env, free_port, source, engine, tmp_path, speculating())
    assert run.start().finish(timeout_s=120) == 0
    finals = list(transcripts_by_id(run).values())
    assert [t["text"] for t in finals] == list(SENTENCES[:2])
    status = run.of("status")[-1]
    reused = [t for t in finals if "speculative" in t["timings_ms"]]
    decodes = calls[1:]  # the first was the warm-up
    # each final is a speculative result or a decode of its own, never both
    assert len(decodes) == status["speculative"] + len(finals) - len(reused)
    assert status["speculative"] - status["speculative_wasted"] >= len(reused)
    assert reused, "at least one final should come from its pause"


@pytest.mark.slow
def test_a_final_does_not_wait_for_the_whisper_decode_that_speech_made_useless(monkeypatch):
    """The real Whisper: a speculative decode cancelled while its encoder runs stops there
    (the decoder never runs for it), so the final behind it decodes at once. Deterministic: the
    encoder of the speculative decode is held until the final has been submitted."""
    from faster_whisper import WhisperModel

    engine = create_engine("whisper", EngineOptions())
    first, whole = compose(SENTENCES[:1], 0.5), compose(SENTENCES[:2], 0.3)
    entered, release = asyncio.Event(), asyncio.Event()
    encode, generate = WhisperModel.encode, WhisperModel.generate_with_fallback
    decoded: list[int] = []  # encoder frames of each decode that reached the decoder
    loop: asyncio.AbstractEventLoop | None = None

    def held_encode(self, features):
        if loop is not None and not release.is_set():  # the speculative decode's encoder
            asyncio.run_coroutine_threadsafe(_enter(), loop).result()
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        return encode(self, features)

    async def _enter():
        entered.set()

    def counted_generate(self, encoder_output, *args):
        decoded.append(encoder_output.shape[1])
        return generate(self, encoder_output, *args)

    async def main():
        nonlocal loop
        async with Lane(engine) as lane:
            monkeypatch.setattr(WhisperModel, "encode", held_encode)
            monkeypatch.setattr(WhisperModel, "generate_with_fallback", counted_generate)
            loop = asyncio.get_running_loop()
            lane.worker.speculate(speculation(first.pcm[: first.spoken[0].end_sample], 0))
            await entered.wait()
            submitted = asyncio.create_task(lane.worker.submit(job(whole.pcm, len(whole.pcm))))
            await asyncio.sleep(0)  # submit() cancels the running decode it cannot use
            release.set()
            await submitted
        return lane

    lane = run(main())
    (final,) = lane.finals
    assert not final.speculative
    assert final.transcript.text == " ".join(SENTENCES[:2])
    assert len(decoded) == 1  # the final's: the cancelled decode stopped before the decoder
    assert lane.speculative == [] and lane.worker.speculation.wasted == 1
