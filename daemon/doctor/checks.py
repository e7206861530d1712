"""The order the checks run in, and the config check that gives them their context.

The result and context types live in result.py, which the check modules import: this module
imports them, so they must not import it back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from ..config import Config, load_config
from ..errors import DictatedError
from .result import FAIL, OK, SKIP, WARN, CheckResult, DoctorContext

__all__ = ["FAIL", "OK", "SKIP", "WARN", "CheckResult", "DoctorContext", "broken", "run_checks"]

log = logging.getLogger(__name__)


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


def run_checks(config_path: Path | None = None, mic_seconds: float = 0.5) -> list[CheckResult]:
    """Every check, in the order a user would fix things: config, audio, engine, sockets, daemon,
    hotkey, service."""
    from . import audio, engine, hotkey, runtime, service
    from .result import Check

    context, config_result = load_context(config_path, mic_seconds)
    context = runtime.with_daemon(context)
    results = [config_result]
    checks: tuple[Check, ...] = (
        audio.check_audio,
        engine.check_engine,
        runtime.check_socket_dir,
        runtime.check_daemon,
        hotkey.check_hotkey,
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
