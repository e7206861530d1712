"""Installed-service check: the unit exists, runs an interpreter that still exists, and is running."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..errors import DictatedError
from .result import FAIL, OK, SKIP, WARN, CheckResult, DoctorContext

#: how the managers describe a last exit that was not a failure
CLEAN_EXITS = (None, "exit code 0", "0", "(never exited)")


def check_service(context: DoctorContext) -> Iterator[CheckResult]:
    from ..service import get_manager, service_spec

    name = "service"
    try:
        manager = get_manager()
    except DictatedError as exc:
        yield CheckResult(name, SKIP, str(exc))
        return
    if not manager.unit_path.exists():
        yield CheckResult(
            name,
            SKIP,
            f"not installed ({manager.name}); optional: `dictated service install` starts "
            "the daemon at login",
        )
        return
    program = manager.installed_program()
    if program and not os.path.exists(program[0]):
        yield CheckResult(
            name,
            FAIL,
            f"{manager.unit_path} runs {program[0]}, which no longer exists",
            fix="run `dictated service install` from the environment dictated is installed in",
        )
        return
    reason = manager.unavailable_reason()
    if reason is not None:
        yield CheckResult(name, WARN, f"{manager.unit_path} is installed, but {reason}")
        return
    status = manager.status()
    if not status.running:
        last = f", last {status.last_exit}" if status.last_exit else ""
        yield CheckResult(
            name,
            FAIL,
            f"installed ({manager.name}) but {status.state}{last}",
            fix="`dictated service logs` shows why; then `dictated service restart`",
            details=status.to_json(),
        )
        return
    summary = f"{manager.name}: {status.state}, pid {status.pid}"
    if status.restarts and status.last_exit not in CLEAN_EXITS:
        yield CheckResult(
            name,
            WARN,
            f"{summary}, but restarted {status.restarts} time(s) after failing ({status.last_exit})",
            fix="`dictated service logs` shows why it keeps failing",
            details=status.to_json(),
        )
    else:
        yield CheckResult(name, OK, summary, details=status.to_json())
    try:
        spec = service_spec(context.config_path, linger_s=context.config.transport.linger_s)
        current = manager.render(spec)
    except DictatedError:
        return
    if manager.unit_path.read_text(encoding="utf-8") != current:
        yield CheckResult(
            "service unit",
            WARN,
            f"{manager.unit_path} differs from what this environment would install "
            "(another environment, an older dictated, or --config)",
            fix="`dictated service install` updates it in place (`dictated service print` shows it)",
        )
