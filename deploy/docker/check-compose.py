#!/usr/bin/python3
"""check-compose.py - consistency checks on docker-compose.yml that need no
Docker engine (there is none on the development machines).

    /usr/bin/python3 deploy/docker/check-compose.py [docker-compose.yml]

Checks that:
  - every depends_on names a defined service, with a known condition, and a
    service_healthy dependency has a healthcheck;
  - every Quarry service picks a known binary (QUARRY_SERVICE);
  - its listen addresses bind 0.0.0.0 on the port docs/development.md gives it;
  - its health check asks /readyz on the port serving it;
  - every QUARRY_<NAME>_ADDR points at the compose service of that name, on
    its gRPC port;
  - every volume and build file it names exists.
Needs PyYAML (Debian python3-yaml), importable by /usr/bin/python3.
"""
import os
import re
import sys

import yaml

PORTS = {  # service: (grpc, side port or REST port)
    "gateway": (7000, 8080), "auth": (7001, 9101), "ingestion": (7002, 9102),
    "retriever": (7003, 9103), "reranker": (7004, 9104), "llm-gateway": (7005, 9105),
    "feedback": (7006, 9106),
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def main(path):
    repo = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        doc = yaml.safe_load(f)
    services = doc.get("services", {})
    volumes = set((doc.get("volumes") or {}).keys())
    problems = []

    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if dep not in services:
                problems.append(f"{name}: depends on undefined service {dep}")
                continue
            cond = (spec or {}).get("condition", "service_started")
            if cond not in CONDITIONS:
                problems.append(f"{name}: unknown condition {cond} for {dep}")
            if cond == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith("./"):
                if not os.path.exists(os.path.join(repo, src)):
                    problems.append(f"{name}: bind mount source {src} does not exist")
            elif src and src not in volumes:
                problems.append(f"{name}: volume {src} is not declared under volumes:")
        build = svc.get("build")
        if isinstance(build, dict):
            df = os.path.join(repo, build.get("context", "."), build.get("dockerfile", "Dockerfile"))
            if not os.path.isfile(df):
                problems.append(f"{name}: Dockerfile {df} not found")

        env = svc.get("environment", {}) or {}
        qs = env.get("QUARRY_SERVICE")
        if qs is None:
            continue
        if qs not in PORTS:
            problems.append(f"{name}: QUARRY_SERVICE={qs} is not a Quarry service")
            continue
        grpc, side = PORTS[qs]
        if env.get("QUARRY_GRPC_LISTEN") != f"0.0.0.0:{grpc}":
            problems.append(f"{name}: QUARRY_GRPC_LISTEN should be 0.0.0.0:{grpc}")
        listen = "QUARRY_HTTP_LISTEN" if qs == "gateway" else "QUARRY_METRICS_LISTEN"
        if env.get(listen) != f"0.0.0.0:{side}":
            problems.append(f"{name}: {listen} should be 0.0.0.0:{side}")
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        if f"127.0.0.1:{side}/readyz" not in test:
            problems.append(f"{name}: healthcheck should GET 127.0.0.1:{side}/readyz")
        for var, val in env.items():
            m = re.fullmatch(r"QUARRY_([A-Z_]+)_ADDR", var)
            if not m or var == "QUARRY_REDIS_ADDR":
                continue
            target = m.group(1).lower().replace("_", "-")
            if target not in PORTS:
                problems.append(f"{name}: {var} names no Quarry service")
            elif val != f"{target}:{PORTS[target][0]}" or target not in services:
                problems.append(f"{name}: {var}={val}, expected {target}:{PORTS[target][0]}")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"check-compose: {len(services)} services consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                               "docker-compose.yml")))
