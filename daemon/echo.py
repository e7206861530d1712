"""Echo suppression: the microphone must not repeat what the system channel said.

On a laptop without headphones the microphone also hears the speakers, so the other side of a
meeting is transcribed twice: once on the `system` channel (what the computer played) and once,
fainter and with room echo, on the `mic` channel. This stage removes the second copy using the two
channels' own evidence: a near (mic) result that overlaps in time with far (system) speech whose
words it repeats is an echo.

- **Drop**: at least `drop_ratio` of the near result's words are echoed far words → dropped.
- **Trim** (double talk: you spoke while they did): runs of at least `min_run` echoed words are cut
  out and the rest is kept, so your own words still come through.
- **Keep**: anything else, unchanged. When in doubt the result is kept — a duplicate line is a
  nuisance, a lost sentence of yours is a fault.

Timing: a mic final may be ready before the overlapping system final (the system utterance may be
longer, or still being decoded). A near result is held only while a far channel has speech that
overlaps it and is not transcribed yet (`speech_started` seen, its result not pushed), and at most
`max_hold_s`; after that it is released as it is (kept). With the other side silent nothing is
held, so your own voice costs no latency.

Words are compared after normalisation (lower case, punctuation stripped), split on white space; a
language written without spaces compares whole utterances, so only exact echoes are dropped there.

Interface (no I/O, no clock of its own, so the caller's loop owns the time): the caller reports
far speech starts and ends with `speech_started`/`speech_ended`, pushes every final result of
every channel with `push`, calls `poll` at `next_deadline()` and `flush` at the end, and
publishes the verdicts it gets back, in order. All times are seconds on one clock every channel
shares (wall-clock in the daemon, stream time for files played in step). It runs on the event
loop: a judgement costs ~0.1 ms for a sentence, and its inputs are bounded (`max_far` results,
`_MAX_WORDS` words; a longer text is kept unjudged).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass
from difflib import SequenceMatcher, get_close_matches
from typing import Any

_WORD = re.compile(r"[^\w']+")  # what is stripped from a token before comparing it
_SNAP_MIN_LEN = 4  # shorter words are too alike to guess which one an echo garbled
_SNAP_CUTOFF = 0.75  # difflib similarity at which a misheard word counts as the far word
_SNAP_MAX_PAIRS = 10_000  # word pairs compared at most (~40 ms); a sentence needs a few hundred
_MAX_WORDS = 200  # a 35 s utterance holds ~100 words; beyond this (a runaway decode) not judged


@dataclass(frozen=True)
class EchoOptions:
    """Which channels echo which, and how sure the suppressor must be."""

    near: tuple[str, ...] = ("mic",)  # channels whose microphone may hear the speakers
    far: tuple[str, ...] = ("system",)  # channels of what the speakers play
    slack_s: float = 0.5  # timing slack: playback latency, reverb tail, VAD onset differences
    drop_ratio: float = 0.6  # this share of echoed words or more: the whole result is an echo
    min_run: int = 4  # a run of this many echoed words is cut out of a double-talk result
    max_gap: int = 2  # up to this many words between two echoed runs are echo too (misheard)
    max_hold_s: float = 6.0  # longest a near result waits for an overlapping far final
    window_s: float = 120.0  # far results older than this are forgotten ...
    max_far: int = 64  # ... and at most this many are kept

    def __post_init__(self) -> None:
        if set(self.near) & set(self.far):
            raise ValueError(
                f"a channel cannot be both near and far: {set(self.near) & set(self.far)}"
            )
        if not 0.0 < self.drop_ratio <= 1.0:
            raise ValueError(f"drop_ratio must be in (0, 1], got {self.drop_ratio}")
        if self.min_run < 1 or self.max_gap < 0 or self.max_far < 1:
            raise ValueError("min_run and max_far must be >= 1, max_gap >= 0")
        if self.slack_s < 0 or self.max_hold_s < 0 or self.window_s <= 0:
            raise ValueError("slack_s and max_hold_s must be >= 0, window_s > 0")


@dataclass(frozen=True)
class Heard:
    """One final result of one channel, as the suppressor sees it."""

    channel: str
    text: str  # "" for an utterance that failed (it still closes its speech span)
    start: float  # where its speech starts and ends, on the shared clock (seconds)
    end: float
    speaker: str | None = None
    audio_s: float = 0.0
    key: Any = None  # the caller's handle (the utterance or its event), returned in the verdict


class Action(enum.Enum):
    KEEP = "keep"
    TRIM = "trim"  # echoed words removed, the rest published
    DROP = "drop"  # an echo: not published


@dataclass(frozen=True)
class Verdict:
    heard: Heard
    action: Action
    text: str  # what to publish: the text (KEEP), the text less its echo (TRIM), "" (DROP)
    echoed: str = ""  # the words judged echo, for the DEBUG log
    held_s: float = 0.0  # how long the result waited for a far final


@dataclass
class _Span:
    """Far speech heard but not yet transcribed."""

    channel: str
    start: float
    end: float | None = None  # None: still going on, or its end was not reported


@dataclass
class _Held:
    heard: Heard
    since: float  # when it was pushed


@dataclass
class EchoStats:
    """Counters for `status`: what the suppressor did since start."""

    dropped: int = 0
    trimmed: int = 0
    held: int = 0
    hold_expired: int = 0  # released unjudged because the far final did not come in time


def words(text: str) -> list[str]:
    """Normalised words: lower case, punctuation stripped, empty tokens dropped."""
    return [w for w in (_WORD.sub("", t).lower() for t in text.split()) if w]


def echo_mask(near: list[str], far: list[str], min_block: int = 2, max_gap: int = 2) -> list[bool]:
    """Which of `near`'s words repeat `far`, in order: words of matching blocks of `min_block` or
    more (single common words like "the" prove nothing), gaps of up to `max_gap` words between two
    echoed stretches filled (a misheard word inside an echo), and a short result (≤ `min_block`
    words) echoed when it matches whole."""
    mask = [False] * len(near)
    if not near or not far:
        return mask
    matcher = SequenceMatcher(None, near, far, autojunk=False)
    for block in matcher.get_matching_blocks():
        if block.size >= min(min_block, len(near)):
            mask[block.a : block.a + block.size] = [True] * block.size
    _fill_gaps(mask, max_gap)
    return mask


def snap(near: list[str], far: list[str]) -> list[str]:
    """`near` with each word the far side did not say replaced by the far word it was most likely
    misheard from (an echo is faint: "collecting" comes out "collect", "piano" "viano"): one word
    a prefix of the other, or spelled nearly alike; words under 4 letters are left alone."""
    vocabulary = sorted({w for w in far if len(w) >= _SNAP_MIN_LEN})
    known = set(far)
    if len(near) * len(vocabulary) > _SNAP_MAX_PAIRS:  # bounded work on the event loop
        return list(near)
    out = []
    for word in near:
        if word in known or len(word) < _SNAP_MIN_LEN:
            out.append(word)
            continue
        prefixed = [w for w in vocabulary if w.startswith(word) or word.startswith(w)]
        close = prefixed or get_close_matches(word, vocabulary, n=1, cutoff=_SNAP_CUTOFF)
        out.append(close[0] if close else word)
    return out


def _cut_edges(cut: list[bool], near: list[str], far: list[list[str]], min_run: int) -> None:
    """Marks in `cut` a short run (under `min_run` words) at the start or end of `near` that is the
    first or last words of a far utterance: the echo's head or tail around your own sentence.
    Only words of 4 letters or more: two sentences often start or end alike ("The", "it")."""
    longest = min(min_run - 1, len(near) - 1)
    for f in far:
        for k in range(min(longest, len(f)), 0, -1):
            if near[-k:] == f[-k:] and _distinctive(near[-k:]):
                cut[len(near) - k :] = [True] * k
                break
        for k in range(min(longest, len(f)), 0, -1):
            if near[:k] == f[:k] and _distinctive(near[:k]):
                cut[:k] = [True] * k
                break


def _distinctive(run: list[str]) -> bool:
    return all(len(w) >= _SNAP_MIN_LEN for w in run)


def _fill_gaps(mask: list[bool], max_gap: int) -> None:
    echoed = [i for i, m in enumerate(mask) if m]
    for a, b in zip(echoed, echoed[1:], strict=False):
        if 1 < b - a <= max_gap + 1:
            mask[a + 1 : b] = [True] * (b - a - 1)


class EchoSuppressor:
    """Judges each near-channel result against the far channels' results around it (module doc)."""

    def __init__(self, options: EchoOptions | None = None) -> None:
        self.options = options or EchoOptions()
        self.stats = EchoStats()
        self._far: deque[Heard] = deque(maxlen=self.options.max_far)
        self._open: list[_Span] = []  # far speech started, its result not yet pushed
        self._held: list[_Held] = []

    def speech_started(self, channel: str, at: float) -> None:
        """A far channel began an utterance at `at`: near results overlapping it wait for its
        result (bounded by `max_hold_s`). Other channels are ignored."""
        if channel in self.options.far:
            self._open.append(_Span(channel, at))
            del self._open[: max(0, len(self._open) - self.options.max_far)]

    def speech_ended(self, channel: str, at: float) -> None:
        """A far channel's utterance ended at `at` (optional: without it, a near result waits
        for every untranscribed far utterance that started before it ended)."""
        for span in reversed(self._open):
            if span.channel == channel:
                span.end = at if span.end is None else span.end
                return

    def push(self, heard: Heard, now: float) -> list[Verdict]:
        """A final result of any channel; returns the verdicts released now, in order (a far
        result may release held near results; a near result may be held and return nothing)."""
        if heard.channel in self.options.far:
            self._add_far(heard)
            return [*self._release(now), Verdict(heard, Action.KEEP, heard.text)]
        if heard.channel not in self.options.near:
            return [Verdict(heard, Action.KEEP, heard.text)]
        self._held.append(_Held(heard, now))
        return self._release(now)

    def poll(self, now: float) -> list[Verdict]:
        """Releases near results whose hold ran out (kept as they are)."""
        return self._release(now)

    def flush(self, now: float) -> list[Verdict]:
        """No more results will come (end of input, shutdown): every held result is judged on
        what is known and released."""
        self._open.clear()
        return self._release(now)

    def next_deadline(self) -> float | None:
        """When `poll` must next be called, or None when nothing is held."""
        if not self._held:
            return None
        return min(h.since for h in self._held) + self.options.max_hold_s

    def judge(self, heard: Heard) -> Verdict:
        """The verdict on a near result against the far results known now (no holding)."""
        near_tokens = heard.text.split()
        norm = [_WORD.sub("", t).lower() for t in near_tokens]
        index = [i for i, w in enumerate(norm) if w]  # tokens that carry a word
        far = [words(f.text) for f in self._overlapping(heard)]
        far_words = [w for f in far for w in f][-2 * _MAX_WORDS :]
        if not index or not far_words or len(index) > _MAX_WORDS:
            return Verdict(heard, Action.KEEP, heard.text)
        near_words = snap([norm[i] for i in index], far_words)
        mask = echo_mask(near_words, far_words, max_gap=self.options.max_gap)
        if sum(mask) / len(index) >= self.options.drop_ratio:
            self.stats.dropped += 1
            echoed = " ".join(near_tokens[index[k]] for k, m in enumerate(mask) if m)
            return Verdict(heard, Action.DROP, "", echoed)
        cut = self._runs(mask)
        _cut_edges(cut, near_words, far, self.options.min_run)
        if not any(cut) or all(cut):
            return Verdict(heard, Action.KEEP, heard.text)
        drop_tokens = {index[k] for k, c in enumerate(cut) if c}
        kept = " ".join(t for i, t in enumerate(near_tokens) if i not in drop_tokens)
        self.stats.trimmed += 1
        removed = " ".join(near_tokens[i] for i in sorted(drop_tokens))
        return Verdict(heard, Action.TRIM, kept, removed)

    def _runs(self, mask: list[bool]) -> list[bool]:
        """Only runs of at least `min_run` echoed words are cut (a shorter one may be yours)."""
        cut = [False] * len(mask)
        i = 0
        while i < len(mask):
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            if j - i >= self.options.min_run:
                cut[i:j] = [True] * (j - i)
            i = j + 1 if j == i else j
        return cut

    def _overlapping(self, heard: Heard) -> list[Heard]:
        slack = self.options.slack_s
        hits = [
            f for f in self._far if f.start <= heard.end + slack and f.end >= heard.start - slack
        ]
        return sorted(hits, key=lambda f: f.start)

    def _add_far(self, heard: Heard) -> None:
        """Records a far result and closes its speech span (and any older one left open: an
        utterance the segmenter dropped as a blip never gets a result)."""
        self._far.append(heard)
        horizon = heard.end - self.options.window_s
        while self._far and self._far[0].end < horizon:
            self._far.popleft()
        limit = heard.start + self.options.slack_s
        self._open = [
            s for s in self._open if not (s.channel == heard.channel and s.start <= limit)
        ]

    def _waiting(self, heard: Heard) -> bool:
        """Far speech overlapping `heard` is still untranscribed."""
        slack = self.options.slack_s
        return any(
            s.start <= heard.end + slack and (s.end is None or s.end >= heard.start - slack)
            for s in self._open
        )

    def _release(self, now: float) -> list[Verdict]:
        """Judges held results in push order; stops at the first that must still wait, so near
        results are published in the order they were heard."""
        out: list[Verdict] = []
        while self._held:
            held = self._held[0]
            expired = now - held.since >= self.options.max_hold_s
            if not expired and self._waiting(held.heard):
                break
            self._held.pop(0)
            waited = now - held.since
            if expired and self._waiting(held.heard):
                self.stats.hold_expired += 1
                verdict = Verdict(held.heard, Action.KEEP, held.heard.text)
            else:
                verdict = self.judge(held.heard)
            if waited > 0:
                self.stats.held += 1
            out.append(_with_hold(verdict, waited))
        return out


def _with_hold(verdict: Verdict, waited: float) -> Verdict:
    return Verdict(verdict.heard, verdict.action, verdict.text, verdict.echoed, max(0.0, waited))


__all__ = [
    "Action",
    "EchoOptions",
    "EchoStats",
    "EchoSuppressor",
    "Heard",
    "Verdict",
    "echo_mask",
    "snap",
    "words",
]
