"""Which audio sources a daemon listens to, each a labelled channel, and who speaks on each.

`--source LABEL=SPEC` (repeatable) or `[audio] sources = ["me=mic", "them=system"]`; SPEC is
`mic`, `system`, `file:PATH` or `-`. An unlabelled SPEC gets its kind's label ("mic", "system",
"file", "stdin"). A speaker name comes from `[speakers]` (label -> name); without one, "mic" is
"me", "system" is "them", a label the user chose is its own name, and a lone unlabelled source
has no speaker at all (its events look as they did before channels existed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError

LABEL = re.compile(r"[a-z0-9_-]{1,32}")
MAX_CHANNELS = 8  # each runs a source and a segmenter; one engine serves them all
MAX_SPEAKER_CHARS = 64
#: the label a SPEC gets when none is written, by its kind
_KIND_LABELS = {"mic": "mic", "system": "system", "-": "stdin"}
_DEFAULT_SPEAKERS = {"mic": "me", "system": "them"}


@dataclass(frozen=True)
class ChannelSpec:
    label: str
    spec: str  # mic | system | file:PATH | -
    labelled: bool  # the user wrote the label


def check_spec(spec: str, key: str) -> None:
    if not (spec in ("mic", "system", "-") or (spec.startswith("file:") and len(spec) > 5)):
        raise ConfigError(f"{key}: {spec!r} is not mic, system, file:PATH or -")


def parse_channel(text: str, key: str) -> ChannelSpec:
    """`LABEL=SPEC` or `SPEC`. A `file:` path may hold '=': only a valid label before it counts."""
    label, sep, spec = text.partition("=")
    if sep and not label.startswith("file:"):
        if not LABEL.fullmatch(label):
            raise ConfigError(
                f"{key}: label {label!r} in {text!r} must be 1-32 of a-z, 0-9, '_' and '-'"
            )
        check_spec(spec, key)
        return ChannelSpec(label, spec, labelled=True)
    check_spec(text, key)
    return ChannelSpec(_KIND_LABELS.get(text, "file"), text, labelled=False)


def parse_channels(texts: Sequence[str], key: str) -> tuple[ChannelSpec, ...]:
    """Every source, labels unique (two unlabelled files must be labelled: `a=file:…`)."""
    if len(texts) > MAX_CHANNELS:
        raise ConfigError(f"{key}: at most {MAX_CHANNELS} sources, got {len(texts)}")
    channels = tuple(parse_channel(t, key) for t in texts)
    seen: set[str] = set()
    for channel in channels:
        if channel.label in seen:
            raise ConfigError(
                f"{key}: two sources are labelled {channel.label!r}; "
                f"give each its own label, e.g. a={channel.spec} b=..."
            )
        seen.add(channel.label)
    for once in ("-", "mic", "system"):  # one stdin, one microphone, one speakers' monitor
        if sum(c.spec == once for c in channels) > 1:
            raise ConfigError(
                f"{key}: {once!r} is given twice; each would hear the same audio (every word "
                "twice, or stdin's bytes split between them)"
            )
    return channels


def check_speakers(names: Mapping[str, object]) -> None:
    for label, name in names.items():
        if not LABEL.fullmatch(label):
            raise ConfigError(f"speakers.{label}: not a channel label (a-z, 0-9, '_', '-')")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_SPEAKER_CHARS:
            raise ConfigError(f"speakers.{label}: expected a name of 1-{MAX_SPEAKER_CHARS} chars")
        if not name.isprintable():
            raise ConfigError(f"speakers.{label}: the name holds control characters")


def speaker_of(channel: ChannelSpec, names: Mapping[str, str], channels: int) -> str | None:
    """Who speaks on `channel`; None for a lone unlabelled source (today's output unchanged)."""
    if channel.label in names:
        return names[channel.label]
    if channels == 1 and not channel.labelled:
        return None
    return _DEFAULT_SPEAKERS.get(channel.label, channel.label)
