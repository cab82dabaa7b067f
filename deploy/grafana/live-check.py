#!/usr/bin/python3
"""live-check.py - the dashboard and the alert rules against a running Quarry.

    QUARRY_BIN=build/bin /usr/bin/python3 deploy/grafana/live-check.py

Starts the local stack (deploy/local/stack.py, test mode: private
PostgreSQL, Redis, quarry-devbroker and the seven services on free loopback
ports), ingests the bundled samples, runs queries, feedback and a few bad
requests, then starts the real Prometheus (Debian `prometheus`) scraping
every service as job quarry-<service> with deploy/prometheus/alerts.yml
loaded, and checks that:

  - every scrape passes `promtool check metrics`;
  - every metric a dashboard panel queries is exposed (deploy/grafana/check.sh);
  - every panel query returns data from Prometheus' HTTP API, except the
    panels listed in MAY_BE_EMPTY (they only show something after failures);
  - every alerting rule loads with health "ok" and none is firing.

Everything it starts is stopped by pid at the end. Exit status 0 when all
checks pass.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "deploy", "local"))
from stack import Stack, api  # noqa: E402

SERVICES = ["gateway", "auth", "ingestion", "retriever", "reranker", "llm-gateway", "feedback"]
DASHBOARD = os.path.join(HERE, "quarry-dashboard.json")
ALERTS = os.path.join(REPO, "deploy", "prometheus", "alerts.yml")
# Panels fed only by failures: no data in a healthy run is right.
MAY_BE_EMPTY = {"Outbox events / s by outcome"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def prom_query(port, expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def traffic(st, key):
    sdir = os.path.join(REPO, "deploy", "local", "samples")
    jobs = []
    for name in sorted(os.listdir(sdir)):
        ctype = "text/markdown" if name.endswith(".md") else "text/plain"
        with open(os.path.join(sdir, name), "rb") as f:
            code, resp = api(st, "POST", "/v1/documents?" + urllib.parse.urlencode({"title": name}),
                             key=key, body=f.read(), ctype=ctype)
        if code != 202:
            raise RuntimeError("upload %s: HTTP %s %s" % (name, code, resp))
        jobs.append(resp["job_id"])
    for job in jobs:
        for _ in range(300):
            code, resp = api(st, "GET", "/v1/jobs/" + job, key=key)
            if code == 200 and resp.get("status") in ("done", "failed"):
                break
            time.sleep(0.1)
    qids = []
    for q in ["What is the hotel limit per night in London?", "Who is on call?",
              "password length", "an unrelated question"]:
        code, resp = api(st, "POST", "/v1/query", key=key,
                         body=json.dumps({"query": q, "top_k": 5}).encode(),
                         ctype="application/json")
        if code != 200:
            raise RuntimeError("query: HTTP %s %s" % (code, resp))
        qids.append(resp["query_id"])
    code, resp = api(st, "POST", "/v1/feedback", key=key,
                     body=json.dumps({"query_id": qids[0], "rating": 1}).encode(),
                     ctype="application/json")
    if code != 202:
        raise RuntimeError("feedback: HTTP %s %s" % (code, resp))
    # Client errors, so the 4xx and failed-downstream panels have something.
    api(st, "POST", "/v1/query", key="qk_0000000000000000_invalid", body=b"{}",
        ctype="application/json")
    api(st, "POST", "/v1/query", key=key, body=b"{bad", ctype="application/json")
    api(st, "DELETE", "/v1/query", key=key)


def main():
    bin_dir = os.environ.get("QUARRY_BIN") or os.path.join(REPO, "build", "bin")
    work = tempfile.mkdtemp(prefix="quarry-live-check-")
    os.chmod(work, 0o711)  # PostgreSQL runs as its own user and must get through
    st = Stack(bin_dir, os.path.join(work, "run"), test_mode=True)
    prom = None
    problems = []
    try:
        st.start_all()
        key = st.create_key("live-check", "live-check", ["admin"])
        traffic(st, key)

        scrapes = []
        targets = {}
        for svc in SERVICES:
            base = st.url if svc == "gateway" else st.metrics_url(svc).rsplit("/metrics", 1)[0]
            targets[svc] = base.split("//", 1)[1]
            with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
                text = r.read()
            path = os.path.join(work, svc + ".metrics")
            with open(path, "wb") as f:
                f.write(text)
            scrapes.append(path)
            lint = subprocess.run(["promtool", "check", "metrics"], input=text,
                                  capture_output=True)
            if lint.returncode != 0:
                problems.append("promtool check metrics %s: %s" % (
                    svc, (lint.stdout + lint.stderr).decode(errors="replace").strip()))
        r = subprocess.run([os.path.join(HERE, "check.sh")] + scrapes)
        if r.returncode != 0:
            problems.append("deploy/grafana/check.sh with live scrapes failed")

        cfg = ["global:", "  scrape_interval: 1s", "  evaluation_interval: 1s",
               "rule_files: [%s]" % json.dumps(ALERTS), "scrape_configs:"]
        for svc in SERVICES:
            cfg += ["  - job_name: quarry-%s" % svc, "    static_configs:",
                    "      - targets: [%s]" % json.dumps(targets[svc])]
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write("\n".join(cfg) + "\n")
        pport = free_port()
        prom = subprocess.Popen(
            ["prometheus", "--config.file=" + os.path.join(work, "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(work, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % pport],
            stdout=open(os.path.join(work, "prometheus.log"), "w"), stderr=subprocess.STDOUT)
        # Two scrapes at least, with traffic between, so rate() has two points.
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                up = prom_query(pport, 'count(up{job=~"quarry-.+"} == 1)')
                if up["data"]["result"] and up["data"]["result"][0]["value"][1] == str(len(SERVICES)):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        time.sleep(3)
        traffic(st, key)
        time.sleep(4)

        with open(DASHBOARD) as f:
            dash = json.load(f)
        n = 0
        for p in dash["panels"]:
            for t in p.get("targets", []):
                n += 1
                expr = t["expr"].replace("$__rate_interval", "1m").replace('"$job"', '"quarry-.+"')
                res = prom_query(pport, expr)
                if res.get("status") != "success":
                    problems.append("panel %r %s: %s" % (p["title"], t["refId"], res))
                elif not res["data"]["result"] and p["title"] not in MAY_BE_EMPTY:
                    problems.append("panel %r %s: no data" % (p["title"], t["refId"]))
        print("live-check: %d panel queries run against Prometheus" % n)

        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/rules" % pport, timeout=10) as r:
            rules = json.load(r)["data"]["groups"]
        nrules = 0
        for g in rules:
            for rule in g["rules"]:
                nrules += 1
                if rule.get("health") != "ok":
                    problems.append("rule %s: health %s %s" % (rule["name"], rule.get("health"),
                                                                rule.get("lastError", "")))
                if rule.get("state") == "firing":
                    problems.append("rule %s is firing in a healthy stack" % rule["name"])
        if nrules == 0:
            problems.append("no alerting rules loaded")
        print("live-check: %d alerting rules loaded" % nrules)
    finally:
        if prom:
            prom.terminate()
            try:
                prom.wait(15)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        codes = st.stop_all()
        bad = {k: v for k, v in codes.items() if v != 0}
        if bad:
            problems.append("non-zero exit codes after SIGTERM: %s" % bad)
        if not problems:
            subprocess.run(["rm", "-rf", work])
    if problems:
        print("live-check: FAILED (work dir %s)" % work, file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print("live-check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
