"""Where things live: config, journal, model cache, and the short per-user socket directory."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import sys
from pathlib import Path

import platformdirs

from . import protocol, socket_dir
from .errors import ConfigError

log = logging.getLogger(__name__)

APP = "dictated"
#: sockaddr_un.sun_path is 104 bytes on macOS, 108 on Linux, NUL included
MAX_IPC_PATH = 103 if sys.platform == "darwin" else 107


def config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP))


def default_journal() -> Path:
    return data_dir() / "journal.jsonl"


def default_runtime_dir() -> Path:
    """The short per-user socket directory (dictated.protocol.default_runtime_dir says which)."""
    chosen = protocol.default_runtime_dir()
    if (
        sys.platform == "darwin"
        and not os.environ.get("DICTATED_RUNTIME_DIR")
        and chosen[:5] == "/tmp/"
    ):
        _home_too_long(chosen)
    return Path(chosen)


@functools.cache
def _home_too_long(chosen: str) -> None:
    """Say once why macOS got the shared /tmp fallback instead of ~/.dictated/run."""
    log.warning(
        "sockets in %s: ~/.dictated/run is over the %d-byte Unix socket path limit; set "
        "DICTATED_RUNTIME_DIR to a short private directory to choose another",
        chosen,
        protocol.MACOS_MAX_IPC_PATH,
    )


def ensure_private_dir(path: Path) -> Path:
    """Create `path` 0700, or make our own existing one 0700; refuse one we cannot trust.

    Never follows a symlink (checked with lstat, then opened O_NOFOLLOW, so a link swapped in
    between fails too): a link owned by another account could point anywhere, even at one of our
    directories, which chmod would then change. Another owner or a non-directory is refused.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    reason = socket_dir.problem(os.lstat(path), directory=True)
    if reason and not reason.startswith("other accounts"):  # only the mode is ours to fix
        raise ConfigError(
            f"transport.runtime_dir: refusing socket directory {path}: {reason}; "
            f"{socket_dir.fix(str(path), reason)}"
        )
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)  # the directory itself, whatever happens to the name now
        if info.st_uid != os.getuid():
            raise ConfigError(f"transport.runtime_dir: {path} changed owner while being checked")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def ipc_endpoint(directory: Path, name: str) -> str:
    """`ipc://DIR/NAME`, checked against the Unix socket path limit with a clear fix."""
    path = directory / name
    if len(str(path).encode()) > MAX_IPC_PATH:
        raise ConfigError(
            f"transport.runtime_dir: socket path {path} is {len(str(path).encode())} bytes, over the "
            f"{MAX_IPC_PATH}-byte limit for Unix sockets; set transport.runtime_dir to a shorter "
            "directory (e.g. /tmp/dictated)"
        )
    return f"ipc://{path}"
