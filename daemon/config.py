"""One `Config`, built once from TOML (platform config dir) with command-line flags merged on top.

Cheap validation only (no hardware, no models), so `--help` and config errors are instant. An unknown
key or a bad value is one `ConfigError` naming the key (exit code 2 in the CLI).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import paths
from .engines.base import EngineOptions
from .engines.registry import ENGINE_NAMES
from .errors import ConfigError
from .segmenter import SegmenterOptions
from .speculation import SpeculationOptions


@dataclass(frozen=True)
class AudioOptions:
    source: str = "mic"  # mic | file:PATH | - (raw s16le 16 kHz mono on stdin)
    device: str | int | None = None  # microphone name (substring) or index; None = system default
    realtime: bool = False  # pace file sources like a microphone

    def __post_init__(self) -> None:
        if not (self.source in ("mic", "-") or self.source.startswith("file:")):
            raise ConfigError(f"audio.source: {self.source!r} is not mic, file:PATH or -")


@dataclass(frozen=True)
class EngineChoice:
    name: str = "auto"
    language: str = "en"

    def __post_init__(self) -> None:
        if self.name not in ENGINE_NAMES:
            raise ConfigError(
                f"engine.name: unknown engine {self.name!r}; choose one of {', '.join(ENGINE_NAMES)}"
            )


@dataclass(frozen=True)
class TransportOptions:
    pub: tuple[str, ...] = ()  # extra PUB endpoints besides the per-user ipc socket
    allow_remote: bool = False  # permit non-loopback tcp endpoints
    runtime_dir: Path | None = None  # where the ipc sockets live; None = short per-user default
    linger_s: float = (
        1.0  # after end of input, keep publishing this long so subscribers get the tail
    )

    def __post_init__(self) -> None:
        for endpoint in self.pub:
            check_endpoint(endpoint, self.allow_remote, key="transport.pub")
        if self.linger_s < 0:
            raise ConfigError("transport.linger_s: must be >= 0")

    def socket_dir(self) -> Path:
        return self.runtime_dir or paths.default_runtime_dir()


@dataclass(frozen=True)
class JournalOptions:
    path: Path | None = None  # None = user data dir / journal.jsonl

    def resolved(self) -> Path:
        return self.path or paths.default_journal()


@dataclass(frozen=True)
class LogOptions:
    json: bool = False
    level: str = "info"

    def __post_init__(self) -> None:
        if self.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log.level: {self.level!r} is not debug, info, warning or error")


@dataclass(frozen=True)
class Config:
    audio: AudioOptions = field(default_factory=AudioOptions)
    engine: EngineChoice = field(default_factory=EngineChoice)
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    segmenter: SegmenterOptions = field(default_factory=SegmenterOptions)
    speculation: SpeculationOptions = field(default_factory=SpeculationOptions)
    transport: TransportOptions = field(default_factory=TransportOptions)
    journal: JournalOptions = field(default_factory=JournalOptions)
    log: LogOptions = field(default_factory=LogOptions)
    source_file: Path | None = None  # the TOML file this came from, for messages


#: TOML table -> the Config fields (dataclasses) its keys fill; [engine] feeds two of them
SECTIONS: dict[str, tuple[str, ...]] = {
    "audio": ("audio",),
    "engine": ("engine", "engine_options"),
    "segmenter": ("segmenter",),
    "speculation": ("speculation",),
    "transport": ("transport",),
    "journal": ("journal",),
    "log": ("log",),
}


def check_endpoint(endpoint: str, allow_remote: bool, key: str) -> None:
    """Accept ipc:// and loopback tcp:// endpoints; others only with allow_remote."""
    parts = urlsplit(endpoint)
    if parts.scheme == "ipc" and (parts.netloc or parts.path):
        return
    if parts.scheme != "tcp":
        raise ConfigError(f"{key}: {endpoint!r} is not an ipc:// or tcp:// endpoint")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"{key}: {endpoint!r} has a bad port: {exc}") from exc
    if not host or port is None:
        raise ConfigError(f"{key}: {endpoint!r} needs a host and a port, e.g. tcp://127.0.0.1:5556")
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # an interface name or '*': all or external addresses
    if not loopback and not allow_remote:
        raise ConfigError(
            f"{key}: {endpoint!r} would publish transcripts beyond this machine; use 127.0.0.1, "
            "or pass --allow-remote (transport.allow_remote = true) if you really mean it"
        )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check a TOML/CLI value against a dataclass field's annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(tp):
            if member is type(None):
                continue
            try:
                return _coerce(key, value, member)
            except ConfigError:
                continue  # the message below names the whole union
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(key, v, item_type) for v in value)
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is Path:
        ok = isinstance(value, str | Path)
        value = Path(value).expanduser() if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _apply(config: Config, section: str, values: dict[str, Any], origin: str) -> Config:
    if section not in SECTIONS:
        raise ConfigError(
            f"{section}: unknown config section in {origin}; sections: {', '.join(SECTIONS)}"
        )
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a table in {origin}, got {type(values).__name__}")
    remaining = dict(values)
    for attr in SECTIONS[section]:
        current = getattr(config, attr)
        hints = typing.get_type_hints(type(current))
        names = {f.name for f in dataclasses.fields(current)}
        changes = {
            k: _coerce(f"{section}.{k}", remaining.pop(k), hints[k])
            for k in list(remaining)
            if k in names
        }
        if changes:
            try:
                config = dataclasses.replace(
                    config, **{attr: dataclasses.replace(current, **changes)}
                )
            except ConfigError:
                raise
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{section}: {exc}") from exc
    if remaining:
        known = sorted(
            f.name for attr in SECTIONS[section] for f in dataclasses.fields(getattr(config, attr))
        )
        unknown = ", ".join(f"{section}.{k}" for k in sorted(remaining))
        raise ConfigError(
            f"unknown config key {unknown} in {origin}; known keys in [{section}]: {', '.join(known)}"
        )
    return config


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read TOML (an explicit `path` must exist; the default one may not) and merge CLI overrides.

    `overrides` maps "section.key" to a value; None values mean "not given on the command line".
    """
    config = Config()
    explicit = path is not None
    path = Path(path).expanduser() if explicit else paths.config_file()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        for section, values in data.items():
            config = _apply(config, section, values, str(path))
        config = dataclasses.replace(config, source_file=path)
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    grouped: dict[str, dict[str, Any]] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        grouped.setdefault(section, {})[key] = value
    for section, values in grouped.items():
        config = _apply(config, section, values, "the command line")
    return config
