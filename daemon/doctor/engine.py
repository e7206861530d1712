"""Engine check: the configured engine (or what `auto` picks) is installed and has its model files.

Uses the engines' own cheap `unavailable_reason` (no model is loaded: a CoreML first load compiles
for minutes), and the engine class's languages for the configured language.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..engines.registry import engine_class, resolve_engine_name
from ..errors import DictatedError
from .result import FAIL, OK, WARN, CheckResult, DoctorContext


def check_engine(context: DoctorContext) -> Iterator[CheckResult]:
    choice, options = context.config.engine, context.config.engine_options
    try:
        name = resolve_engine_name(choice.name, options)
        cls = engine_class(name)
        reason = cls.unavailable_reason(options)
    except (ImportError, DictatedError) as exc:
        yield CheckResult("engine", FAIL, f"engine {choice.name!r} cannot be used: {exc}")
        return
    picked = f"auto → {name}" if choice.name == "auto" else name
    model = f", model {options.model}" if options.model else ""
    if reason is not None:
        yield CheckResult(
            "engine",
            FAIL,
            f"{picked}{model}: {reason}",
            fix="install or download what is named above, set engine.model to a model that "
            "exists, or choose another engine (engine.name, --engine)",
            details={"engine": name, "model": options.model},
        )
        return
    yield CheckResult(
        "engine", OK, f"{picked}{model}", details={"engine": name, "model": options.model}
    )
    language = choice.language
    if language not in cls.languages:
        # a custom Whisper model may be multilingual; only the loaded model knows
        custom_whisper = name == "whisper" and options.model is not None
        yield CheckResult(
            "language",
            WARN if custom_whisper else FAIL,
            f"{name} does not list language {language!r} (it has: {', '.join(cls.languages)})",
            fix="set engine.language (or --language) to one of those, or choose an engine "
            "that speaks it",
        )
