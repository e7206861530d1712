"""What a login service runs: the interpreter installing it, `-m dictated run`, and its environment.

Service managers start programs with almost nothing of the user's shell: launchd's PATH is
/usr/bin:/bin:/usr/sbin:/sbin and no virtualenv is active. So the unit names the absolute path of the
interpreter of the environment `dictated service install` runs from (a venv's `bin/python` keeps the
venv; resolving the symlink would lose it) and spells out the environment the daemon needs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import protocol
from ..shutdown import DEFAULT_LINGER_S, SERVICE_STOP_TIMEOUT_S, service_stop_timeout_s
from . import sandbox

#: variables that change where the daemon keeps its files or finds its models; copied into the
#: unit when set at install time, so the service and the user's shell agree on sockets and journal
PASSED_ENVIRONMENT = (
    "DICTATED_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "ALSA_CONFIG_PATH",
)
#: after the environment's own bin directory (for tools installed next to dictated)
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")
HOMEBREW_PATH = ("/opt/homebrew/bin",)  # Apple silicon's Homebrew prefix, before /usr/local


@dataclass(frozen=True)
class ServiceSpec:
    """Everything a unit file is rendered from; built once by `service_spec()`."""

    program: tuple[str, ...]  # argv; program[0] is an absolute path that exists
    environment: Mapping[str, str] = field(default_factory=dict)
    home: Path = field(default_factory=Path.home)
    #: the socket directory clients compute in the installing shell (launchd pins it: its agents
    #: get no XDG_RUNTIME_DIR, and the daemon must listen where `dictated status` looks)
    runtime_dir: str = ""
    stop_timeout_s: int = SERVICE_STOP_TIMEOUT_S
    #: what the daemon writes (journal, sockets, caches): the only writable paths of its sandbox
    writable_dirs: tuple[str, ...] = ()
    user_namespaces: bool = True  # this user can sandbox with one (sandbox.NEEDS_USER_NAMESPACE)

    @property
    def interpreter(self) -> str:
        return self.program[0]


def service_spec(
    config: Path | None = None,
    *,
    interpreter: str | None = None,
    linger_s: float = DEFAULT_LINGER_S,
    platform: str = sys.platform,
    extra_environment: Mapping[str, str] | None = None,
) -> ServiceSpec:
    """The spec for this environment: `<python> -m dictated run [--config FILE]`.

    `config` is pinned as an absolute path, so the service reads the file the user named even
    though it starts in another directory. `linger_s` (the config's transport.linger_s) is part
    of the stop timeout the manager allows.
    """
    python = os.path.abspath(interpreter or sys.executable)
    program: list[str] = [python, "-m", "dictated", "run"]
    if config is not None:
        program += ["--config", str(Path(config).expanduser().resolve())]
    bin_dir = os.path.dirname(python)
    system = (*HOMEBREW_PATH, *SYSTEM_PATH) if platform == "darwin" else SYSTEM_PATH
    path = ":".join(dict.fromkeys((bin_dir, *system)))
    environment = {"PATH": path, "PYTHONUNBUFFERED": "1"}
    environment.update({k: os.environ[k] for k in PASSED_ENVIRONMENT if os.environ.get(k)})
    environment.update(extra_environment or {})
    return ServiceSpec(
        program=tuple(program),
        environment=environment,
        runtime_dir=protocol.default_runtime_dir(),
        stop_timeout_s=service_stop_timeout_s(linger_s),
        writable_dirs=sandbox.writable_dirs(config),
        user_namespaces=sandbox.user_namespaces_work(),
    )
