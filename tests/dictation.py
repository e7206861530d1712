"""Spoken commands as real speech, and what a client should have produced from transcripts.

espeak-ng's default voice says "scratch that" in a way Whisper tiny.en hears as "crash now", so
each command is spoken in a voice and speed measured to come back as its words.
"""

from __future__ import annotations

import numpy as np

from dictated.clients.keyboard.compose import Backspace, Composer
from tests.speech import silence, synthesize

# text -> (espeak-ng voice, words per minute) that Whisper tiny.en transcribes word for word
COMMAND_VOICES = {
    "Scratch that.": ("en-gb-x-rp", 140),
    "New line.": ("en-us", 120),
    "New paragraph.": ("en-us", 120),
}


def command_speech(text: str) -> bytes:
    """One spoken command with silence around it, as raw int16 for a stdin daemon."""
    voice, speed = COMMAND_VOICES[text]
    clip = synthesize(text, voice, speed)
    return np.concatenate([silence(0.5), clip, silence(1.5)]).astype("<i2").tobytes()


def composed_text(transcripts: list[dict]) -> str:
    """The text the transcripts make once joined and their commands applied (dictated-type's rules)."""
    composer = Composer()
    text = ""
    for t in transcripts:
        for action in composer.feed(t["text"], t.get("language", "en")):
            if isinstance(action, Backspace):
                text = text[: len(text) - action.count]
            else:
                text += action.text
    return text
