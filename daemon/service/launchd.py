"""launchd LaunchAgent: ~/Library/LaunchAgents/org.dictated.daemon.plist in the user's GUI domain.

Rendered from the plist template in the repository's `launchd/` folder (installed as the
`dictated.launchd` package data) with plistlib, so the file is always well-formed. Loaded with
`launchctl bootstrap gui/$UID`, removed with `bootout`, restarted with `kickstart -k`; the modern
verbs, because `load`/`unload` are deprecated and report failures only on stdout.

The GUI domain matters: only an agent in the user's login session may use the microphone, and
macOS asks for microphone permission for the interpreter launchd starts (docs/service.md).
"""

from __future__ import annotations

import os
import plistlib
import re
import sys
import time
from importlib import resources
from pathlib import Path

from ..errors import ServiceError
from .base import ServiceManager, ServiceStatus, write_atomically
from .spec import ServiceSpec

LABEL = "org.dictated.daemon"
TEMPLATE = f"{LABEL}.plist"
BOOTSTRAP_ATTEMPTS = 5  # bootstrap right after bootout can fail with "5: Input/output error"
POLL_S = 0.2


def log_dir(home: Path | None = None) -> Path:
    return (home or Path.home()) / "Library" / "Logs" / "dictated"


def load_template() -> dict:
    """The template plist as a dict (a fresh copy each call)."""
    data = resources.files("dictated.launchd").joinpath(TEMPLATE).read_bytes()
    return plistlib.loads(data)


class LaunchdManager(ServiceManager):
    name = "launchd"
    tool = "launchctl"

    @property
    def unit_path(self) -> Path:
        return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    @property
    def domain(self) -> str:
        return f"gui/{os.getuid()}"

    @property
    def target(self) -> str:
        return f"{self.domain}/{LABEL}"

    def log_files(self, home: Path | None = None) -> tuple[Path, Path]:
        logs = log_dir(home)
        return logs / "dictated.out.log", logs / "dictated.err.log"

    def render(self, spec: ServiceSpec) -> str:
        plist = load_template()
        out, err = self.log_files(spec.home)
        environment = {"DICTATED_RUNTIME_DIR": spec.runtime_dir, **spec.environment}
        plist.update(
            Label=LABEL,
            ProgramArguments=list(spec.program),
            ExitTimeOut=int(spec.stop_timeout_s),
            WorkingDirectory=str(spec.home),
            StandardOutPath=str(out),
            StandardErrorPath=str(err),
            EnvironmentVariables={k: v for k, v in environment.items() if v},
        )
        return plistlib.dumps(plist, sort_keys=False).decode("utf-8")

    def unavailable_reason(self) -> str | None:
        if sys.platform != "darwin" or self.tool_path() is None:
            return (
                "launchd is macOS's service manager and is not available on this machine "
                "(no launchctl); on Linux use --manager systemd"
            )
        proc = self.run_tool("launchctl", "print", self.domain, check=False)
        if proc.returncode != 0:
            answer = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no answer"]
            return (
                f"there is no GUI login session for this user ({self.domain}: {answer[0]}); "
                "LaunchAgents that use the microphone run in the login session: log in at the "
                "Mac's screen (not only over ssh) and run this again"
            )
        return None

    def _launchctl(self, *args: str, check: bool = True):
        return self.run_tool("launchctl", *args, check=check)

    def _loaded(self) -> bool:
        return self._launchctl("print", self.target, check=False).returncode == 0

    def _wait_unloaded(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._loaded():
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.target} is still loaded {timeout_s:.0f} s after bootout")
            time.sleep(POLL_S)

    def _bootout(self) -> None:
        """Unload (SIGTERM, then SIGKILL after ExitTimeOut) and wait until launchd forgets it."""
        self._launchctl("bootout", self.target, check=False)
        self._wait_unloaded(float(self._exit_timeout()) + 10)

    def _exit_timeout(self) -> int:
        try:
            return int(plistlib.loads(self.unit_path.read_bytes()).get("ExitTimeOut", 20))
        except (OSError, ValueError, plistlib.InvalidFileException):
            return 20  # launchd's default

    def install(self, spec: ServiceSpec) -> None:
        self.require()
        if self._loaded():
            self._bootout()  # an older agent: stop it before its file is replaced
        write_atomically(self.unit_path, self.render(spec))
        log_dir(spec.home).mkdir(parents=True, exist_ok=True)
        self._launchctl("enable", self.target)  # undo an earlier `launchctl disable`
        for attempt in range(BOOTSTRAP_ATTEMPTS):
            proc = self._launchctl("bootstrap", self.domain, str(self.unit_path), check=False)
            if proc.returncode == 0 or self._loaded():
                return
            time.sleep(0.5 * (attempt + 1))
        self._launchctl("bootstrap", self.domain, str(self.unit_path))  # raises with the reason

    def uninstall(self) -> bool:
        self.require()
        loaded, present = self._loaded(), self.unit_path.exists()
        if loaded:
            self._bootout()
        self.unit_path.unlink(missing_ok=True)
        return loaded or present

    def restart(self) -> None:
        self.require()
        if not self._loaded():
            raise ServiceError(f"{self.target} is not loaded; run `dictated service install`")
        self._launchctl("kickstart", "-k", self.target)

    def status(self) -> ServiceStatus:
        self.require()
        proc = self._launchctl("print", self.target, check=False)
        loaded = proc.returncode == 0
        fields = _print_fields(proc.stdout) if loaded else {}
        state = fields.get("state", "not loaded" if not loaded else "unknown")
        pid = fields.get("pid")
        return ServiceStatus(
            manager=self.name,
            unit_path=self.unit_path,
            installed=self.unit_path.exists(),
            loaded=loaded,
            running=state == "running",
            state=state,
            pid=int(pid) if pid and pid.isdigit() else None,
            last_exit=fields.get("last exit code") or fields.get("last exit reason"),
            restarts=int(fields["runs"]) - 1 if fields.get("runs", "").isdigit() else None,
            program=self.installed_program(),
            detail=proc.stdout.strip() if loaded else (proc.stderr or proc.stdout).strip(),
        )

    def logs_command(self, lines: int, follow: bool) -> list[str]:
        files = [str(p) for p in self.log_files() if follow or p.exists()]
        return ["tail", "-n", str(lines), *(["-F"] if follow else []), *files]

    def installed_program(self) -> tuple[str, ...]:
        try:
            plist = plistlib.loads(self.unit_path.read_bytes())
        except (OSError, ValueError, plistlib.InvalidFileException):
            return ()
        return tuple(str(a) for a in plist.get("ProgramArguments", ()))


_FIELD = re.compile(r"^\t(state|pid|last exit code|last exit reason|runs) = (.+)$")


def _print_fields(text: str) -> dict[str, str]:
    """The top-level `key = value` lines of `launchctl print` (one tab deep; nested blocks skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if (m := _FIELD.match(line)) and m.group(1) not in fields:
            fields[m.group(1)] = m.group(2).strip()
    return fields
