"""systemd user service: ~/.config/systemd/user/dictated.service, driven with `systemctl --user`.

Restart=on-failure brings the daemon back after a crash (exit 1; a lost microphone no longer ends
it: the daemon waits for the device itself) but not after a clean stop (exit 0), and never after
exit 2 (a bad config, a missing engine or model), which a restart cannot fix. The unit is
sandboxed (dictated.service.sandbox says what stays open and why). `systemctl --user reload dictated`
sends SIGHUP: the daemon reads its config file again.
The log goes to the journal (the daemon logs to stderr; colour only on a terminal).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from . import sandbox
from .base import ServiceManager, ServiceStatus, write_atomically
from .spec import ServiceSpec

UNIT = "dictated.service"
RESTART_SEC = 5  # between a crash and the next start
#: a daemon that dies this often this quickly stops being restarted (and says so in `status`)
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL_S = 120
CONFIG_ERROR_EXIT = 2  # the CLI's exit code for what restarting will not fix (config, model)


def _quote_arg(arg: str, command: bool = False) -> str:
    """One ExecStart argument, taken literally: specifiers (%) always, variables ($) except in
    the command itself, which systemd does not expand (there "$$" would stay two dollars)."""
    arg = arg.replace("%", "%%")
    if not command:
        arg = arg.replace("$", "$$")
    if arg and not any(c in arg for c in " \t\n\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_path(path: str) -> str:
    """A path in a space-separated list (ReadWritePaths=), taken literally: no specifiers."""
    return _quote_arg(path, command=True)


def _prepare_dirs(dirs: tuple[str, ...]) -> list[str]:
    """Create the writable directories before each start, outside the sandbox ("+"), since
    inside it a missing one could not be made (a socket directory in a /tmp emptied at boot).
    Failure is ignored ("-"): the daemon then names the directory it cannot use."""
    if not dirs:
        return []
    return ["ExecStartPre=-+mkdir -p " + " ".join(_quote_arg(d) for d in dirs)]


def _sandbox(spec: ServiceSpec) -> list[str]:
    """The hardening directives (dictated.service.sandbox says what is left open and why)."""
    used = [*spec.writable_dirs, *spec.program, *spec.environment.values()]
    return [
        *sandbox.hardening(spec.user_namespaces),
        *(f"ReadWritePaths=-{_quote_path(d)}" for d in spec.writable_dirs),
        f"RuntimeDirectory={sandbox.RUNTIME_DIRECTORY}",
        "RuntimeDirectoryMode=0700",
        "RuntimeDirectoryPreserve=yes",  # sockets stay where clients look across restarts
        f"PrivateTmp={'no' if sandbox.needs_shared_tmp(used) else 'yes'}",
    ]


def _quote_assignment(key: str, value: str) -> str:
    text = f"{key}={value}".replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


class SystemdUserManager(ServiceManager):
    name = "systemd"
    tool = "systemctl"

    @property
    def unit_path(self) -> Path:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "systemd" / "user" / UNIT

    def render(self, spec: ServiceSpec) -> str:
        environment = " ".join(_quote_assignment(k, v) for k, v in spec.environment.items())
        lines = [
            "# Installed by `dictated service install`; re-run it to update, `dictated service",
            "# uninstall` to remove. Details: docs/service.md",
            "[Unit]",
            "Description=dictated: local streaming dictation daemon",
            # ordering only: start after the user's sound server when it is a systemd unit
            "After=pipewire.service pipewire-pulse.service pulseaudio.service wireplumber.service",
            f"StartLimitIntervalSec={START_LIMIT_INTERVAL_S}",
            f"StartLimitBurst={START_LIMIT_BURST}",
            "",
            "[Service]",
            "Type=exec",
            *_prepare_dirs(spec.writable_dirs),
            "ExecStart="
            + " ".join(_quote_arg(a, command=i == 0) for i, a in enumerate(spec.program)),
            "ExecReload=/bin/kill -HUP $MAINPID",  # SIGHUP: the daemon reloads its config
            f"Environment={environment}",
            "WorkingDirectory=~",
            "UMask=0077",  # journal, saved audio and sockets are the user's alone
            "Restart=on-failure",
            f"RestartSec={RESTART_SEC}",
            f"RestartPreventExitStatus={CONFIG_ERROR_EXIT}",
            "KillSignal=SIGTERM",
            # SIGTERM to the daemon only; it finishes the last utterance within the drain bound
            "KillMode=mixed",
            f"TimeoutStopSec={spec.stop_timeout_s}",
            "SyslogIdentifier=dictated",
            f"MemoryMax={sandbox.MEMORY_MAX}",
            *_sandbox(spec),
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
        return "\n".join(lines)

    def unavailable_reason(self) -> str | None:
        if self.tool_path() is None:
            return (
                "systemd is not available on this machine (no systemctl on PATH); "
                "run `dictated run` from your session's autostart instead"
            )
        proc = self.run_tool(
            "systemctl", "--user", "show", "--property=Version", "--value", check=False
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            answer = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
            return (
                f"systemd's user manager is not reachable (systemctl --user: {answer}); "
                "log in to a systemd session, or keep one for your user with "
                "`loginctl enable-linger $USER`, or run `dictated run` yourself"
            )
        return None

    def _systemctl(self, *args: str, check: bool = True):
        return self.run_tool("systemctl", "--user", *args, check=check)

    def install(self, spec: ServiceSpec) -> None:
        self.require()
        write_atomically(self.unit_path, self.render(spec))
        self._systemctl("daemon-reload")
        self._systemctl("enable", UNIT)
        self._systemctl("reset-failed", UNIT, check=False)  # a start limit hit by an older unit
        # restart, not start: an already running daemon must pick up the new unit
        self._systemctl("restart", UNIT)

    def uninstall(self) -> bool:
        self.require()
        present = self.unit_path.exists()
        if not present and not self.status().loaded:
            return False
        self._systemctl("disable", "--now", UNIT, check=present)
        self.unit_path.unlink(missing_ok=True)
        self._systemctl("daemon-reload")
        self._systemctl("reset-failed", UNIT, check=False)
        return True

    def restart(self) -> None:
        self.require()
        self._systemctl("restart", UNIT)

    def status(self) -> ServiceStatus:
        self.require()
        props = self._show(
            "LoadState",
            "ActiveState",
            "SubState",
            "MainPID",
            "ExecMainCode",
            "ExecMainStatus",
            "NRestarts",
            "Result",
        )
        detail = self._systemctl("status", UNIT, "--no-pager", "--lines=0", check=False).stdout
        pid = int(props.get("MainPID") or 0) or None
        loaded = props.get("LoadState") == "loaded"
        return ServiceStatus(
            manager=self.name,
            unit_path=self.unit_path,
            installed=self.unit_path.exists(),
            loaded=loaded,
            running=props.get("ActiveState") == "active",
            state=f"{props.get('ActiveState', 'unknown')} ({props.get('SubState', '?')})"
            if loaded
            else "not loaded",
            pid=pid,
            last_exit=_exit_description(props),
            restarts=int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None,
            program=self.installed_program(),
            detail=detail.strip(),
        )

    def _show(self, *properties: str) -> dict[str, str]:
        out = self._systemctl("show", UNIT, "--property=" + ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def logs_command(self, lines: int, follow: bool) -> list[str]:
        command = ["journalctl", "--user", "-u", UNIT, "-n", str(lines), "--no-pager"]
        return [*command, "-f"] if follow else command

    def installed_program(self) -> tuple[str, ...]:
        try:
            text = self.unit_path.read_text(encoding="utf-8")
        except OSError:
            return ()
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                args = [a.replace("%%", "%") for a in shlex.split(line.removeprefix("ExecStart="))]
                return tuple(args[:1] + [a.replace("$$", "$") for a in args[1:]])
        return ()


def _exit_description(props: dict[str, str]) -> str | None:
    """ExecMainCode is a CLD_* code: 1 exited (status = exit code), 2/3 killed/dumped (signal)."""
    code, status = props.get("ExecMainCode", "0"), props.get("ExecMainStatus", "")
    if code == "1":
        return f"exit code {status}"
    if code in ("2", "3") and status.isdigit():
        import signal

        try:
            return f"killed by {signal.Signals(int(status)).name}"
        except ValueError:
            return f"killed by signal {status}"
    return None
