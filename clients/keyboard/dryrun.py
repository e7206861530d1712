"""--dry-run: say what would be typed, one JSON-quoted line per action, so every character shows."""

from __future__ import annotations

import json
from typing import TextIO

NAME = "dry-run"


class DryRunBackend:
    name = NAME

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def type_text(self, text: str) -> None:
        self.out.write(f"type {json.dumps(text, ensure_ascii=False)}\n")
        self.out.flush()

    def backspace(self, count: int) -> None:
        self.out.write(f"backspace {count}\n")
        self.out.flush()

    def close(self) -> None:
        pass
