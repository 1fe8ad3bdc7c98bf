"""Network addresses: the one loopback check (the server's bind address, Ray's cluster address)."""

from __future__ import annotations

import ipaddress

#: Host names that are loopback by definition.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names only this machine: ``localhost``, ``127.0.0.0/8``, ``::1``.

    Accepts ``[::1]``, and ``host:port`` / ``ray://host:port`` addresses. ``None`` (no
    address: a private local service) counts as loopback; any other host name counts as
    not, since it may resolve anywhere.
    """
    if host is None:
        return True
    text = host.split("://", 1)[-1]
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.rsplit(":", 1)[0]  # host:port (a bare IPv6 address has several colons)
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


__all__ = ["LOOPBACK_NAMES", "is_loopback"]
