"""The check results, the context they share, and the order they run in."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, load_config
from ..errors import DictatedError

log = logging.getLogger(__name__)

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass(frozen=True)
class CheckResult:
    """One line of the report. `fix` says what to do; only FAIL makes the doctor exit non-zero."""

    name: str
    status: str  # ok | warn | fail | skip
    summary: str
    fix: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "fix": self.fix,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class DoctorContext:
    """What the checks look at: the effective config and, once probed, the running daemon."""

    config: Config
    config_path: Path | None = None  # --config, if given
    daemon: Mapping[str, Any] | None = None  # the running daemon's status reply
    mic_seconds: float = 0.5  # how much audio the microphone check records


def load_context(config_path: Path | None, mic_seconds: float) -> tuple[DoctorContext, CheckResult]:
    """The context and the config check; a bad config is reported and the defaults are used."""
    from .. import paths

    try:
        config = load_config(config_path)
    except DictatedError as exc:
        result = CheckResult(
            "config",
            FAIL,
            str(exc),
            fix="fix the named key (`dictated config` prints the effective values); "
            "the checks below use the defaults",
        )
        return DoctorContext(Config(), config_path, mic_seconds=mic_seconds), result
    where = config.source_file or f"defaults (no {paths.config_file()})"
    result = CheckResult("config", OK, str(where), details={"file": str(config.source_file or "")})
    return DoctorContext(config, config_path, mic_seconds=mic_seconds), result


Check = Callable[[DoctorContext], Iterable[CheckResult]]


def run_checks(config_path: Path | None = None, mic_seconds: float = 0.5) -> list[CheckResult]:
    """Every check, in the order a user would fix things: config, audio, engine, sockets, daemon, service."""
    from . import audio, engine, runtime, service

    context, config_result = load_context(config_path, mic_seconds)
    context = runtime.with_daemon(context)
    results = [config_result]
    checks: tuple[Check, ...] = (
        audio.check_audio,
        engine.check_engine,
        runtime.check_socket_dir,
        runtime.check_daemon,
        service.check_service,
    )
    for check in checks:
        try:
            results.extend(check(context))
        except Exception as exc:  # a check's own bug must not hide the other checks
            log.debug("check %s crashed", check.__name__, exc_info=True)
            results.append(CheckResult(check.__name__.removeprefix("check_"), FAIL, repr(exc)))
    return results


def broken(results: Iterable[CheckResult]) -> bool:
    return any(r.status == FAIL for r in results)
