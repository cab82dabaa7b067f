#!/usr/bin/python3
"""retriever_grpc_bench.py - the retriever at scale through its gRPC API, beside
Xapian on the same synthetic corpus (figures only, no pass/fail).

    make bench-retriever-grpc RETRIEVER_GRPC_ARGS="--n 100000"

Corpus (seeded, generated here, the same on every run): --n chunks of 60-120
words drawn from a Zipf(1.0) vocabulary of 50,000 pronounceable words (the
words of bench/retriever_bench.c), 8 chunks a document, one tenant, and a
384-d vector per chunk around one of 64 gaussian centres (noise 0.35 per
dimension). Queries: 3 words drawn from the same Zipf law past its 50 most
frequent words, and a vector drawn like the chunks'.

Steps:
 1. Xapian (Debian python3-xapian, as bench/retrieval_bench.py uses it):
    the chunks' text in an on-disk index, English stemmer, BM25Weight
    defaults; each query in process, top --top-k.
 2. Quarry: a private PostgreSQL (fsync off) and quarry-retriever only
    (deploy/local/stack.py, test mode), QUARRY_RETRIEVER_VECTOR_TYPE from
    --vector-types (first one). The corpus goes in through Retriever/Upsert
    in batches of --batch (PostgreSQL transaction, then the in-memory index):
    that is the build time.
 3. Memory: the retriever's RSS (VmRSS) before the first upsert and after
    the last; disk: the snapshot directory after a clean stop (SIGTERM
    writes a snapshot); start from snapshot: process start until /readyz.
    Then, on the index started from the snapshot (no background work),
    --queries lexical, dense and hybrid Search calls, one at a time from
    one client thread, top_k --top-k: client-side p50/p95/p99 (gRPC round
    trip on loopback included).
 4. For each further vector type: restart with it; the other type's
    snapshot is refused, so the start rebuilds from PostgreSQL (timed),
    then the same queries, memory, snapshot and start from snapshot, and
    how many of the float32 dense top 10 the int8 top 10 keeps.

Needs the binaries ($QUARRY_BIN), the Python messages from protoc
($QUARRY_PYGEN), python3-xapian and python3-numpy (bench/deps.sh).
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "deploy", "local"))
sys.path.insert(0, os.environ.get("QUARRY_PYGEN", os.path.join(ROOT, "build", "py")))

import grpc  # noqa: E402  (Debian python3-grpcio)
import numpy as np  # noqa: E402
import stack  # noqa: E402
from quarry.v1 import common_pb2, retriever_pb2  # noqa: E402

try:
    import xapian  # noqa: E402
except ImportError:
    sys.exit("retriever_grpc_bench: python3-xapian is missing; run bench/deps.sh")

VOCAB, DIM, CLUSTERS = 50000, 384, 64
SYL = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo",
       "ze", "po", "qu", "fa", "gi", "he", "ju", "xo"]
TENANT = "bench"


def word(w):
    out = ""
    while True:
        out += SYL[w % 16]
        w //= 16
        if not w:
            return out


def corpus(n, seed):
    rng = np.random.default_rng(seed)
    words = [word(i) for i in range(VOCAB)]
    cdf = np.cumsum(1.0 / np.arange(1, VOCAB + 1))
    cdf /= cdf[-1]
    lens = rng.integers(60, 121, size=n)
    ranks = np.searchsorted(cdf, rng.random(int(lens.sum())))
    texts, at = [], 0
    for ln in lens:
        texts.append(" ".join(words[r] for r in ranks[at:at + ln]))
        at += ln
    centres = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    vecs = centres[rng.integers(0, CLUSTERS, size=n)] + \
        0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return texts, vecs.astype(np.float32), centres, cdf, words


def queries(nq, centres, cdf, words, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(nq):
        r = np.searchsorted(cdf, rng.random(3)) + 50
        v = centres[rng.integers(0, CLUSTERS)] + 0.35 * rng.standard_normal(DIM)
        out.append((" ".join(words[min(int(x), VOCAB - 1)] for x in r), v.astype(np.float32)))
    return out


def pct(ms, p):
    s = sorted(ms)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def lat_row(name, ms):
    return "%-34s %6d %8.2f %8.2f %8.2f %8.2f" % (name, len(ms), sum(ms) / len(ms),
                                                 pct(ms, 50), pct(ms, 95), pct(ms, 99))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    return total


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def xapian_run(texts, qs, top_k, path):
    t0 = time.perf_counter()
    db = xapian.WritableDatabase(path, xapian.DB_CREATE_OR_OVERWRITE)
    tg = xapian.TermGenerator()
    tg.set_stemmer(xapian.Stem("english"))
    for i, t in enumerate(texts):
        doc = xapian.Document()
        tg.set_document(doc)
        tg.index_text(t)
        doc.set_data(str(i))
        db.add_document(doc)
    db.commit()
    db.close()
    build = time.perf_counter() - t0
    db = xapian.Database(path)
    qp = xapian.QueryParser()
    qp.set_stemmer(xapian.Stem("english"))
    qp.set_stemming_strategy(xapian.QueryParser.STEM_SOME)
    qp.set_database(db)
    enq = xapian.Enquire(db)
    enq.set_weighting_scheme(xapian.BM25Weight())
    ms = []
    for text, _ in qs:
        t1 = time.perf_counter()
        enq.set_query(qp.parse_query(text))
        m = enq.get_mset(0, top_k)
        _ = [x.docid for x in m]
        ms.append((time.perf_counter() - t1) * 1e3)
    return build, ms, du(path)


class Retriever:
    def __init__(self, addr):
        self.ch = grpc.insecure_channel(addr, options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20)])
        self.upsert = self.ch.unary_unary(
            "/quarry.v1.Retriever/Upsert",
            request_serializer=retriever_pb2.UpsertRequest.SerializeToString,
            response_deserializer=retriever_pb2.UpsertResponse.FromString)
        self.search = self.ch.unary_unary(
            "/quarry.v1.Retriever/Search",
            request_serializer=retriever_pb2.SearchRequest.SerializeToString,
            response_deserializer=retriever_pb2.SearchResponse.FromString)

    def close(self):
        self.ch.close()


def load(r, texts, vecs, batch):
    t0 = time.perf_counter()
    for at in range(0, len(texts), batch):
        req = retriever_pb2.UpsertRequest(tenant_id=TENANT)
        for i in range(at, min(at + batch, len(texts))):
            d = i // 8
            req.chunks.append(common_pb2.Chunk(
                chunk_id="doc%d:1:%d" % (d, i % 8), doc_id="doc%d" % d, text=texts[i],
                ordinal=i % 8, version=1, embedding=vecs[i].tolist()))
        r.upsert(req, timeout=600)
        if (at + batch) % 100000 < batch:
            print("  %d chunks upserted, %.0f s" % (at + batch, time.perf_counter() - t0),
                  flush=True)
    return time.perf_counter() - t0


def run_queries(r, qs, top_k, warmup):
    out = {}
    for mode in ("lexical", "dense", "hybrid"):
        def one(text, vec):
            req = retriever_pb2.SearchRequest(tenant_id=TENANT, top_k=top_k, mode=mode)
            if mode != "dense":
                req.query = text
            if mode != "lexical":
                req.query_embedding.extend(vec.tolist())
            return r.search(req, timeout=30)
        for text, vec in qs[:warmup]:
            one(text, vec)
        ms, tops = [], []
        for text, vec in qs:
            t0 = time.perf_counter()
            resp = one(text, vec)
            ms.append((time.perf_counter() - t0) * 1e3)
            tops.append([p.chunk_id for p in resp.passages[:10]])
        out[mode] = (ms, tops)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100000, help="chunks (default 100000)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--top-k", type=int, default=50,
                    help="top_k of every search (default 50, what the gateway asks for)")
    ap.add_argument("--batch", type=int, default=500, help="chunks per Upsert")
    ap.add_argument("--vector-types", default="float32,int8")
    a = ap.parse_args()
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    print("== retriever through gRPC beside Xapian: %d chunks, %d-d vectors, %d queries, "
          "top_k %d; load average %s ==" % (a.n, DIM, a.queries, a.top_k, loadavg()),
          flush=True)
    t0 = time.perf_counter()
    texts, vecs, centres, cdf, words = corpus(a.n, 7)
    qs = queries(a.queries + a.warmup, centres, cdf, words, 8)
    warm, qs = qs[:a.warmup], qs[a.warmup:]
    text_bytes = sum(len(t) for t in texts) / a.n
    print("corpus generated in %.1f s: %.0f bytes of text a chunk" %
          (time.perf_counter() - t0, text_bytes), flush=True)
    lines = []
    with tempfile.TemporaryDirectory(prefix="quarry-rbench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="quarry-rbench-run-") as run_dir:
        xb, xms, xdisk = xapian_run(texts, warm + qs, a.top_k, os.path.join(tmp, "xapian"))
        xms = xms[len(warm):]
        print("xapian: indexed in %.1f s, %.0f bytes/chunk on disk" % (xb, xdisk / a.n),
              flush=True)
        lines.append(lat_row("Xapian BM25 (in-process)", xms))
        snap = os.path.join(run_dir, "snapshots")
        types = a.vector_types.split(",")
        st = stack.Stack(bin_dir, run_dir, test_mode=True, quiet=True,
                         ready_timeout=3600,
                         svc_env={"retriever": {"QUARRY_RETRIEVER_DATA_DIR": snap,
                                                "QUARRY_RETRIEVER_VECTOR_TYPE": types[0]}})
        facts = []
        dense_tops = {}
        try:
            st._mkdirs()
            st.start_postgres()
            st.start("retriever")
            rss0 = rss_kib(st.pid("retriever"))
            r = Retriever(st.grpc_addr("retriever"))
            build = load(r, texts, vecs, a.batch)
            for i, vt in enumerate(types):
                if i:
                    st.stop("retriever")
                    st.svc_env["retriever"]["QUARRY_RETRIEVER_VECTOR_TYPE"] = vt
                    t1 = time.perf_counter()
                    st.start("retriever")
                    build = time.perf_counter() - t1
                    r = Retriever(st.grpc_addr("retriever"))
                rss1 = rss_kib(st.pid("retriever"))
                how = "Upsert over gRPC" if i == 0 else "rebuild from PostgreSQL at start"
                r.close()
                t1 = time.perf_counter()
                st.stop("retriever")
                stop_s = time.perf_counter() - t1
                disk = du(snap)
                t1 = time.perf_counter()
                st.start("retriever")
                start_s = time.perf_counter() - t1
                rss2 = rss_kib(st.pid("retriever"))
                r = Retriever(st.grpc_addr("retriever"))
                # Queries run on the index started from its snapshot: nothing
                # runs in the background then (after a build, the maintenance
                # thread writes snapshots and compacts while queries would run).
                res = run_queries(r, warm + qs, a.top_k, 0)
                for mode in ("lexical", "dense", "hybrid"):
                    ms, tops = res[mode]
                    res[mode] = (ms[len(warm):], tops[len(warm):])
                    lines.append(lat_row("Quarry %s, %s (gRPC)" % (mode, vt), res[mode][0]))
                dense_tops[vt] = res["dense"][1]
                facts.append(
                    "%s: build (%s) %.1f s, %.0f us/chunk; RSS %.0f MiB after it, "
                    "%.0f bytes/chunk over the empty process; stop with snapshot %.1f s, "
                    "snapshot %.0f MiB on disk, %.0f bytes/chunk; start from snapshot "
                    "to ready %.2f s; RSS after that start %.0f MiB, %.0f bytes/chunk" % (
                        vt, how, build, build * 1e6 / a.n, rss1 / 1024,
                        (rss1 - rss0) * 1024 / a.n, stop_s, disk / 1048576, disk / a.n,
                        start_s, rss2 / 1024, (rss2 - rss0) * 1024 / a.n))
                print(facts[-1], flush=True)
            r.close()
        finally:
            st.stop_all()
        print("\nlatency, ms (client side, one query at a time, top_k %d)" % a.top_k)
        print("%-34s %6s %8s %8s %8s %8s" % ("search", "n", "mean", "p50", "p95", "p99"))
        for line in lines:
            print(line)
        print()
        for f in facts:
            print(f)
        print("Xapian: index %.1f s, %.0f bytes/chunk on disk" % (xb, xdisk / a.n))
        if "float32" in dense_tops and len(dense_tops) > 1:
            base = dense_tops["float32"]
            for vt, tops in dense_tops.items():
                if vt == "float32":
                    continue
                same = sum(len(set(x) & set(y)) for x, y in zip(base, tops))
                total = sum(len(x) for x in base)
                print("%s dense top 10 keeps %.4f of float32's (over %d queries)"
                      % (vt, same / max(total, 1), len(base)))
        print("load average at end %s" % loadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
