"""HTTP/2 on the fast path against nginx (Debian's): chosen by ALPN over
TLS by default, HTTP/1.1 when a class or the command line asks for it, one
multiplexed connection per user that a `gather` of requests shares, and
h2c with prior knowledge as an opt-in. nginx's access log says which
protocol and which connection served each request."""

from __future__ import annotations

from pathlib import Path

from conftest import run_aiotest
from tls_helpers import Nginx

VERSIONED = """
import asyncio
from aiotest import AsyncHttpUser, task, constant

class Versioned(AsyncHttpUser):
    wait_time = constant(0)
    verify = {ca!r}
    {attrs}

    @task
    async def hello(self):
        async with self.session.get("/hello", catch_response=True) as resp:
            if resp.http_version != {expected!r}:
                resp.failure(f"answered over {{resp.http_version}}")
"""


def run(write_file, tmp_path: Path, nginx: Nginx, url: str, expected: str, *extra: str,
        attrs: str = "", iterations: int = 12):  # type: ignore[no-untyped-def]  # fmt: skip
    path = write_file(
        "versioned.py",
        VERSIONED.format(ca=nginx.pki / "ca.pem", attrs=attrs or "pass", expected=expected),
    )
    return run_aiotest(
        "-f", str(path), "--headless", "-i", str(iterations), "-H", url, *extra, cwd=tmp_path,
        env={"REQUESTS_CA_BUNDLE": "", "SSL_CERT_FILE": ""},
    )  # fmt: skip


def test_http2_is_chosen_by_alpn(tls_nginx: Nginx, write_file, tmp_path: Path) -> None:
    result = run(write_file, tmp_path, tls_nginx, tls_nginx.h2_url, "HTTP/2")
    assert result.returncode == 0, result.stderr + str(result.json)
    assert result.total["num_requests"] == 12 and result.total["num_failures"] == 0
    served = tls_nginx.requests()
    assert [r[1] for r in served] == ["HTTP/2.0"] * 12
    assert len({r[2] for r in served}) == 1  # one connection
    # catch_response requests keep their time to first byte too.
    assert result.entry("GET", "/hello")["ttfb_percentiles_us"], result.json


def test_http1_when_asked_by_class_or_command_line(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    by_class = run(write_file, tmp_path, tls_nginx, tls_nginx.h2_url, "HTTP/1.1",
                   attrs='http_version = "1.1"')  # fmt: skip
    assert by_class.returncode == 0, by_class.stderr + str(by_class.json)
    by_flag = run(write_file, tmp_path, tls_nginx, tls_nginx.h2_url, "HTTP/1.1",
                  "--http-version", "1.1")  # fmt: skip
    assert by_flag.returncode == 0, by_flag.stderr + str(by_flag.json)
    assert [r[1] for r in tls_nginx.requests()] == ["HTTP/1.1"] * 24


def test_a_users_gather_shares_one_connection(tls_nginx: Nginx, write_file, tmp_path: Path) -> None:
    """Ten requests at once from one user: ten streams of one HTTP/2
    connection, where HTTP/1.1 would open ten connections."""
    path = write_file(
        "gather.py",
        f"""
import asyncio
from aiotest import AsyncHttpUser, task, constant

class Fan(AsyncHttpUser):
    wait_time = constant(0)
    verify = {tls_nginx.pki / "ca.pem"!r}

    @task
    async def fan_out(self):
        await asyncio.gather(*(self.session.get(f"/m/{{i}}") for i in range(10)))
""",
    )
    result = run_aiotest(
        "-f", str(path), "--headless", "-i", "2", "-H", tls_nginx.h2_url, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.total["num_requests"] == 20 and result.total["num_failures"] == 0
    served = tls_nginx.requests()
    assert sorted(r[0] for r in served) == sorted([f"/m/{i}" for i in range(10)] * 2)
    assert {r[1] for r in served} == {"HTTP/2.0"}
    assert len({r[2] for r in served}) == 1, served


def test_h2c_with_prior_knowledge_is_an_opt_in(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    result = run(write_file, tmp_path, tls_nginx, tls_nginx.h2c_url, "HTTP/2",
                 attrs='http_version = "2"')  # fmt: skip
    assert result.returncode == 0, result.stderr + str(result.json)
    assert result.total["num_failures"] == 0
    assert [r[1] for r in tls_nginx.requests()] == ["HTTP/2.0"] * 12


def test_requests_go_on_after_the_server_ends_a_connection_with_goaway(
    tls_nginx: Nginx, write_file, tmp_path: Path
) -> None:
    """nginx ends an HTTP/2 connection after keepalive_requests (5 here)
    with a GOAWAY: the user's next request opens a new connection, and no
    request fails, in turn or in a gather of 4 (where streams the server
    did not take are retried, RFC 9113 section 8.7)."""
    attrs = """
    @task
    async def together(self):
        await asyncio.gather(*(self.session.get("/hello") for _ in range(4)))
"""
    result = run(write_file, tmp_path, tls_nginx, tls_nginx.h2_short_url, "HTTP/2",
                 attrs=attrs, iterations=40)  # fmt: skip
    assert result.returncode == 0, result.stderr + str(result.json)
    assert result.total["num_failures"] == 0, result.json
    served = tls_nginx.requests()
    assert len(served) == result.total["num_requests"] >= 40
    assert {r[1] for r in served} == {"HTTP/2.0"}
    connections = {r[2] for r in served}
    assert len(connections) >= len(served) / 5
