"""Socket files: removed on a clean exit (only while still ours), and a stale one left by a crash
told from a hung daemon at once, by `dictated status` and by `dictated doctor`.

A Unix connect with no listener behind the file is refused immediately (ECONNREFUSED), so only
a listener that does not answer costs the request timeout. Durations are printed, not asserted:
what is asserted is which path was taken (the message), which a slow machine cannot change.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from tests.conftest import REPO
from tests.daemon_proc import start_stdin_daemon

STALE = "stale socket left by a previous run"
TIMED_OUT = "no dictated daemon answered"


def status(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dictated", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    return done, time.monotonic() - start


def leave_stale_socket(path: Path) -> None:
    """A socket file with nobody listening: what a killed daemon leaves behind."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    assert path.is_socket()


@pytest.mark.slow
def test_a_clean_exit_removes_the_sockets(isolated_env):
    runtime = Path(isolated_env["DICTATED_RUNTIME_DIR"])
    daemon = start_stdin_daemon(isolated_env)
    try:
        daemon.wait_ready()
        assert (runtime / "events").is_socket() and (runtime / "control").is_socket()
    finally:
        daemon.stop()  # SIGINT: a clean stop
    assert daemon.proc.returncode == 0
    assert sorted(p.name for p in runtime.iterdir()) == []
    done, seconds = status(isolated_env)
    print(f"`dictated status` after a clean exit: {seconds:.2f} s: {done.stderr.strip()}")
    assert done.returncode == 1 and "no socket at" in done.stderr


def test_only_our_own_socket_file_is_removed(tmp_path):
    from dictated.transport.ipc_files import BoundFile

    path = tmp_path / "events"
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(f"ipc://{path}")
    ours = BoundFile.of(f"ipc://{path}")
    pub.close(0)
    assert ours is not None and path.is_socket()
    path.unlink()
    time.sleep(0.02)  # file times tick in jiffies on some filesystems
    leave_stale_socket(path)  # another daemon took the path over: a new file (maybe the same inode)
    ours.remove()
    assert path.is_socket()  # not ours: kept
    assert BoundFile.of("tcp://127.0.0.1:5556") is None
    BoundFile.of(f"ipc://{path}").remove()
    assert not path.exists()


def test_status_tells_a_stale_socket_at_once(isolated_env):
    runtime = Path(isolated_env["DICTATED_RUNTIME_DIR"])
    leave_stale_socket(runtime / "control")
    done, seconds = status(isolated_env)
    print(f"`dictated status` on a stale socket: {seconds:.2f} s: {done.stderr.strip()}")
    assert done.returncode == 1
    assert f"daemon is running ({STALE}: {runtime / 'control'})" in done.stderr
    assert TIMED_OUT not in done.stderr  # the connect probe answered: no 5 s timeout


def test_status_waits_out_a_listener_that_does_not_answer(isolated_env):
    runtime = Path(isolated_env["DICTATED_RUNTIME_DIR"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hung:
        hung.bind(str(runtime / "control"))
        hung.listen(8)  # accepts connections, never speaks: a hung daemon
        done, seconds = status(isolated_env)
    print(f"`dictated status` on a hung listener: {seconds:.2f} s: {done.stderr.strip()}")
    assert done.returncode == 1
    assert TIMED_OUT in done.stderr and STALE not in done.stderr


def test_doctor_tells_stale_from_hung(isolated_env):
    from dictated.config import load_config
    from dictated.doctor.checks import DoctorContext
    from dictated.doctor.runtime import check_daemon, with_daemon

    runtime = Path(isolated_env["DICTATED_RUNTIME_DIR"])
    context = DoctorContext(config=load_config(None))

    def daemon_check() -> tuple[str, float]:
        start = time.monotonic()
        (result,) = check_daemon(with_daemon(context))
        return result.summary, time.monotonic() - start

    summary, seconds = daemon_check()
    print(f"doctor, no socket: {seconds:.2f} s: {summary}")
    assert summary == "not running"
    leave_stale_socket(runtime / "control")
    summary, seconds = daemon_check()
    print(f"doctor, stale socket: {seconds:.2f} s: {summary}")
    assert summary == f"not running ({STALE}: {runtime / 'control'})"
    os.unlink(runtime / "control")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hung:
        hung.bind(str(runtime / "control"))
        hung.listen(8)
        summary, seconds = daemon_check()
    print(f"doctor, hung listener: {seconds:.2f} s: {summary}")
    assert "did not answer" in summary and "hangs" in summary
