"""The standalone sandbox as a test starts it: `flask --app swagstore sandbox`, one account.

`SandboxAccount(db_path).start()` runs the real command on a free port; `base` is what
booths set as STRIPE_API_BASE. Helpers play the phone and the test controls at the root,
as the command serves them. Use it as a context manager, or call stop().
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


class SandboxAccount:
    """One standalone sandbox process: a Stripe account several booths share."""

    KEY = "sk_test_sandbox_account"

    def __init__(self, db_path: Path, port: int | None = None) -> None:
        self.db_path = db_path
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> SandboxAccount:
        flask = Path(sys.executable).with_name("flask")
        cmd = [str(flask), "--app", "swagstore", "sandbox", "--port", str(self.port)]
        cmd += ["--db", str(self.db_path)]
        # A booth's own settings must not leak into the account (it has none of its own).
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWAGSTORE_")}
        # The store app the flask CLI loads first then writes nothing to instance/.
        env["SWAGSTORE_SECRET_KEY"] = "sandbox-account"
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited with {self.proc.returncode}")
            try:
                if self.api("GET", "products").status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError("the sandbox did not answer in 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> SandboxAccount:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def api(self, method: str, path: str, key: str = KEY, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.base}/v1/{path}", headers=headers, timeout=60, **kwargs
        )

    def _post(self, path: str, **kwargs) -> dict:
        response = requests.post(
            self.base + path, headers={"Accept": "application/json"}, timeout=60, **kwargs
        )
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json()

    def open_session(self, link_id: str) -> dict:
        return self._post(f"/payment_links/{link_id}/sessions")

    def pay(self, session_id: str, method: str = "card") -> dict:
        return self._post(f"/checkout/{session_id}/pay", data={"method": method})

    def events(self, *types: str) -> list[dict]:
        params = {"limit": 100, **{f"types[{n}]": t for n, t in enumerate(types)}}
        return self.api("GET", "events", params=params).json()["data"]

    def ledger(self) -> dict:
        return requests.get(self.base + "/_control/ledger", timeout=60).json()

    def deliveries(self) -> list[dict]:
        return requests.get(self.base + "/_control/deliveries", timeout=60).json()["deliveries"]

    def fault(self, path_prefix: str, count: int = 1, mode: str = "error", seconds: float = 0):
        body = {"path_prefix": path_prefix, "count": count, "mode": mode, "seconds": seconds}
        return self._post("/_control/faults", json=body)

    def advance_clock(self, seconds: float) -> dict:
        return self._post("/_control/clock", json={"advance": seconds})
