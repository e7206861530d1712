"""No invented text: utterances that held no speech are not decoded, and text an engine made up
from noise is not published.

Whisper turns noise into its training set's filler ("Thank you.", "you", ". . ."), and at a real
desk the segmenter hands it noise: music, typing, a fan. The rules, each on the evidence the audio
or the engine gives, never on the text alone:

1. the gate (before any decode): the segmenter's own measure of the utterance, Silero's mean
   speech probability over the frames the webrtcvad gate passed (`Utterance.speech_prob`; pauses
   do not dilute it), below `min_speech_prob` -> not decoded. None (`vad = "webrtc"`, which has
   no such measure) never gates;
2. unless the audio is speech by that measure (at least `speech_prob`): the engine's no-speech
   signal (openai/whisper `transcribe.py`'s rule, for any engine that gives the two numbers):
   no-speech probability above `no_speech_prob` and average log-probability below `logprob` ->
   not speech. The VAD outranks the engine here: a lone "you" said aloud scored no-speech 0.64
   and log-probability -1.04 in Whisper (faster-whisper's own copy of the rule dropped it);
3. ... and the known hallucination phrases, when the engine doubts them too: its no-speech
   probability above `no_speech_prob` (above `phrase_no_speech_prob` with `vad = "webrtc"`, no
   speech probability to back it). Only an engine without that signal has its phrases dropped on
   the speech probability alone (below `speech_prob`). Said aloud ("thank you", speech
   probability ~0.75-0.9) they stay, and whispered too: Silero scored a real whispered "Thank
   you" 0.44 while Whisper heard it plainly (no-speech 0.24, log-probability -0.50);
4. a text with no word in it (Whisper's ". . ." over silence) is not speech either.

Thresholds from measurements on this machine (Silero v6; Whisper tiny.en, faster-whisper 1.2):
the gated mean over 20 s of desk noise (typing, music, a fan, chimes) 0.008-0.045 (and over
clicks, white and pink noise, all frames: 0.002-0.05); utterances of espeak-ng speech 0.85
("thank you", words 0.35 s apart) to 0.97 (sentences), 0.63-0.93 under typing or music, a
whispered "thank you" 0.47 (so rule 3 waits for the engine's doubt); Whisper on that
noise said "Thank you.", "you", "Hello, everyone.", ". . ." with no-speech probability 0.78-0.96
and average log-probability -1.1 to -1.8 (". . ." on silence: -0.79), and on speech no-speech
probability 0.04-0.45 (0.64-0.75 for a lone "you"), log-probability above -0.72 (-1.04 for it).

A dropped utterance still gets its final, as an echo does (echo_stage.py): empty text, marked
`suppressed = "nonspeech"`, so every `vad` start has its final and a partial shown before it is
replaced. The reason is logged at INFO, the text only at DEBUG. Counted apart: `skipped`
(`dropped_nonspeech` in status: not decoded at all) and `dropped` (`dropped_hallucinations`:
decoded, its text dropped).
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, replace

from .audio.format import int16_to_float32
from .engines.base import Engine, Transcript
from .events import Utterance

log = logging.getLogger(__name__)

#: what Whisper says over silence and noise (normalised: lower case, no punctuation); dropped only
#: on little speech evidence (rule 3)
HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thank you very much",
        "thank you so much",
        "thanks",
        "thanks for watching",
        "thank you for watching",
        "thanks for listening",
        "thank you for listening",
        "please subscribe",
        "like and subscribe",
        "bye",
        "bye bye",
        "music",  # "[Music]"
        "applause",
    }
)
#: ... and what it says starting so (credits from subtitled training data)
HALLUCINATION_PREFIXES = ("subtitles by", "captions by", "transcribed by", "translated by")

_NOT_WORD = re.compile(r"[^\w\s']+")


@dataclass(frozen=True)
class NonSpeechOptions:
    """The guard's thresholds (see the module doc for the measurements behind them)."""

    min_speech_prob: float = 0.3  # rule 1: below this mean speech probability, not decoded
    speech_prob: float = 0.5  # at least this: speech, whatever the engine says (rules 2, 3)
    no_speech_prob: float = 0.6  # rule 2: the engine's no-speech probability above this ...
    logprob: float = -1.0  # ... and its average log-probability below this
    phrase_no_speech_prob: float = 0.8  # rule 3 without a speech probability: the engine this sure


class Rule(enum.StrEnum):
    SPEECH_PROB = "speech_prob"  # 1: too little speech to decode
    NO_SPEECH = "no_speech"  # 2: the engine's no-speech signals
    PHRASE = "phrase"  # 3: a known phrase on little speech evidence
    NO_WORDS = "no_words"  # 4: punctuation only


@dataclass(frozen=True)
class Dropped:
    """Why an utterance's final carries no text."""

    rule: Rule
    why: str  # the numbers, for the log
    text: str = ""  # what the engine said, if it decoded (kept out of INFO logs)

    @property
    def decoded(self) -> bool:
        return self.rule is not Rule.SPEECH_PROB


@dataclass
class NonSpeechStats:
    skipped: int = 0  # utterances not decoded (status: dropped_nonspeech)
    dropped: int = 0  # decoded results whose text was dropped (status: dropped_hallucinations)


def normalise(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def is_hallucination_phrase(text: str) -> bool:
    said = normalise(text)
    return said in HALLUCINATIONS or said.startswith(HALLUCINATION_PREFIXES)


class NonSpeechGuard:
    """The rules and their counters; runs on the worker's loop (cheap, no model)."""

    def __init__(self, options: NonSpeechOptions | None = None):
        self.options = options or NonSpeechOptions()
        self.stats = NonSpeechStats()

    def gate(self, utterance: Utterance, utterance_id: str) -> Dropped | None:
        """Rule 1, before decoding: None to decode it."""
        prob = utterance.speech_prob
        if prob is None or prob >= self.options.min_speech_prob:
            return None
        dropped = Dropped(
            Rule.SPEECH_PROB,
            f"mean speech probability {prob:.2f} < {self.options.min_speech_prob:.2f}",
        )
        self.stats.skipped += 1
        _log(describe(utterance_id, utterance), dropped)
        return dropped

    def check(self, transcript: Transcript, speech_prob: float | None, what: str) -> Dropped | None:
        """The other rules, after decoding (`what` names the audio in the log): None to publish
        the text."""
        dropped = self._judge(transcript, speech_prob)
        if dropped is not None:
            self.stats.dropped += 1
            _log(what, dropped)
        return dropped

    def checked(self, transcript: Transcript, speech_prob: float | None, what: str) -> Transcript:
        """`transcript`, or it without its text (and tokens) if `check` drops it."""
        if self.check(transcript, speech_prob, what) is None:
            return transcript
        return replace(transcript, text="", tokens=())

    def for_partial(self, transcript: Transcript) -> Transcript:
        """A speculative decode's transcript as partials and the adaptive end may see it: without
        its text if the engine's own signals call it made up (the open utterance has no speech
        probability yet; its final is checked with one). Not counted: the final is."""
        if self._judge(transcript, None) is None:
            return transcript
        return replace(transcript, text="", tokens=())

    def _judge(self, transcript: Transcript, speech_prob: float | None) -> Dropped | None:
        o, text = self.options, transcript.text
        if not text.strip():
            return None  # nothing to drop
        if not any(c.isalnum() for c in text):
            return Dropped(Rule.NO_WORDS, "the text holds no word", text)
        if speech_prob is not None and speech_prob >= o.speech_prob:
            return None  # the audio is speech: the engine's doubts do not drop it
        ns, lp = transcript.no_speech_prob, transcript.avg_logprob
        if ns is not None and lp is not None and ns > o.no_speech_prob and lp < o.logprob:
            return Dropped(
                Rule.NO_SPEECH,
                f"no-speech probability {ns:.2f} > {o.no_speech_prob:.2f} and average "
                f"log-probability {lp:.2f} < {o.logprob:.2f}",
                text,
            )
        if not is_hallucination_phrase(text):
            return None
        if ns is not None:  # the engine gives its signal: it must doubt the phrase too
            limit = o.phrase_no_speech_prob if speech_prob is None else o.no_speech_prob
            if ns <= limit:
                return None  # a whispered "Thank you": speech probability 0.44, no-speech 0.24
            why = f"a known phrase with no-speech probability {ns:.2f} > {limit:.2f}"
            if speech_prob is not None:
                why += f", mean speech probability {speech_prob:.2f} < {o.speech_prob:.2f}"
            return Dropped(Rule.PHRASE, why, text)
        if speech_prob is not None:  # an engine without signals: the audio alone, below speech
            why = f"a known phrase on mean speech probability {speech_prob:.2f}"
            return Dropped(Rule.PHRASE, f"{why} < {o.speech_prob:.2f}", text)
        return None


def describe(utterance_id: str, utterance: Utterance) -> str:
    return f"utterance {utterance_id} ({utterance.duration_s:.1f} s)"


def _log(what: str, dropped: Dropped) -> None:
    done = "decoded, text dropped" if dropped.decoded else "not decoded"
    log.info("%s held no speech (%s): %s", what, done, dropped.why)
    if dropped.text:
        log.debug("%s: dropped %r", what, dropped.text)


def transcribe_checked(
    engine: Engine, utterance: Utterance, language: str, guard: NonSpeechGuard | None = None
) -> Transcript:
    """Gate, decode, check, for callers without a worker (`dictated transcribe` over files): the
    engines report what they heard (Whisper: even a window its own rule left out), so every
    caller applies the guard. Empty text where it drops."""
    guard = guard or NonSpeechGuard()
    name = f"#{utterance.index}"
    if guard.gate(utterance, name) is not None:
        return Transcript("", language)
    transcript = engine.transcribe(int16_to_float32(utterance.pcm), language)
    return guard.checked(transcript, utterance.speech_prob, describe(name, utterance))
