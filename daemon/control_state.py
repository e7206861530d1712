"""Who decides when speech becomes text: the `[control]` options and the daemon's control state.

Two modes. `continuous` (the default, as before) lets the voice activity detector open and close
utterances; a `ptt press` still opens one at once and `release` closes it, so a key works there
too. In `push-to-talk` the microphone stays open (no cold start, the pre-roll is there) but only
audio between press and release becomes an utterance.

`armed` says whether typing clients should type: they follow it (and the finals' `armed`
field); the daemon itself transcribes and journals everything either way, so nothing said is
lost by being disarmed. Spoken commands ("stop dictation" / "start dictation") switch it.

`held` and `listening` are not stored here: they are facts of the channels (a key held on one,
all paused), read when a status is built, so they never disagree with what capture does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .channel_spec import ChannelSpec
from .errors import ConfigError

Mode = Literal["continuous", "push-to-talk"]
MODES: tuple[Mode, ...] = ("continuous", "push-to-talk")


class PttAction(StrEnum):
    """A `ptt` request's action: the key went down, came up, or (a tap) the opposite of what
    the daemon holds now -- the daemon owns `held`, so a client never has to guess it."""

    PRESS = "press"
    RELEASE = "release"
    TOGGLE = "toggle"


class VoiceCommand(StrEnum):
    STOP_DICTATION = "stop_dictation"
    START_DICTATION = "start_dictation"


STOP_DICTATION = VoiceCommand.STOP_DICTATION
START_DICTATION = VoiceCommand.START_DICTATION

_NOT_WORD = re.compile(r"[^\w']+|_")
#: left out when a phrase is matched, so "start the dictation" is "start dictation"; nothing
#: else is (a filler such as "please" or "now" makes it a sentence being dictated)
_ARTICLES = frozenset({"the", "a", "an"})


def normalise_phrase(text: str) -> str:
    """Lower case, punctuation gone, one space between words: "Stop dictation!" -> "stop dictation"."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).replace("'", "").split())


def _command_words(text: str) -> str:
    """A phrase as it is matched: normalised, articles left out."""
    return " ".join(w for w in normalise_phrase(text).split() if w not in _ARTICLES)


def voice_channel(specs: Sequence[ChannelSpec]) -> ChannelSpec:
    """The user's own voice: the first microphone channel, else the first channel. Voice
    commands count there only, and a `ptt` request without a channel holds its key there (a
    second channel -- a call's far end, a video playing -- is someone else's voice)."""
    return next((c for c in specs if c.spec == "mic"), specs[0])


@dataclass(frozen=True)
class ControlOptions:
    """Config section `[control]`."""

    mode: Mode = "continuous"  # continuous | push-to-talk (`dictated run --mode`)
    armed: bool = True  # typing armed at start
    voice_commands: bool = True  # spoken stop/start phrases switch `armed`
    stop_phrases: tuple[str, ...] = ("stop dictation",)
    start_phrases: tuple[str, ...] = ("start dictation",)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"control.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for key in ("armed", "voice_commands"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(
                    f"control.{key} must be true or false, got {getattr(self, key)!r}"
                )
        stop = _phrases("stop_phrases", self.stop_phrases)
        start = _phrases("start_phrases", self.start_phrases)
        both = sorted(stop & start)
        if both:
            raise ConfigError(
                f"control.stop_phrases and control.start_phrases both hold {both[0]!r}; "
                "a phrase can only switch typing one way"
            )

    def command(self, text: str) -> VoiceCommand | None:
        """The voice command `text` is as a whole (case, punctuation and articles aside)."""
        if not self.voice_commands:
            return None
        said = _command_words(text)
        if not said:
            return None
        if said in {_command_words(p) for p in self.stop_phrases}:
            return STOP_DICTATION
        if said in {_command_words(p) for p in self.start_phrases}:
            return START_DICTATION
        return None


def _phrases(key: str, phrases: object) -> set[str]:
    if not isinstance(phrases, tuple) or not all(isinstance(p, str) for p in phrases):
        raise ConfigError(f'control.{key} must be a list of phrases, e.g. ["stop dictation"]')
    normalised = set()
    for phrase in phrases:
        words = _command_words(phrase)
        if not words:
            raise ConfigError(
                f"control.{key}: {phrase!r} has no words (articles aside); give a phrase to say"
            )
        normalised.add(words)
    return normalised


class ControlState:
    """The mode and the typing switch; `on_change()` runs whenever either changes, so the
    daemon publishes a status event at once rather than at the next heartbeat."""

    def __init__(self, options: ControlOptions, on_change: Callable[[], None] = lambda: None):
        self.options = options
        self.mode: Mode = options.mode
        self.armed = options.armed
        self.on_change = on_change

    def set_armed(self, armed: bool) -> bool:
        """Arm or disarm typing; True if that changed anything (then `on_change` ran)."""
        if armed == self.armed:
            return False
        self.armed = armed
        self.on_change()
        return True

    def apply(self, command: VoiceCommand) -> None:
        """A recognised voice command."""
        self.set_armed(command == START_DICTATION)

    def configure(self, options: ControlOptions) -> bool:
        """A reloaded `[control]`: its mode and phrases apply; `armed` stays as the user left it.
        True if the mode changed."""
        changed = options.mode != self.mode
        self.options, self.mode = options, options.mode
        if changed:
            self.on_change()
        return changed
