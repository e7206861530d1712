"""Spare X keycodes bound to the characters about to be typed, through libX11 (ctypes).

`xdotool type` types a character missing from the keymap by binding it to a spare keycode,
pressing it and unbinding it at once; an application that reads the key event after the unbind
(any busy one) sees no character, so accented letters, CJK and emoji go missing under load. It
also lowercases Latin-1 capitals. Binding every non-ASCII character of the text beforehand (two
per keycode, unshifted and shifted, so X applies no case rule) and keeping the bindings until
their slot is needed again (or we exit) leaves xdotool nothing to bind: it finds each character
on the keymap. Text with more distinct characters than there are slots is typed in segments,
with a pause before slots are reused so the application has read the keys typed with them. One
spare keycode is always left free for xdotool's own use. The keycodes used are ones the keymap
left empty, which no physical key produces.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections import OrderedDict

from . import libx11

log = logging.getLogger(__name__)

_NO_SYMBOL = 0
_LEVELS = 2  # keysyms per keycode we bind: unshifted and shifted
REUSE_PAUSE_S = 0.3  # before a segment rebinds slots the previous one typed with


def keysym(ch: str) -> int:
    """The X keysym of one character (Latin-1 keysyms are their code points; others 0x1000000+)."""
    cp = ord(ch)
    return cp if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF else 0x01000000 | cp


def _ignore_x_error(display: int, event: int) -> int:
    log.warning("the X server refused a keymap change; some characters may not be typed")
    return 0


# one handler for the process (libX11 keeps a single one), alive as long as the module
_ERROR_HANDLER_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_ERROR_HANDLER = _ERROR_HANDLER_TYPE(_ignore_x_error)


def _bindable(ch: str) -> bool:
    """Non-ASCII and printable: what xdotool would have to bind itself."""
    return ord(ch) > 0x7E and ch.isprintable()


class KeymapBinder:
    def __init__(self) -> None:
        x = libx11.load()
        x.XDisplayKeycodes.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_int)] * 2
        x.XGetKeyboardMapping.restype = ctypes.POINTER(ctypes.c_ulong)
        x.XGetKeyboardMapping.argtypes = [
            ctypes.c_void_p,
            ctypes.c_ubyte,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        x.XChangeKeyboardMapping.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_ulong),
            ctypes.c_int,
        ]
        x.XFree.argtypes = [ctypes.c_void_p]
        # libX11's default error handler exits the process; a refused change is not worth that
        x.XSetErrorHandler.argtypes = [_ERROR_HANDLER_TYPE]
        x.XSetErrorHandler(_ERROR_HANDLER)
        self._x = x
        self._dpy = libx11.open_display(x)
        spare = self._empty_keycodes()[1:]  # the first stays free for xdotool
        self._free = [(keycode, level) for keycode in reversed(spare) for level in (1, 0)]
        self._syms = {keycode: [_NO_SYMBOL] * _LEVELS for keycode in spare}
        self._bound: OrderedDict[str, tuple[int, int]] = OrderedDict()  # char -> slot, oldest first
        self.capacity = len(self._free)
        self._last_typed = 0.0

    def _empty_keycodes(self) -> list[int]:
        lo, hi = ctypes.c_int(), ctypes.c_int()
        self._x.XDisplayKeycodes(self._dpy, ctypes.byref(lo), ctypes.byref(hi))
        per = ctypes.c_int()
        count = hi.value - lo.value + 1
        syms = self._x.XGetKeyboardMapping(self._dpy, lo.value, count, ctypes.byref(per))
        try:
            return [
                lo.value + i
                for i in range(count)
                if all(syms[i * per.value + j] == _NO_SYMBOL for j in range(per.value))
            ]
        finally:
            self._x.XFree(syms)

    def _map(self, slot: tuple[int, int], sym: int) -> None:
        keycode, level = slot
        syms = self._syms[keycode]
        syms[level] = sym
        # an empty level repeats the other one: with a lone keysym X would apply case rules
        written = [s or syms[1 - i] for i, s in enumerate(syms)]
        array = (ctypes.c_ulong * _LEVELS)(*written)
        self._x.XChangeKeyboardMapping(self._dpy, keycode, _LEVELS, array, 1)

    def segments(self, text: str) -> list[str]:
        """`text` cut where its distinct non-ASCII characters would outnumber the slots."""
        if self.capacity == 0:
            return [text]
        out, start, seen = [], 0, set()
        for i, ch in enumerate(text):
            if _bindable(ch) and ch not in seen:
                if len(seen) == self.capacity:
                    out.append(text[start:i])
                    start, seen = i, set()
                seen.add(ch)
        out.append(text[start:])
        return out

    def bind(self, segment: str) -> None:
        """Bind every non-ASCII character of `segment` (one from `segments` always fits).

        Reusing a slot waits until REUSE_PAUSE_S have passed since the last `typed()`, so the
        application has read the keys typed with it before they change meaning.
        """
        wanted = list(dict.fromkeys(ch for ch in segment if _bindable(ch)))
        new = [ch for ch in wanted if ch not in self._bound]
        if len(new) > len(self._free):
            time.sleep(max(0.0, self._last_typed + REUSE_PAUSE_S - time.monotonic()))
        for ch in wanted:
            if ch in self._bound:
                self._bound.move_to_end(ch)
                continue
            if self._free:
                slot = self._free.pop()
            else:
                oldest = next((c for c in self._bound if c not in wanted), None)
                if oldest is None:
                    log.debug("no slot left for %r; xdotool binds it itself", ch)
                    continue
                slot = self._bound.pop(oldest)
            self._map(slot, keysym(ch))
            self._bound[ch] = slot
        self._x.XSync(self._dpy, 0)

    def typed(self) -> None:
        """Note that keys bound now were just typed."""
        self._last_typed = time.monotonic()

    def close(self) -> None:
        """Give the keycodes back empty."""
        for keycode in {slot[0] for slot in self._bound.values()}:
            array = (ctypes.c_ulong * _LEVELS)(*([_NO_SYMBOL] * _LEVELS))
            self._x.XChangeKeyboardMapping(self._dpy, keycode, _LEVELS, array, 1)
        self._bound.clear()
        self._x.XSync(self._dpy, 0)
        self._x.XCloseDisplay(self._dpy)
