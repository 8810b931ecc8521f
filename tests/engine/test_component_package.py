"""The components as a Pulumi component package, seen from the engine and from TypeScript.

- ``pulumi package get-schema <dir>`` starts a Python plugin through the engine and this project's language
  host (its RunPlugin), on a self-contained plugin served by ``component_provider_host`` in a virtualenv with
  only the ``pulumi`` SDK (see docs/engine.md for why the agentswarm plugin itself cannot go through the CLI's
  install step here: it depends on pulumi-random, whose provider cannot be built).
- ``provider/`` (the real package) is started exactly as the engine starts a plugin
  (``python <dir> <engine>``, port on stdout) and asked for its schema over gRPC; the schema is checked
  (types, enums, required inputs, descriptions), its TypeScript SDK generated with ``pulumi-sdkgen-nodejs``
  (Pulumi's Node.js code generator) and a TypeScript program using it type-checked with ``tsc`` from npm;
  a wrong program must fail to check.

Like the other engine tests these fail, never skip, when the engine is not built. npm packages are installed
once into ``AGENTSWARM_NPM_CACHE`` (default ``~/.cache/agentswarm/tsc``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components import public_args
from components.config import SwarmConfig

REPO = Path(__file__).resolve().parents[2]
PULUMI_SDK_VERSION = "3.272.0"
NPM_PACKAGES = ["typescript@5.9", "@pulumi/pulumi@3.270.0", "@types/node@20"]
"""tsc and the Node.js SDK's types (npm serves no 3.272.x of @pulumi/pulumi; 3.270.0 is the nearest below)."""


def _engine_bin() -> Path:
    proc = subprocess.run(
        [str(REPO / "scripts" / "pulumi-engine"), "--print"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, "the Pulumi engine is not built; run scripts/pulumi-engine before pytest"
    return Path(proc.stdout.strip())


def _env(tmp: Path, bin_dir: Path) -> dict[str, str]:
    home = tmp / "pulumi-home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PULUMI_HOME": str(home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "agent_image")]),
    }


PROBE = '''
from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi.provider.experimental import component_provider_host


class GreetingArgs(TypedDict):
    text: pulumi.Input[str]
    """What to say."""
    times: NotRequired[int]
    """How often."""


class Greeting(pulumi.ComponentResource):
    """Says something."""

    said: pulumi.Output[str]
    """What was said."""

    def __init__(self, name: str, args: GreetingArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("probe:index:Greeting", name, {}, opts)
        self.said = pulumi.Output.from_input(args["text"])
        self.register_outputs({"said": self.said})


if __name__ == "__main__":
    component_provider_host([Greeting], name="probe", version="1.2.3")
'''


@pytest.mark.timeout(600)
def test_cli_runs_a_python_plugin_through_the_language_host(tmp_path: Path) -> None:
    bin_dir = _engine_bin()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"pulumi=={PULUMI_SDK_VERSION}"]
    subprocess.run(pip, check=True, timeout=400)
    plugin = tmp_path / "probe"
    plugin.mkdir()
    (plugin / "__main__.py").write_text(PROBE, encoding="utf-8")
    (plugin / "PulumiPlugin.yaml").write_text(
        f"runtime:\n  name: python\n  options:\n    virtualenv: {venv}\n", encoding="utf-8"
    )
    proc = subprocess.run(
        ["pulumi", "package", "get-schema", str(plugin)],
        env=_env(tmp_path, bin_dir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["name"] == "probe" and schema["version"] == "1.2.3"
    res = schema["resources"]["probe:index:Greeting"]
    assert res["isComponent"] is True and res["description"] == "Says something."
    assert res["requiredInputs"] == ["text"]
    assert res["inputProperties"]["times"] == {"type": "integer", "plain": True, "description": "How often."}
    assert res["properties"]["said"] == {"type": "string", "description": "What was said."}


@pytest.fixture(scope="module")
def package_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The schema ``provider/`` serves, asked over gRPC from the plugin process the engine would start."""
    tmp = tmp_path_factory.mktemp("package")
    env = _env(tmp, _engine_bin())
    proc = subprocess.Popen(
        # The engine address is only used by construct, which this test does not call.
        [sys.executable, str(REPO / "provider"), "127.0.0.1:1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"plugin printed no port: {line!r}"
        with grpc.insecure_channel(f"127.0.0.1:{int(line)}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            reply = stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=60)
        yield json.loads(reply.schema)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_schema_types_required_inputs_and_descriptions(package_schema: dict[str, Any]) -> None:
    schema = package_schema
    assert schema["name"] == "agentswarm"
    blocks = [
        "AgentSwarm",
        "SwarmNamespace",
        "Redis",
        "Nats",
        "Coordinator",
        "AgentPool",
        "AgentAutoscaler",
        "SwarmMonitoring",
    ]
    assert set(schema["resources"]) == {f"agentswarm:index:{name}" for name in blocks}
    swarm = schema["resources"]["agentswarm:index:AgentSwarm"]
    assert swarm["isComponent"] is True and swarm["requiredInputs"] == ["config"]
    assert swarm["inputProperties"]["config"]["$ref"] == "#/types/agentswarm:index:SwarmConfig"
    assert swarm["inputProperties"]["image"]["type"] == "string"  # an Input: not plain
    assert "plain" not in swarm["inputProperties"]["image"]
    assert swarm["properties"]["coordinatorPort"]["type"] == "integer"
    assert swarm["properties"]["agentReplicas"]["description"] == "Agent replicas requested."
    assert set(swarm["required"]) == {
        "namespace",
        "coordinatorService",
        "coordinatorPort",
        "coordinatorAddress",
        "apiTokenSecretName",
        "redisUrl",
        "agentStatefulset",
        "agentReplicas",
    }
    types = schema["types"]
    cfg = types["agentswarm:index:SwarmConfig"]
    assert cfg["required"] == ["platform"]
    assert cfg["properties"]["platform"]["$ref"] == "#/types/agentswarm:index:SwarmPlatform"
    assert {"cluster", "gcp", "kubernetes"}.isdisjoint(cfg["properties"])
    platform = types["agentswarm:index:SwarmPlatform"]
    assert platform["type"] == "string" and [e["value"] for e in platform["enum"]] == ["kind", "gke"]
    agents = types["agentswarm:index:AgentsConfig"]["properties"]
    assert agents["replicas"] == {
        "type": "integer",
        "plain": True,
        "description": SwarmConfig.model_fields["agents"].annotation.model_fields["replicas"].description  # type: ignore[union-attr]
        + " Default: ``50``.",
    }
    egress = agents["egressAllow"]
    assert egress["type"] == "array" and egress["items"]["$ref"] == "#/types/agentswarm:index:EgressRule"
    assert types["agentswarm:index:EgressRule"]["required"] == ["cidr"]
    namespace = schema["resources"]["agentswarm:index:SwarmNamespace"]
    assert namespace["requiredInputs"] == ["namespace"]
    # The building blocks: what wires one to another is typed, the config sections are the generated ones.
    coordinator = schema["resources"]["agentswarm:index:Coordinator"]
    assert set(coordinator["requiredInputs"]) == {"namespace", "image", "exposure"}
    assert coordinator["inputProperties"]["config"]["$ref"] == "#/types/agentswarm:index:CoordinatorConfig"
    assert coordinator["inputProperties"]["exposure"]["$ref"] == "#/types/agentswarm:index:SwarmExposure"
    assert coordinator["inputProperties"]["redis"]["$ref"] == "#/types/agentswarm:index:RedisConnection"
    assert coordinator["properties"]["port"]["type"] == "integer"
    assert "`coordinator_port`" in coordinator["properties"]["port"]["description"]
    connection = types["agentswarm:index:RedisConnection"]
    assert set(connection["required"]) == {"url", "passwordSecret"}
    assert "plain" not in connection["properties"]["url"]  # another resource's output fits
    redis = schema["resources"]["agentswarm:index:Redis"]
    assert redis["requiredInputs"] == ["namespace"]
    assert redis["inputProperties"]["config"]["$ref"] == "#/types/agentswarm:index:RedisConfig"
    assert set(redis["properties"]) == {"host", "port", "secretName", "url"}
    pool = schema["resources"]["agentswarm:index:AgentPool"]
    assert set(pool["requiredInputs"]) == {"namespace", "image"}
    assert pool["inputProperties"]["coordinatorPort"]["type"] == "integer"
    assert "plain" not in pool["inputProperties"]["coordinatorPort"]
    assert pool["properties"]["statefulsetName"]["description"] == "Name of the agents' StatefulSet."
    scaler = schema["resources"]["agentswarm:index:AgentAutoscaler"]
    assert set(scaler["requiredInputs"]) == {"namespace", "statefulsetName", "config"}
    assert scaler["inputProperties"]["config"]["$ref"] == "#/types/agentswarm:index:AutoscalingConfig"
    for token in (f"agentswarm:index:{name}" for name in blocks):
        res = schema["resources"][token]
        assert res["isComponent"] is True and res["description"], token
        for key, prop in [*res["inputProperties"].items(), *res["properties"].items()]:
            assert prop.get("description"), f"{token}.{key}"
    # Every schema type is one of the generated public args or one of the few shapes the package itself
    # declares (how the blocks connect), so no config section is hand-kept.
    own = {"ManagedRedis", "RedisConnection", "NatsConnection", "EdgeRefs", "ScrapeTarget"}
    for token in types:
        name = token.rsplit(":", 1)[1]
        assert hasattr(public_args, name) or name in own, name


TS_PROGRAM = """
import * as pulumi from "@pulumi/pulumi";
import * as agentswarm from "./sdk";

const cfg = new pulumi.Config();
const swarm = new agentswarm.AgentSwarm("swarm", {
    config: {
        platform: agentswarm.SwarmPlatform.KIND,
        broker: agentswarm.SwarmBroker.NATS,
        agents: { replicas: 3, handler: "myagents.handlers:handle", egressAllow: [{ cidr: "0.0.0.0/0" }] },
    },
    image: cfg.get("image") ?? "agentswarm:dev",
});
const extra = new agentswarm.SwarmNamespace("extra", { namespace: "agents-extra" });
export const port: pulumi.Output<number> = swarm.coordinatorPort;
export const namespaces = pulumi.all([swarm.namespace, extra.namespace]);
"""

TS_PARTS = """
import * as pulumi from "@pulumi/pulumi";
import * as agentswarm from "./sdk";

const ns = new agentswarm.SwarmNamespace("ns", { namespace: "team-a", instance: "team" });
const redis = new agentswarm.Redis("redis", {
    namespace: ns.namespace,
    instance: "team",
    config: { aof: true },
});
const broker = { url: redis.url, passwordSecret: redis.secretName };
const coordinator = new agentswarm.Coordinator("coordinator", {
    namespace: ns.namespace,
    instance: "team",
    image: "agentswarm:dev",
    exposure: agentswarm.SwarmExposure.NODEPORT,
    redis: broker,
    config: { replicas: 2 },
});
const agents = new agentswarm.AgentPool("agents", {
    namespace: ns.namespace,
    instance: "team",
    image: "agentswarm:dev",
    redis: broker,
    coordinatorPort: coordinator.port,
    config: { replicas: 4, handler: "myagents.handlers:handle" },
});
export const statefulset: pulumi.Output<string> = agents.statefulsetName;
export const tokenSecret: pulumi.Output<string> = coordinator.apiTokenSecretName;
"""
"""A swarm assembled from the building blocks: the broker's outputs feed the coordinator and the agents."""


def _npm_tools() -> Path:
    cache = Path(os.environ.get("AGENTSWARM_NPM_CACHE", Path.home() / ".cache" / "agentswarm" / "tsc"))
    stamp = cache / "installed.txt"
    if not stamp.is_file() or stamp.read_text(encoding="utf-8") != " ".join(NPM_PACKAGES):
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "package.json").write_text('{"private": true}\n', encoding="utf-8")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", *NPM_PACKAGES],
            cwd=cache,
            check=True,
            timeout=500,
        )
        stamp.write_text(" ".join(NPM_PACKAGES), encoding="utf-8")
    return cache / "node_modules"


def _tsc(app: Path, modules: Path, program: str) -> subprocess.CompletedProcess[str]:
    (app / "index.ts").write_text(textwrap.dedent(program), encoding="utf-8")
    return subprocess.run(
        ["node", str(modules / "typescript" / "bin" / "tsc"), "-p", str(app)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.timeout(900)
def test_typescript_sdk_type_checks_a_program(package_schema: dict[str, Any], tmp_path: Path) -> None:
    bin_dir = _engine_bin()
    app = tmp_path / "app"
    app.mkdir()
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(package_schema), encoding="utf-8")
    gen = subprocess.run(
        [str(bin_dir / "pulumi-sdkgen-nodejs"), str(schema_file), str(app / "sdk")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert gen.returncode == 0, gen.stderr
    assert (app / "sdk" / "agentSwarm.ts").is_file()
    modules = _npm_tools()
    (app / "node_modules").symlink_to(modules)
    tsconfig = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "es2020",
            "module": "commonjs",
            "moduleResolution": "node",
            "skipLibCheck": True,
            "types": ["node"],
        },
        "files": ["index.ts"],
    }
    (app / "tsconfig.json").write_text(json.dumps(tsconfig), encoding="utf-8")
    good = _tsc(app, modules, TS_PROGRAM)
    assert good.returncode == 0, good.stdout + good.stderr
    # The check can fail: a string where the schema says integer, and a required input left out.
    wrong = _tsc(app, modules, TS_PROGRAM.replace("replicas: 3", 'replicas: "3"'))
    assert wrong.returncode != 0, wrong.stdout
    assert "Type 'string' is not assignable to type 'number'" in wrong.stdout, wrong.stdout
    missing = _tsc(app, modules, TS_PROGRAM.replace("platform: agentswarm.SwarmPlatform.KIND,", ""))
    assert missing.returncode != 0 and "platform" in missing.stdout, missing.stdout
    parts = _tsc(app, modules, TS_PARTS)
    assert parts.returncode == 0, parts.stdout + parts.stderr
    # The wiring is checked too: the coordinator's exposure is required, a broker needs its Secret.
    no_exposure = _tsc(app, modules, TS_PARTS.replace("exposure: agentswarm.SwarmExposure.NODEPORT,", ""))
    assert no_exposure.returncode != 0 and "exposure" in no_exposure.stdout, no_exposure.stdout
    no_secret = _tsc(app, modules, TS_PARTS.replace(", passwordSecret: redis.secretName", ""))
    assert no_secret.returncode != 0 and "passwordSecret" in no_secret.stdout, no_secret.stdout
