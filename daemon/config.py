"""One `Config`, built once from TOML (platform config dir) with command-line flags merged on top.

Cheap validation only (no hardware, no models), so `--help` and config errors are instant. An unknown
key or a bad value is one `ConfigError` naming the key (exit code 2 in the CLI).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import paths
from .audio.mic_stream import BLOCK_MS, IDLE_BLOCK_MS
from .channel_spec import ChannelSpec, check_speakers, check_spec, parse_channels
from .control_state import ControlOptions
from .engines.base import EngineOptions
from .engines.registry import ENGINE_NAMES
from .errors import ConfigError
from .journal import Rotation
from .loopback import is_loopback_host
from .segmenter_options import SegmenterOptions
from .shutdown import DEFAULT_LINGER_S
from .speculation import SpeculationOptions


@dataclass(frozen=True)
class AudioOptions:
    source: str = "mic"  # mic | system | file:PATH | - (raw s16le 16 kHz mono on stdin)
    #: several sources at once, each a channel: "LABEL=SPEC" or "SPEC" (replaces `source`)
    sources: tuple[str, ...] = ()
    device: str | int | None = None  # microphone name (substring) or index; None = system default
    realtime: bool = False  # pace file and stdin sources like a microphone
    #: while nobody speaks, microphone audio reaches the daemon this much at a time: fewer
    #: wakeups (idle CPU); speech is handed over block by block. 120 = no batching.
    idle_block_ms: int = IDLE_BLOCK_MS

    def __post_init__(self) -> None:
        check_spec(self.source, "audio.source")
        self.channels()  # labels checked now, not when the daemon starts
        if not BLOCK_MS <= self.idle_block_ms <= 2000:
            raise ConfigError(
                f"audio.idle_block_ms: must be between {BLOCK_MS} and 2000, got {self.idle_block_ms}"
            )

    def channels(self) -> tuple[ChannelSpec, ...]:
        """The channels to open: `sources` if given, else the one `source`."""
        if self.sources:
            return parse_channels(self.sources, "audio.sources")
        return parse_channels((self.source,), "audio.source")


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
    # after end of input or a stop, keep publishing this long so subscribers get the tail
    linger_s: float = DEFAULT_LINGER_S

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
    rotate_mb: float = 16.0  # start a new file once the current one reaches this size; 0 = never
    rotate_days: float = 30.0  # ... or once its first event is this old; 0 = never
    keep: int = 0  # rotated files kept (oldest removed first); 0 = all, so no history is lost

    def __post_init__(self) -> None:
        for key in ("rotate_mb", "rotate_days", "keep"):
            if getattr(self, key) < 0:
                raise ConfigError(f"journal.{key}: must be >= 0 (0 = {_JOURNAL_ZERO[key]})")

    def resolved(self) -> Path:
        return self.path or paths.default_journal()

    def rotation(self) -> Rotation:
        return Rotation(
            max_bytes=round(self.rotate_mb * 1024 * 1024),
            max_age_s=self.rotate_days * 86400,
            keep=self.keep,
        )


_JOURNAL_ZERO = {"rotate_mb": "never by size", "rotate_days": "never by age", "keep": "keep all"}


@dataclass(frozen=True)
class LogOptions:
    json: bool = False
    level: str = "info"

    def __post_init__(self) -> None:
        if self.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log.level: {self.level!r} is not debug, info, warning or error")


@dataclass(frozen=True)
class EchoChoice:
    """`[echo]`: whose microphone hears whose speakers (daemon/echo.py). By default a `mic`
    channel is near and a `system` channel far; name channel labels to suppress between other
    sources (a two-track recording: near = ["me"], far = ["them"]), or turn it off."""

    suppress: bool = True
    near: tuple[str, ...] = ()  # channel labels whose microphone may hear the speakers
    far: tuple[str, ...] = ()  # channel labels of what the speakers play


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
    speakers: dict[str, str] = field(default_factory=dict)  # [speakers]: channel label -> name
    echo: EchoChoice = field(default_factory=EchoChoice)
    control: ControlOptions = field(default_factory=ControlOptions)  # push-to-talk, typing
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
    "speakers": (),  # a free table: channel label -> name (channel_spec.py)
    "echo": ("echo",),
    "control": ("control",),
}


def check_endpoint(endpoint: str, allow_remote: bool, key: str) -> None:
    """Accept ipc:// and loopback tcp:// endpoints; others only with allow_remote."""
    parts = urlsplit(endpoint)
    if parts.scheme == "ipc" and endpoint.startswith("ipc://@") and not allow_remote:
        raise ConfigError(  # Linux's abstract sockets have no permissions: anyone local connects
            f"{key}: {endpoint!r} is an abstract socket any local account can connect to; use a "
            "path (ipc:///dir/name) or pass --allow-remote (transport.allow_remote = true)"
        )
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
    if not is_loopback_host(host) and not allow_remote:
        raise ConfigError(
            f"{key}: {endpoint!r} would publish transcripts beyond this machine; use 127.0.0.1, "
            "or pass --allow-remote (transport.allow_remote = true) if you really mean it"
        )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check a TOML/CLI value against a dataclass field's annotation."""
    if isinstance(value, float) and not math.isfinite(value):
        # TOML and float() both accept nan and inf; no setting means them (`linger_s = inf`
        # would never exit, NaN passes every range check), so refuse them for every key
        raise ConfigError(f"{key}: must be a finite number, got {value}")
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
    if origin is typing.Literal:  # a choice, e.g. control.mode
        choices = typing.get_args(tp)
        if value in choices:
            return value
        raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}, got {value!r}")
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


def _merge(current: Any, key: str, values: dict[str, Any], origin: str) -> Any:
    """A nested table (e.g. [engine.remote]) merged into its dataclass, unknown keys named."""
    if not isinstance(values, dict):
        raise ConfigError(f"{key}: expected a table in {origin}, got {type(values).__name__}")
    hints = typing.get_type_hints(type(current))
    names = {f.name for f in dataclasses.fields(current)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {', '.join(f'{key}.{k}' for k in unknown)} in {origin}; "
            f"known keys in [{key}]: {', '.join(sorted(names))}"
        )
    changes = {k: _value(current, f"{key}.{k}", v, hints[k], origin) for k, v in values.items()}
    return _replace(current, key, changes)


def _value(current: Any, key: str, value: Any, tp: Any, origin: str) -> Any:
    sub = getattr(current, key.rpartition(".")[2])
    if dataclasses.is_dataclass(sub):
        return _merge(sub, key, value, origin)
    return _coerce(key, value, tp)


def _replace(current: Any, key: str, changes: dict[str, Any]) -> Any:
    try:
        return dataclasses.replace(current, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def _apply(config: Config, section: str, values: dict[str, Any], origin: str) -> Config:
    if section not in SECTIONS:
        raise ConfigError(
            f"{section}: unknown config section in {origin}; sections: {', '.join(SECTIONS)}"
        )
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a table in {origin}, got {type(values).__name__}")
    if section == "speakers":
        check_speakers(values)
        return dataclasses.replace(config, speakers={**config.speakers, **values})
    remaining = dict(values)
    for attr in SECTIONS[section]:
        current = getattr(config, attr)
        hints = typing.get_type_hints(type(current))
        names = {f.name for f in dataclasses.fields(current)}
        changes = {
            k: _value(current, f"{section}.{k}", remaining.pop(k), hints[k], origin)
            for k in list(remaining)
            if k in names
        }
        if changes:
            config = dataclasses.replace(config, **{attr: _replace(current, section, changes)})
    if remaining:
        known = sorted(
            f.name for attr in SECTIONS[section] for f in dataclasses.fields(getattr(config, attr))
        )
        unknown = ", ".join(f"{section}.{k}" for k in sorted(remaining))
        raise ConfigError(
            f"unknown config key {unknown} in {origin}; known keys in [{section}]: {', '.join(known)}"
        )
    return config


def _check_private(path: Path, data: dict[str, Any]) -> None:
    """A file holding a secret must be readable by its owner only (like ssh's private keys)."""
    remote = (
        data.get("engine", {}).get("remote", {}) if isinstance(data.get("engine"), dict) else {}
    )
    if not isinstance(remote, dict) or "api_key" not in remote:
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"engine.remote.api_key: {path} holds an API key but others can read it "
            f"(mode {mode:o}); run `chmod 600 {path}`, or set the key in "
            "DICTATED_REMOTE_API_KEY instead"
        )


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read TOML (an explicit `path` must exist; the default one may not) and merge CLI overrides.

    `overrides` maps "section.key" (or "section.table.key") to a value; None values mean "not given
    on the command line".
    """
    config = Config()
    explicit = path is not None
    path = Path(path).expanduser() if explicit else paths.config_file()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        _check_private(path, data)
        for section, values in data.items():
            config = _apply(config, section, values, str(path))
        config = dataclasses.replace(config, source_file=path)
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    grouped: dict[str, dict[str, Any]] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *tables, key = dotted.split(".")  # "engine.remote.urls" -> [engine] [remote] urls
        table = grouped
        for name in tables:
            table = table.setdefault(name, {})
        table[key] = value
    for section, values in grouped.items():
        config = _apply(config, section, values, "the command line")
    if config.segmenter.vad == "silero":
        from .silero_model import check_model  # found, not loaded

        check_model()
    return config
