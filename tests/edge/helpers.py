"""Helpers for the edge tests: coordinator/agent processes, a real nginx, a fixed-lifetime TCP proxy.

Everything here is a real process or a real socket: the coordinator and agents run as
``python -m agentswarm.cli ...`` subprocesses against the session redis-server from tests/conftest.py
(each test in its own namespace), nginx runs from /usr/sbin/nginx with a private prefix, and the
lifetime proxy is an asyncio TCP relay that closes every connection a fixed time after it opened
(what GKE's load balancer does at its backend timeout; nginx cannot do that).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from agentswarm.servers import free_port

TOKEN = "edge-test-token"


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def wait_until(predicate: Callable[[], bool], within: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {within}s")


class Proc:
    """A ``python -m agentswarm.cli`` subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentswarm.cli", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Swarm:
    """Coordinator + agents on one broker namespace, all real subprocesses."""

    def __init__(self, tmp: Path, broker_env: dict[str, str], namespace: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.base_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AGENTSWARM_")},
            **broker_env,
            "AGENTSWARM_NAMESPACE": namespace,
            "AGENTSWARM_CLAIM_IDLE_MS": "3000",
            "AGENTSWARM_MAX_DELIVERIES": "2",  # poison tasks dead-letter after two attempts
            "PYTHONUNBUFFERED": "1",
        }
        self.coordinator: Proc | None = None
        self.agents: list[Proc] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_coordinator(self, **extra_env: str) -> Proc:
        env = {
            **self.base_env,
            "AGENTSWARM_API_TOKEN": TOKEN,
            "AGENTSWARM_PORT": str(self.port),
            "AGENTSWARM_HOST": "127.0.0.1",
            "AGENTSWARM_SHUTDOWN_DRAIN_SECONDS": "0",
            **extra_env,
        }
        self.coordinator = Proc("coordinator", ["coordinator"], env, self.tmp).start()
        coord = self.coordinator

        def ready() -> bool:
            if coord.proc is not None and coord.proc.poll() is not None:
                raise RuntimeError(f"coordinator exited early:\n{coord.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.http}/readyz", timeout=2).status_code == 200
            return False

        wait_until(ready, 60, "coordinator /readyz 200")
        return coord

    def start_agent(self, index: int) -> Proc:
        name = f"agent-{index}"
        env = {
            **self.base_env,
            "AGENTSWARM_AGENT_ID": name,
            "AGENTSWARM_CHECKPOINT_DIR": str(self.tmp / "ckpt" / name),
            "AGENTSWARM_HANDLER": "agentswarm.handlers.steps:handle",
        }
        proc = Proc(name, ["agent"], env, self.tmp).start()
        self.agents.append(proc)
        return proc

    def stop(self) -> None:
        for proc in [*self.agents, *([self.coordinator] if self.coordinator else [])]:
            proc.stop()


# --- a test PKI --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA made for one test and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def create(cls, directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Pki:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentswarm test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        pki = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        pki.server_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return pki


# --- nginx -------------------------------------------------------------------------------------------


class Nginx:
    """A private nginx (non-daemon) reverse-proxying websockets with a short ``proxy_read_timeout``."""

    def __init__(self, prefix: Path, upstream_port: int, read_timeout_s: int, tls: Pki | None = None) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.upstream_port = upstream_port
        self.read_timeout_s = read_timeout_s
        self.tls = tls
        """With a PKI, nginx terminates TLS with its server certificate, as the GKE load balancer does."""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def config(self) -> str:
        user = "user root root;\n" if os.geteuid() == 0 else ""
        p = self.prefix
        return f"""{user}worker_processes 1;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{self.port}{" ssl" if self.tls else ""};
        {self._tls_lines()}
        location / {{
            proxy_pass http://127.0.0.1:{self.upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout {self.read_timeout_s}s;
            proxy_send_timeout {self.read_timeout_s}s;
        }}
    }}
}}
"""

    def _tls_lines(self) -> str:
        if self.tls is None:
            return ""
        return (
            f"ssl_certificate {self.tls.server_cert}; ssl_certificate_key {self.tls.server_key}; "
            "ssl_protocols TLSv1.2 TLSv1.3;"
        )

    def start(self) -> Nginx:
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config())
        log = (self.prefix / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.prefix / 'error.log').read_text()[-2000:]}")
            verify: Any = True
            if self.tls is not None:  # readiness only: the CA is checked, the name is the tests' business
                verify = ssl.create_default_context(cafile=str(self.tls.ca_cert))
                verify.check_hostname = False
            with contextlib.suppress(httpx.HTTPError):
                url = f"{self.scheme}://127.0.0.1:{self.port}/healthz"
                return httpx.get(url, timeout=2, verify=verify).status_code == 200
            return False

        wait_until(up, 30, "nginx proxying /healthz")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: master waits for its workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        assert self.proc is None or not pid_alive(self.proc.pid)


# --- fixed-lifetime TCP proxy ------------------------------------------------------------------------


class LifetimeProxy:
    """TCP relay that closes each connection ``lifetime`` seconds after accepting it, busy or not."""

    def __init__(self, upstream_port: int, lifetime: float) -> None:
        self.upstream_port = upstream_port
        self.lifetime = lifetime
        self.port = 0
        self.accepted = 0
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> LifetimeProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()

        pipes = [asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))]
        done, _ = await asyncio.wait(pipes, timeout=self.lifetime, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            self.cut += 1
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        for w in (writer, up_writer):
            # Abort: a load balancer ending a connection does not do a websocket closing handshake.
            with contextlib.suppress(Exception):
                w.transport.abort()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
