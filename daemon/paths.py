"""Where things live: config, journal, model cache, and the short per-user socket directory."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import platformdirs

from . import protocol
from .errors import ConfigError

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
    return Path(protocol.default_runtime_dir())


def ensure_private_dir(path: Path) -> Path:
    """Create `path` with mode 0700, refusing one that another user owns or others can enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"transport.runtime_dir: {path} is owned by another user; choose another directory"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o700)
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
