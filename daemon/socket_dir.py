"""Whether an `ipc://` endpoint can be trusted: its directory and socket must be ours alone.

Whoever controls the socket directory controls what our clients hear: another account that
creates `/tmp/dictated-UID` first can run a fake daemon there and have `dictated-type` type its
text. So the daemon and every client check, without following symlinks, that the directory is
a real directory owned by this uid with no group/other access, and that a socket already in it
is ours. Standard library only: the light clients import it (pyzmq + stdlib is their budget).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat


class UnsafeSocketDir(PermissionError):
    """A socket directory or socket another account could control; the text names path and fix."""


def ipc_path(endpoint: str) -> str | None:
    """The filesystem path of an `ipc://` endpoint; None for tcp:// and for abstract `ipc://@…`."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://") :]
    return None if path.startswith("@") else path


def is_abstract_ipc(endpoint: str) -> bool:
    """`ipc://@name`: Linux's abstract namespace, which has no permissions (any account connects)."""
    return endpoint.startswith("ipc://@")


def problem(info: os.stat_result, directory: bool) -> str | None:
    """Why a socket directory (or a socket, `directory=False`) is not ours alone, or None.

    `info` must come from lstat: a symlink is refused whoever owns it, since its target is chosen
    by whoever made it.
    """
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return "it is a symbolic link"
    if directory and not stat.S_ISDIR(mode):
        return "it is not a directory"
    if not directory and not stat.S_ISSOCK(mode):
        return "it is not a socket"
    if info.st_uid != os.getuid():
        return f"it belongs to another account (uid {info.st_uid}, you are uid {os.getuid()})"
    if directory and stat.S_IMODE(mode) & 0o077:
        return f"other accounts can use it (mode {stat.S_IMODE(mode):04o})"
    return None


def fix(path: str, reason: str) -> str:
    """What to do about it, in words a user can act on."""
    if reason.startswith("other accounts"):
        return f"run `chmod 700 {path}`, or set DICTATED_RUNTIME_DIR to a private directory"
    return (
        f"remove {path} (another account may be impersonating the daemon), or set "
        "DICTATED_RUNTIME_DIR to a directory you own with mode 0700"
    )


def check_dir(path: str) -> None:
    """Raise UnsafeSocketDir unless `path` is a private directory of ours; a missing one is made.

    Made, not waited for: in a sticky /tmp another account may create the directory later, or
    create it, wait for our connect, and rename it away before the first message, so a check
    that let "missing" pass could be outrun. Once the directory is ours, nobody else can
    replace it (the sticky bit), and the daemon accepts it as its own.
    """
    with contextlib.suppress(OSError):  # a read-only parent: the lstat below says what is there
        os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise UnsafeSocketDir(
            f"refusing socket directory {path}: it cannot be created; set DICTATED_RUNTIME_DIR "
            "to a directory you own with mode 0700"
        ) from None
    reason = problem(info, directory=True)
    if reason:
        raise UnsafeSocketDir(f"refusing socket directory {path}: {reason}; {fix(path, reason)}")


def check_endpoint(endpoint: str) -> None:
    """Raise UnsafeSocketDir unless an `ipc://` endpoint's directory and socket are ours alone.

    tcp:// and abstract endpoints are the user's explicit choice and pass (the daemon binds an
    abstract one only with allow_remote). A missing socket passes: nobody listens there yet, and
    nobody but us can create one in our directory.
    """
    path = ipc_path(endpoint)
    if path is None:
        return
    check_dir(os.path.dirname(path) or ".")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    reason = problem(info, directory=False)
    if reason:
        raise UnsafeSocketDir(f"refusing socket {path}: {reason}; {fix(path, reason)}")


def probe_listener(path: str, timeout_s: float) -> bool | None:
    """Whether a Unix socket at `path` has a listener: False at once for a stale file (connect
    refused), None when there is no file, True when a connection was accepted (or is pending)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout_s)
        try:
            probe.connect(path)
        except FileNotFoundError:
            return None
        except ConnectionRefusedError:
            return False
        except OSError:  # EACCES, a full backlog...: let ZeroMQ try and report
            return True
    return True
