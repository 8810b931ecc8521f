"""Pulumi mock harness: run the real infra program (or any component) and record every registration.

Each run gets fresh mocks, monitor, root stack and config, so no state leaks between tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import runpy
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings as pulumi_settings
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
STACKS = ROOT / "stacks"
PROGRAM = ROOT / "infra" / "__main__.py"
STACK_NAMES = tuple(
    sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS.glob("Pulumi.*.yaml"))
)

FAKE_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"
MOCK_DIGEST = "sha256:" + "a" * 64
"""The digest an image build reports under the mocks unless a run asks for another."""
FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@dataclass
class Registered:
    """One resource registration as the engine would see it."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None
    urn: str = ""

    @property
    def parent_type_chain(self) -> list[str]:
        """Types of the ancestors (root first, then this resource), from the URN."""
        qualified = self.urn.split("::")[2]
        return qualified.split("$")

    @property
    def values(self) -> dict[str, Any]:
        """Inputs as the provider receives them: secrets unwrapped, integral floats as ints."""
        plain: dict[str, Any] = ints(self.inputs)
        return plain

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:") and not self.type.startswith("pulumi:providers:")


@dataclass
class Recording:
    resources: list[Registered] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, got {[r.name for r in found]}"
        return found[0]

    def by_name(self, name: str) -> Registered:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, got {len(found)}"
        return found[0]

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests() if m["kind"] == kind]

    def manifests(self) -> list[dict[str, Any]]:
        return [to_manifest(r) for r in self.resources if r.is_kubernetes]


def is_secret(value: Any) -> bool:
    """True for Pulumi's wire form of a secret: {<sig key>: <secret sig>, "value": ...}."""
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def ints(value: Any) -> Any:
    """Normalise mock inputs to what the provider sends the API server: mock numbers arrive as floats (the RPC
    layer has one number type), integral ones become ints again; secret wrappers are unwrapped."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if is_secret(value):
        return ints(value["value"])
    if isinstance(value, dict):
        return {k: ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [ints(v) for v in value]
    return value


def to_manifest(res: Registered) -> dict[str, Any]:
    """Turn the registered inputs of a Kubernetes resource into the manifest the provider would apply."""
    _, api, kind = res.type.split(":")
    api_version = api.removeprefix("core/")
    manifest = {k: ints(v) for k, v in res.inputs.items() if v is not None}
    manifest.setdefault("apiVersion", api_version)
    manifest.setdefault("kind", kind)
    return manifest


class RecordingMocks(Mocks):
    """Records every registration; returns inputs plus plausible computed outputs."""

    def __init__(self, recording: Recording, image_digest: str = MOCK_DIGEST) -> None:
        self.recording = recording
        self.image_digest = image_digest

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.recording.resources.append(Registered(args.typ, args.name, dict(args.inputs), args.provider))
        state = dict(args.inputs)
        typ = args.typ
        if typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"mock-secret-{args.name}"
        elif typ == "gcp:container/cluster:Cluster":
            state.update(
                name=args.inputs.get("name", args.name),
                endpoint="203.0.113.10",
                masterAuth={"clusterCaCertificate": "Y2EtZGF0YQ=="},
            )
        elif typ == "gcp:serviceaccount/account:Account":
            state["email"] = f"{args.inputs['accountId']}@mock-project.iam.gserviceaccount.com"
            state["name"] = f"projects/mock-project/serviceAccounts/{state['email']}"
        elif typ == "gcp:redis/instance:Instance":
            state.update(
                host="10.30.0.3",
                port=6378,
                authString="mock-auth-string",
                serverCaCerts=[{"cert": FAKE_CA}],
            )
        elif typ == "command:local:Command":
            state["stdout"] = FAKE_KUBECONFIG if "kubeconfig" in str(args.inputs.get("create", "")) else ""
        elif typ == "kubernetes:networking.k8s.io/v1:Ingress":
            state["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
        elif typ == "gcp:artifactregistry/repository:Repository":
            state["name"] = args.inputs.get("repositoryId", args.name)
        elif typ == "docker-build:index:Image":
            state["digest"] = self.image_digest
            state["ref"] = f"{args.inputs['tags'][0]}@{self.image_digest}"
        elif typ == "gcp:compute/network:Network":
            state["selfLink"] = f"projects/mock-project/global/networks/{args.inputs.get('name', args.name)}"
            state["id"] = state["selfLink"]
        return f"{args.name}-id", state

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.recording.calls.append((args.token, dict(args.args)))
        if args.token == "gcp:organizations/getClientConfig:getClientConfig":
            return {"accessToken": "mock-token", "project": "mock-project", "id": "x"}, []
        return {}, []


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` mapping of stacks/Pulumi.<stack>.yaml."""
    data = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())
    return dict(data.get("config") or {})


def encode_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Pulumi's wire form: strings stay strings, everything else JSON-encoded."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def agentswarm_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Strip the namespace: {"agentswarm:platform": "kind"} -> {"platform": "kind"}."""
    return {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("agentswarm:")}


def run_mocked(
    body: Callable[[], Any],
    config: Mapping[str, Any] | None = None,
    stack: str = "test",
    recording: Recording | None = None,
    secret_keys: Collection[str] = (),
    image_digest: str = MOCK_DIGEST,
) -> Recording:
    """Run ``body`` as a Pulumi program under fresh mocks; return everything it registered.

    ``secret_keys`` are the config keys the engine would report as stored with ``--secret``;
    ``image_digest`` is the digest every image build reports.

    Pass ``recording`` to inspect what was registered even when the program raises.
    """
    recording = Recording() if recording is None else recording
    # A fresh event loop per run: pytest-asyncio closes and unsets the loop of each async test, and the
    # mocked engine (from set_mocks on, which registers the root stack) needs a current one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = RecordingMocks(recording, image_digest)
    monitor = MockMonitor(mocks)
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_all_config(encode_config(config or {}), list(secret_keys))
    pulumi.runtime.set_mocks(mocks, project="agentswarm", stack=stack, preview=False, monitor=monitor)

    @pulumi.runtime.test
    def program() -> Any:
        result = body()
        # an Output returned by the body is awaited, and its value kept as outputs["result"]
        return pulumi.Output.from_input(result).apply(lambda v: recording.outputs.__setitem__("result", v))

    try:
        program()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        by_key = {}
        for urn in monitor.resources:
            _, _, qualified, name = urn.split("::", 3)
            by_key[(qualified.split("$")[-1], name)] = urn
        for res in recording.resources:
            res.urn = by_key.get((res.type, res.name), "")
        pulumi.runtime.set_all_config({}, [])
    return recording


def run_program(
    config: Mapping[str, Any],
    stack: str = "test",
    recording: Recording | None = None,
    secret_keys: Collection[str] = (),
    image_digest: str = MOCK_DIGEST,
) -> Recording:
    """Run the real infra/__main__.py with this stack config (keys like "agentswarm:platform")."""
    return run_mocked(
        lambda: runpy.run_path(str(PROGRAM), run_name="__main__"),
        config,
        stack,
        recording,
        secret_keys,
        image_digest,
    )


def run_stack(
    stack: str, overrides: Mapping[str, Any] | None = None, image_digest: str = MOCK_DIGEST
) -> Recording:
    config = stack_config(stack)
    config.update(overrides or {})
    return run_program(config, stack, image_digest=image_digest)


@contextlib.contextmanager
def only_tools_on_path(*tools: str) -> Iterator[Path]:
    """PATH holds exactly these executables (stand-ins that fail if ever run: mocks never run commands)."""
    with tempfile.TemporaryDirectory() as tmp:
        bin_dir = Path(tmp)
        for tool in tools:
            exe = bin_dir / tool
            exe.write_text("#!/bin/sh\necho 'test stand-in, must not run' >&2\nexit 97\n")
            exe.chmod(0o755)
        old = os.environ.get("PATH", "")
        os.environ["PATH"] = str(bin_dir)
        try:
            yield bin_dir
        finally:
            os.environ["PATH"] = old
