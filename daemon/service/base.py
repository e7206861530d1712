"""The service-manager interface: render, install, uninstall, restart, status, logs.

Each manager drives its own command-line tool (launchctl, systemctl, journalctl) rather than a
library, so what `dictated service` does is exactly what a user could type, and every failure
carries the tool's own words.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import ServiceError, ServiceManagerUnavailable
from .spec import ServiceSpec

log = logging.getLogger(__name__)

TOOL_TIMEOUT_S = 30.0  # launchctl/systemctl answer in milliseconds; a hung one must not hang us


@dataclass(frozen=True)
class ServiceStatus:
    """What the manager says about the unit. `state` is the manager's own word (running, failed...)."""

    manager: str
    unit_path: Path
    installed: bool  # the unit file exists
    loaded: bool  # the manager knows the unit
    running: bool
    state: str
    pid: int | None = None
    last_exit: str | None = None  # the manager's account of the last exit (status code or signal)
    restarts: int | None = None
    program: tuple[str, ...] = ()  # what the installed unit runs, read back from the file
    detail: str = ""  # the manager's raw report, for `service status --verbose`

    def to_json(self) -> dict:
        return {
            "manager": self.manager,
            "unit_path": str(self.unit_path),
            "installed": self.installed,
            "loaded": self.loaded,
            "running": self.running,
            "state": self.state,
            "pid": self.pid,
            "last_exit": self.last_exit,
            "restarts": self.restarts,
            "program": list(self.program),
        }


class ServiceManager(ABC):
    """One service manager. Construction is cheap and touches nothing."""

    name: ClassVar[str]
    tool: ClassVar[str]  # the command-line tool whose absence means "not on this machine"

    @property
    @abstractmethod
    def unit_path(self) -> Path:
        """Where the unit file is installed."""

    @abstractmethod
    def render(self, spec: ServiceSpec) -> str:
        """The unit file's text for `spec` (pure: reads templates, writes nothing)."""

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None if the manager can be driven from here, else why not and what to do instead."""

    @abstractmethod
    def install(self, spec: ServiceSpec) -> None:
        """Write the unit (replacing an older one in place) and start it now and at every login."""

    @abstractmethod
    def uninstall(self) -> bool:
        """Stop the service and remove the unit; False when there was nothing installed."""

    @abstractmethod
    def restart(self) -> None:
        """Stop (SIGTERM, bounded by the stop timeout) and start again."""

    @abstractmethod
    def status(self) -> ServiceStatus:
        """The manager's view; works whether or not anything is installed."""

    @abstractmethod
    def logs_command(self, lines: int, follow: bool) -> list[str]:
        """The command that shows the service's log (run by the CLI in the foreground)."""

    @abstractmethod
    def installed_program(self) -> tuple[str, ...]:
        """The argv of the installed unit, read from its file; () when none is installed."""

    # -- shared helpers ----------------------------------------------------------------------

    def require(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise ServiceManagerUnavailable(reason)

    def run_tool(
        self, *args: str, check: bool = True, timeout: float = TOOL_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run `args` (args[0] is the tool); ServiceError with its output when it fails and `check`."""
        log.debug("running %s", " ".join(args))
        try:
            proc = subprocess.run(
                list(args), capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            raise ServiceManagerUnavailable(f"{args[0]} is not installed: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"`{' '.join(args)}` did not answer within {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            output = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
            raise ServiceError(
                f"`{' '.join(args)}` failed (exit {proc.returncode}): {' / '.join(output[-3:])}"
            )
        return proc

    def tool_path(self) -> str | None:
        return shutil.which(self.tool)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one rename, so a manager never reads half a unit file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
