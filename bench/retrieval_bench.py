#!/usr/bin/python3
"""Benchmarks Quarry's retrieval and REST query path next to peers measured
in the same run (figures only, no pass/fail).

    make bench [DATA=../shared/data/scifact]
    /usr/bin/python3 bench/retrieval_bench.py [--data DIR] [--depth 100]
        [--gateway-seconds 10] [--wrk-threads 2] [--wrk-connections 16]

1. Retrieval, on a BEIR dataset (SciFact by default, read in place):
   - Quarry: a private stack (deploy/local/stack.py, test mode, rate limiting
     off); the corpus is uploaded through the REST API and indexed by the
     ingestion pipeline, exactly as tools/eval/beir_eval.py does (its
     functions are imported, not copied). Every test query then goes to the
     retriever's Search over gRPC, top_k = --depth, in lexical and in hybrid
     mode. Server-side time comes from the retriever's
     quarry_retriever_search_seconds histogram (sum/count before and after).
   - Xapian (python3-xapian): the same corpus (title + text) in an on-disk
     index in a temporary directory, English stemmer, BM25Weight with
     Xapian's defaults, queried in process, top --depth.
   Both are scored by beir_eval.evaluate (nDCG@10, Recall@100), so the
   scoring code is the same for both.
2. Gateway: wrk (a bounded run) against POST /v1/query with the test
   queries as bodies, and against GET /healthz on the same server, the HTTP
   floor, so the cost of the RAG pipeline is visible.

Needs the binaries ($QUARRY_BIN), the Python messages from protoc
($QUARRY_PYGEN) and bench/deps.sh (python3-xapian, wrk).
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))

import beir_eval  # noqa: E402  (puts deploy/local and $QUARRY_PYGEN on sys.path)
from beir_eval import grpc, stack, llm_pb2, retriever_pb2  # noqa: E402

try:
    import xapian  # noqa: E402  (Debian python3-xapian)
except ImportError:
    sys.exit("retrieval_bench: python3-xapian is missing; run bench/deps.sh")

TENANT = beir_eval.TENANT
LUA = os.path.join(HERE, "query.lua")


# ---- helpers -------------------------------------------------------------

class Timed:
    """Wraps a callable and records the wall time of every call, so
    beir_eval.evaluate can be reused while keeping every latency (it returns
    only p50 and p95)."""

    def __init__(self, fn):
        self.fn = fn
        self.lat = []

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        r = self.fn(*args, **kwargs)
        self.lat.append(time.perf_counter() - t0)
        return r


def pct(values, p):
    """The p-th percentile, same convention as beir_eval (sorted[int(n*p)])."""
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100.0))]


def scrape_search_seconds(st):
    """{mode: (sum, count)} of quarry_retriever_search_seconds."""
    with urllib.request.urlopen(st.metrics_url("retriever") + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^quarry_retriever_search_seconds_(sum|count)\{mode="(\w+)"\} (\S+)$',
                         text, re.M):
        s, c = out.get(m.group(2), (0.0, 0.0))
        if m.group(1) == "sum":
            s = float(m.group(3))
        else:
            c = float(m.group(3))
        out[m.group(2)] = (s, c)
    return out


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores (%s)" % (platform.node(), os.cpu_count() or 0, cpu)


# ---- Xapian --------------------------------------------------------------

def build_xapian(corpus, path):
    """Indexes title + text of every document; returns the seconds taken
    (including the final commit to disk)."""
    t0 = time.perf_counter()
    db = xapian.WritableDatabase(path, xapian.DB_CREATE_OR_OVERWRITE)
    tg = xapian.TermGenerator()
    tg.set_stemmer(xapian.Stem("english"))
    for d in corpus:
        doc = xapian.Document()
        tg.set_document(doc)
        tg.index_text(d.get("title") or "")
        tg.increase_termpos()
        tg.index_text(d.get("text") or "")
        doc.set_data(d["_id"])
        doc.add_boolean_term("Q" + d["_id"])
        db.add_document(doc)
    db.commit()
    db.close()
    return time.perf_counter() - t0


class XapianSearch:
    """Looks like the retriever's Search stub to beir_eval.evaluate: takes a
    SearchRequest, answers an object whose passages carry doc_id (the BEIR
    id). Query parsing, the match and reading each hit's id are all inside
    the call."""

    def __init__(self, path):
        self.db = xapian.Database(path)
        self.qp = xapian.QueryParser()
        self.qp.set_stemmer(xapian.Stem("english"))
        self.qp.set_stemming_strategy(xapian.QueryParser.STEM_SOME)
        self.qp.set_database(self.db)
        self.enquire = xapian.Enquire(self.db)
        self.enquire.set_weighting_scheme(xapian.BM25Weight())  # Xapian's defaults
        self.parse_fallbacks = 0

    def __call__(self, req, timeout=None):
        try:
            q = self.qp.parse_query(req.query)
        except xapian.QueryParserError:
            self.parse_fallbacks += 1
            q = self.qp.parse_query(req.query, 0)
        self.enquire.set_query(q)
        mset = self.enquire.get_mset(0, req.top_k)
        return types.SimpleNamespace(passages=[
            types.SimpleNamespace(doc_id=m.document.get_data().decode()) for m in mset])


# ---- Quarry --------------------------------------------------------------

def ingest_quarry(st, key, corpus, threads):
    """Uploads through REST (beir_eval.ingest) and waits until the retriever
    has every document. Returns (to_beir, upload seconds, total seconds,
    chunks)."""
    rch = grpc.insecure_channel(st.grpc_addr("retriever"))
    stats = rch.unary_unary("/quarry.v1.Retriever/Stats",
                            request_serializer=retriever_pb2.StatsRequest.SerializeToString,
                            response_deserializer=retriever_pb2.StatsResponse.FromString)
    t0 = time.perf_counter()
    to_beir = beir_eval.ingest(st, key, corpus, threads)
    uploaded = time.perf_counter() - t0
    deadline = time.time() + 600
    while True:
        s = stats(retriever_pb2.StatsRequest(tenant_id=TENANT), timeout=10)
        if s.documents >= len(to_beir):
            break
        if time.time() > deadline:
            raise SystemExit("retrieval_bench: indexing did not finish within 10 minutes")
        time.sleep(0.1)
    total = time.perf_counter() - t0
    rch.close()
    return to_beir, uploaded, total, s.chunks


# ---- gateway (wrk) -------------------------------------------------------

def run_wrk(url, seconds, threads, conns, bodies=None, key=None):
    argv = ["wrk", "-t", str(threads), "-c", str(conns), "-d", "%ds" % seconds,
            "--timeout", "5s", "-s", LUA, url]
    if bodies:
        argv += ["--", bodies, key]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=seconds + 60)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if r.returncode != 0 or not m:
        raise SystemExit("retrieval_bench: wrk failed (status %d):\n%s" % (r.returncode, out))
    res = json.loads(m.group(1))
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["errors"] = sum(res[k] for k in res if k.startswith("err_"))
    return res


def query_breakdown(st, key, bodies, n):
    """Mean of the gateway's own timings_ms over n sequential queries."""
    sums = {}
    for body in bodies[:n]:
        req = urllib.request.Request(
            st.url + "/v1/query", data=body.encode(), method="POST",
            headers={"Authorization": "Bearer " + key,
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            reply = json.load(r)
        for k, v in reply.get("timings_ms", {}).items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {k: v / n for k, v in sums.items()}


# ---- main ----------------------------------------------------------------

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "scifact"),
                    help="BEIR dataset directory (default ../shared/data/scifact)")
    ap.add_argument("--depth", type=int, default=100,
                    help="top_k of every Search and Xapian query (default 100)")
    ap.add_argument("--threads", type=int, default=8, help="parallel uploads (default 8)")
    ap.add_argument("--warmup", type=int, default=20,
                    help="untimed queries per system before measuring (default 20)")
    ap.add_argument("--gateway-seconds", type=int, default=10,
                    help="duration of each wrk run; 0 skips the gateway part (default 10)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=16)
    ap.add_argument("--query-top-k", type=int, default=8,
                    help="top_k in the POST /v1/query bodies (default 8)")
    ap.add_argument("--env", action="append", default=[],
                    help="VAR=value for every service (repeatable)")
    args = ap.parse_args(argv)

    if args.gateway_seconds > 0 and not shutil.which("wrk"):
        raise SystemExit("retrieval_bench: wrk is missing; run bench/deps.sh")
    data = os.path.abspath(args.data)
    corpus, queries, qrels = beir_eval.load_beir(data)
    qids = list(qrels)
    started = datetime.datetime.now().astimezone()
    print("Quarry benchmark, %s" % started.strftime("%Y-%m-%d %H:%M %Z"))
    print("machine: %s" % machine())
    print("dataset: %s (%d documents, %d test queries), depth %d"
          % (data, len(corpus), len(qrels), args.depth), flush=True)

    env = {"QUARRY_RATE_LIMIT_RPS": "0"}
    env.update(kv.split("=", 1) for kv in args.env)
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    rows, gw = [], None
    # Two directories: the stack's run dir must be the temp dir itself (as in
    # beir_eval), since stack.py opens only that one to the postgres user.
    with tempfile.TemporaryDirectory(prefix="quarry-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="quarry-bench-run-") as run_dir:
        # Xapian first, while nothing else runs: indexing is then alone on the
        # machine, as Quarry's is below.
        xdir = os.path.join(tmp, "xapian")
        x_index_s = build_xapian(corpus, xdir)
        print("xapian: indexed %d documents in %.2f s" % (len(corpus), x_index_s), flush=True)

        st = stack.Stack(bin_dir, run_dir, test_mode=True, env=env,
                         quiet=True)
        try:
            st.start_all()
            key = st.create_key(TENANT, "bench", ("admin",))
            to_beir, q_upload_s, index_s, chunks = ingest_quarry(st, key, corpus,
                                                                    args.threads)
            print("quarry: uploaded %d documents in %.1f s, all indexed (%d chunks) after %.1f s"
                  % (len(to_beir), q_upload_s, chunks, index_s), flush=True)

            rch = grpc.insecure_channel(st.grpc_addr("retriever"))
            search = rch.unary_unary("/quarry.v1.Retriever/Search",
                                     request_serializer=retriever_pb2.SearchRequest.SerializeToString,
                                     response_deserializer=retriever_pb2.SearchResponse.FromString)
            lch = grpc.insecure_channel(st.grpc_addr("llm-gateway"))
            embed = Timed(lch.unary_unary(
                "/quarry.v1.LlmGateway/Embed",
                request_serializer=llm_pb2.EmbedRequest.SerializeToString,
                response_deserializer=llm_pb2.EmbedResponse.FromString))

            warm = {q: qrels[q] for q in qids[:args.warmup]}
            for mode in ("lexical", "hybrid"):
                beir_eval.evaluate(search, embed, queries, warm, to_beir, mode, args.depth)
                embed.lat.clear()
                before = scrape_search_seconds(st)
                timed = Timed(search)
                r = beir_eval.evaluate(timed, embed, queries, qrels, to_beir, mode, args.depth)
                after = scrape_search_seconds(st)
                s0, c0 = before.get(mode, (0.0, 0.0))
                s1, c1 = after.get(mode, (0.0, 0.0))
                server = (s1 - s0) / (c1 - c0) if c1 > c0 else float("nan")
                if c1 - c0 != len(qrels):
                    print("warning: the retriever counted %d %s searches, the bench made %d"
                          % (c1 - c0, mode, len(qrels)))
                rows.append({"system": "Quarry %s (gRPC)" % mode, "r": r, "lat": timed.lat,
                             "server_ms": server * 1000, "index_s": index_s})
                if mode == "hybrid":
                    embed_lat = list(embed.lat)

            xs = XapianSearch(xdir)
            ident = {d["_id"]: d["_id"] for d in corpus}
            beir_eval.evaluate(xs, None, queries, warm, ident, "lexical", args.depth)
            timed = Timed(xs)
            r = beir_eval.evaluate(timed, None, queries, qrels, ident, "lexical", args.depth)
            rows.append({"system": "Xapian BM25 (in-process)", "r": r, "lat": timed.lat,
                         "server_ms": None, "index_s": x_index_s})
            rch.close()
            lch.close()

            if args.gateway_seconds > 0:
                bodies = [json.dumps({"query": queries[q], "top_k": args.query_top_k})
                          for q in qids]
                bfile = os.path.join(tmp, "bodies.jsonl")
                with open(bfile, "w") as f:
                    f.write("\n".join(bodies) + "\n")
                breakdown = query_breakdown(st, key, bodies, 30)
                print("gateway: wrk %d s each, %d threads, %d connections"
                      % (args.gateway_seconds, args.wrk_threads, args.wrk_connections),
                      flush=True)
                health = run_wrk(st.url + "/healthz", args.gateway_seconds,
                                 args.wrk_threads, args.wrk_connections)
                query = run_wrk(st.url + "/v1/query", args.gateway_seconds,
                                args.wrk_threads, args.wrk_connections, bfile, key)
                gw = (health, query, breakdown)
        finally:
            st.stop_all()

    n = len(qrels)
    print()
    print("== Retrieval: %d SciFact test queries, top %d, one query at a time ==" % (n, args.depth))
    print("%-26s %7s %10s %8s %8s %8s %8s %11s %8s %7s"
          % ("system", "nDCG@10", "Recall@100", "mean ms", "p50 ms", "p95 ms", "p99 ms",
             "server ms", "index s", "docs/s"))
    for row in rows:
        r, lat = row["r"], row["lat"]
        server = "%.3f" % row["server_ms"] if row["server_ms"] is not None else "-"
        print("%-26s %7.4f %10.4f %8.3f %8.3f %8.3f %8.3f %11s %8.1f %7.0f"
              % (row["system"], r["nDCG@10"], r["Recall@100"],
                 sum(lat) / len(lat) * 1000, pct(lat, 50) * 1000, pct(lat, 95) * 1000, pct(lat, 99) * 1000,
                 server, row["index_s"], len(corpus) / row["index_s"]))
    print("""
Notes on what differs:
- Quarry latency is measured in this Python client around a gRPC Search: it
  includes the loopback round trip, HTTP/2 framing and decoding %d passages
  with their full text into Python objects. "server ms" is the mean of the
  retriever's own quarry_retriever_search_seconds over the same %d calls
  (handler time; excludes gRPC transport and reply serialisation), to be
  set against the client "mean ms". Xapian is called in process through its
  Python bindings (query parse, match, reading each hit's id): no IPC, so
  its columns are closer to Quarry's "server ms" than to its client columns.
- Hybrid latency excludes the query embedding, a separate gRPC Embed call to
  the llm-gateway (built-in hashed embedder): p50 %.3f ms, p95 %.3f ms here.
- Quarry ranks chunks; a document's rank is that of its best chunk
  (%d chunks for %d documents), so top %d chunks can hold fewer than %d
  distinct documents. Xapian indexes one document per abstract.
- Both use English Snowball stemming. Quarry: BM25 k1=1.2, b=0.75 with
  Lucene's idf and 128 stopwords (docs/retrieval.md); Xapian: BM25Weight()
  defaults (k1=1, k2=0, k3=1, b=0.5, min_normlen=0.5), no stopwords,
  QueryParser defaults (STEM_SOME, default flags%s).
- Index time: Quarry's runs from the first REST upload (%d client threads)
  until the retriever's Stats counts every document: gateway -> ingestion
  (blob file, document and job rows in PostgreSQL) -> ingestion workers
  (chunking, embedding through the llm-gateway, chunk rows) -> retriever
  Upsert (PostgreSQL transaction, then the in-memory index). REST upload
  alone took %.1f s. The bench stack's PostgreSQL runs with fsync off (test
  mode). Xapian's is one in-process writer building an on-disk database in a
  temp dir, no embeddings, ending with its commit. Each ran alone.
- Same machine, %d cores, the whole stack (PostgreSQL, Redis, broker, seven
  services) running during every measurement."""
          % (args.depth, n, pct(embed_lat, 50) * 1000, pct(embed_lat, 95) * 1000,
             chunks, len(corpus), args.depth, args.depth,
             "; %d queries fell back to plain parsing" % xs.parse_fallbacks
             if xs.parse_fallbacks else "", args.threads, q_upload_s, os.cpu_count() or 0))

    if gw:
        health, query, breakdown = gw
        print()
        print("== Gateway: wrk, %d s, %d threads, %d connections, same server ==" %
              (args.gateway_seconds, args.wrk_threads, args.wrk_connections))
        print("%-30s %10s %9s %8s %8s %8s %8s" % ("endpoint", "requests", "req/s",
                                                  "p50 ms", "p95 ms", "p99 ms", "errors"))
        for name, res in (("GET /healthz (HTTP floor)", health),
                          ("POST /v1/query (RAG pipeline)", query)):
            print("%-30s %10d %9.0f %8.2f %8.2f %8.2f %8d"
                  % (name, res["requests"], res["rps"], res["p50_us"] / 1000,
                     res["p95_us"] / 1000, res["p99_us"] / 1000, res["errors"]))
        stages = ", ".join("%s %.2f" % (k, v) for k, v in breakdown.items())
        print("""
Notes:
- /v1/query bodies are the %d test queries in turn, top_k %d. Each runs
  the whole pipeline: key check (cached in the gateway), Embed, hybrid
  Search (50 passages), Rerank, extractive Generate, citation check,
  RecordQuery (feedback service -> Kafka). No external model is called.
  Rate limiting is off (QUARRY_RATE_LIMIT_RPS=0). errors = non-2xx
  answers, socket errors and timeouts (wrk --timeout 5s).
- The gateway's own timings_ms, mean of 30 sequential unloaded queries (ms):
  %s.
- wrk runs on the same %d cores as the gateway and every service behind it,
  so it takes CPU from what it measures; both rows share that handicap."""
              % (n, args.query_top_k, stages, os.cpu_count() or 0))
    print("\nfinished in %.0f s" % (time.time() - started.timestamp()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
