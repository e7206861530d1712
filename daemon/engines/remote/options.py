"""`[engine.remote]`: where the transcription servers are and how to treat them.

Validated when the config is built (no network), so a bad URL or a URL that would send audio off
the machine without permission is a config error (exit 2) naming the key. The API key is never part
of a repr or of `dictated config`'s output; from a file it is accepted only when the file is private.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ...errors import ConfigError
from ...loopback import is_loopback_host

API_KEY_ENV = "DICTATED_REMOTE_API_KEY"
FALLBACKS = ("none", "whisper")
#: OpenAI's path under the base URL; whisper.cpp's server uses "/inference" (its --inference-path)
DEFAULT_INFERENCE_PATH = "/audio/transcriptions"
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=.*$")
_RESERVED_FIELDS = frozenset(
    {"file", "model", "language", "temperature", "response_format", "stream"}
)


@dataclass(frozen=True)
class RemoteOptions:
    """The remote engine's settings; defaults declared once, here."""

    urls: tuple[str, ...] = ()  # base URLs, e.g. http://gpu-box:8000/v1 (vLLM, speaches, LocalAI)
    model: str | None = None  # the served model name; None = the server's default
    timeout_s: float = 30.0  # one request, connect to last byte
    connect_timeout_s: float = 5.0  # a host that does not answer at all is given up on sooner
    api_key: str | None = field(default=None, repr=False, metadata={"secret": True})
    fallback: str = "none"  # none | whisper: transcribe locally when every server fails
    stream: bool = False  # ask for SSE deltas (vLLM's transcription.chunk) and feed partials
    inference_path: str = DEFAULT_INFERENCE_PATH
    allow_remote: bool = False  # permit non-loopback URLs: audio then leaves this machine
    #: send the API key over plain http to a non-loopback host (e.g. inside a WireGuard tunnel)
    allow_insecure_api_key: bool = False
    backoff_s: float = 0.5  # a failed server sits out this long, doubling per failure ...
    max_backoff_s: float = 10.0  # ... up to this
    fields: tuple[str, ...] = ()  # extra form fields as "name=value", e.g. repetition_penalty=1.1

    def __post_init__(self) -> None:
        for url in self.urls:
            check_remote_url(url, self.allow_remote, key="engine.remote.urls")
        if len(set(self.urls)) != len(self.urls):
            raise ConfigError("engine.remote.urls: a URL is listed twice")
        if self.fallback not in FALLBACKS:
            raise ConfigError(
                f"engine.remote.fallback: {self.fallback!r} is not one of {', '.join(FALLBACKS)}"
            )
        for name in ("timeout_s", "connect_timeout_s", "backoff_s", "max_backoff_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"engine.remote.{name}: must be > 0")
        if not self.inference_path.startswith("/"):
            raise ConfigError(
                f"engine.remote.inference_path: {self.inference_path!r} must start with /"
            )
        for item in self.fields:
            if not _FIELD.match(item):
                raise ConfigError(f"engine.remote.fields: {item!r} is not NAME=VALUE")
            if item.partition("=")[0] in _RESERVED_FIELDS:
                raise ConfigError(
                    f"engine.remote.fields: {item.partition('=')[0]!r} is set by dictated itself"
                )

    def resolved_api_key(self) -> str | None:
        """The environment wins over the config file, so a deployment can inject it."""
        return os.environ.get(API_KEY_ENV) or self.api_key or None

    def check_api_key_transport(self, api_key: str | None) -> None:
        """Refuse to send a key in clear text off this machine, unless explicitly allowed.

        Anyone on the path could read it and use the server as the user; a warning in a service's
        log is read too late, so it is an error that names the two fixes.
        """
        if not api_key or self.allow_insecure_api_key:
            return
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
                raise ConfigError(
                    f"engine.remote.urls: {url!r} would send the API key unencrypted to another "
                    "machine; use https://, or set engine.remote.allow_insecure_api_key = true "
                    "(--allow-insecure-api-key) if the network itself is private (a VPN or "
                    "WireGuard tunnel)"
                )

    def extra_fields(self) -> tuple[tuple[str, str], ...]:
        return tuple((k, v) for k, _, v in (f.partition("=") for f in self.fields))

    def endpoint(self, url: str) -> str:
        """The transcription endpoint under one base URL."""
        return url.rstrip("/") + self.inference_path


def check_remote_url(url: str, allow_remote: bool, key: str) -> None:
    """http(s) with a host; credentials never in the URL; off-machine only when allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{key}: {url!r} is not an http:// or https:// URL")
    try:
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"{key}: {url!r} has a bad port: {exc}") from exc
    if not host:
        raise ConfigError(f"{key}: {url!r} has no host, e.g. http://127.0.0.1:8000/v1")
    if parts.username or parts.password:
        raise ConfigError(
            f"{key}: {url!r} carries credentials; put the key in {API_KEY_ENV} or "
            "engine.remote.api_key instead, so it is never logged"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: {url!r} must not have a query or fragment")
    if not is_loopback_host(host) and not allow_remote:
        raise ConfigError(
            f"{key}: {url!r} would send your audio to another machine; use a loopback "
            "address, or set engine.remote.allow_remote = true (--allow-remote-engine) "
            "if you really mean it"
        )
