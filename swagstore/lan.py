"""The address phones on the same Wi-Fi use to reach this laptop, for PUBLIC_URL.

`python -m swagstore.lan HOST PORT` prints the URL phones reach a server bound to HOST at:
the laptop's LAN address when HOST listens on every interface (0.0.0.0, ::), else HOST.
`make dev HOST=0.0.0.0` puts it in PUBLIC_URL, so the QR codes lead phones to the laptop.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

# Any address outside this network: connecting a UDP socket to it only asks the kernel
# which interface would route there; no packet is sent. (TEST-NET-1, RFC 5737.)
ROUTE_PROBE = ("192.0.2.1", 9)
EVERY_INTERFACE = ("0.0.0.0", "::", "")


def lan_address() -> str | None:
    """Return this laptop's address on its network (the default route's), or None offline."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(ROUTE_PROBE)
        except OSError:
            return None
        address = s.getsockname()[0]
    if ipaddress.ip_address(address).is_loopback or address == "0.0.0.0":
        return None
    return str(address)


def public_url(host: str, port: int | str) -> str:
    """Return the base URL phones use for a server bound to `host` at `port`."""
    if host in EVERY_INTERFACE:
        host = lan_address() or "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


if __name__ == "__main__":
    host, port = sys.argv[1], sys.argv[2]
    url = public_url(host, port)
    if host in EVERY_INTERFACE and url.startswith("http://127.0.0.1:"):
        print(
            "swagstore.lan: no network address found: phones cannot reach this laptop "
            "(join the Wi-Fi first)",
            file=sys.stderr,
        )
    print(url)
