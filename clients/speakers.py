"""Who spoke: the `speaker` a daemon put on an event, renamed or hidden on the client's request.

The daemon names the speaker from the channel (its `[speakers]` config; by default the `mic`
channel is "me" and `system` is "them"); with one unlabelled source it names none and clients
show no label. A client may rename (`--speaker-name them=Alice`) or hide (`--no-speakers`) them.
A name from the daemon can be any string: it is made plain (no control or bidi characters, one
line) and cut to MAX_NAME_CHARS, so no label can break a caption line, a file or a terminal.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dictated.protocol import plain_text

MAX_NAME_CHARS = 32  # a label is read at a glance next to the words
MAX_RENAMES = 64  # --speaker-name options at most


def clean_name(name: object) -> str | None:
    """`name` as one short plain line, or None when nothing printable is left."""
    if not isinstance(name, str):
        return None
    text = " ".join(plain_text(name).split())
    if len(text) > MAX_NAME_CHARS:
        text = text[: MAX_NAME_CHARS - 1] + "…"
    return text or None


@dataclass(frozen=True)
class Speakers:
    """How a client labels events: renames by the daemon's speaker name or channel label."""

    names: Mapping[str, str] = field(default_factory=dict)
    hidden: bool = False

    def of(self, body: Mapping[str, Any]) -> str | None:
        """The label to show for an event body; None shows none (as before speakers)."""
        if self.hidden:
            return None
        speaker, channel = body.get("speaker"), body.get("channel")
        for key in (speaker, channel):  # them=Alice, or system=Alice for that channel
            if isinstance(key, str) and key in self.names:
                return self.names[key]
        return clean_name(speaker)


def parse_renames(values: Iterable[str]) -> dict[str, str]:
    """`LABEL=NAME` options as a mapping; ValueError naming the bad one and how to write it."""
    names: dict[str, str] = {}
    for value in values:
        label, eq, raw = value.partition("=")
        name = clean_name(raw)
        if not eq or not label.strip() or name is None:
            raise ValueError(f"--speaker-name wants LABEL=NAME (e.g. them=Alice), got {value!r}")
        if label in names:
            raise ValueError(f"--speaker-name: {label!r} is renamed twice")
        names[label] = name
    if len(names) > MAX_RENAMES:
        raise ValueError(f"--speaker-name: at most {MAX_RENAMES} renames, got {len(names)}")
    return names


def add_speaker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speaker-name",
        action="append",
        default=[],
        metavar="LABEL=NAME",
        help="show the speaker (or channel) LABEL as NAME, e.g. them=Alice (repeatable)",
    )
    parser.add_argument("--no-speakers", action="store_true", help="show no speaker labels")


def speakers_from(args: argparse.Namespace) -> Speakers:
    """The options' Speakers; ValueError for a bad --speaker-name."""
    return Speakers(parse_renames(args.speaker_name), args.no_speakers)
