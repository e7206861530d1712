"""Shared fixtures: every test runs with its own config, data and socket directories."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_WAV = REPO / "samples" / "dictation-demo.wav"
DEMO_TXT = REPO / "samples" / "dictation-demo.txt"


@pytest.fixture
def isolated_env(tmp_path, monkeypatch) -> dict[str, str]:
    """XDG dirs under tmp_path and a short socket dir (Unix socket paths are limited to ~104 bytes)."""
    runtime = Path(tempfile.mkdtemp(prefix="dt-", dir="/tmp"))
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "DICTATED_RUNTIME_DIR": str(runtime),
        "HF_HUB_OFFLINE": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield {**os.environ, **env}
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
