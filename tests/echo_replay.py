"""Replays two transcribed tracks through the echo suppressor in the order a live daemon sees them.

Each track is transcribed by the real engine (`transcribe_file`: the daemon's segmenter and
engine, per-utterance stream times). A live daemon learns of an utterance's speech when it starts
(`vad` speech start, at its onset) and gets its final when the segmenter ends it (hangover
included) plus the decode time; both tracks share one clock (played in step). The replay feeds the
suppressor those events in time order and polls it at its deadlines, as the daemon's loop would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jiwer

from dictated.echo import Action, EchoOptions, EchoSuppressor, Heard, Verdict
from dictated.engines.base import Engine
from dictated.segmenter import SegmenterOptions
from dictated.transcribe import FileUtterance, transcribe_file

DECODE_S = 0.3  # a final is ready this long after its utterance ends (tiny.en on 2 cores: ~0.3 s)


@dataclass(frozen=True)
class Replay:
    verdicts: tuple[Verdict, ...]  # every result of both channels, in publication order
    stats: dict

    def published(self, channel: str) -> list[str]:
        return [v.text for v in self.verdicts if v.heard.channel == channel and v.text]


def transcribe_track(path: Path, engine: Engine) -> list[FileUtterance]:
    return [u for u in transcribe_file(path, engine, "en", SegmenterOptions()) if u.transcript.text]


def replay(
    tracks: dict[str, list[FileUtterance]],
    options: EchoOptions | None = None,
    late: dict[str, float] | None = None,
) -> Replay:
    """Feeds `tracks` (channel label → its utterances) to a fresh suppressor in live order;
    `late` delays a channel's finals (its decodes queued behind the other channel's on the one
    worker), so a mic final arrives before the system final it echoes."""
    late = late or {}
    suppressor = EchoSuppressor(options)
    events: list[tuple[float, int, str, FileUtterance]] = []
    for channel, utterances in tracks.items():
        for u in utterances:
            events.append((u.speech_start_s, 0, channel, u))  # speech start first at a tie
            events.append((u.end_s, 1, channel, u))  # vad speech end: when the segmenter ends it
            events.append((u.end_s + DECODE_S + late.get(channel, 0.0), 2, channel, u))
    out: list[Verdict] = []
    for now, kind, channel, u in sorted(events, key=lambda e: (e[0], e[1])):
        deadline = suppressor.next_deadline()
        if deadline is not None and deadline <= now:
            out += suppressor.poll(deadline)
        if kind == 0:
            suppressor.speech_started(channel, now)
            continue
        if kind == 1:
            suppressor.speech_ended(channel, u.speech_end_s)
            continue
        heard = Heard(channel, u.transcript.text, u.speech_start_s, u.speech_end_s, key=u.index)
        out += suppressor.push(heard, now)
    deadline = suppressor.next_deadline()
    if deadline is not None:
        out += suppressor.poll(deadline)
    return Replay(tuple(out), dict(vars(suppressor.stats)))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after the usual normalisation (case, punctuation)."""
    norm = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
        ]
    )
    return jiwer.wer(norm(reference), norm(hypothesis))


def echoes_of(far_sentences: list[str], texts: list[str], threshold: float = 0.5) -> int:
    """How many of the other side's sentences reappear in `texts` (a text holding at least
    `threshold` of the sentence's words in order counts as a duplicate)."""
    from dictated.echo import echo_mask, words

    count = 0
    for sentence in far_sentences:
        ref = words(sentence)
        for text in texts:
            mask = echo_mask(ref, words(text), max_gap=0)
            if sum(mask) >= threshold * len(ref):
                count += 1
                break
    return count


__all__ = ["Action", "Replay", "echoes_of", "replay", "transcribe_track", "wer"]
