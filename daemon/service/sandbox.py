"""The systemd unit's sandbox: what the daemon may write, and the directives that lock the rest.

The daemon needs the microphone (ALSA devices under /dev/snd, or the PulseAudio/PipeWire socket
in $XDG_RUNTIME_DIR), the network only for a remote engine or a `tcp://` endpoint, a GPU device
for Cohere on CUDA, and write access to exactly: the journal's directory (wherever `journal.path`
puts it), the data dir (models it pulls), the socket directory and the model caches. Everything else
is read-only (ProtectSystem=strict, ProtectHome=read-only), so `/dev` stays open (no
PrivateDevices, no DeviceAllow list — ProtectClock would imply one and hide /dev/snd and the GPU).

Left out on purpose: MemoryDenyWriteExecute (the oneDNN kernels inside CTranslate2 and torch are
generated at run time: both fail with "could not create a primitive" under it), ProcSubset=pid
(ALSA reads /proc/asound), PrivateNetwork and IPAddressDeny (the remote engine and `tcp://`
endpoints).

These paths are resolved when the unit is rendered, from the config it pins: after changing
`journal.path` or `transport.runtime_dir`, `dictated service install` again (`dictated doctor`
notices the difference).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from .. import paths

#: the default socket directory under the user manager's own runtime dir ($XDG_RUNTIME_DIR, which
#: is emptied at logout): systemd creates it 0700 before every start (RuntimeDirectory=)
RUNTIME_DIRECTORY = "dictated"
#: a generous bound that still keeps a runaway daemon from taking the desktop down with it
#: (Cohere's 2B parameters alone are 8 GB in float32); `systemctl --user edit dictated` overrides it
MEMORY_MAX = "75%"
#: directories that PrivateTmp= would replace with the service's own
SHARED_TMP = ("/tmp", "/var/tmp")

#: hardening that needs a user namespace in an unprivileged user manager: it changes the
#: capability bounding set (218/CAPABILITIES without one) or asks for the namespace outright
#: (217/USER). Rendered only where this user can create one (Ubuntu 24.04's AppArmor policy, for
#: one, denies it); elsewhere the rest applies, and systemd skips the mount namespacing itself.
NEEDS_USER_NAMESPACE = (
    "CapabilityBoundingSet=",
    "PrivateUsers=yes",  # the user namespace the namespacing below is set up in
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
)
#: fixed hardening, in the order `systemd-analyze security` lists it
HARDENING = (
    "NoNewPrivileges=yes",
    *NEEDS_USER_NAMESPACE[:2],
    "ProtectSystem=strict",
    "ProtectHome=read-only",  # sockets there (PulseAudio, PipeWire) can still be connected to
    "PrivateMounts=yes",
    "ProtectKernelTunables=yes",
    *NEEDS_USER_NAMESPACE[2:],
    "ProtectControlGroups=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",  # a realtime request fails (EPERM); the audio path runs without
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "KeyringMode=private",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged",
    "SystemCallErrorNumber=EPERM",  # a call outside the filter fails instead of killing the daemon
    # AF_NETLINK: getaddrinfo and getifaddrs (ZeroMQ endpoints named by interface)
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
)


#: what systemd does for an unprivileged service: a user namespace, this uid mapped to itself,
#: then a capability dropped from the bounding set (exit 0: all of it worked)
_USER_NAMESPACE_PROBE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
uid, gid = os.getuid(), os.getgid()
if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
    sys.exit(1)
for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
    fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
    os.write(fd, text.encode())
    os.close(fd)
sys.exit(0 if libc.prctl(24, 16, 0, 0, 0) == 0 else 2)  # PR_CAPBSET_DROP, CAP_SYS_MODULE
"""


def hardening(user_namespaces: bool) -> tuple[str, ...]:
    """HARDENING, less what would keep the service from starting without a user namespace."""
    if user_namespaces:
        return HARDENING
    return tuple(d for d in HARDENING if d not in NEEDS_USER_NAMESPACE)


@functools.cache
def user_namespaces_work() -> bool:
    """Whether this user's services can get a user namespace with capabilities in it (Linux);
    True elsewhere, where no unit runs and `print` shows the full sandbox."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _USER_NAMESPACE_PROBE], capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def writable_dirs(config_path: Path | None) -> tuple[str, ...]:
    """Absolute directories the daemon writes, for the config the unit pins (read here)."""
    from ..config import load_config

    config = load_config(config_path)
    candidates = [
        config.journal.resolved().parent,
        paths.data_dir(),  # the default journal and pulled CoreML models
        paths.cache_dir(),
        *_hugging_face_dirs(),
    ]
    if config.transport.runtime_dir or os.environ.get("DICTATED_RUNTIME_DIR"):
        candidates.append(config.transport.socket_dir())  # pinned; else RuntimeDirectory=
    return _outermost(os.path.abspath(os.path.expanduser(p)) for p in candidates)


def _hugging_face_dirs() -> list[str]:
    """The hub cache a Cohere or Whisper model is read from (and refreshed in), as hub finds it."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    home = os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")
    return [home, os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")]


def _outermost(dirs) -> tuple[str, ...]:
    """Sorted, without duplicates and without those inside another one of them."""
    kept: list[str] = []
    for d in sorted(set(dirs)):
        if not any(_inside(d, k) for k in kept):
            kept.append(d)
    return tuple(kept)


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def needs_shared_tmp(used: list[str]) -> bool:
    """PrivateTmp= would hide any of these paths (a socket directory or journal under /tmp)."""
    return any(_inside(p, t) for p in used for t in SHARED_TMP)
