"""A missing Silero model is a configuration error at start and on reload (review of issue 17).

faster-whisper ships silero_vad_v6.onnx from 1.2.1 on. Without it the daemon used to say "ready"
and then lose the channel when its first segmenter was built; now `dictated run` stops at once
with exit code 2 and the cause, a reload is refused, and `vad = "webrtc"` needs no model.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

import pytest

from dictated import silero_model, speech_prob
from dictated.cli import main
from dictated.config import load_config
from dictated.errors import ConfigError


@pytest.fixture
def no_model(tmp_path, monkeypatch):
    """faster-whisper as a wheel older than 1.2.1 installs it: a package without the model."""
    package = tmp_path / "faster_whisper"
    (package / "assets").mkdir(parents=True)
    (package / "assets" / "silero_vad_v4.onnx").write_bytes(b"")
    find_spec = importlib.util.find_spec

    def old_wheel(name, *args):
        if name == "faster_whisper":
            return importlib.machinery.ModuleSpec(name, None, origin=str(package / "__init__.py"))
        return find_spec(name, *args)

    monkeypatch.setattr(silero_model.importlib.util, "find_spec", old_wheel)
    monkeypatch.setattr(speech_prob, "_session", None)  # as in a fresh process


def test_the_model_is_checked_when_the_config_is_read(no_model, tmp_path, isolated_env):
    with pytest.raises(ConfigError, match=r"the model is missing from faster-whisper"):
        load_config()
    path = tmp_path / "webrtc.toml"
    path.write_text('[segmenter]\nvad = "webrtc"\n', encoding="utf-8")
    assert load_config(path).segmenter.vad == "webrtc"  # webrtcvad alone needs no model


def test_run_stops_at_start_with_exit_code_2(no_model, isolated_env, capsys):
    assert main(["run", "--source", "-"]) == 2
    err = capsys.readouterr().err
    assert 'segmenter.vad = "silero"' in err and 'set segmenter.vad = "webrtc"' in err
    assert "ready" not in err


def test_a_reload_to_silero_without_the_model_is_refused(no_model, tmp_path, isolated_env):
    import asyncio

    from dictated.config import Config
    from dictated.reload import load_reload

    path = tmp_path / "c.toml"
    path.write_text('[segmenter]\nvad = "silero"\n', encoding="utf-8")
    running = Config()

    class Engine:
        def check_language(self, language):
            return language

    class Worker:
        engine = Engine()

    assert asyncio.run(load_reload(running, lambda: load_config(path), Worker())) is None
