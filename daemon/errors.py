"""Typed errors. Library code raises these; only the CLI maps them to exit codes."""

from __future__ import annotations


class DictatedError(Exception):
    """Base class: a message meant for the user, no traceback needed."""

    exit_code = 1


class ConfigError(DictatedError):
    """A bad configuration key or value (exit code 2, the key is named in the message)."""

    exit_code = 2


class AudioError(DictatedError):
    """Unsupported audio input, or an audio device that cannot be opened or vanished."""


class ModelError(DictatedError):
    """A model that is missing, corrupt, gated or otherwise unusable; the message says how to fix it."""


class MissingDependencyError(DictatedError):
    """An optional package (torch, coremltools, PortAudio, ...) is not installed."""

    def __init__(self, package: str, purpose: str, install: str):
        super().__init__(
            f"{purpose} needs {package}, which is not installed. Install it with: {install}"
        )
        self.package = package


class ServiceError(DictatedError):
    """Installing, starting or querying the login service failed; the message names the tool's answer."""


class ServiceManagerUnavailable(ServiceError):
    """The chosen service manager (launchd, systemd's user manager) does not exist or cannot be reached."""

    exit_code = 2


class RemoteError(DictatedError):
    """No transcription server answered an utterance (or the warm-up); the message names each one."""
