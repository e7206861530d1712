"""Typed errors. Library code raises these; only the CLI maps them to exit codes (`cli.exit_code`).

Each class says whether a restart could fix what it reports (`permanent`): a bad config, a file that
is not there or not audio, an engine package or model that is not installed stay that way however
often a service manager restarts the daemon; a microphone that vanished, a server that is not up
yet, or a crash may not.
"""

from __future__ import annotations


class DictatedError(Exception):
    """Base class: a message meant for the user, no traceback needed."""

    #: True when restarting the same command cannot help (the CLI exits 2, and systemd stops)
    permanent: bool = False


class ConfigError(DictatedError):
    """A bad configuration key, value or command-line usage (the key is named in the message)."""

    permanent = True


class AudioError(DictatedError):
    """An audio device that cannot be opened or vanished, or input that fails while being read."""


class AudioInputError(AudioError):
    """Input that is not there or not audio we can read: a missing file, an unsupported or hostile
    header, a terminal on stdin. The message names the file and the field or the fix."""

    permanent = True


class ModelError(DictatedError):
    """A model that is missing, corrupt, gated or otherwise unusable; the message says how to fix it."""

    permanent = True


class ModelUnavailable(ModelError):
    """A model that cannot be fetched or loaded just now for a reason that may pass: no network
    yet at login, the hub's server errors, a GPU another process holds. A restart may fix it."""

    permanent = False


class MissingDependencyError(DictatedError):
    """An optional package (torch, coremltools, PortAudio, ...) is not installed."""

    permanent = True

    def __init__(self, package: str, purpose: str, install: str):
        super().__init__(
            f"{purpose} needs {package}, which is not installed. Install it with: {install}"
        )
        self.package = package


class ServiceError(DictatedError):
    """Installing, starting or querying the login service failed; the message names the tool's answer."""


class ServiceManagerUnavailable(ServiceError):
    """The chosen service manager (launchd, systemd's user manager) does not exist or cannot be reached."""

    permanent = True


class RemoteError(DictatedError):
    """No transcription server answered an utterance (or the warm-up); the message names each one."""
