"""Run the daemon as a login service: launchd on macOS, systemd's user manager on Linux.

`dictated service install|uninstall|status|restart|print|logs` (service/cli.py) drives one
`ServiceManager`; both managers render and are tested on any OS (`--manager`).
"""

from __future__ import annotations

import sys

from ..errors import ServiceManagerUnavailable
from .base import ServiceManager, ServiceStatus
from .spec import ServiceSpec, service_spec

MANAGER_NAMES = ("launchd", "systemd")

__all__ = [
    "MANAGER_NAMES",
    "ServiceManager",
    "ServiceSpec",
    "ServiceStatus",
    "default_manager_name",
    "get_manager",
    "service_spec",
]


def default_manager_name(platform: str = sys.platform) -> str:
    if platform == "darwin":
        return "launchd"
    if platform.startswith("linux"):
        return "systemd"
    raise ServiceManagerUnavailable(
        f"no supported service manager on {platform}; choose one with --manager "
        f"({', '.join(MANAGER_NAMES)}) or run `dictated run` yourself"
    )


def get_manager(name: str | None = None) -> ServiceManager:
    """The manager called `name` (default: this platform's own). Cheap: touches nothing."""
    name = name or default_manager_name()
    if name == "launchd":
        from .launchd import LaunchdManager

        return LaunchdManager()
    if name == "systemd":
        from .systemd import SystemdUserManager

        return SystemdUserManager()
    raise ServiceManagerUnavailable(
        f"unknown service manager {name!r}; choose one of {', '.join(MANAGER_NAMES)}"
    )
