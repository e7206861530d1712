"""Speech-recognition engines behind one narrow interface; see `base.Engine`."""

from .base import Engine, EngineOptions, Transcript
from .registry import ENGINE_NAMES, create_engine, resolve_engine_name

__all__ = [
    "ENGINE_NAMES",
    "Engine",
    "EngineOptions",
    "Transcript",
    "create_engine",
    "resolve_engine_name",
]
