"""A socket directory another account controls is refused by the daemon and by every client.

The other account is uid 65534 (setpriv; these tests run as root, as CI does here): it creates
the /tmp-style directory first and runs a fake daemon there that publishes a shell command as a
transcript. The real clients (dictated-type, dictated-tail as the editor plugins run it,
dictated-captions, `dictated status`) must stop with one line naming the directory and the fix,
and never type or print the text.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dictated import paths, protocol
from dictated.errors import ConfigError
from tests.transport.squatter import EVIL, NOBODY, FakeDaemon, as_nobody, squatted_dir

needs_other_account = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as another account (uid 65534)",
)

CLIENTS = {
    "dictated-type": ["dictated.clients.keyboard.cli", "--dry-run", "--count", "1"],
    "dictated-tail": ["dictated.clients.tail", "--count", "1"],
    "dictated-tail (editor plugins)": [
        "dictated.clients.tail",
        *("--json", "--topic", "transcript", "--wait", "--count", "1"),
    ],
    "dictated-tail --since": ["dictated.clients.tail", "--since", "0", "--count", "1"],
    "dictated-captions": ["dictated.clients.captions.cli", "--count", "1"],
    "dictated status": ["dictated", "status"],
}


@pytest.fixture
def squatted():
    directory = squatted_dir("dictated-squat")
    daemon = FakeDaemon(directory)
    yield directory
    daemon.stop()
    shutil.rmtree(directory, ignore_errors=True)


def run_client(
    module_args: list[str], runtime_dir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess:
    env = {**env, "DICTATED_RUNTIME_DIR": str(runtime_dir)}
    return subprocess.run(
        [sys.executable, "-m", *module_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@needs_other_account
@pytest.mark.parametrize("client", list(CLIENTS))
def test_clients_refuse_a_socket_dir_squatted_by_another_account(squatted, client, isolated_env):
    assert squatted.stat().st_uid == NOBODY and (squatted / "events").is_socket()
    done = run_client(CLIENTS[client], squatted, isolated_env)
    print(f"{client}: exit {done.returncode}; stdout {done.stdout!r}; stderr {done.stderr!r}")
    assert EVIL not in done.stdout and "evil.example" not in done.stderr
    assert done.returncode != 0
    if client == "dictated status":  # what a restart cannot fix (the CLI's exit codes)
        assert done.returncode == 2
    refusals = [line for line in done.stderr.splitlines() if "refusing socket directory" in line]
    assert len(refusals) == 1, done.stderr
    assert str(squatted) in refusals[0] and f"uid {NOBODY}" in refusals[0]
    assert "DICTATED_RUNTIME_DIR" in refusals[0]  # the fix
    assert "Traceback" not in done.stderr


@needs_other_account
def test_a_client_waiting_for_the_daemon_makes_the_directory_so_no_squatter_can(isolated_env):
    """dictated-tail --wait started before any daemon: ZeroMQ reconnects by itself to whatever
    appears at the path, and a squatter could create the directory, let the client connect, and
    rename it away before the first message (review of issue 15). So the client makes the
    missing directory itself: then nobody else can create, replace or rename it in sticky /tmp."""
    directory = Path(f"/tmp/dictated-late-{os.getpid()}")
    env = {**isolated_env, "DICTATED_RUNTIME_DIR": str(directory)}
    tail = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.tail", "--json", "--wait", "--count", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not directory.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = directory.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
        assert stat.S_IMODE(info.st_mode) == 0o700
        for attempt in (
            ["mv", str(directory), f"{directory}-gone"],
            [
                "python3",
                "-c",
                f"import socket; socket.socket(socket.AF_UNIX).bind('{directory}/events')",
            ],
        ):
            done = subprocess.run(as_nobody(*attempt), capture_output=True, text=True)
            assert done.returncode != 0, f"the other account could: {attempt}"
        assert tail.poll() is None  # still waiting, for our own daemon only
    finally:
        tail.kill()
        tail.communicate()
        shutil.rmtree(directory, ignore_errors=True)


@needs_other_account
def test_a_socket_of_another_account_in_our_own_directory_is_refused():
    from dictated.socket_dir import UnsafeSocketDir, check_endpoint

    private = Path(f"/tmp/dictated-own-{os.getpid()}")
    private.mkdir(mode=0o700)
    try:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(private / "events"))
            check_endpoint(f"ipc://{private}/events")  # ours: accepted
            os.chown(private / "events", NOBODY, NOBODY)
            with pytest.raises(UnsafeSocketDir, match=f"refusing socket {private}/events: .*65534"):
                check_endpoint(f"ipc://{private}/events")
    finally:
        shutil.rmtree(private)


def test_clients_refuse_a_directory_of_ours_that_others_can_enter():
    from dictated.socket_dir import UnsafeSocketDir, check_endpoint

    shared = Path(f"/tmp/dictated-open-{os.getpid()}")
    shared.mkdir()
    shared.chmod(0o755)
    try:
        with pytest.raises(UnsafeSocketDir, match=f"mode 0755.*chmod 700 {shared}"):
            check_endpoint(f"ipc://{shared}/control")
    finally:
        shared.rmdir()


@needs_other_account
def test_the_daemon_refuses_a_symlink_of_another_account_and_does_not_chmod_its_target(
    isolated_env,
):
    """A symlink owned by uid 65534 pointing at a directory of ours: the daemon's old check
    followed it, found our directory, and chmod'ed it; now it is refused, the target untouched."""
    target = Path(f"/tmp/dictated-target-{os.getpid()}")
    link = Path(f"/tmp/dictated-link-{os.getpid()}")
    target.mkdir()
    target.chmod(0o755)
    subprocess.run(as_nobody("ln", "-s", str(target), str(link)), check=True)
    try:
        assert link.lstat().st_uid == NOBODY and stat.S_ISLNK(link.lstat().st_mode)
        try:
            paths.ensure_private_dir(link)
            refusal = "accepted"
        except ConfigError as exc:
            refusal = str(exc)
        assert stat.S_IMODE(target.stat().st_mode) == 0o755  # not chmod'ed through the link
        assert f"refusing socket directory {link}: it is a symbolic link" in refusal
        # and the real daemon says so in one line, exit 2, before touching anything
        env = {**isolated_env, "DICTATED_RUNTIME_DIR": str(link)}
        done = subprocess.run(
            [sys.executable, "-m", "dictated", "run", "--source", "file:/nonexistent.wav"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "symbolic link" in done.stderr and "Traceback" not in done.stderr
        assert stat.S_IMODE(target.stat().st_mode) == 0o755
    finally:
        link.unlink()
        target.rmdir()


def test_the_daemon_still_makes_its_own_open_directory_private(tmp_path):
    own = tmp_path / "run"
    own.mkdir(mode=0o755)
    own.chmod(0o755)
    assert stat.S_IMODE(paths.ensure_private_dir(own).stat().st_mode) == 0o700


def test_macos_prefers_a_private_directory_under_the_home(monkeypatch, tmp_path):
    monkeypatch.delenv("DICTATED_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", "/Users/ada")
    assert protocol.default_runtime_dir(platform="darwin") == "/Users/ada/.dictated/run"
    long_home = "/Users/" + "a" * 90  # ~/.dictated/run/control would pass macOS's 103 bytes
    monkeypatch.setenv("HOME", long_home)
    assert protocol.default_runtime_dir(platform="darwin") == f"/tmp/dictated-{os.getuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # Linux keeps XDG_RUNTIME_DIR
    assert protocol.default_runtime_dir(platform="linux") == str(tmp_path / "dictated")
