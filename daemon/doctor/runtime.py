"""Socket directory and running-daemon checks, and the control-socket probe others reuse.

The socket check binds a real Unix socket in the directory, as the daemon will: that is the one
test that catches every way it can fail (permissions, a read-only filesystem, a path too long).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import paths, socket_dir
from ..errors import ConfigError
from ..protocol import CONTROL_SOCKET, EVENTS_SOCKET
from .result import FAIL, OK, WARN, CheckResult, DoctorContext

PROBE_TIMEOUT_S = 1.5


def control_endpoint(config_path: Path | None = None, config=None) -> str:
    """The control endpoint the daemon for this config listens on (ConfigError if it cannot)."""
    if config is None:
        from ..config import load_config

        config = load_config(config_path)
    return paths.ipc_endpoint(config.transport.socket_dir(), CONTROL_SOCKET)


def probe_daemon(config_path: Path | None = None, config=None) -> Mapping[str, Any] | None:
    """The running daemon's `status` reply, or None when none answers (or it cannot be trusted:
    check_socket_dir says why)."""
    from ..clients.control import CommandFailed, ControlClient, DaemonUnavailable

    try:
        endpoint = control_endpoint(config_path, config)
        return ControlClient(endpoint, timeout_s=PROBE_TIMEOUT_S).request("status")
    except (ConfigError, DaemonUnavailable, CommandFailed):
        return None


def with_daemon(context: DoctorContext) -> DoctorContext:
    return dataclasses.replace(context, daemon=probe_daemon(config=context.config))


def check_socket_dir(context: DoctorContext) -> Iterator[CheckResult]:
    directory = context.config.transport.socket_dir()
    name = "socket directory"
    try:
        for socket_name in (EVENTS_SOCKET, CONTROL_SOCKET):
            paths.ipc_endpoint(directory, socket_name)
    except ConfigError as exc:
        yield CheckResult(name, FAIL, f"{directory}: path too long", fix=str(exc))
        return
    try:  # lstat: a symlink is refused (by the daemon and every client), never followed
        reason = socket_dir.problem(os.lstat(directory), directory=True)
    except FileNotFoundError:
        reason = None
    if reason and not reason.startswith("other accounts"):
        yield CheckResult(
            name,
            FAIL,
            f"{directory}: {reason}; the daemon and the clients refuse it",
            fix=_choose_dir_fix(directory),
        )
        return
    problem = _bind_problem(directory)
    if problem is not None:
        yield CheckResult(
            name,
            FAIL,
            f"cannot create sockets in {directory}: {problem}",
            fix=_choose_dir_fix(directory),
        )
        return
    mode = stat.S_IMODE(os.lstat(directory).st_mode) if directory.exists() else 0o700
    if mode & 0o077:
        yield CheckResult(
            name,
            WARN,
            f"{directory} has mode {mode:04o}: the clients refuse it until the daemon makes it "
            "0700 (private) when it starts",
            fix=f"chmod 700 {directory}",
        )
        return
    yield CheckResult(name, OK, f"{directory} (private, sockets can be created)")


def _bind_problem(directory: Path) -> str | None:
    """Bind and remove a Unix socket in `directory` (created 0700 like the daemon does, if absent)."""
    created = not directory.exists()
    probe = directory / f".doctor-{os.getpid()}"
    try:
        if created:
            paths.ensure_private_dir(directory)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(probe))
        probe.unlink()
    except (OSError, ConfigError) as exc:
        return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    finally:
        if created:  # leave no trace: the daemon creates it when it starts
            with contextlib.suppress(OSError):
                directory.rmdir()
    return None


def _choose_dir_fix(directory: Path) -> str:
    return (
        f"remove {directory} or make it a directory you own and can write (mode 0700), or set "
        "transport.runtime_dir / DICTATED_RUNTIME_DIR to a short private one such as "
        f"/tmp/dictated-{os.getuid()}"
    )


def check_daemon(context: DoctorContext) -> Iterator[CheckResult]:
    status = context.daemon
    if status is None:
        try:
            endpoint = control_endpoint(config=context.config)
        except ConfigError:
            return  # the socket check above already says why
        yield from _not_answering(endpoint)
        return
    state = status.get("state", "?")
    parts = [f"pid {status.get('pid', '?')}", f"state {state}"]
    parts += [f"{k} {status[k]}" for k in ("engine", "source") if status.get(k)]
    if isinstance(status.get("uptime_s"), int | float):
        from ..status_view import format_duration

        parts.append(f"up {format_duration(status['uptime_s'])}")
    healthy = state in ("ready", "paused", "warming", "starting")
    yield CheckResult(
        "daemon",
        OK if healthy else WARN,
        "running: " + ", ".join(parts),
        fix=None if healthy else "see its log (`dictated service logs`)",
        details=dict(status),
    )


def _not_answering(endpoint: str) -> Iterator[CheckResult]:
    """No status reply: tell a refused directory, no daemon, a stale socket and a hung daemon
    apart (a Unix connect is refused at once when nobody listens on a leftover socket file)."""
    from ..socket_dir import probe_listener

    path = endpoint.removeprefix("ipc://")
    try:
        socket_dir.check_endpoint(endpoint)
    except socket_dir.UnsafeSocketDir as exc:
        yield CheckResult("daemon", WARN, "not asked: the clients refuse its sockets", fix=str(exc))
        return
    listening = probe_listener(path, PROBE_TIMEOUT_S) if path != endpoint else None
    if listening:
        yield CheckResult(
            "daemon",
            WARN,
            f"a daemon listens on {endpoint} but did not answer in {PROBE_TIMEOUT_S:g} s: it hangs",
            fix="`dictated service logs` or the daemon's terminal shows why; "
            "`dictated service restart` (or stop it and `dictated run`) starts a fresh one",
        )
        return
    stale = f" (stale socket left by a previous run: {path})" if listening is False else ""
    yield CheckResult(
        "daemon",
        WARN,
        f"not running{stale}",
        fix="start it with `dictated run` (which replaces a stale socket), or at every login "
        "with `dictated service install`",
    )
