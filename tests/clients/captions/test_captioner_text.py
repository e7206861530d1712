"""A transcript's control characters reach no caption file, terminal or page (issue 15).

A newline inside an SRT cue's text would end the cue early (a blank line separates cues), ESC would
drive the terminal view, U+202E would reverse what the captions appear to say. The caption files
are read back by the independent `srt` and `webvtt` parsers (tests/clients/captions/files.py).
"""

from __future__ import annotations

import io

from dictated.clients.captions.captioner import Captioner
from dictated.clients.captions.cues import Timeline
from dictated.clients.captions.terminal import TerminalView
from dictated.clients.captions.writers import CueFile
from dictated.protocol import TOPIC_PARTIAL, TOPIC_TRANSCRIPT, Event

from .files import read_captions

HOSTILE = "first words\x1b[2J\n\nsecond\u202etxt.exe\x07 words\r\nthird\u2028line"
UNSAFE = set("\x1b\n\r\x07\u202e\u2028")


def test_captions_carry_no_control_characters(tmp_path):
    files = [CueFile(tmp_path / "c.srt", "srt"), CueFile(tmp_path / "c.vtt", "vtt")]
    out = io.StringIO()
    captioner = Captioner(Timeline(), files=files, view=TerminalView(out, interactive=False))
    body = {"v": 1, "id": "u1", "text": HOSTILE, "stream_start": 0.0, "stream_end": 4.0}
    cues = captioner.handle(Event(TOPIC_TRANSCRIPT, 1, body))
    for f in files:
        f.close()
    assert cues and all(not (set(c.text) & UNSAFE) for c in cues)
    for path in (tmp_path / "c.srt", tmp_path / "c.vtt"):
        parsed = read_captions(path)
        words = " ".join(" ".join(c.lines) for c in parsed).split()
        assert words == ["first", "words[2J", "secondtxt.exe", "words", "third", "line"]
    printed = out.getvalue()
    assert "\x1b" not in printed and "\u202e" not in printed
    assert printed.count("\n") == len(cues)  # one line per cue, no line break from the text


def test_partials_on_the_terminal_carry_no_control_characters():
    out = io.StringIO()
    captioner = Captioner(Timeline(), view=TerminalView(out, interactive=True))
    captioner.handle(
        Event(TOPIC_PARTIAL, 1, {"v": 1, "id": "u1", "text": "so\x1b]0;pwned\x07 far"})
    )
    assert "pwned\x07" not in out.getvalue() and "\x1b]0" not in out.getvalue()
