"""Is an address this machine? One answer for PUB endpoints and remote-engine URLs alike.

Names are not resolved (config validation stays instant and offline): only `localhost` and literal
loopback addresses count; any other name or address is treated as leaving the machine.
"""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name, an interface name or '*'
        return False
