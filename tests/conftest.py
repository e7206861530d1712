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


def pytest_configure(config):
    """Two xdist workers share the cores: torch's default of one OpenMP thread per core makes two
    torch tests (or one beside a vLLM server) spin against each other, 1.8 s becoming 41 s. One
    thread per worker (in-process only: the daemons tests start keep their own defaults)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


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


# --- vLLM servers (tests/vllm_server.py): each starts at most once per test session -------------

VLLM_FIXTURES = ("vllm_whisper", "vllm_cohere")


def pytest_collection_modifyitems(config, items):
    """Tests that use a vLLM server fixture carry the `vllm` marker (`-m "not vllm"` skips them)
    and share one xdist group, so under `-n` one worker starts each server once."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in VLLM_FIXTURES):
            item.add_marker(pytest.mark.vllm)
            item.add_marker(pytest.mark.xdist_group("vllm"))


def _serve(request, tmp_path_factory, name: str, build, **server_options):
    from tests.vllm_server import ServerError, VllmServer, skip_reason, vllm_python

    if vllm_python() is None:
        pytest.skip(skip_reason())
    model_dir = build(tmp_path_factory.mktemp(f"{name}-model"))
    log_path = tmp_path_factory.mktemp(f"{name}-log") / "vllm.log"
    server = VllmServer(model_dir, name, log_path=log_path, **server_options)
    try:
        server.start()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="session")
def vllm_whisper(request, tmp_path_factory):
    """A running `VllmServer` serving tests/tiny_whisper.py's model as "tiny-whisper".

    Shared by the whole session: a test that stops it (an outage) must `start()` it again before
    it ends (same port, ~60 s); a test that needs a private one builds its own `VllmServer`.
    """
    from tests.tiny_whisper import make_tiny_whisper_dir

    return _serve(request, tmp_path_factory, "tiny-whisper", make_tiny_whisper_dir)


#: how tests/engines/cohere/nemo_checkpoint.py's model is built for the vLLM server: it ends at eos after ~30
#: tokens and never emits byte pieces (see make_nemo_cohere_dir)
VLLM_COHERE_BUILD = {"seed": 0, "eos_bias": 1.0, "suppress_bytes": True}


@pytest.fixture(scope="session")
def vllm_cohere(request, tmp_path_factory):
    """A running `VllmServer` serving the tiny NeMo-layout Cohere checkpoint as "tiny-cohere".

    `vllm_cohere.model_dir` is the checkpoint: load our cohere-torch engine from it to compare.
    Same sharing rules as `vllm_whisper`.
    """
    from tests.engines.cohere.nemo_checkpoint import SIZES, make_nemo_cohere_dir

    def build(path):
        return make_nemo_cohere_dir(path, **VLLM_COHERE_BUILD)

    return _serve(
        request,
        tmp_path_factory,
        "tiny-cohere",
        build,
        max_model_len=SIZES["max_position_embeddings"],
    )
