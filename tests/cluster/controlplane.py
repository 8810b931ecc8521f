"""A private Kubernetes control plane on loopback: etcd, kube-apiserver, controller-manager, scheduler, kwok.

Why: mocks and rendered YAML never meet an API server, so server-side validation, admission (Pod Security
``restricted``), defaulting, immutable fields, CRD schemas and the Pulumi provider's await logic go untested.
This module starts the real binaries that ``scripts/kube-controlplane`` builds, the way the runtime tests
start redis-server: free ports on 127.0.0.1, everything (certificates, etcd data, logs) in one work directory,
stopped and removed at the end.

No kubelet can run here. kwok stands in for it: nodes it manages heartbeat and pods bound to them become
Running and Ready (their containers never run). No volume provisioner runs either: ``create_volumes`` makes
PersistentVolumes that the controller-manager's binder gives to claims. No ingress controller runs:
``IngressStatusWriter`` publishes an address on each Ingress, as the GKE Ingress controller does once its load
balancer exists, so the provider's await for Ingresses ends.

By hand (the process tree stays up until Ctrl-C)::

    python3 tests/cluster/controlplane.py /tmp/kube
    export KUBECONFIG=/tmp/kube/admin.kubeconfig
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "kube-controlplane"
SCHEMA_DIR = REPO / "components" / "schemas"

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
AGENT_POOL_LABEL = "agentswarm.io/pool"
AGENT_POOL_VALUE = "agents"


class ControlPlaneError(RuntimeError):
    """A control-plane binary is missing, did not start, or the API server refused a setup request."""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binaries_dir() -> Path:
    """The bin directory ``scripts/kube-controlplane`` built; fails with the command to run when not built."""
    proc = subprocess.run([str(BUILD_SCRIPT), "--print"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        where = os.environ.get("AGENTSWARM_CONTROLPLANE_DIR", str(REPO / ".kube-controlplane"))
        raise ControlPlaneError(
            f"the local control plane is not built in {where}: run scripts/kube-controlplane first "
            f"({proc.stderr.strip()})"
        )
    return Path(proc.stdout.strip())


# --- certificates ----------------------------------------------------------------------------------------


@dataclass
class Certs:
    """A private CA and what it signs: the API server's serving cert and the admin's client cert (group
    ``system:masters``), plus the key pair that signs service-account tokens."""

    dir: Path

    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def path(self, name: str) -> Path:
        return self.dir / name

    @classmethod
    def generate(cls, directory: Path) -> Certs:
        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentswarm-test-ca")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(directory / "ca.key", ca_key)
        (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

        def leaf(name: str, cn: str, orgs: list[str], server: bool) -> None:
            key = ec.generate_private_key(ec.SECP256R1())
            subject = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
            subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name(subject))
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage(
                        [
                            x509.ExtendedKeyUsageOID.SERVER_AUTH
                            if server
                            else x509.ExtendedKeyUsageOID.CLIENT_AUTH
                        ]
                    ),
                    critical=False,
                )
            )
            if server:
                service_ip = ipaddress.IPv4Network(SERVICE_CIDR)[1]
                names: list[x509.GeneralName] = [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(service_ip),
                    x509.DNSName("localhost"),
                ]
                names += [
                    x509.DNSName(n)
                    for n in (
                        "kubernetes",
                        "kubernetes.default",
                        "kubernetes.default.svc",
                        "kubernetes.default.svc.cluster.local",
                    )
                ]
                builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            _write_key(directory / f"{name}.key", key)
            (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

        leaf("apiserver", "kube-apiserver", [], server=True)
        leaf("admin", "agentswarm-test-admin", ["system:masters"], server=False)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(directory / "sa.key", sa_key)
        (directory / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(directory)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


# --- REST client -----------------------------------------------------------------------------------------


class ApiError(Exception):
    """The API server answered with an error Status; ``status`` is its HTTP code, ``body`` its Status."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class Kube:
    """A small JSON client for the API server with the admin's client certificate (no kubectl here)."""

    def __init__(self, server: str, certs: Certs) -> None:
        ctx = ssl.create_default_context(cafile=str(certs.ca()))
        ctx.load_cert_chain(str(certs.path("admin.crt")), str(certs.path("admin.key")))
        self.http = httpx.Client(base_url=server, verify=ctx, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        headers = {"Content-Type": "application/json"}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        resp = self.http.request(
            method, path, content=None if body is None else json.dumps(body), headers=headers, params=params
        )
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, data)
        return data

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, **params)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create(self, path: str, obj: dict[str, Any]) -> Any:
        return self.request("POST", path, obj)

    def delete(self, path: str) -> None:
        with contextlib.suppress(ApiError):
            self.request("DELETE", path)

    def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        return list(self.get(path, **params).get("items") or [])

    def resource_path(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> str:
        """The URL path of one object, its resource name found by discovery."""
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        for res in self.get(prefix).get("resources", []):
            if res.get("kind") == kind and "/" not in res["name"]:
                ns = f"/namespaces/{namespace}" if res.get("namespaced") and namespace else ""
                return f"{prefix}{ns}/{res['name']}/{name}"
        raise ControlPlaneError(f"the API server serves no {kind} in {api_version}")

    def namespaced_resources(self) -> list[str]:
        """Collection paths (``/api/v1/namespaces/{ns}/pods`` style, ``{ns}`` left in) of every listable
        namespaced resource the server serves, built-in and custom, from discovery."""
        paths: list[str] = []
        groups = [("/api/v1", self.get("/api/v1"))]
        for group in self.get("/apis").get("groups", []):
            gv = group["preferredVersion"]["groupVersion"]
            groups.append((f"/apis/{gv}", self.get(f"/apis/{gv}")))
        for prefix, doc in groups:
            for res in doc.get("resources", []):
                if "/" in res["name"] or not res.get("namespaced") or "list" not in res.get("verbs", []):
                    continue
                paths.append(f"{prefix}/namespaces/{{ns}}/{res['name']}")
        return paths

    def objects_in_namespace(self, namespace: str) -> list[str]:
        """``kind/name`` of every object left in ``namespace``, over every namespaced resource type."""
        left: list[str] = []
        for template in self.namespaced_resources():
            if template.endswith("/events"):  # the events about the deleted objects are not objects of ours
                continue
            try:
                items = self.items(template.format(ns=namespace))
            except ApiError as exc:
                if exc.status in (404, 405):
                    continue
                raise
            resource = template.rsplit("/", 1)[1]
            left += [f"{resource}/{i['metadata']['name']}" for i in items]
        return left


# --- CRDs ------------------------------------------------------------------------------------------------

# JSON-schema keywords a CRD's OpenAPI v3 (structural) schema accepts as they are.
_KEEP = {
    "type",
    "description",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "enum",
    "required",
    "default",
    "nullable",
    "minProperties",
    "maxProperties",
}


def openapi_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The structural OpenAPI v3 form of one of the project's JSON schemas (draft 2020-12).

    ``const`` becomes a one-value ``enum``; ``additionalProperties: false`` is dropped (a structural schema
    prunes unknown fields instead, and the API server warns about them under server-side apply);
    ``additionalProperties`` with a schema stays a map; int64 bounds become ``format: int64``; ``anyOf``
    integer or string becomes ``x-kubernetes-int-or-string``; a keyword a
    CRD cannot express is an error, so a schema change that loses a constraint cannot go unnoticed.
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _KEEP:
            out[key] = value
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {k: openapi_schema(v) for k, v in value.items()}
        elif key == "items":
            out["items"] = openapi_schema(value)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out["additionalProperties"] = openapi_schema(value)
        elif key in ("$schema", "title", "$comment", "examples", "x-kubernetes-group-version-kind"):
            continue
        elif key == "anyOf" and sorted(str(v.get("type")) for v in value) == ["integer", "string"]:
            # int-or-string (a quantity, say): the one place a structural schema allows typed alternatives
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            out["x-kubernetes-int-or-string"] = True
        elif key in ("oneOf", "anyOf", "allOf", "not"):
            # Structural schemas allow these only over the same fields, without types: keep them as such.
            out[key] = [_validation_only(openapi_schema(v)) for v in value] if key != "not" else value
        else:
            raise ControlPlaneError(f"JSON-schema keyword {key!r} has no CRD equivalent")
    if "enum" in out and "type" not in out:
        out["type"] = _json_type(out["enum"][0])
    if out.get("type") == "integer" and (out.get("minimum"), out.get("maximum")) == (-(2**63), 2**63 - 1):
        # The int64 range as bounds: a CRD keeps bounds as float64, where 2**63 - 1 is not an integer, and
        # says the same thing with its format.
        del out["minimum"], out["maximum"]
        out["format"] = "int64"
    return out


def _validation_only(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("type", "description", "default", "nullable")}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def crds_from_schemas(schema_dir: Path = SCHEMA_DIR) -> list[dict[str, Any]]:
    """A CRD for every custom kind the project keeps a JSON schema for and upstream publishes no CRD for.

    The file name says ``<singular>.<group>_<version>.json``; the plural is the singular plus ``s`` (true
    of every kind here: backendconfigs, gcpbackendpolicies needs ``ies``, handled below).
    """
    crds: list[dict[str, Any]] = []
    for path in sorted(schema_dir.glob("*.json")):
        stem = path.stem
        singular_group, version = stem.rsplit("_", 1)
        singular, group = singular_group.split(".", 1)
        if group == "gateway.networking.k8s.io":
            continue  # installed from the upstream Gateway API CRDs instead
        schema = json.loads(path.read_text())
        kind = schema["properties"]["kind"]["const"]
        plural = singular[:-1] + "ies" if singular.endswith("y") else singular + "s"
        props = {
            k: openapi_schema(v)
            for k, v in schema.get("properties", {}).items()
            if k not in ("apiVersion", "kind", "metadata")
        }
        body: dict[str, Any] = {"type": "object", "properties": props}
        required = [r for r in schema.get("required", []) if r in props]
        if required:
            body["required"] = required
        version_doc: dict[str, Any] = {
            "name": version,
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": body},
        }
        if "status" in props:
            version_doc["subresources"] = {"status": {}}
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {
                    "group": group,
                    "scope": "Namespaced",
                    "names": {
                        "kind": kind,
                        "singular": singular,
                        "plural": plural,
                        "listKind": f"{kind}List",
                    },
                    "versions": [version_doc],
                },
            }
        )
    return crds


# --- processes -------------------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ControlPlaneError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok in ``workdir``."""

    workdir: Path
    bin: Path = field(default_factory=binaries_dir)
    components: list[Component] = field(default_factory=list)
    api_port: int = 0
    kube: Kube | None = None
    ingress_writer: IngressStatusWriter | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def client(self) -> Kube:
        assert self.kube is not None, "control plane not started"
        return self.kube

    def start(self, timeout: float = 180.0) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = Certs.generate(self.workdir / "pki")
        self.api_port = free_port()
        self._write_kubeconfig(certs)
        etcd_client, etcd_peer = free_port(), free_port()
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        kubeconfig = str(self.kubeconfig)
        p = certs.path
        etcd = Component(
            "etcd",
            [
                str(self.bin / "etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                # a throw-away store: durability buys nothing and costs seconds per write
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        apiserver = Component(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={p('apiserver.crt')}",
                f"--tls-private-key-file={p('apiserver.key')}",
                f"--client-ca-file={certs.ca()}",
                f"--service-account-key-file={p('sa.pub')}",
                f"--service-account-signing-key-file={p('sa.key')}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--profiling=false",
            ],
            logs / "kube-apiserver.log",
        )
        self.components = [etcd, apiserver]
        etcd.start(self.workdir)
        self._wait(etcd, lambda: _http_ok(f"http://127.0.0.1:{etcd_client}/health"), timeout)
        apiserver.start(self.workdir)
        self.kube = Kube(self.server, certs)
        self._wait(apiserver, self._ready, timeout)
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        kcm = Component(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                *common,
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={p('sa.key')}",
                f"--root-ca-file={certs.ca()}",
                f"--cluster-signing-cert-file={certs.ca()}",
                f"--cluster-signing-key-file={p('ca.key')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=false",
            ],
            logs / "kube-controller-manager.log",
        )
        scheduler = Component(
            "kube-scheduler",
            [str(self.bin / "kube-scheduler"), *common, f"--secure-port={free_port()}"],
            logs / "kube-scheduler.log",
        )
        stages = self.bin.parent / "kwok-stages"
        kwok = Component(
            "kwok",
            [
                str(self.bin / "kwok"),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--cidr={POD_CIDR}",
                "--node-ip=10.240.0.1",
                "--node-lease-duration-seconds=40",
                *[f"--config={s}" for s in sorted(stages.glob("*.yaml"))],
            ],
            logs / "kwok.log",
        )
        for comp in (kcm, scheduler, kwok):
            comp.start(self.workdir)
            self.components.append(comp)
        self._install_crds()
        self.ingress_writer = IngressStatusWriter(self.client)
        self.ingress_writer.start()
        return self

    def stop(self) -> None:
        if self.ingress_writer is not None:
            self.ingress_writer.stop()
        for comp in reversed(self.components):
            comp.stop()
        if self.kube is not None:
            self.kube.close()

    def check_alive(self) -> None:
        for comp in self.components:
            comp.check_alive()

    def logs(self, chars: int = 1500) -> str:
        return "\n".join(f"--- {c.name} ---\n{c.tail(chars)}" for c in self.components)

    def _write_kubeconfig(self, certs: Certs) -> None:
        def b64(name: str) -> str:
            return base64.b64encode(certs.path(name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _ready(self) -> bool:
        try:
            self.client.get("/readyz")
        except (ApiError, httpx.HTTPError):
            return False
        return True

    def _wait(self, comp: Component, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            comp.check_alive()
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{comp.name} not ready after {timeout}s:\n{comp.tail()}")
            time.sleep(0.25)

    def wait_for(self, what: str, predicate: Any, timeout: float = 120.0) -> Any:
        """Poll ``predicate()`` until it returns something truthy; fail with the components' logs."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")
            time.sleep(0.5)

    # --- cluster content -------------------------------------------------------------------------------

    def _install_crds(self) -> None:
        crds = crds_from_schemas()
        gateway_dir = self.bin.parent / "crds" / "gateway-api"
        for path in sorted(gateway_dir.glob("*.yaml")):
            crds += [d for d in yaml.safe_load_all(path.read_text()) if d]
        for crd in crds:
            self.client.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        names = [c["metadata"]["name"] for c in crds]

        def established() -> bool:
            for name in names:
                got = self.client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conds = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions", [])}
                if conds.get("Established") != "True":
                    return False
            return True

        self.wait_for("CRDs established", established, 60)

    def add_nodes(self, zone: str = "europe-west1-b") -> list[str]:
        """Two kwok nodes shaped like the GKE stack's pools: a system node, and an agent node carrying the
        agent pool's label and ``NoSchedule`` taint. Waits until both are Ready."""
        agent_taint = {"key": AGENT_POOL_LABEL, "value": AGENT_POOL_VALUE, "effect": "NoSchedule"}
        nodes: list[tuple[str, dict[str, str], list[dict[str, str]]]] = [
            ("kwok-system-0", {}, []),
            ("kwok-agents-0", {AGENT_POOL_LABEL: AGENT_POOL_VALUE}, [agent_taint]),
        ]
        resources = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        for name, labels, taints in nodes:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "topology.kubernetes.io/zone": zone,
                        "type": "kwok",
                        **labels,
                    },
                },
                "spec": {"taints": taints},
                "status": {"capacity": resources, "allocatable": resources},
            }
            if not self.client.exists(f"/api/v1/nodes/{name}"):
                self.client.create("/api/v1/nodes", node)

        def ready() -> bool:
            for name, _, _ in nodes:
                conds = self.client.get(f"/api/v1/nodes/{name}").get("status", {}).get("conditions") or []
                if not any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                    return False
            return True

        self.wait_for("kwok nodes Ready", ready, 60)
        return [n[0] for n in nodes]

    def create_storage_class(self, name: str, default: bool = False) -> None:
        """A StorageClass with no provisioner: claims of it bind only to pre-created volumes."""
        if self.client.exists(f"/apis/storage.k8s.io/v1/storageclasses/{name}"):
            return
        annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        self.client.create(
            "/apis/storage.k8s.io/v1/storageclasses",
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": name, "annotations": annotations},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "Immediate",
                "reclaimPolicy": "Retain",
            },
        )

    def create_volumes(self, prefix: str, count: int, size: str, storage_class: str) -> list[str]:
        """``count`` ReadWriteOnce PersistentVolumes of ``size`` in ``storage_class`` for claims to bind."""
        names = []
        for i in range(count):
            name = f"{prefix}-{i}"
            self.client.create(
                "/api/v1/persistentvolumes",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name, "labels": {"agentswarm.test/volume-set": prefix}},
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": storage_class,
                        # Nothing mounts it (kwok runs no container); the path only makes the volume valid.
                        "hostPath": {"path": f"/var/lib/agentswarm-test/{name}", "type": "DirectoryOrCreate"},
                    },
                },
            )
            names.append(name)
        return names

    def delete_volumes(self, prefix: str) -> None:
        for pv in self.client.items(
            "/api/v1/persistentvolumes", labelSelector=f"agentswarm.test/volume-set={prefix}"
        ):
            self.client.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class IngressStatusWriter:
    """Plays the part of the GKE Ingress controller's last step: once an Ingress exists, its status gets the
    load balancer's address (a documentation address, 192.0.2.0/24, that nothing ever dials). The provider's
    Ingress await waits for exactly that; the rest of what the controller does (NEGs, backends, the
    BackendConfig's timeout on the backend service) is GCP's and cannot be shown here."""

    ADDRESS = "192.0.2.10"

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingress-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(ApiError, httpx.HTTPError):
                for ing in self.kube.items("/apis/networking.k8s.io/v1/ingresses"):
                    lb = (ing.get("status") or {}).get("loadBalancer") or {}
                    if lb.get("ingress") or ing["metadata"].get("deletionTimestamp"):
                        continue
                    meta = ing["metadata"]
                    self.kube.request(
                        "PATCH",
                        f"/apis/networking.k8s.io/v1/namespaces/{meta['namespace']}/ingresses/{meta['name']}/status",
                        {"status": {"loadBalancer": {"ingress": [{"ip": self.ADDRESS}]}}},
                    )


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(workdir)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: controlplane.py WORKDIR", file=sys.stderr)
        return 2
    workdir = Path(argv[0]).resolve()
    with running(workdir) as cp:
        cp.add_nodes()
        print(
            f"API server {cp.server}\nexport KUBECONFIG={cp.kubeconfig}\nlogs in {workdir / 'logs'}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                cp.check_alive()
                time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
