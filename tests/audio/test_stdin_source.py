"""`--source -` on whatever stdin systemd or a shell hands over: a pipe, /dev/null, a terminal.

Real pipes, a real /dev/null and a real pseudo-terminal; the daemon runs as users run it.
"""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
import time

import numpy as np
import pytest

from dictated.audio.open_source import open_source
from dictated.audio.source import StdinSource
from dictated.errors import AudioError
from tests.daemon_proc import REPO, daemon_command

ONE_SECOND = bytes(2 * 16_000)  # s16le 16 kHz mono


def run_daemon(env, *args: str, stdin, timeout: float = 60) -> subprocess.CompletedProcess:
    """`dictated run --source - ...` to its end; a hang is a TimeoutExpired, i.e. a failure."""
    return subprocess.run(
        daemon_command("--source", "-", "--engine", "whisper", "--linger", "0", *args),
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_stdin_on_dev_null_ends_cleanly_instead_of_waiting_in_ready(isolated_env):
    """systemd's default stdin: it used to sit in `ready` forever (the loop could not watch it)."""
    with open(os.devnull, "rb") as devnull:
        result = run_daemon(isolated_env, stdin=devnull)
    assert result.returncode == 0, result.stderr
    assert "state: ready" in result.stderr and "state: stopped" in result.stderr
    assert "stdin ended before any audio" in result.stderr  # says why it stopped at once
    assert "Traceback" not in result.stderr


def test_a_terminal_on_stdin_is_refused_with_how_to_pipe_audio(isolated_env):
    """Keystrokes are not audio: one line, exit 2 (a restart cannot fix it), no waiting."""
    leader, follower = pty.openpty()
    try:
        result = run_daemon(isolated_env, stdin=follower, timeout=30)
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2, result.stderr
    assert "standard input is a terminal" in result.stderr and "| dictated run --source -" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def collect(source: StdinSource) -> tuple[int, float]:
    """(samples, seconds) to read the whole source."""

    async def run() -> int:
        return sum([len(block.pcm) async for block in source.blocks()])

    t0 = time.monotonic()
    samples = asyncio.run(run())
    return samples, time.monotonic() - t0


def piped(data: bytes):
    """A real pipe holding `data` (under the 64 KiB pipe buffer), its writer closed."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    return os.fdopen(read_fd, "rb")


@pytest.mark.parametrize("realtime", [False, True])
def test_realtime_paces_stdin_like_a_microphone(realtime):
    """`--realtime` with `--source -` used to be dropped: 1 s of audio came in at once."""
    with piped(ONE_SECOND) as stream:
        source = StdinSource(stream, realtime=realtime)
        samples, took = collect(source)
    assert samples == 16_000
    if realtime:
        assert source.realtime and took >= 0.95, f"1 s of audio was read in {took:.2f} s"
    else:
        assert not source.realtime and took < 0.5, f"unpaced read took {took:.2f} s"


def test_the_config_realtime_flag_reaches_the_stdin_source():
    """What `dictated run --source - --realtime` builds: a paced source on the real-time clock."""
    with piped(b"") as stream:
        saved, sys.stdin = sys.stdin, os.fdopen(os.dup(stream.fileno()), "r")
        try:
            assert open_source("-", realtime=True).realtime is True
            assert open_source("-", realtime=False).realtime is False
        finally:
            sys.stdin.close()
            sys.stdin = saved


def test_a_regular_file_on_stdin_is_read_to_its_end(tmp_path):
    pcm = (np.arange(8_000) % 200 - 100).astype("<i2")
    path = tmp_path / "speech.s16"
    path.write_bytes(pcm.tobytes())
    with open(path, "rb") as stream:
        samples, _ = collect(StdinSource(stream))
    assert samples == len(pcm)


def test_a_terminal_is_refused_when_the_source_is_opened():
    leader, follower = pty.openpty()
    try:
        with (
            os.fdopen(os.dup(follower), "rb") as tty,
            pytest.raises(AudioError, match="terminal") as info,
        ):
            StdinSource(tty)
        assert info.value.permanent
    finally:
        os.close(follower)
        os.close(leader)
