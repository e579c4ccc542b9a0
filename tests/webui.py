"""A real `aiotest` process serving its web UI, for the web tests: started on
a free loopback port, driven over HTTP, and stopped with SIGINT as a user's
Ctrl-C would."""

from __future__ import annotations

import base64
import json
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

from conftest import AIOTEST, free_port, wait_for_port

#: An aiotestfile with one quick user class; tests append classes to it.
HELLO = """
from aiotest import AsyncHttpUser, constant, task


class Hello(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def hello(self):
        await self.session.get("/hello")
"""


class WebProcess:
    """``aiotest -f FILE --web-host 127.0.0.1 --web-port PORT ARGS...``."""

    def __init__(
        self,
        aiotestfile: Path,
        *args: str,
        cwd: Path,
        login: str | None = None,
        scheme: str = "http",
        cafile: str | None = None,
        stdout_path: Path | None = None,
    ) -> None:
        assert AIOTEST, "the aiotest command is not installed: pip install ."
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.login = login
        self.context = ssl.create_default_context(cafile=cafile) if cafile else None
        argv = [AIOTEST, "-f", str(aiotestfile), "--web-host", "127.0.0.1"]
        argv += ["--web-port", str(self.port), *args]
        if login:
            argv += ["--web-login", login]
        # A file rather than a pipe for a chatty aiotestfile: a full pipe
        # nobody reads until quit() would block the process.
        self._stdout_file = stdout_path.open("w") if stdout_path else None
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout_file or subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_port(self.port, timeout_s=20)
        except OSError:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"the web UI did not come up:\n{err}") from None
        self.stdout = self.stderr = ""

    def request(
        self,
        path: str,
        *,
        data: dict[str, Any] | list[tuple[str, str]] | None = None,
        method: str | None = None,
        auth: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Message, bytes]:
        """One HTTP request; returns (status, headers, body) for any status."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        login = self.login if auth == "default" else auth
        if login:
            req.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=15, context=self.context) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path: str, **kw: Any) -> Any:
        status, _, body = self.request(path, **kw)
        assert status == 200, (status, body)
        return json.loads(body)

    def swarm(self, **fields: Any) -> tuple[int, dict[str, Any]]:
        status, _, body = self.request("/swarm", data=fields)
        return status, json.loads(body)

    def stats(self) -> dict[str, Any]:
        return self.json("/stats/requests")

    def wait_for(
        self, what: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 20
    ) -> dict[str, Any]:
        """Polls /stats/requests until ``check`` holds (the page updates once a second)."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.stats()
            if check(doc):
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {json.dumps(doc)[:2000]}")
            time.sleep(0.1)

    def quit(self, timeout_s: float = 30) -> int:
        """Ctrl-C; returns the exit code once the reports are written."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout_s)
        if self._stdout_file is not None:
            self._stdout_file.close()
            self.stdout = Path(self._stdout_file.name).read_text()
        return self.proc.returncode

    def __enter__(self) -> WebProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def aggregated(doc: dict[str, Any]) -> dict[str, Any]:
    """The Aggregated row of a /stats/requests document."""
    rows = [s for s in doc["stats"] if s["name"] == "Aggregated"]
    assert len(rows) == 1, doc["stats"]
    return rows[0]
