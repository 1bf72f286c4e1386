"""Render deploy/nginx.conf.template for this booth and run nginx in the foreground.

The `proxy:` line of Procfile.public (`make public`). Settings come from the environment:
PUBLIC_PORT (8080; all interfaces), SWAGSTORE_BIND (gunicorn's loopback address, the
upstream), NGINX_DIR (instance/nginx: config, pid and body buffers), TLS_CERT and TLS_KEY
(PEM files: serve HTTPS instead), NGINX_HEADER_TIMEOUT and NGINX_BODY_TIMEOUT (seconds,
10 each), NGINX_PER_CLIENT (connections per client address, 64). Runs as any user; as
root, nginx's workers run as the owner of NGINX_DIR.

    python deploy/nginx.py                # render, then exec nginx (SIGTERM stops it)
    python deploy/nginx.py --render       # only write the config and print its path
    python deploy/nginx.py --lan-address  # print this machine's address on its network
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
FIELD = re.compile(r"\{\{(\w+)\}\}")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def settings(env: dict[str, str]) -> dict[str, str]:
    """Return the template's fields for an environment."""
    directory = Path(env.get("NGINX_DIR") or ROOT / "instance" / "nginx").resolve()
    port = int(env.get("PUBLIC_PORT") or 8080)
    upstream = env.get("SWAGSTORE_BIND") or "127.0.0.1:5000"
    cert, key = env.get("TLS_CERT"), env.get("TLS_KEY")
    if bool(cert) != bool(key):
        raise SystemExit("nginx.py: set both TLS_CERT and TLS_KEY, or neither")
    if cert and key:
        listen = (
            f"listen {port} ssl;\n"
            f"        ssl_certificate {Path(cert).resolve()};\n"
            f"        ssl_certificate_key {Path(key).resolve()};"
        )
    else:
        listen = f"listen {port};"
    user = ""
    if os.geteuid() == 0:
        # nginx's workers would otherwise run as nobody, who cannot write the buffers.
        owner = pwd.getpwuid(directory.stat().st_uid if directory.exists() else 0)
        user = f"user {owner.pw_name} {_group(owner.pw_gid)};"
    return {
        "user": user,
        "dir": str(directory),
        "listen": listen,
        "upstream": upstream,
        "header_timeout": str(int(env.get("NGINX_HEADER_TIMEOUT") or 10)),
        "body_timeout": str(int(env.get("NGINX_BODY_TIMEOUT") or 10)),
        "per_client": str(int(env.get("NGINX_PER_CLIENT") or 64)),
    }


def render(fields: dict[str, str]) -> str:
    """Return the template with every {{field}} filled in (an unknown one is an error)."""
    return FIELD.sub(lambda match: fields[match.group(1)], TEMPLATE.read_text())


def write(env: dict[str, str]) -> Path:
    """Write this booth's nginx.conf and its temporary directories; return the config."""
    fields = settings(env)
    directory = Path(fields["dir"])
    for name in TEMP_DIRS:
        (directory / name).mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        fields = settings(env)  # the directory exists now: its owner runs the workers
    conf = directory / "nginx.conf"
    conf.write_text(render(fields))
    return conf


def nginx() -> str:
    """Return the nginx binary (Debian puts it in /usr/sbin, off a user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise SystemExit("make public needs nginx: sudo apt-get install -y nginx")
    return found


def lan_address() -> str:
    """Return the address other machines on the network reach this one at."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            # A UDP "connect" sends nothing: it only picks the interface of the default route.
            probe.connect(("192.0.2.1", 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"  # no network at all: only this machine can reach the booth


def _group(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


def main(argv: list[str]) -> None:
    if "--lan-address" in argv:
        print(lan_address())
        return
    conf = write(dict(os.environ))
    if "--render" in argv:
        print(conf)
        return
    binary = nginx()
    # exec: honcho's SIGTERM reaches nginx itself, which stops at once (fast shutdown).
    os.execv(binary, [binary, "-p", str(conf.parent), "-c", str(conf), "-e", "stderr"])


if __name__ == "__main__":
    main(sys.argv[1:])
