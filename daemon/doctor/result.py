"""What a doctor check returns, and the context all checks share (no check imports another)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config

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


Check = Callable[[DoctorContext], Iterable[CheckResult]]
