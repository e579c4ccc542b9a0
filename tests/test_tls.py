"""HTTPS on the fast path against nginx (Debian's) with certificates from a
throwaway CA: verification by CA file, by SSL_CERT_FILE and by the
platform's store (which does not know the CA), --insecure, mutual TLS,
session resumption across users, and counts reported equal to counts
served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_aiotest
from tls_helpers import Nginx

SECURE = """
import os
from aiotest import AsyncHttpUser, task, constant

class Secure(AsyncHttpUser):
    wait_time = constant(0)
    {attrs}

    @task
    async def hello(self):
        await self.session.get("/hello"{kwargs})
"""


def secure_file(write_file, attrs: str = "", kwargs: str = "") -> Path:  # type: ignore[no-untyped-def]
    return write_file("secure.py", SECURE.format(attrs=attrs or "pass", kwargs=kwargs))


def run(path: Path, nginx: Nginx, tmp_path: Path, *extra: str, users: int = 1,
        env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]  # fmt: skip
    # This machine's own bundle must not decide the outcome.
    env = {"REQUESTS_CA_BUNDLE": "", "SSL_CERT_FILE": "", **(env or {})}
    return run_aiotest(
        "-f", str(path), "--headless", "-u", str(users), "-r", "100", "-i", "12",
        "-H", nginx.url, *extra, cwd=tmp_path, env=env,
    )  # fmt: skip


def test_a_ca_file_verifies_and_connections_are_kept(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    """verify='ca.pem' on the class: 12 requests over one kept-alive TLS
    connection, HTTP/1.1, as nginx logged them."""
    path = secure_file(write_file, attrs=f"verify = {tls_nginx.pki / 'ca.pem'!r}")
    result = run(path, tls_nginx, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.total["num_requests"] == 12 and result.total["num_failures"] == 0
    served = tls_nginx.requests()
    assert len(served) == 12
    assert {r[1] for r in served} == {"HTTP/1.1"}
    assert len({r[2] for r in served}) == 1  # one connection for the user
    # Time to first byte, per endpoint, next to the response time: never
    # above it (it is a part of it), within HDR's 0.1 % rounding.
    entry = result.entry("GET", "/hello")
    ttfb = dict(entry["ttfb_percentiles_us"])
    for quantile, response_us in entry["percentiles_us"]:
        assert 0 < ttfb[quantile] <= response_us * 1.01, (quantile, ttfb, entry)


def test_the_environments_ca_bundle_is_honoured(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    """SSL_CERT_FILE names the bundle; REQUESTS_CA_BUNDLE, when set, wins
    over it, as in `requests`."""
    path = secure_file(write_file)
    ca, other = tls_nginx.pki / "ca.pem", tls_nginx.pki / "other-ca.pem"
    for env in (
        {"SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ""},
        {"SSL_CERT_FILE": other, "REQUESTS_CA_BUNDLE": ca},
    ):
        result = run(path, tls_nginx, tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert result.total["num_failures"] == 0
    assert len(tls_nginx.requests()) == 24


def test_an_unknown_authority_fails_with_its_fix_and_insecure_skips_it(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    """The platform's store does not know the throwaway CA: every request
    fails, saying why and what to do, and nothing reaches nginx. Then
    --insecure, and a request's verify=False, get through."""
    path = secure_file(write_file)
    refused = run(path, tls_nginx, tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert refused.total["num_requests"] == 12 == refused.total["num_failures"]
    (failure,) = refused.json["stats"]["failures"]  # type: ignore[index]
    assert "certificate signed by an unknown authority" in failure["error"]
    assert "--insecure" in failure["error"] and "verify=" in failure["error"]
    assert tls_nginx.requests() == []
    insecure = run(path, tls_nginx, tmp_path, "--insecure")
    assert insecure.returncode == 0, insecure.stderr
    per_request = run(secure_file(write_file, kwargs=", verify=False"), tls_nginx, tmp_path)
    assert per_request.returncode == 0, per_request.stderr
    assert len(tls_nginx.requests()) == 24


def test_a_ca_that_did_not_sign_it_is_refused(tls_nginx: Nginx, write_file, tmp_path: Path) -> None:
    path = secure_file(write_file, attrs=f"verify = {tls_nginx.pki / 'other-ca.pem'!r}")
    result = run(path, tls_nginx, tmp_path)
    assert result.returncode == 1
    assert result.total["num_failures"] == 12
    assert tls_nginx.requests() == []


def test_mutual_tls_is_accepted_with_the_client_certificate_only(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    ca = tls_nginx.pki / "ca.pem"
    cert = (tls_nginx.pki / "client.pem", tls_nginx.pki / "client.key")
    url = tls_nginx.mtls_url
    with_cert = secure_file(write_file, attrs=f"verify = {ca!r}; cert = {cert!r}; host = {url!r}")
    accepted = run_aiotest("-f", str(with_cert), "--headless", "-i", "3", cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.total["num_failures"] == 0
    without = secure_file(write_file, attrs=f"verify = {ca!r}; host = {url!r}")
    refused = run_aiotest("-f", str(without), "--headless", "-i", "3", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.total["num_failures"] == 3
    # nginx answers 400 to a client without a certificate it requires.
    assert [r[0] for r in tls_nginx.requests()] == ["/hello"] * 6


def test_sessions_resume_across_users(tls_nginx: Nginx, write_file, tmp_path: Path) -> None:
    """Eight users, a connection each: one process-wide TLS config keeps
    the session tickets, so nginx sees handshakes resumed."""
    ca = tls_nginx.pki / "ca.pem"
    path = secure_file(write_file, attrs=f"verify = {ca!r}; wait_time = constant(0.2)")
    result = run(path, tls_nginx, tmp_path, users=8)
    assert result.returncode == 0, result.stderr
    served = tls_nginx.requests()
    assert len(served) == 12 == result.total["num_requests"]
    by_connection = {r[2]: r[3] for r in served}
    assert len(by_connection) == 8, served  # a connection per user
    assert list(by_connection.values()).count("r") >= 6, served  # all but the first few resumed


TIMED = """
import json, os
from aiotest import AsyncHttpUser, task, constant

class Timed(AsyncHttpUser):
    wait_time = constant(0)
    verify = {ca!r}
    http_version = {version!r}

    @task
    async def hello(self):
        resp = await self.session.get("/hello")
        with open({out!r}, "a") as fh:
            fh.write(json.dumps([resp.http_version, resp.timings]) + "\\n")
"""


@pytest.mark.parametrize("version", ["1.1", "auto"])
def test_timings_show_each_phase_and_zeros_on_a_kept_connection(
    tls_nginx: Nginx, write_file, tmp_path: Path, version: str
) -> None:
    """resp.timings: the first request opened the connection (connect and
    TLS time), the next ones reused it (zeros there); each waited for its
    first byte. Over HTTP/1.1 and HTTP/2 alike."""
    out = tmp_path / "timings.jsonl"
    path = write_file(
        "timed.py", TIMED.format(ca=tls_nginx.pki / "ca.pem", version=version, out=str(out))
    )
    result = run_aiotest(
        "-f", str(path), "--headless", "-i", "3", "-H", tls_nginx.h2_url, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r[0] for r in rows] == ["HTTP/1.1" if version == "1.1" else "HTTP/2"] * 3
    first, *kept = [r[1] for r in rows]
    assert set(first) == {"dns_us", "connect_us", "tls_us", "waiting_us", "receiving_us"}
    assert first["dns_us"] == 0  # an IP address: nothing to resolve
    assert first["connect_us"] > 0 and first["tls_us"] > 0 and first["waiting_us"] > 0
    for t in kept:
        assert t["connect_us"] == t["tls_us"] == t["dns_us"] == 0, t
        assert t["waiting_us"] > 0


PATIENT = """
from aiotest import AsyncHttpUser, task, constant

class Patient(AsyncHttpUser):
    wait_time = constant(1.5)  # past the server's 1 s keep-alive timeout
    verify = {ca!r}
    http_version = "1.1"

    @task
    async def post(self):
        await self.session.post("/form", data={{"a": "1"}})
"""


def test_a_post_after_the_servers_keep_alive_timeout_opens_a_new_connection(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    """nginx closes an idle TLS connection after 1 s (close_notify, then
    FIN). A POST may not be retried, so the kept connection must be found
    closed before it is used: all three POSTs succeed, on three
    connections."""
    path = write_file("patient.py", PATIENT.format(ca=tls_nginx.pki / "ca.pem"))
    result = run_aiotest(
        "-f", str(path), "--headless", "-i", "3", "-H", tls_nginx.short_url, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + str(result.json)
    assert result.total["num_requests"] == 3 and result.total["num_failures"] == 0
    served = tls_nginx.requests()
    assert len(served) == 3 and len({r[2] for r in served}) == 3, served


STREAMED = """
from aiotest import AsyncHttpUser, task, constant

class Streamed(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def hello(self):
        async with self.session.get("/hello", stream=True, verify={ca!r}) as resp:
            body = await resp.read()
        assert resp.status == 200 and body, (resp.status, resp.error)
"""


def test_a_streamed_request_verifies_with_its_own_ca_file(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    """stream=True takes reqwest's path: the request's verify= still
    decides, not the class's (platform) verification."""
    path = write_file("streamed.py", STREAMED.format(ca=str(tls_nginx.pki / "ca.pem")))
    result = run(path, tls_nginx, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.total["num_requests"] == 12 and result.total["num_failures"] == 0
    assert len(tls_nginx.requests()) == 12
