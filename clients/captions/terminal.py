"""The terminal caption view: the latest lines, redrawn in place, with the daemon's state below.

On a terminal the screen shows what fits of the latest captions (the words being spoken in
grey under them); piped elsewhere it prints one timestamped line per cue, for logs and scripts.
"""

from __future__ import annotations

import shutil
import sys
from collections import deque
from typing import TextIO

from .cues import Cue, wrap
from .writers import timestamp

_CLEAR = "\x1b[H\x1b[2J"
_GREY, _DIM, _RESET = "\x1b[90m", "\x1b[2m", "\x1b[0m"


def labelled(text: str, speaker: str | None) -> str:
    """Alice: text (the speaker's name before the words), or the text alone."""
    return f"{speaker}: {text}" if speaker else text


class TerminalView:
    def __init__(self, out: TextIO | None = None, interactive: bool | None = None):
        self.out = out or sys.stdout
        self.interactive = self.out.isatty() if interactive is None else interactive
        self._lines: deque[str] = deque(maxlen=500)
        self._partial = ""
        self._state = "connecting…"

    def cues(self, cues: list[Cue]) -> None:
        if not cues:
            return
        self._partial = ""
        if not self.interactive:
            for cue in cues:
                line = labelled(cue.text, cue.speaker)
                self.out.write(f"[{timestamp(cue.start, 'vtt')[:-4]}] {line}\n")
            self.out.flush()
            return
        self._lines.append(labelled(" ".join(cue.text for cue in cues), cues[0].speaker))
        self._draw()

    def partial(self, text: str, speaker: str | None = None) -> None:
        if self.interactive:
            self._partial = labelled(text, speaker) if text else ""
            self._draw()

    def state(self, text: str) -> None:
        if self.interactive:
            self._state = text
            self._draw()

    def _draw(self) -> None:
        size = shutil.get_terminal_size()
        width, rows = max(20, size.columns - 1), max(3, size.lines - 2)
        shown: list[str] = []
        for text in reversed(self._lines):  # newest first, until the screen is full
            shown[:0] = wrap(text, width)
            if len(shown) >= rows:
                break
        partial = [f"{_GREY}{line}{_RESET}" for line in wrap(self._partial, width)]
        body = (shown + partial)[-rows:]
        pad = [""] * (rows - len(body))
        footer = f"{_DIM}── {self._state} ── Ctrl-C to quit{_RESET}"
        self.out.write(_CLEAR + "\n".join(pad + body) + "\n\n" + footer)
        self.out.flush()

    def close(self) -> None:
        if self.interactive:
            self.out.write("\n")
            self.out.flush()
