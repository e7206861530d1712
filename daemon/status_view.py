"""`dictated status` for a person: the daemon's status reply as a few aligned lines.

Tolerant by design: any field may be missing (an older or newer daemon), and fields this view does
not know are printed at the end as they are, so nothing the daemon reports is hidden. Scripts use
`dictated status --json`, which prints the reply unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .protocol import escape_controls

#: fields shown in the lines below (the rest go to the end, verbatim)
_SHOWN = {
    "state", "version", "pid", "uptime_s", "engine", "model", "language", "source", "device",
    "device_state", "utterances", "errors", "overflows", "pending", "lag_s", "speculative",
    "speculative_wasted", "seq", "endpoints", "journal", "heartbeat", "detail", "config_file",
    "config_loaded_at", "channels", "mode", "held", "armed", "listening",
}  # fmt: skip


def format_duration(seconds: float) -> str:
    """42 s, 5 min 3 s, 2 h 13 min, 3 d 4 h: two units are enough to read at a glance."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _join(*parts: str | None) -> str:
    return ", ".join(p for p in parts if p)


def format_status(reply: Mapping[str, Any]) -> str:
    get = reply.get
    header = f"dictated {get('version', '')}".rstrip() + f": {get('state', 'unknown')}"
    if get("detail"):
        header += f" — {get('detail')}"
    extra = _join(
        f"pid {get('pid')}" if get("pid") is not None else None,
        f"up {format_duration(get('uptime_s'))}" if _number(get("uptime_s")) else None,
    )
    rows: list[tuple[str, str]] = []
    rows.append(
        (
            "engine",
            _join(
                get("engine") or "(loading)",
                f"model {get('model')}" if get("model") else None,
                f"language {get('language')}" if get("language") else None,
            ),
        )
    )
    source = _join(
        get("source"),
        f"device {get('device')}" if get("device") else None,
        f"device {get('device_state')}" if get("device_state") else None,
    )
    channels = get("channels")
    if isinstance(channels, list) and len(channels) > 1:  # one line each; one is the audio line
        rows += [_channel_row(c) for c in channels if isinstance(c, Mapping)]
    elif source:
        rows.append(("audio", source))
    if any(key in reply for key in ("mode", "held", "armed", "listening")):
        rows.append(("key/typing", control_line(reply)))
    counts = _join(
        _count(get("utterances"), "utterance"),
        _count(get("errors"), "error"),
        _count(get("overflows"), "overflow"),
        f"{get('pending')} pending" if _number(get("pending")) else None,
        f"lag {get('lag_s'):.1f} s" if _number(get("lag_s")) else None,
    )
    if counts:
        rows.append(("activity", counts))
    if get("speculative") is not None:
        wasted = get("speculative_wasted")
        rows.append(
            (
                "speculative",
                _join(str(get("speculative")), f"{wasted} wasted" if wasted is not None else None),
            )
        )
    endpoints = get("endpoints")
    if isinstance(endpoints, Mapping):
        events = endpoints.get("events")
        if events:
            rows.append(("events", ", ".join(events) if isinstance(events, list) else str(events)))
        if endpoints.get("control"):
            rows.append(("control", str(endpoints["control"])))
    if get("journal"):
        seq = f" (seq {get('seq')})" if get("seq") is not None else ""
        rows.append(("journal", f"{get('journal')}{seq}"))
    if "config_file" in reply:
        loaded = get("config_loaded_at")
        when = (
            time.strftime(" (loaded %Y-%m-%d %H:%M:%S)", time.localtime(loaded))
            if _number(loaded)
            else ""
        )
        rows.append(("config", f"{get('config_file') or '(defaults, no file)'}{when}"))
    rows += [(key, str(value)) for key, value in reply.items() if key not in _SHOWN]
    width = max(len(label) for label, _ in rows)
    # every piece is one line: what a daemon or a remote server said is shown, never acted on
    lines = [escape_controls(f"{header} ({extra})" if extra else header)]
    lines += [
        f"  {escape_controls(label):<{width}}  {escape_controls(value)}" for label, value in rows
    ]
    return "\n".join(lines)


def control_line(reply: Mapping[str, Any]) -> str:
    """Who decides, in one line: `push-to-talk, key held, typing armed, listening` (what
    `dictated ptt`, `toggle` and `typing` print; missing fields are left out)."""
    get = reply.get
    return escape_controls(
        _join(
            str(get("mode")) if get("mode") else None,
            _flag(get("held"), "key held", "key up"),
            _flag(get("armed"), "typing armed", "typing disarmed"),
            _flag(get("listening"), "listening", "not listening"),
        )
    )


def _flag(value: Any, yes: str, no: str) -> str | None:
    return yes if value is True else no if value is False else None


def _channel_row(channel: Mapping[str, Any]) -> tuple[str, str]:
    """One channel: `channel me  Alice: mic (device lost), 3 utterances, 1 error, paused`."""
    get = channel.get
    where = _join(
        get("source"),
        f"device {get('device')}" if get("device") else None,
        f"device {get('device_state')}" if get("device_state") else None,
    )
    return (
        f"channel {get('label', '?')}",
        _join(
            f"{get('speaker')}: {where}" if get("speaker") else where,
            _count(get("utterances"), "utterance"),
            _count(get("errors"), "error"),
            _count(get("overflows"), "overflow"),
            "paused" if get("paused") else None,
            "key held" if get("held") else None,
        ),
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any, noun: str) -> str | None:
    if not _number(value):
        return None
    return f"{value} {noun}{'' if value == 1 else 's'}"
