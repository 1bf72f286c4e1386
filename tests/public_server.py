"""The booth as `make public` runs it, for tests: nginx in front, gunicorn and the worker.

`PublicServer` runs Procfile.public through honcho: nginx (deploy/nginx.py) at `url`, on a
port of its own, and gunicorn behind it at `direct`. Clients of these tests all run on
this machine; to be distinct clients they connect from other loopback addresses
(127.0.0.2 and up, all of 127.0.0.0/8 is this machine), never to anything but 127.0.0.1.
The kiosk is 127.0.0.1 itself.
"""

from __future__ import annotations

import socket
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from conftest import LiveServer, free_port


class PublicServer(LiveServer):
    """Procfile.public: nginx at `url`, gunicorn (on loopback) at `direct`, the worker."""

    procfile = "Procfile.public"

    def __init__(
        self, env: dict[str, str], nginx_dir: Path, workers: int = 2, threads: int = 32
    ) -> None:
        super().__init__(env, workers=workers, threads=threads)
        self.direct = self.url
        self.proxy_port = free_port()
        # With TLS_CERT and TLS_KEY nginx serves HTTPS; the certificate is its own CA.
        self.verify: str | bool = env.get("TLS_CERT") or True
        scheme = "https" if env.get("TLS_CERT") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.proxy_port}"
        self.env.update(
            {
                "PUBLIC_PORT": str(self.proxy_port),
                "NGINX_DIR": str(nginx_dir),
                "SWAGSTORE_PROXY_HOPS": "1",
            }
        )

    def health(self) -> dict | None:
        """Return /healthz's answer through nginx, or None while it does not answer 200."""
        try:
            response = requests.get(self.url + "/healthz", timeout=5, verify=self.verify)
        except (requests.ConnectionError, requests.Timeout):
            return None
        return response.json() if response.status_code == 200 else None


class FromAddress(HTTPAdapter):
    """A requests adapter whose connections come from one loopback address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def client_at(address: str) -> requests.Session:
    """Return a requests.Session whose connections come from `address` (127.x.y.z)."""
    http = requests.Session()
    adapter = FromAddress(address)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def connect_from(address: str, port: int, timeout: float = 30) -> socket.socket:
    """Open a TCP connection to 127.0.0.1:port from a loopback address."""
    sock = socket.create_connection(("127.0.0.1", port), timeout, source_address=(address, 0))
    return sock
