"""Which finals are typed, and what the user is told when the daemon's typing state changes.

The daemon decides (issue 18): a final is typed iff it is not a voice command ("stop dictation"
is never typed), typing was armed when it was published (`armed`; a daemon that predates the
field types everything, as before) and, with `--armed-by-key`, it was said while a key was held
(`by_key`). Status events (heartbeats and changes) carry mode, held, armed and listening; a
change of mode, arming or listening is one line for the user (stderr and a notification), the
key being held and let go is not (it happens every few seconds in push-to-talk).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WATCHED = ("mode", "armed", "listening")


def typed(body: Mapping[str, Any], armed_by_key: bool = False) -> bool:
    """Whether a final transcript's text is to be typed (the rule every client follows)."""
    if body.get("command"):
        return False
    if body.get("armed", True) is False:
        return False
    return not armed_by_key or body.get("by_key") is True


def describe(state: Mapping[str, Any]) -> str:
    """The state as one line: `typing disarmed (continuous)`, `push-to-talk: typing armed`."""
    if state.get("listening") is False:
        return "not listening (`dictated toggle` turns it back on)"
    armed = state.get("armed", True)
    typing = "typing armed" if armed else "typing disarmed (`dictated typing on` arms it)"
    if state.get("mode") == "push-to-talk":
        return f"push-to-talk: {typing}, hold the key to talk"
    return typing


@dataclass
class StateWatch:
    """The daemon's last known typing state; says when it changed."""

    known: dict[str, Any] = field(default_factory=dict)

    def update(self, body: Mapping[str, Any]) -> str | None:
        """A message when mode, arming or listening changed (or at first sight when not the
        always-on default); None otherwise or when the daemon does not say (an older daemon)."""
        seen = {key: body[key] for key in WATCHED if key in body}
        if not seen:
            return None
        first = not self.known
        changed = any(self.known.get(key) != value for key, value in seen.items())
        self.known.update(seen)
        if first:
            default = seen.get("armed", True) and seen.get("listening", True)
            return None if default and seen.get("mode") != "push-to-talk" else describe(seen)
        return describe(self.known) if changed else None
