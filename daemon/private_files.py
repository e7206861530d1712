"""Files that hold speech or transcripts: owner-only whatever the umask, and durable once made.

Transcripts and saved audio are as private as the microphone: files are created 0600 and their
directories 0700 with explicit modes (a umask of 022, the usual default, would otherwise leave them
world-readable). Files are opened with O_NOFOLLOW, so a symlink planted where one will be created
is refused rather than written through. Permissions made by an earlier version are tightened at
start through a file descriptor opened with O_NOFOLLOW: never through a symlink, never on a file
of another account. A new file only survives a crash once its directory entry is on disk, so
creating one fsyncs the directory too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_OTHERS = 0o077  # group and other permission bits


def private_dir(path: Path) -> Path:
    """`path` as a directory, created 0700 (parents as usual) and made durable if it is new."""
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        return path  # made meanwhile by someone else; tighten() judges it
    os.chmod(path, PRIVATE_DIR)  # the umask may have removed bits the owner needs
    fsync_dir(path.parent)
    return path


def open_private(path: Path, flags: int) -> tuple[int, bool]:
    """Open (creating 0600) without following a symlink; the fd and whether it was created.

    A creation is made durable here (the directory fsync'd) before the caller writes to it."""
    base = flags | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, base | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:  # also a symlink there, which O_NOFOLLOW now refuses (ELOOP)
        return os.open(path, base), False
    try:
        fsync_dir(path.parent)
    except OSError:
        os.close(fd)
        raise
    return fd, True


def fsync_dir(directory: Path) -> None:
    """Make a creation, rename or removal durable (POSIX: the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tighten(path: Path) -> bool:
    """Take group and other permissions off a file or directory of ours; True if it had any.

    Opened with O_NOFOLLOW and changed through that descriptor, so a symlink (even one swapped in
    meanwhile) is never followed; another account's file is left alone."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError:  # gone, a symlink (ELOOP), or unreadable: nothing we may change
        return False
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or not st.st_mode & _OTHERS:
            return False
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return False
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~_OTHERS)
        return True
    finally:
        os.close(fd)


def write_private_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit WAV audio 0600 in a 0700 directory, fsync'd with its directory entry before
    returning: an event that names the file may then be published."""
    import soundfile  # the daemon's only user of it; loaded when an utterance fails

    private_dir(path.parent)
    fd, _ = open_private(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as f:
        soundfile.write(f, pcm, sample_rate, subtype="PCM_16", format="WAV")
        f.flush()
        os.fsync(f.fileno())
    return path
