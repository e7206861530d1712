"""macOS without pyobjc: System Events keystrokes through `osascript`.

The text never becomes AppleScript source: the script is fixed and reads it from `argv`. Each
argument gets a one-character prefix that the script drops, so text that starts with `-` cannot
be taken for one of osascript's own options. Lines are typed one by one with Return (key code 36)
between them. Needs the Accessibility permission for the terminal or app running dictated-type.
"""

from __future__ import annotations

import sys

from .backend import BackendUnavailable, find_tool, run_tool

NAME = "osascript"
_PREFIX = "+"
TYPE_SCRIPT = """on run argv
  tell application "System Events"
    repeat with i from 1 to count of argv
      if i > 1 then key code 36
      set piece to item i of argv
      if length of piece > 1 then keystroke (text 2 thru -1 of piece)
    end repeat
  end tell
end run"""
BACKSPACE_SCRIPT = """on run argv
  tell application "System Events"
    repeat ((text 2 thru -1 of (item 1 of argv)) as integer) times
      key code 51
    end repeat
  end tell
end run"""


def type_argv(exe: str, text: str) -> list[str]:
    """The argument vector typing `text` (one prefixed argument per line)."""
    return [exe, "-e", TYPE_SCRIPT, *(_PREFIX + line for line in text.split("\n"))]


class OsascriptBackend:
    name = NAME

    def __init__(self) -> None:
        if sys.platform != "darwin":
            raise BackendUnavailable("osascript types through System Events, which only macOS has")
        self.exe = find_tool("osascript", "it ships with macOS")

    def type_text(self, text: str) -> None:
        run_tool(type_argv(self.exe, text))

    def backspace(self, count: int) -> None:
        if count > 0:
            run_tool([self.exe, "-e", BACKSPACE_SCRIPT, f"{_PREFIX}{count}"])

    def close(self) -> None:
        pass
