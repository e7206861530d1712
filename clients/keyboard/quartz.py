"""macOS: Quartz keyboard events (pyobjc, the `[macos]` extra), typing any unicode in one go.

Each event carries up to 20 UTF-16 units of text (the limit CGEventKeyboardSetUnicodeString
honours), so emoji and accents arrive whatever the keyboard layout. Needs the Accessibility
permission for the app running dictated-type.
"""

from __future__ import annotations

import shlex
import sys
import time

from .backend import BackendUnavailable

NAME = "quartz"
_CHUNK_UTF16 = 20
_KEY_DELETE = 51  # kVK_Delete: BackSpace
_KEY_RETURN = 36  # kVK_Return
_PAUSE_S = 0.002  # lets the target app keep the events in order


class QuartzBackend:
    name = NAME

    def __init__(self) -> None:
        if sys.platform != "darwin":
            raise BackendUnavailable("Quartz keyboard events exist only on macOS")
        try:
            import Quartz
        except ImportError as exc:
            raise BackendUnavailable(
                "pyobjc's Quartz is not installed: "
                f"{shlex.quote(sys.executable)} -m pip install 'pyobjc-framework-Quartz>=10'"
            ) from exc
        self._q = Quartz

    def _key(self, keycode: int, text: str | None = None) -> None:
        q = self._q
        for down in (True, False):
            event = q.CGEventCreateKeyboardEvent(None, keycode, down)
            if text is not None:
                q.CGEventKeyboardSetUnicodeString(event, len(text.encode("utf-16-le")) // 2, text)
            # no modifiers: a hotkey's held ctrl/alt/cmd must not turn the text into shortcuts
            # (pynput sets its events' flags the same way; X11's xdotool --clearmodifiers)
            q.CGEventSetFlags(event, 0)
            q.CGEventPost(q.kCGHIDEventTap, event)
        time.sleep(_PAUSE_S)

    def type_text(self, text: str) -> None:
        for i, line in enumerate(text.split("\n")):
            if i:
                self._key(_KEY_RETURN)
            for chunk in _utf16_chunks(line, _CHUNK_UTF16):
                self._key(0, chunk)

    def backspace(self, count: int) -> None:
        for _ in range(count):
            self._key(_KEY_DELETE)

    def close(self) -> None:
        pass


def _utf16_chunks(text: str, units: int) -> list[str]:
    """`text` cut into pieces of at most `units` UTF-16 code units, never inside a character."""
    chunks, current, size = [], "", 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if size + width > units:
            chunks.append(current)
            current, size = "", 0
        current += ch
        size += width
    if current:
        chunks.append(current)
    return chunks
