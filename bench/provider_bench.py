#!/usr/bin/python3
"""Time Quarry adds to a streamed answer, beside the model's own time.

Starts the stack (deploy/local/stack.py, test mode) with the llm-gateway's
chat list pointing at the loopback provider fake (tests/fakes/provider_fake.py,
its own process) streaming a fixed answer at a fixed rate, ingests a few
documents, then asks POST /v1/query {"stream": true} --queries times, one
at a time, and for each compares what the client saw with what the
provider did (both clocks are this machine's time.time()):

  added TTFT   = first token event at the client - first piece sent by the provider
  overhead     = client total (request to `done`) - provider time (request
                 received to last piece sent): auth, embed, retrieve, rerank,
                 prompt, transport and the end of the stream
  before/after = the two parts of the overhead: request sent to provider
                 called, and last piece sent to `done` received

Prints p50/p95 of each. Figures only, no pass/fail (the target is an added
TTFT under 10 ms).

    /usr/bin/python3 bench/provider_bench.py [--queries 200] [--interval 0.02] [--words 40]
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "deploy", "local"))
import stack  # noqa: E402

TENANT = "bench-providers"
DOCS = [
    ("Lighthouse Keeping Handbook",
     "The Varnholt lighthouse lamp uses a xenon bulb of type QX-4471 that must be "
     "replaced every 1800 operating hours. During fog the keeper sounds the horn "
     "twice every 30 seconds. The supply boat from Kettleby harbour arrives every "
     "second Thursday."),
    ("Harbour rules",
     "Boats moor on the east quay. The harbour master assigns berths each morning and "
     "records every arrival in the harbour log before noon."),
    ("Keeper duties",
     "The keeper cleans the lens weekly, logs the weather every four hours and reports "
     "any failure of the lamp to the coastal authority at once."),
]
QUESTION = "Which bulb type does the Varnholt lighthouse lamp use?"


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def upload(st, key, title, text):
    req = urllib.request.Request(
        st.url + "/v1/documents?" + urllib.parse.urlencode({"title": title}),
        data=text.encode(), method="POST",
        headers={"Authorization": "Bearer " + key, "Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["job_id"]


def wait_job(st, key, job):
    for _ in range(600):
        req = urllib.request.Request(st.url + "/v1/jobs/" + job,
                                     headers={"Authorization": "Bearer " + key})
        with urllib.request.urlopen(req, timeout=30) as r:
            status = json.loads(r.read()).get("status")
        if status == "done":
            return
        if status == "failed":
            raise SystemExit("ingestion job %s failed" % job)
        time.sleep(0.1)
    raise SystemExit("ingestion job %s did not finish" % job)


def one_query(port, key):
    """(t_start, t_first_token, t_done) of one streamed query, time.time()."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.time()
    conn.request("POST", "/v1/query", body=json.dumps({"query": QUESTION, "stream": True}),
                 headers={"Authorization": "Bearer " + key,
                          "Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit("query: HTTP %d %s" % (resp.status, resp.read()[:300]))
    first = done = None
    name = None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.rstrip(b"\n")
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line == b"" and name:
            now = time.time()
            if name == "token" and first is None:
                first = now
            if name in ("done", "error"):
                if name == "error":
                    raise SystemExit("query ended in an error event")
                done = now
                break
            name = None
    conn.close()
    return t0, first, done


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.02,
                    help="seconds between two streamed pieces of the fake model")
    ap.add_argument("--words", type=int, default=40, help="pieces per answer")
    args = ap.parse_args(argv)
    bin_dir = os.environ.get("QUARRY_BIN") or os.path.join(ROOT, "build", "bin")

    fake = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "fakes",
                                                          "provider_fake.py"),
                             "--interval", str(args.interval), "--words", str(args.words)],
                            stdout=subprocess.PIPE)
    try:
        fport = int(fake.stdout.readline().split()[1])
        with tempfile.TemporaryDirectory(prefix="quarry-pbench-") as tmp, \
                tempfile.TemporaryDirectory(prefix="quarry-pbench-run-") as run_dir:
            pfile = os.path.join(tmp, "providers.json")
            with open(pfile, "w") as f:
                json.dump({"chat": [{"kind": "openai-chat", "name": "fake",
                                     "base_url": "http://127.0.0.1:%d" % fport,
                                     "model": "fake-model", "timeout_ms": 30000}]}, f)
            st = stack.Stack(bin_dir, run_dir, test_mode=True,
                             env={"QUARRY_QUERY_TIMEOUT_MS": "30000"}, quiet=True)
            st.svc_env["llm-gateway"] = {"QUARRY_PROVIDERS_FILE": pfile}
            try:
                st.start_all()
                key = st.create_key(TENANT, "bench", ("admin",))
                for title, text in DOCS:
                    wait_job(st, key, upload(st, key, title, text))
                port = st.ports["gateway.http"]
                for _ in range(5):  # warm up connections and caches
                    one_query(port, key)
                base = len(json.loads(urllib.request.urlopen(
                    "http://127.0.0.1:%d/requests" % fport).read()))
                client = [one_query(port, key) for _ in range(args.queries)]
                seen = json.loads(urllib.request.urlopen(
                    "http://127.0.0.1:%d/requests" % fport).read())[base:]
                seen = [r for r in seen if r["path"] == "/v1/chat/completions"]
            finally:
                st.stop_all()
    finally:
        fake.terminate()
        fake.wait()
    if len(seen) != len(client):
        raise SystemExit("provider saw %d calls for %d queries" % (len(seen), len(client)))
    added_ttft, overhead, before, after, model = [], [], [], [], []
    for (t0, first, done), p in zip(client, seen):
        added_ttft.append((first - p["t_first_piece"]) * 1000)
        own = p["t_last_piece"] - p["t_start"]
        model.append(own * 1000)
        overhead.append(((done - t0) - own) * 1000)
        before.append((p["t_start"] - t0) * 1000)
        after.append((done - p["t_last_piece"]) * 1000)
    print("provider fake: %d pieces every %.0f ms; %d streamed queries, one at a time"
          % (args.words, args.interval * 1000, args.queries))
    print("%-44s %9s %9s %9s" % ("ms", "p50", "p95", "max"))
    for label, xs in (("added time to first token (client - provider)", added_ttft),
                      ("total overhead (client total - model time)", overhead),
                      ("  before the provider call", before),
                      ("  after the provider's last piece", after),
                      ("model time (provider, for scale)", model)):
        print("%-44s %9.2f %9.2f %9.2f" % (label, pct(xs, 50), pct(xs, 95), max(xs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
