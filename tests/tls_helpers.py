"""HTTPS targets for the TLS tests: a throwaway certificate authority made
with openssl(1), and Debian's nginx serving over TLS with certificates it
signed, logging each request's protocol, connection and whether its TLS
session was resumed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, wait_for_port


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(name: str, cn: str, extensions: str, ca: Path, cwd: Path) -> None:
    """``name``.pem and ``name``.key: a P-256 key and a certificate for
    ``cn`` signed by the CA in ``ca``, with ``extensions``."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(extensions + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca / "ca.pem"),
            "-CAkey", str(ca / "ca.key"), "-CAcreateserial", "-out", f"{name}.pem",
            "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)  # fmt: skip


@dataclass
class Pki:
    """A CA (``ca.pem``), a server certificate for 127.0.0.1 and localhost
    (``server.pem``/``.key``), a client certificate (``client.pem``/``.key``)
    and a CA that signed nothing here (``other-ca.pem``)."""

    dir: Path

    def __truediv__(self, name: str) -> str:
        return str(self.dir / name)


def make_pki(where: Path) -> Pki:
    where.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                "-subj", f"/CN=aiotest {ca}", cwd=where)  # fmt: skip
    _signed("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost", where, where)
    _signed("client", "aiotest client", "extendedKeyUsage=clientAuth", where, where)
    return Pki(where)


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log error;
events {{ worker_connections 1024; }}
http {{
    log_format tls '$request_uri $server_protocol $connection $ssl_session_reused $ssl_protocol';
    access_log {tmp}/access.log tls;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    ssl_certificate {pki}/server.pem;
    ssl_certificate_key {pki}/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tls:1m;
    server {{
        listen 127.0.0.1:{port} ssl;
        location / {{ default_type text/plain; return 200 "secure\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{h2_port} ssl http2;
        location / {{ default_type text/plain; return 200 "secure\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{short_port} ssl;
        keepalive_timeout 1s;
        location / {{ default_type text/plain; return 200 "brief\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{h2_short_port} ssl http2;
        keepalive_requests 5;
        location / {{ default_type text/plain; return 200 "five\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{h2c_port} http2;
        location / {{ default_type text/plain; return 200 "cleartext\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{mtls_port} ssl;
        ssl_verify_client on;
        ssl_client_certificate {pki}/ca.pem;
        location / {{ default_type text/plain; return 200 "mutual\\n"; }}
    }}
}}
"""


@dataclass
class Nginx:
    """nginx over TLS: ``url`` serves anyone over HTTP/1.1, ``h2_url``
    offers h2 and http/1.1 by ALPN, ``h2c_url`` is plain http speaking only
    HTTP/2 (prior knowledge), ``mtls_url`` serves only clients with a
    certificate the CA signed, ``short_url`` closes idle connections after
    1 s, and ``h2_short_url`` ends each HTTP/2 connection after 5 requests
    with a GOAWAY (nginx's default is 1,000)."""

    url: str
    short_url: str
    h2_url: str
    h2c_url: str
    mtls_url: str
    h2_short_url: str
    pki: Pki
    log: Path

    def requests(self) -> list[list[str]]:
        """The access log so far: uri, protocol, connection serial number,
        session reused (``r`` or ``.``), TLS version."""
        if not self.log.exists():
            return []
        return [line.split() for line in self.log.read_text().splitlines()]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )


def nginx_over_tls(tmp_path: Path) -> Iterator[Nginx]:
    """The ``tls_nginx`` fixture's body (see conftest.py)."""
    nginx = nginx_binary()
    if nginx is None or shutil.which("openssl") is None:
        if os.environ.get("AIOTEST_REQUIRE_NGINX"):
            raise AssertionError("nginx and openssl are needed: apt-get install nginx openssl")
        pytest.skip("needs nginx and openssl")
    pki = make_pki(tmp_path / "pki")
    run = tmp_path / "nginx"
    run.mkdir()
    run.chmod(0o777)  # nginx's workers run as nobody when started by root
    ports = [free_port() for _ in range(6)]
    port, short_port, h2_port, h2c_port, mtls_port, h2_short_port = ports
    conf = run / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(tmp=run, pki=pki.dir, port=port, short_port=short_port,
                          h2_port=h2_port, h2c_port=h2c_port, mtls_port=mtls_port,
                          h2_short_port=h2_short_port)
    )  # fmt: skip
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(run)], stderr=subprocess.PIPE, text=True
    )
    try:
        for p in ports:
            wait_for_port(p)
        base = "https://127.0.0.1"
        yield Nginx(f"{base}:{port}", f"{base}:{short_port}", f"{base}:{h2_port}",
                    f"http://127.0.0.1:{h2c_port}", f"{base}:{mtls_port}",
                    f"{base}:{h2_short_port}", pki, run / "access.log")  # fmt: skip
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
