#!/usr/bin/python3
"""Benchmarks ingestion through the REST API next to Xapian's in-process
indexing of the same text, measured in the same run (figures only, no
pass/fail).

    make bench-ingest [DATA=../shared/data/scifact] [INGEST_ARGS=...]
    /usr/bin/python3 bench/ingest_bench.py [--data DIR] [--clients 16]
        [--batch 500] [--batch-clients 2]

What is measured, on a BEIR corpus (SciFact by default, read in place):

- Xapian (python3-xapian): title + text of every document into an on-disk
  database in a temporary directory (TermGenerator, English stemmer), until
  its commit. Runs first, alone on the machine.
- Quarry, one document per request: --clients threads, each with its own
  keep-alive connection, POST /v1/documents (text/plain, title and
  external_id in the query string), tenant "bench-single".
- Quarry, bulk: the same corpus as NDJSON batches of --batch documents
  ({"external_id","title","text","metadata"}) to POST /v1/documents/batch,
  --batch-clients at a time, tenant "bench-bulk".

For Quarry the clock runs from the first request until the retriever's
Stats counts every document of the tenant (gateway -> ingestion: blob,
PostgreSQL document and job -> a worker: sandboxed extraction, chunking,
built-in embedding through the llm-gateway -> retriever Upsert), so it is
the time to searchable, not to accepted. MB/s counts the text bytes (title
+ text, UTF-8). The mean extraction time per document comes from
ingestion's quarry_ingest_extract_seconds histogram (sum/count before and
after each part).

Needs the binaries ($QUARRY_BIN), the Python messages ($QUARRY_PYGEN) and
bench/deps.sh (python3-xapian).
"""
import argparse
import concurrent.futures
import datetime
import http.client
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
sys.path.insert(0, HERE)

import beir_eval  # noqa: E402  (puts deploy/local and $QUARRY_PYGEN on sys.path)
from beir_eval import grpc, stack, retriever_pb2  # noqa: E402
from retrieval_bench import build_xapian, machine  # noqa: E402


def text_bytes(corpus):
    return sum(len((d.get("title") or "").encode()) + len((d.get("text") or "").encode())
               for d in corpus)


def scrape_extract(st):
    """(sum, count) of quarry_ingest_extract_seconds over every format."""
    with urllib.request.urlopen(st.metrics_url("ingestion") + "/metrics", timeout=10) as r:
        text = r.read().decode()
    s = c = 0.0
    for m in re.finditer(r'^quarry_ingest_extract_seconds_(sum|count)\{[^}]*\} (\S+)$',
                         text, re.M):
        if m.group(1) == "sum":
            s += float(m.group(2))
        else:
            c += float(m.group(2))
    return s, c


TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    """(ppid, own CPU seconds, reaped children's CPU seconds) of pid."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK, \
        (int(rest[13]) + int(rest[14])) / TICK


def cpu_seconds(st):
    """{process: CPU seconds so far} for each service (its live children,
    such as ingestion's zygotes, included) and PostgreSQL (postmaster and
    backends)."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            ps = proc_stat(int(d))
            if ps:
                parents.setdefault(ps[0], []).append(int(d))

    def tree(pid):
        ps = proc_stat(pid)
        if not ps:
            return 0.0
        return ps[1] + ps[2] + sum(tree(c) for c in parents.get(pid, []))

    out = {name: tree(p.popen.pid if hasattr(p, "popen") else p.pid)
           for name, p in st.procs.items() if name in SERVICES}
    pm = st._postmaster_pid()
    if pm:
        out["postgres"] = tree(pm)
    return out


SERVICES = ("gateway", "ingestion", "llm-gateway", "retriever", "auth")


def cpu_delta(a, b):
    return ", ".join("%s %.1f" % (k, b[k] - a.get(k, 0.0))
                     for k in sorted(b, key=lambda k: -(b[k] - a.get(k, 0.0))))


def wait_indexed(st, tenant, n, t0, limit_s):
    """Waits until the retriever counts n documents of tenant; returns the
    seconds since t0 and the chunk count."""
    ch = grpc.insecure_channel(st.grpc_addr("retriever"))
    stats = ch.unary_unary("/quarry.v1.Retriever/Stats",
                           request_serializer=retriever_pb2.StatsRequest.SerializeToString,
                           response_deserializer=retriever_pb2.StatsResponse.FromString)
    try:
        while True:
            s = stats(retriever_pb2.StatsRequest(tenant_id=tenant), timeout=10)
            if s.documents >= n:
                return time.perf_counter() - t0, s.chunks
            if time.perf_counter() - t0 > limit_s:
                raise SystemExit("ingest_bench: %s: %d of %d documents indexed after %d s"
                                 % (tenant, s.documents, n, limit_s))
            time.sleep(0.05)
    finally:
        ch.close()


class Client:
    """One keep-alive HTTP connection to the gateway."""

    def __init__(self, url, key):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.key = u.hostname, u.port, key
        self.conn = None

    def post(self, path, body, ctype):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            try:
                self.conn.request("POST", path, body=body, headers={
                    "Authorization": "Bearer " + self.key, "Content-Type": ctype})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("not reached")


def single(st, key, corpus, clients, tenant_docs):
    """One POST /v1/documents per document, `clients` at a time."""
    local = __import__("threading").local()

    def upload(doc):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = Client(st.url, key)
        q = urllib.parse.urlencode({"title": doc.get("title", ""), "external_id": doc["_id"]})
        text = doc.get("text") or doc.get("title") or ""
        status, body = c.post("/v1/documents?" + q, text.encode(), "text/plain; charset=utf-8")
        if status != 202:
            raise SystemExit("ingest_bench: upload of %s: %d %s" % (doc["_id"], status, body[:200]))

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        list(ex.map(upload, corpus))


def bulk(st, key, corpus, batch, clients):
    """NDJSON batches of `batch` documents, `clients` at a time."""
    bodies = []
    for i in range(0, len(corpus), batch):
        lines = []
        for d in corpus[i:i + batch]:
            lines.append(json.dumps({
                "external_id": d["_id"], "title": d.get("title") or "",
                "text": d.get("text") or d.get("title") or "",
                "metadata": {"source": "scifact"}}, ensure_ascii=False))
        bodies.append(("\n".join(lines) + "\n").encode())
    local = __import__("threading").local()
    counts = []

    def send(body):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = Client(st.url, key)
        status, data = c.post("/v1/documents/batch", body, "application/x-ndjson")
        if status != 202:
            raise SystemExit("ingest_bench: batch: %d %s" % (status, data[:300]))
        reply = json.loads(data)
        if reply.get("failed"):
            raise SystemExit("ingest_bench: batch items failed: %s" % data[:300])
        counts.append(reply["accepted"])

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        list(ex.map(send, bodies))
    return sum(counts), len(bodies)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "scifact"))
    ap.add_argument("--clients", type=int, default=16,
                    help="parallel connections, one document per request")
    ap.add_argument("--batch", type=int, default=500, help="documents per NDJSON batch")
    ap.add_argument("--batch-clients", type=int, default=2, help="batches in flight")
    ap.add_argument("--limit", type=int, default=0, help="use the first N documents only")
    ap.add_argument("--skip-single", action="store_true")
    ap.add_argument("--skip-bulk", action="store_true")
    ap.add_argument("--env", action="append", default=[], help="VAR=value for every service")
    ap.add_argument("--run-dir", default=None,
                    help="where the stack's run directory (PostgreSQL data, blobs) goes; "
                         "default: the system's temporary directory")
    args = ap.parse_args(argv)
    corpus, _, _ = beir_eval.load_beir(args.data)
    if args.limit:
        corpus = corpus[:args.limit]
    mb = text_bytes(corpus) / 1e6
    started = datetime.datetime.now(datetime.timezone.utc)
    print("Quarry ingestion benchmark, %s" % started.strftime("%Y-%m-%d %H:%M %Z"))
    print("machine: %s" % machine())
    print("dataset: %s (%d documents, %.2f MB of title + text)"
          % (args.data, len(corpus), mb))
    print("load average at the start: %s" % " ".join(open("/proc/loadavg").read().split()[:3]),
          flush=True)
    env = {"QUARRY_RATE_LIMIT_RPS": "0"}
    env.update(kv.split("=", 1) for kv in args.env)
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    rows, cpu = [], []
    with tempfile.TemporaryDirectory(prefix="quarry-ibench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="quarry-ibench-run-", dir=args.run_dir) as run_dir:
        x_s = build_xapian(corpus, os.path.join(tmp, "xapian"))
        rows.append(("xapian, in process", x_s, len(corpus), None, None))
        st = stack.Stack(bin_dir, run_dir, test_mode=True, env=env, quiet=True)
        try:
            st.start_all()
            if not args.skip_single:
                key = st.create_key("bench-single", "bench", ("admin",))
                e0, c0 = scrape_extract(st), cpu_seconds(st)
                t0 = time.perf_counter()
                single(st, key, corpus, args.clients, len(corpus))
                up = time.perf_counter() - t0
                total, chunks = wait_indexed(st, "bench-single", len(corpus), t0, 1200)
                e1 = scrape_extract(st)
                cpu.append(("1 per request", cpu_delta(c0, cpu_seconds(st))))
                rows.append(("quarry, 1 per request, c=%d" % args.clients, total, chunks, up,
                             (e1[0] - e0[0]) / max(1, e1[1] - e0[1])))
            if args.skip_bulk:
                return report(rows, corpus, mb, cpu)
            key = st.create_key("bench-bulk", "bench", ("admin",))
            e0, c0 = scrape_extract(st), cpu_seconds(st)
            t0 = time.perf_counter()
            n, nb = bulk(st, key, corpus, args.batch, args.batch_clients)
            up = time.perf_counter() - t0
            total, chunks = wait_indexed(st, "bench-bulk", len(corpus), t0, 1200)
            e1 = scrape_extract(st)
            cpu.append(("bulk", cpu_delta(c0, cpu_seconds(st))))
            rows.append(("quarry, bulk NDJSON %dx%d, c=%d" % (nb, args.batch, args.batch_clients),
                         total, chunks, up, (e1[0] - e0[0]) / max(1, e1[1] - e0[1])))
        finally:
            st.stop_all()
    report(rows, corpus, mb, cpu)


def report(rows, corpus, mb, cpu):
    print()
    print("%-36s %9s %9s %8s %9s %8s %10s" % ("run", "docs", "seconds", "docs/s", "MB/s",
                                              "chunks", "extract ms"))
    for name, secs, chunks, up, ex in rows:
        print("%-36s %9d %9.2f %8.0f %9.2f %8s %10s"
              % (name, len(corpus), secs, len(corpus) / secs, mb / secs,
                 "-" if up is None else str(chunks),
                 "-" if ex is None else "%.2f" % (ex * 1000)))
        if up is not None:
            print("%-36s %9s %9.2f   (all requests answered; the rest is the queue draining)"
                  % ("", "", up))
    print()
    for name, line in cpu:
        print("CPU seconds, %s: %s" % (name, line))
    print("load average at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    print()
    print("""notes:
- seconds: Xapian, opening the database to commit(); Quarry, the first request
  until the retriever's Stats counts every document (searchable).
- MB/s: title + text bytes of the corpus (%.2f MB) over those seconds.
- extract ms: mean of quarry_ingest_extract_seconds over the run's documents
  (a worker's batch of one tenant's documents shares one sandboxed child,
  forked by its zygote; the mean is each document's share).
- targets (issue 8): >= 900 docs/s bulk, >= 400 docs/s one per request.
- the stack, PostgreSQL (fsync off, test mode) and the client share the machine's
  %d cores.""" % (mb, os.cpu_count() or 0))


if __name__ == "__main__":
    main(sys.argv[1:])
