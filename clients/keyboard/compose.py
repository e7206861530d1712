"""Utterances to keystrokes: natural joining and spoken commands ("new line", "scratch that").

Pure standard library and no I/O, so the editor plugins' behaviour can be checked against it and
every typing backend shares one set of rules. The text typed for each utterance is remembered by
its exact length in characters (code points, which is what one BackSpace removes in the
applications we type into), so "scratch that" removes exactly what was typed, separator included.

A transcript's own control characters never reach a backend: `feed` makes each text plain first
(ESC, DEL, C1 and bidi controls dropped; a raw newline or tab is one space), so only spoken
commands make line breaks, whichever backend types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from dictated.protocol import plain_text

NEW_LINE = "new-line"
NEW_PARAGRAPH = "new-paragraph"
SCRATCH_THAT = "scratch-that"
COMMANDS = (NEW_LINE, NEW_PARAGRAPH, SCRATCH_THAT)

# What each command types (scratch-that types nothing: it deletes)
_INSERTS = {NEW_LINE: "\n", NEW_PARAGRAPH: "\n\n"}
# Spoken forms, as a recognizer writes them: "New line.", "newline", "New paragraph!"
_SPOKEN = {
    NEW_LINE: r"new[ -]?line",
    NEW_PARAGRAPH: r"new[ -]?paragraph",
    SCRATCH_THAT: r"scratch[ -]that",
}
# Languages written without spaces between words (and so between utterances)
_UNSPACED_LANGUAGES = ("ja", "zh")
_NO_SPACE_BEFORE = set(".,;:!?%)]}…”’»、。，．！？：；")
_NO_SPACE_AFTER = set("([{“‘«\n\t ")
_HISTORY = 100  # utterances "scratch that" can reach back through


@dataclass(frozen=True)
class ComposeOptions:
    """Which spoken commands are acted on (the rest are typed as words)."""

    commands: frozenset[str] = frozenset(COMMANDS)


@dataclass(frozen=True)
class Type:
    text: str


@dataclass(frozen=True)
class Backspace:
    count: int


Action = Type | Backspace


def _group(command: str) -> str:
    return command.replace("-", "_")  # a regex group name cannot hold "-"


def _pattern(commands: Iterable[str]) -> re.Pattern[str] | None:
    names = [c for c in COMMANDS if c in commands]
    if not names:
        return None
    alternatives = "|".join(f"(?P<{_group(n)}>{_SPOKEN[n]})" for n in names)
    # a command is whole words, swallowing the punctuation a recognizer puts after it
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)[.,;:!?]*\s*", re.IGNORECASE)


class Composer:
    """Turns each transcript into actions, remembering what it typed so it can take it back."""

    def __init__(self, options: ComposeOptions | None = None) -> None:
        self.options = options or ComposeOptions()
        self._commands = _pattern(self.options.commands)
        self._typed: list[str] = []  # text typed per unit (utterance), newest last

    def feed(self, text: str, language: str = "en") -> list[Action]:
        """The actions for one utterance's text (its control characters never typed)."""
        text = plain_text(text)
        actions: list[Action] = []
        self._typed.append("")  # this utterance's unit, grown as it types
        position = 0
        for match in self._commands.finditer(text) if self._commands else ():
            self._type_words(text[position : match.start()], language, actions)
            command = next(c for c in COMMANDS if match.groupdict().get(_group(c)))
            if command == SCRATCH_THAT:
                # "scratch that" takes back the previous utterance, or what this one said before it
                if not self._typed[-1]:
                    self._typed.pop()
                actions += self._scratch()
                self._typed.append("")
            else:
                self._emit(_INSERTS[command], actions)
            position = match.end()
        self._type_words(text[position:], language, actions)
        if not self._typed[-1]:
            self._typed.pop()
        del self._typed[:-_HISTORY]
        return actions

    def _type_words(self, words: str, language: str, actions: list[Action]) -> None:
        words = words.strip()
        if not words:
            return
        if self._needs_space(words, language):
            words = " " + words
        self._emit(words, actions)

    def _needs_space(self, words: str, language: str) -> bool:
        tail = self._before_cursor()
        if not tail or tail in _NO_SPACE_AFTER or words[0] in _NO_SPACE_BEFORE:
            return False
        return not language.lower().startswith(_UNSPACED_LANGUAGES)

    def _before_cursor(self) -> str:
        """The character before the cursor, as far as we know ("" before our first one)."""
        return next((unit[-1] for unit in reversed(self._typed) if unit), "")

    def _emit(self, text: str, actions: list[Action]) -> None:
        if actions and isinstance(actions[-1], Type):
            actions[-1] = Type(actions[-1].text + text)
        else:
            actions.append(Type(text))
        self._typed[-1] += text

    def _scratch(self) -> list[Action]:
        if not self._typed:
            return []
        return [Backspace(len(self._typed.pop()))]
