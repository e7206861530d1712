"""`dictated service install|uninstall|status|restart|print|logs`: the CLI over service managers.

Exit codes: 0 done (for `status`: running), 2 no such manager on this machine or a bad config,
3 `status` of a service that is not running (the LSB convention systemctl follows), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from . import MANAGER_NAMES, ServiceStatus, get_manager, service_spec

NOT_RUNNING = 3
#: after install/restart, how long to wait for the service's daemon to answer on its control socket
START_WAIT_S = 15.0


def register(sub: argparse._SubParsersAction) -> None:
    service = sub.add_parser(
        "service",
        help="run the daemon as a login service (launchd, systemd)",
        description="Install the daemon as a service that starts at login and restarts after a crash.",
    )
    actions = service.add_subparsers(dest="service_action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, func) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text)
        p.add_argument(
            "--manager",
            choices=MANAGER_NAMES,
            help="service manager (default: launchd on macOS, systemd on Linux)",
        )
        p.set_defaults(func=func)
        return p

    for name, help_text, func in (
        ("install", "install (or update) and start the service", cmd_install),
        ("print", "print the unit file install would write; touches nothing", cmd_print),
    ):
        p = action(name, help_text, func)
        p.add_argument("--config", type=Path, help="config file the service reads (pinned)")
    action("uninstall", "stop the service and remove it", cmd_uninstall)
    action("restart", "restart the running service", cmd_restart)
    status = action("status", "what the service manager says about the service", cmd_status)
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.add_argument("--verbose", "-v", action="store_true", help="the manager's full report")
    logs = action("logs", "follow the service's log", cmd_logs)
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines of history (default 50)")
    logs.add_argument("--no-follow", action="store_true", help="print and exit")


def _spec(args: argparse.Namespace):
    from ..config import load_config

    # a bad config fails here (exit 2), not in a restart loop later
    config = load_config(args.config)
    return service_spec(args.config, linger_s=config.transport.linger_s)


def cmd_print(args: argparse.Namespace) -> int:
    sys.stdout.write(get_manager(args.manager).render(_spec(args)))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    manager = get_manager(args.manager)
    spec = _spec(args)
    manager.require()
    before = manager.status()
    _warn_about_other_daemon(args.config, before.pid)
    manager.install(spec)
    replaced = "updated" if before.installed else "installed"
    print(f"{replaced} {manager.unit_path} ({manager.name})")
    print(f"  runs: {shlex.join(spec.program)}")
    status, daemon = _wait_started(manager, args.config)
    print(f"  {_headline(status)}")
    if daemon:
        print(f"  daemon: {daemon.get('state')} (`dictated status`)")
    if sys.platform == "darwin" and manager.name == "launchd":
        print(
            "  macOS asks for microphone permission for "
            f"{os.path.realpath(spec.interpreter)}; if transcripts stay empty, allow it in "
            "System Settings › Privacy & Security › Microphone (see `dictated doctor`)"
        )
    if not status.running:
        print(_not_running(status), file=sys.stderr)
        return 1
    if not daemon:
        print("  its daemon has not answered yet (still loading?): `dictated service status`")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    manager = get_manager(args.manager)
    if manager.uninstall():
        print(f"stopped and removed {manager.unit_path} ({manager.name})")
    else:
        print(f"not installed: no {manager.unit_path} ({manager.name})")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    manager = get_manager(args.manager)
    manager.restart()
    status, _ = _wait_started(manager, _pinned_config(manager.installed_program()))
    print(_headline(status))
    if not status.running:
        print(_not_running(status), file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = get_manager(args.manager).status()
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(_headline(status))
        print(f"  unit: {status.unit_path}{'' if status.installed else ' (absent)'}")
        if status.program:
            print(f"  runs: {shlex.join(status.program)}")
            if not os.path.exists(status.program[0]):
                print(f"  ✗ {status.program[0]} no longer exists: run `dictated service install`")
        if status.last_exit or status.restarts:
            print(f"  last exit: {status.last_exit or '-'}; restarts: {status.restarts or 0}")
        if args.verbose and status.detail:
            print(status.detail)
    return 0 if status.running else NOT_RUNNING


def cmd_logs(args: argparse.Namespace) -> int:
    manager = get_manager(args.manager)
    command = manager.logs_command(args.lines, follow=not args.no_follow)
    if manager.name == "launchd" and not any(a.startswith("/") for a in command):
        from .launchd import log_dir

        print(f"no service log yet in {log_dir()}/")
        return 1
    try:
        return subprocess.run(command, check=False).returncode
    except FileNotFoundError:
        print(f"dictated: {command[0]} is not installed", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _headline(status: ServiceStatus) -> str:
    if not status.installed and not status.loaded:
        return f"dictated service ({status.manager}): not installed"
    pid = f", pid {status.pid}" if status.pid else ""
    return f"dictated service ({status.manager}): {status.state}{pid}"


def _pinned_config(program: tuple[str, ...]) -> Path | None:
    """The `--config FILE` an installed unit runs with (its socket directory may differ)."""
    for flag, value in zip(program, program[1:], strict=False):
        if flag == "--config":
            return Path(value)
    return None


def _not_running(status: ServiceStatus) -> str:
    last = f" (last {status.last_exit})" if status.last_exit else ""
    return f"  it is not running{last}: `dictated service logs` shows why"


def _wait_started(manager, config: Path | None) -> tuple[ServiceStatus, dict | None]:
    """Until the service's own daemon is ready, the service stops running, or START_WAIT_S pass.

    A manager reports a service running as soon as it has started the process, so "running" alone
    would also greet a daemon that exits a second later (no microphone, a missing model).
    """
    from ..doctor.runtime import probe_daemon

    started = time.monotonic()
    while True:
        status = manager.status()
        reply = probe_daemon(config) if status.running else None
        daemon = dict(reply) if reply and reply.get("pid") == status.pid else None
        if daemon and daemon.get("state") in ("ready", "paused"):
            return status, daemon
        elapsed = time.monotonic() - started
        if elapsed > START_WAIT_S or (not status.running and elapsed > 1.0):
            return status, daemon  # still warming up (a first CoreML start compiles for minutes)
        time.sleep(0.3)


def _warn_about_other_daemon(config: Path | None, service_pid: int | None) -> None:
    """A daemon started by hand holds the sockets: the service's would refuse to start."""
    from ..doctor.runtime import probe_daemon

    reply = probe_daemon(config)
    pid = reply.get("pid") if reply else None
    if pid and pid != service_pid:
        print(
            f"warning: a dictated daemon is already running outside the service (pid {pid}); "
            "the service cannot start until it stops",
            file=sys.stderr,
        )
