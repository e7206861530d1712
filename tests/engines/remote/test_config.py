"""[engine.remote]: nested table, flags, privacy of URLs and of the API key; CLI errors in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dictated.config import load_config
from dictated.engines.remote.options import API_KEY_ENV, RemoteOptions
from dictated.errors import ConfigError
from tests.conftest import DEMO_WAV


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def run_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dictated", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_nested_table_and_flags_win(tmp_path, isolated_env):
    path = write(
        tmp_path / "c.toml",
        '[engine]\nname = "remote"\n[engine.remote]\nurls = ["http://127.0.0.1:8000/v1"]\n'
        'model = "cohere"\ntimeout_s = 5\nfallback = "whisper"\n',
    )
    config = load_config(path, {"engine.remote.urls": ["http://localhost:9000/v1"]})
    remote = config.engine_options.remote
    assert config.engine.name == "remote"
    assert remote.urls == ("http://localhost:9000/v1",)  # the flag replaces the list
    assert (remote.model, remote.timeout_s, remote.fallback) == ("cohere", 5.0, "whisper")


def test_one_line_inline_table(tmp_path, isolated_env):
    """What the README shows: one line points a room at a server."""
    path = write(
        tmp_path / "c.toml",
        'engine = { name = "remote", remote = { urls = ["http://127.0.0.1:8000/v1"] } }\n',
    )
    assert load_config(path).engine_options.remote.urls == ("http://127.0.0.1:8000/v1",)


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[engine.remote]\nurlz = ["http://127.0.0.1/v1"]\n', "engine.remote.urlz"),
        ('[engine.remote]\ntimeout_s = "fast"\n', "engine.remote.timeout_s"),
        ('[engine.remote]\nurls = "http://127.0.0.1/v1"\n', "engine.remote.urls"),
        ('[engine.remote]\nfallback = "cohere"\n', "engine.remote.fallback"),
        ('[engine.remote]\nurls = ["ftp://127.0.0.1/v1"]\n', "engine.remote.urls"),
        ('[engine.remote]\nurls = ["http://u:p@127.0.0.1/v1"]\n', "engine.remote.urls"),
        ('[engine.remote]\ninference_path = "inference"\n', "engine.remote.inference_path"),
        ('[engine.remote]\nfields = ["language=de"]\n', "engine.remote.fields"),
        ("[engine]\nremote = 3\n", "engine.remote"),
    ],
)
def test_bad_remote_keys_are_named(tmp_path, isolated_env, toml, named):
    path = write(tmp_path / "c.toml", toml)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(path)


def test_non_loopback_url_needs_explicit_permission(tmp_path, isolated_env):
    with pytest.raises(ConfigError, match=r"engine\.remote\.allow_remote"):
        RemoteOptions(urls=("https://gpu.example.com/v1",))
    with pytest.raises(ConfigError, match="another machine"):
        RemoteOptions(urls=("http://10.1.2.3:8000/v1",))
    ok = RemoteOptions(urls=("https://gpu.example.com/v1",), allow_remote=True)
    assert ok.endpoint(ok.urls[0]) == "https://gpu.example.com/v1/audio/transcriptions"
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1"):
        RemoteOptions(urls=(url,))
    result = run_cli(
        "transcribe", "--engine", "remote", "--remote-url", "http://10.1.2.3/v1", str(DEMO_WAV)
    )
    assert result.returncode == 2 and "--allow-remote-engine" in result.stderr


def test_api_key_only_from_a_private_file(tmp_path, isolated_env):
    text = '[engine.remote]\napi_key = "sk-do-not-leak"\n'
    loose = write(tmp_path / "loose.toml", text, mode=0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(loose)
    group = write(tmp_path / "group.toml", text, mode=0o640)
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        load_config(group)
    private = write(tmp_path / "private.toml", text)
    options = load_config(private).engine_options.remote
    assert options.resolved_api_key() == "sk-do-not-leak"
    assert "sk-do-not-leak" not in repr(options)
    shown = run_cli("config", "--config", str(private), env=isolated_env)
    assert shown.returncode == 0, shown.stderr
    assert "[engine.remote]" in shown.stdout and "sk-do-not-leak" not in shown.stdout
    assert 'api_key = "(set, hidden)"' in shown.stdout


def test_environment_key_wins(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert RemoteOptions(api_key="from-file").resolved_api_key() == "from-env"
    monkeypatch.delenv(API_KEY_ENV)
    assert RemoteOptions().resolved_api_key() is None


def test_remote_engine_without_urls_is_a_config_error(isolated_env):
    result = run_cli("transcribe", "--engine", "remote", str(DEMO_WAV), env=isolated_env)
    assert result.returncode == 2
    assert "engine.remote.urls" in result.stderr and "Traceback" not in result.stderr


def test_no_reachable_server_is_one_line_naming_it(isolated_env, free_port):
    url = f"http://127.0.0.1:{free_port}/v1"
    result = run_cli(
        "transcribe", "--engine", "remote", "--remote-url", url, str(DEMO_WAV), env=isolated_env
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("dictated:")]
    assert len(errors) == 1 and url in errors[0] and "connection refused" in errors[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_server_that_never_answers_fails_within_the_timeout(isolated_env):
    """A port that accepts connections (the kernel's backlog) but never answers: the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        env = {**isolated_env, "PYTHONWARNINGS": "ignore"}
        result = run_cli(
            "transcribe", "--engine", "remote", "--remote-url", url, "--remote-timeout", "1",
            str(DEMO_WAV), env=env,
        )  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("dictated:")]
    assert len(errors) == 1 and url in errors[0] and "timed out after 1 s" in errors[0]
    assert "Traceback" not in result.stderr
