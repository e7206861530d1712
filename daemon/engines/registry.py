"""Engines chosen by name from a small registry; modules imported only when chosen."""

from __future__ import annotations

import importlib
import logging
import sys

from ..errors import ConfigError
from .base import Engine, EngineOptions

log = logging.getLogger(__name__)

# name -> "module:Class", relative to this package. Order of AUTO_PREFERENCE is best-first.
_ENGINES: dict[str, str] = {
    "whisper": ".whisper:WhisperEngine",
    "cohere-torch": ".cohere.engine:CohereTorchEngine",
    "cohere-coreml": ".cohere.coreml.engine:CohereCoreMLEngine",
}
ENGINE_NAMES: tuple[str, ...] = ("auto", *_ENGINES)


def _auto_preference() -> tuple[str, ...]:
    if sys.platform == "darwin":
        return ("cohere-coreml", "cohere-torch", "whisper")
    return ("cohere-torch", "whisper")


def engine_class(name: str) -> type[Engine]:
    if name not in _ENGINES:
        raise ConfigError(
            f"engine: unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}"
        )
    module_name, _, attr = _ENGINES[name].partition(":")
    module = importlib.import_module(module_name, __package__)
    return getattr(module, attr)


def resolve_engine_name(name: str, options: EngineOptions) -> str:
    """Map `auto` to the best engine that is installed and has a model."""
    if name != "auto":
        engine_class(name)  # validates the name
        return name
    for candidate in _auto_preference():
        try:
            reason = engine_class(candidate).unavailable_reason(options)
        except ImportError as exc:  # engine module itself cannot import
            reason = str(exc)
        if reason is None:
            return candidate
        log.info("engine %s not available: %s", candidate, reason)
    return "whisper"


def create_engine(name: str, options: EngineOptions) -> Engine:
    return engine_class(resolve_engine_name(name, options)).load(options)
