"""What every typing backend offers, and the one way they run external tools.

Text is always handed to a tool as one element of an argument vector after `--` (never through a
shell, never where it could be read as an option), so quotes, `$(…)`, backticks, `;`, newlines
and leading dashes arrive as characters.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Protocol

TOOL_TIMEOUT_S = 60.0  # a long utterance typed at xdotool's 12 ms a key still fits


class BackendUnavailable(RuntimeError):
    """This backend cannot work here; the message says what to install or set."""


class TypingFailed(RuntimeError):
    """The backend's tool ran but failed; the message carries its own words."""


class Backend(Protocol):
    name: str

    def type_text(self, text: str) -> None:
        """Type `text` literally into the focused window ("\\n" is Return)."""

    def backspace(self, count: int) -> None:
        """Press BackSpace `count` times."""

    def close(self) -> None:
        """Give back what the backend holds (xdotool: the keycodes it bound)."""


def find_tool(tool: str, install: str) -> str:
    """The tool's path, or BackendUnavailable naming the package that provides it."""
    path = shutil.which(tool)
    if path is None:
        raise BackendUnavailable(f"`{tool}` is not installed (install it: {install})")
    return path


def run_tool(argv: list[str]) -> None:
    """Run one tool invocation (an argument vector, no shell); raise TypingFailed with its stderr."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TypingFailed(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise TypingFailed(f"{argv[0]} failed: {detail}")
