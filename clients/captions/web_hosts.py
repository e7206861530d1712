"""Which `Host` headers the caption page answers: the names this server is really reached by.

A web site the user visits can point its own domain name at this machine's address (DNS
rebinding); the browser then sends that site's name as `Host`, and the page would read the
captions. So a request is answered only when `Host` names this server: a loopback name or
address, the address it is bound to, this machine's host name (and `NAME.local`, as mDNS
announces it), names the user adds (`--web-allow-host`), and — when bound to all addresses — any
IP address, since rebinding always comes with a name, never a literal address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

#: a DNS name as a Host header carries it (labels of letters, digits, '-', '_'), ≤ 253 characters
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_WILDCARD = ("", "0.0.0.0", "::")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_part(header: str) -> str:
    """The host of a `Host` header, lowercased, without port, brackets or a trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8080
        return header[1:].partition("]")[0]
    return header.partition(":")[0].rstrip(".")


def check_name(name: str) -> str:
    """`name` as --web-allow-host takes it (normalised); ValueError saying why not."""
    host = name.strip().lower()
    if host.startswith("[") and host.endswith("]"):  # [fe80::1]
        host = host[1:-1]
    if not (_HOST_NAME.fullmatch(host) or _is_address(host)):
        raise ValueError(f"{name!r} is not a host name or address (e.g. captions.lan, 10.0.0.5)")
    return host


@dataclass(frozen=True)
class HostPolicy:
    names: frozenset[str]  # host names and addresses answered, lowercase
    any_address: bool  # bound to all addresses: an IP literal cannot be a rebinding attack

    @classmethod
    def for_address(cls, host: str, extra: Iterable[str] = ()) -> HostPolicy:
        """The names a server bound to `host` is reached by, plus `extra`."""
        names = {host_part(host) if host.startswith("[") else host.lower(), "localhost"}
        if not is_loopback(host):  # shared: other machines use this one's name
            machine = socket.gethostname().lower()
            names |= {machine, f"{machine}.local"}
        names |= {check_name(n) for n in extra}
        return cls(frozenset(names), host in _WILDCARD)

    def allows(self, header: str) -> bool:
        host = host_part(header)
        if not host:
            return False
        return is_loopback(host) or host in self.names or (self.any_address and _is_address(host))
