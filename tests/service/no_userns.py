"""Run a command as on a host that denies unprivileged user namespaces (Ubuntu 24.04's AppArmor
policy, `user.max_user_namespaces = 0`): `python no_userns.py CMD ARGS...`.

A seccomp filter (x86-64) makes unshare() and clone() with CLONE_NEWUSER fail with EPERM, and
clone3() with ENOSYS so that the C library falls back to clone(); the filter is inherited by
every child. Checked by hand against an unprivileged `systemd --user` (systemd 252): under it,
a unit with PrivateUsers=yes fails with 217/USER, the unit rendered without user namespaces runs.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

EPERM, ENOSYS = 1, 38
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
NR_CLONE, NR_UNSHARE, NR_CLONE3 = 56, 272, 435
CLONE_NEWUSER = 0x10000000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
#: (code, jump if true, jump if false, k): load arch, nr, then the low word of args[0]
PROGRAM = [
    (0x20, 0, 0, 4),  # A = arch
    (0x15, 0, 9, AUDIT_ARCH_X86_64),  # another ABI: allow
    (0x20, 0, 0, 0),  # A = nr
    (0x15, 0, 1, NR_CLONE3),
    (0x06, 0, 0, ERRNO | ENOSYS),
    (0x15, 1, 0, NR_UNSHARE),
    (0x15, 0, 4, NR_CLONE),
    (0x20, 0, 0, 16),  # A = flags
    (0x45, 0, 1, CLONE_NEWUSER),
    (0x06, 0, 0, ERRNO | EPERM),
    (0x06, 0, 0, ALLOW),
    (0x06, 0, 0, ALLOW),
]


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def deny_user_namespaces() -> None:
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in PROGRAM))
    fprog = _Fprog(len(PROGRAM), ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(
        PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0
    ):
        sys.exit(f"no_userns: seccomp: {os.strerror(ctypes.get_errno())}")


if __name__ == "__main__":
    deny_user_namespaces()
    os.execvp(sys.argv[1], sys.argv[1:])
