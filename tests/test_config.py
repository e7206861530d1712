"""Config: TOML merged under CLI flags; every bad key or value is exit code 2 naming the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from dictated.config import SECTIONS, Config, check_endpoint, load_config
from dictated.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dictated", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_defaults_without_a_config_file(isolated_env):
    config = load_config()
    assert config.engine.name == "auto"
    assert config.audio.source == "mic"
    assert config.source_file is None


def test_toml_is_merged_under_cli_overrides(tmp_path, isolated_env):
    path = write(
        tmp_path / "c.toml",
        '[engine]\nname = "whisper"\nlanguage = "en"\nbeam_size = 2\n'
        '[transport]\npub = ["tcp://127.0.0.1:5599"]\n[audio]\nsource = "file:x.wav"\n',
    )
    config = load_config(path, {"engine.language": "de", "audio.source": None})
    assert config.engine.name == "whisper"
    assert config.engine.language == "de"  # the flag wins
    assert config.engine_options.beam_size == 2  # [engine] also fills the engine options
    assert config.transport.pub == ("tcp://127.0.0.1:5599",)
    assert config.audio.source == "file:x.wav"  # None = flag not given


def test_default_config_file_location_is_read(isolated_env):
    path = Path(isolated_env["XDG_CONFIG_HOME"]) / "dictated" / "config.toml"
    path.parent.mkdir(parents=True)
    write(path, '[engine]\nlanguage = "fr"\n')
    config = load_config()
    assert config.engine.language == "fr" and config.source_file == path


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[engine]\nnmae = "whisper"\n', "engine.nmae"),
        ('[segmenter]\nhangover_ms = "long"\n', "segmenter.hangover_ms"),
        ("[audio]\nrealtime = 1\n", "audio.realtime"),
        ('[enigne]\nname = "whisper"\n', "enigne"),
        ('[transport]\npub = ["tcp://10.0.0.5:5556"]\n', "transport.pub"),
        ('[transport]\npub = ["udp://127.0.0.1:5556"]\n', "transport.pub"),
        ('[engine]\nname = "wisper"\n', "engine.name"),
        ('[log]\nlevel = "loud"\n', "log.level"),
        ('[transport]\npub = "tcp://127.0.0.1:1"\n', "transport.pub"),
        ("[engine\n", "not valid TOML"),
        ("[journal]\nrotate_mb = -1\n", "journal.rotate_mb"),
        ('[journal]\nrotate_days = "weekly"\n', "journal.rotate_days"),
        ("[journal]\nkeep = 2.5\n", "journal.keep"),
        ("[transport]\nlinger_s = inf\n", "transport.linger_s"),  # never exited
        ("[journal]\nrotate_days = nan\n", "journal.rotate_days"),  # NaN passes `< 0`
        ("[engine.remote]\ntimeout_s = -inf\n", "engine.remote.timeout_s"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path, isolated_env, toml, named):
    path = write(tmp_path / "bad.toml", toml)
    result = run_cli(
        "run", "--config", str(path), "--source", "file:/nonexistent.wav", env=isolated_env
    )
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_journal_rotation_from_the_config_file(tmp_path, isolated_env):
    path = write(tmp_path / "c.toml", "[journal]\nrotate_mb = 0.5\nrotate_days = 0\nkeep = 3\n")
    rotation = load_config(path).journal.rotation()
    assert (rotation.max_bytes, rotation.max_age_s, rotation.keep) == (524288, 0.0, 3)
    default = load_config().journal.rotation()
    assert default.max_bytes == 16 * 1024 * 1024 and default.max_age_s == 30 * 86400
    assert default.keep == 0  # rotated files are kept unless the user says otherwise


def test_bad_endpoint_on_the_command_line_exits_2(isolated_env):
    result = run_cli(
        "run", "--pub", "tcp://192.168.1.20:5556", "--source", "file:/x.wav", env=isolated_env
    )
    assert result.returncode == 2
    assert "--pub" in result.stderr and "--allow-remote" in result.stderr


def test_bad_flag_value_type_exits_2(isolated_env):
    result = run_cli("run", "--hangover-ms", "soon", env=isolated_env)
    assert result.returncode == 2  # argparse's own usage error
    assert "hangover-ms" in result.stderr


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://127.0.0.1:5556", "tcp://localhost:1", "tcp://[::1]:5556", "ipc:///tmp/x/events"],
)
def test_loopback_and_ipc_endpoints_are_accepted(endpoint):
    check_endpoint(endpoint, allow_remote=False, key="k")


@pytest.mark.parametrize(
    "endpoint", ["tcp://*:5556", "tcp://0.0.0.0:5556", "tcp://eth0:5556", "tcp://8.8.8.8:1"]
)
def test_remote_endpoints_need_allow_remote(endpoint):
    with pytest.raises(ConfigError, match="allow-remote"):
        check_endpoint(endpoint, allow_remote=False, key="k")
    check_endpoint(endpoint, allow_remote=True, key="k")


def test_config_command_shows_the_effective_values(tmp_path, isolated_env):
    path = write(tmp_path / "c.toml", "[segmenter]\nhangover_ms = 700\n")
    result = run_cli("config", "--config", str(path), env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert "hangover_ms = 700" in result.stdout


def test_socket_path_too_long_for_unix_sockets_says_what_to_do(isolated_env, tmp_path):
    long_dir = tmp_path / ("d" * 120)
    result = run_cli(
        "run", "--runtime-dir", str(long_dir), "--source", "file:/x.wav", env=isolated_env
    )
    assert result.returncode == 2, result.stderr
    assert "transport.runtime_dir" in result.stderr and "shorter" in result.stderr


def test_socket_directory_is_private(isolated_env, tmp_path):
    from dictated.paths import ensure_private_dir

    shared = tmp_path / "sock"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert (ensure_private_dir(shared).stat().st_mode & 0o777) == 0o700


def float_keys() -> list[tuple[str, str]]:
    """Every float setting of the config file, as ("[table]", key), found from the dataclasses."""
    found = []

    def walk(options, table: str) -> None:
        hints = typing.get_type_hints(type(options))
        for f in dataclasses.fields(options):
            value = getattr(options, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{table}.{f.name}")
            elif float in (hints[f.name], *typing.get_args(hints[f.name])):
                found.append((table, f.name))

    for section, attrs in SECTIONS.items():
        for attr in attrs:
            walk(getattr(Config(), attr), section)
    return found


def test_every_float_setting_is_found():
    keys = float_keys()
    assert ("transport", "linger_s") in keys and ("segmenter", "max_utterance_s") in keys
    assert ("engine.remote", "timeout_s") in keys and len(keys) >= 10


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+inf"])
def test_nan_and_infinity_are_refused_for_every_float_setting(tmp_path, isolated_env, value):
    for table, key in float_keys():
        path = write(tmp_path / "c.toml", f"[{table}]\n{key} = {value}\n")
        with pytest.raises(ConfigError, match=rf"^{table}\.{key}: must be a finite number"):
            load_config(path)


@pytest.mark.parametrize("flag", ["--linger", "--eos-bias", "--remote-timeout"])
def test_nan_and_infinity_on_the_command_line_exit_2(isolated_env, flag):
    result = run_cli("run", flag, "inf", "--source", "file:/nonexistent.wav", env=isolated_env)
    assert result.returncode == 2, result.stderr
    assert "must be a finite number, got inf" in result.stderr
