"""Benchmark 5: the Pulumi program (infra/__main__.py) evaluated under mocks for the GKE stack.

The committed ``stacks/Pulumi.gke.yaml`` config with ``agentswarm:agents.replicas`` overridden to 5, 50, 500
and 5,000; each evaluation runs the real program under ``pulumi.runtime.set_mocks`` (no engine, no CLI, as in
tests/infra) and counts every registered resource. Nothing should grow with the number of agents (one
StatefulSet), so both the resource count and the time must stay flat.

Runs in a child process (``python -m bench.pulumi_eval REPEATS REPLICAS...``) that prints one JSON line, so
the imports and Pulumi's global state stay out of the orchestrator. One warm-up evaluation comes first.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, Summary

PROGRAM = ROOT / "infra" / "__main__.py"
STACK = ROOT / "stacks" / "Pulumi.gke.yaml"


def _evaluate(config: dict[str, Any]) -> tuple[float, int, dict[str, int]]:
    import pulumi
    import pulumi.runtime.settings as pulumi_settings
    from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

    registered: list[str] = []

    class _Mocks(Mocks):
        def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            registered.append(args.typ)
            state = dict(args.inputs)
            if args.typ == "random:index/randomPassword:RandomPassword":
                state["result"] = f"mock-secret-{args.name}"
            elif args.typ == "gcp:container/cluster:Cluster":
                state.update(endpoint="203.0.113.10", masterAuth={"clusterCaCertificate": "Y2E="})
            elif args.typ == "gcp:redis/instance:Instance":
                state.update(host="10.30.0.3", port=6378, authString="mock", serverCaCerts=[{"cert": "x"}])
            elif args.typ == "gcp:serviceaccount/account:Account":
                state["email"] = f"{args.inputs.get('accountId', args.name)}@mock.iam.gserviceaccount.com"
            return f"{args.name}-id", state

        def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
            if args.token == "gcp:organizations/getClientConfig:getClientConfig":
                return {"accessToken": "mock-token", "project": "mock-project"}, []
            return {}, []

    mocks = _Mocks()
    monitor = MockMonitor(mocks)
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    pulumi.runtime.set_mocks(mocks, project="agentswarm", stack="gke", preview=False, monitor=monitor)

    @pulumi.runtime.test
    def program() -> Any:
        return runpy.run_path(str(PROGRAM), run_name="__main__")

    t0 = time.perf_counter()
    program()
    elapsed = time.perf_counter() - t0
    pulumi.runtime.set_all_config({})
    by_type: dict[str, int] = {}
    for typ in registered:
        by_type[typ] = by_type.get(typ, 0) + 1
    return elapsed, len(registered), by_type


def _child(repeats: int, replicas: list[int]) -> dict[str, Any]:
    import yaml

    sys.path.insert(0, str(ROOT))
    base = dict((yaml.safe_load(STACK.read_text()) or {}).get("config") or {})
    out: dict[str, Any] = {}
    _evaluate({**base})  # warm-up: imports, provider plugins' Python modules
    for n in replicas:
        agents = dict(base.get("agentswarm:agents") or {})
        agents["replicas"] = n
        config = {**base, "agentswarm:agents": agents}
        times: list[float] = []
        counts: list[int] = []
        types: dict[str, int] = {}
        for _ in range(repeats):
            elapsed, count, types = _evaluate(config)
            times.append(elapsed)
            counts.append(count)
        sts = [t for t in types if t.endswith("StatefulSet")]
        out[str(n)] = {
            "seconds": Summary.of(times).as_dict(),
            "resources": counts,
            "statefulsets": sum(types[t] for t in sts),
            "by_type": types,
        }
    return out


def run_pulumi_eval(repeats: int, replicas: tuple[int, ...], timeout: float = 600) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pulumi_eval", str(repeats), *map(str, replicas)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pulumi evaluation failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    result = _child(int(sys.argv[1]), [int(x) for x in sys.argv[2:]])
    print(json.dumps(result))
