"""Key combinations as users write them: `F9`, `ctrl+alt+space`, `<ctrl>+<alt>+d` (pynput's form).

Names are normalised to pynput's `Key` names (lower case: `f9`, `space`, `ctrl_r`, `page_up`) or a
single character; each backend maps them to its own codes and refuses a name it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the modifiers a combination may hold, and how people spell them
MODIFIERS = {
    "ctrl": "ctrl",
    "control": "ctrl",
    "alt": "alt",
    "option": "alt",
    "opt": "alt",
    "shift": "shift",
    "cmd": "cmd",
    "command": "cmd",
    "super": "cmd",
    "win": "cmd",
    "meta": "cmd",
    "mod4": "cmd",
}
#: other spellings of key names (X11 keysyms, evdev words) -> the pynput name
ALIASES = {
    "return": "enter",
    "escape": "esc",
    "prior": "page_up",
    "pageup": "page_up",
    "next": "page_down",
    "pagedown": "page_down",
    "scrolllock": "scroll_lock",
    "capslock": "caps_lock",
    "numlock": "num_lock",
    "print": "print_screen",
    "control_r": "ctrl_r",
    "control_l": "ctrl_l",
    "rctrl": "ctrl_r",
    "right_ctrl": "ctrl_r",
    "ralt": "alt_r",
    "right_alt": "alt_r",
    "super_r": "cmd_r",
    "super_l": "cmd_l",
    "rshift": "shift_r",
}


class BadKey(ValueError):
    """The key combination cannot be read or this backend has no such key."""


@dataclass(frozen=True)
class KeyCombo:
    key: str  # the key that starts and ends it: a pynput Key name or one character
    modifiers: frozenset[str] = frozenset()  # held with it: ctrl, alt, shift, cmd

    def __str__(self) -> str:
        return "+".join([*sorted(self.modifiers), self.key])


def parse_combo(text: str) -> KeyCombo:
    """`ctrl+alt+space` or `<ctrl>+<alt>+d` -> KeyCombo; BadKey names what is wrong."""
    parts = [p.strip().strip("<>").strip() for p in text.split("+")]
    if not text.strip() or any(not p for p in parts):
        raise BadKey(f"cannot read the key {text!r}: write it like F9, ctrl+alt+space or <ctrl>+d")
    *mods, key = parts
    unknown = [m for m in mods if m.lower() not in MODIFIERS]
    if unknown:
        raise BadKey(
            f"{unknown[0]!r} in {text!r} is not a modifier (use ctrl, alt, shift or cmd/super)"
        )
    name = key if len(key) == 1 else key.lower().replace("-", "_")
    name = ALIASES.get(name, name)
    if len(name) == 1:
        name = name.lower()
    return KeyCombo(name, frozenset(MODIFIERS[m.lower()] for m in mods))
