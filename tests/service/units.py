"""Helpers for the service tests: the CLI in a subprocess, the managers' own checkers, and what
the kernel says about a sandboxed daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from dictated.service import sandbox
from tests.conftest import REPO

VENV_BIN = os.path.dirname(sys.executable)
#: where outside_tmp() records the directory it made, for the cleanup fixture in conftest.py
OUTSIDE_LINK = "outside"


def dictated(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dictated", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def verify(unit_dir: Path, text: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    unit = unit_dir / "dictated.service"
    unit.write_text(text)
    runtime = unit_dir / "rt"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        ["systemd-analyze", "verify", "--user", str(unit)],
        env={**env, "XDG_RUNTIME_DIR": str(runtime)},  # --user needs one; no manager runs
        capture_output=True,
        text=True,
        timeout=60,
    )


def outside_tmp(tmp_path: Path) -> Path:
    """A fresh directory under /home when we may write there (as root, like this test), else
    tmp_path (the unit then keeps the shared /tmp: PrivateTmp=no)."""
    if not os.access("/home", os.W_OK):
        return tmp_path
    base = Path(tempfile.mkdtemp(prefix="dt-svc-", dir="/home"))
    (tmp_path / OUTSIDE_LINK).symlink_to(base)  # removed by conftest.remove_outside_tmp
    return base


def assert_sandboxed(pid: int, unit_path: Path, journal: Path, base: Path) -> None:
    """What the kernel says about the running daemon: the unit's sandbox really applies."""
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2", status
    assert status["Umask"].strip() == "0077" and status["CapEff"].strip() == "0" * 16, status
    mounts = {}  # mount point -> options, as the daemon sees them (the last mount wins)
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")

    def options(path: Path) -> list[str]:  # of the mount the path is on
        return mounts[max((m for m in mounts if path.is_relative_to(m)), key=len)]

    assert "ro" in options(Path("/usr")) and "ro" in options(base / "home"), mounts
    assert "rw" in options(journal.parent), mounts  # ReadWritePaths= of the data dir
    assert "ro" in options(journal.parent.parent), mounts  # and nothing around it
    assert journal.exists() and (journal.stat().st_mode & 0o077) == 0
    unit = unit_path.read_text().splitlines()
    # the unit keeps the shared /tmp only when a path it needs is in it: here the environment
    # itself may be (a checkout under /tmp, as CI's fresh clone can be)
    environment_in_tmp = sandbox.needs_shared_tmp([sys.prefix, str(REPO)])
    if str(base).startswith("/home/") and not environment_in_tmp:
        assert "PrivateTmp=yes" in unit
    if "PrivateTmp=yes" in unit:
        marker = Path(tempfile.mkstemp(prefix="dt-visible-", dir="/tmp")[1])
        try:
            assert not Path(f"/proc/{pid}/root{marker}").exists()  # its own /tmp
        finally:
            marker.unlink()
