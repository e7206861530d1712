"""A private, real systemd user manager (`systemd --user`) for tests, isolated from the user's own.

It gets its own XDG_RUNTIME_DIR, so `systemctl --user` reaches it through
`$XDG_RUNTIME_DIR/systemd/private` (no D-Bus needed) and never touches a developer's real session;
services it starts inherit its environment (the test's isolated HOME/XDG dirs).

systemd refuses to run a user instance on a machine not booted with systemd (it checks
/run/systemd/system). Containers such as this project's CI are like that, so as root the manager
is started in a private mount namespace (`unshare -m`) with a tmpfs over /run/systemd holding that
marker and the inaccessible nodes PID 1 would have made (a root manager's sandboxing mounts them
over what it hides): only the manager's own view of the filesystem changes, nothing on the machine.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEMD = next(
    (p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.path.exists(p)), None
)
START_TIMEOUT_S = 20.0
#: what PID 1 creates at boot and a root manager's sandboxing (ProtectKernelLogs=, ...) mounts
#: over the paths it hides; the fake /run/systemd must hold them too
INACCESSIBLE_NODES = (
    "cd /run/systemd && mkdir -m 0755 inaccessible && cd inaccessible && mkdir -m 0 dir && "
    ": > reg && chmod 0 reg && mknod -m 0 chr c 0 0 && mknod -m 0 blk b 0 0 && mkfifo -m 0 fifo "
    f"&& {shlex.quote(sys.executable)} -c 'import os; os.mknod(\"sock\", 0o140000)' && cd /"
)


def unavailable_reason() -> str | None:
    if SYSTEMD is None or shutil.which("systemctl") is None:
        return "systemd is not installed (apt install systemd)"
    if not os.path.isdir("/run/systemd/system") and (
        os.geteuid() != 0 or shutil.which("unshare") is None
    ):
        return (
            "this machine was not booted with systemd, and faking that for a private "
            "`systemd --user` needs root (unshare -m)"
        )
    return None


class UserManager:
    """`with UserManager(env) as m:` runs systemd --user; m.env reaches it with systemctl --user."""

    def __init__(self, env: dict[str, str], runtime_parent: Path | str = "/tmp"):
        # outside /tmp for a unit with PrivateTmp=yes: its RuntimeDirectory= must stay visible
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="dt-sd-", dir=runtime_parent))
        os.chmod(self.runtime_dir, 0o700)
        self.env = {**env, "XDG_RUNTIME_DIR": str(self.runtime_dir)}
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.log_path = self.runtime_dir / "manager.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> UserManager:
        if os.path.isdir("/run/systemd/system"):
            command = [SYSTEMD, "--user"]
        else:
            command = [
                "unshare",
                "-m",
                "sh",
                "-c",
                "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && "
                f"{INACCESSIBLE_NODES} && exec {SYSTEMD} --user",
            ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__ via the process
        self.proc = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd --user exited: {self.log_path.read_text()[-2000:]}")
            if self.systemctl("show", "--property=Version", "--value").returncode == 0:
                return self
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("systemd --user did not answer within 20 s")

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemctl", "--user", *args], env=self.env, capture_output=True, text=True, timeout=90
        )

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, "--property=" + ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.systemctl("stop", "dictated.service")  # SIGTERM, waits for the daemon to finish
            self.proc.send_signal(signal.SIGTERM)  # the manager stops its units and exits
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
