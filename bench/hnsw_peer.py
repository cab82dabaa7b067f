#!/usr/bin/python3
"""hnsw_peer.py - the retriever's HNSW index (bench/hnsw_bench.c) beside hnswlib
(Debian python3-hnswlib) on the same vectors, queries and truth.

1. Runs build/bench/hnsw_bench once per storage (float, int8, ...) with the
   same data, M, efConstruction and efSearch sweep; the first run also writes
   the vectors, the queries and the exact top 10 (--dump).
2. Builds an hnswlib index of the same vectors with the same M and
   efConstruction, then sweeps ef.
3. Prints one table: recall@10 against queries/s, p50/p99, and memory per
   vector, for each.

Both sides run on ONE thread: hnsw_bench is single-threaded, and hnswlib is
given num_threads=1 for the build and for queries. Queries/s for hnswlib is
measured with all queries in one knn_query call (no Python overhead per
query); its p50/p99 come from one call per query, which includes the
Python call (a few microseconds). Our queries/s is 1 / mean latency of
one-at-a-time searches from C.

    make bench-hnsw-peer HNSW_PEER_ARGS="--n 100000"
"""
import argparse
import os
import re
import subprocess
import sys
import time

K = 10


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_ours(args, storage, dump):
    cmd = [args.bin, "--n", str(args.n), "--dim", str(args.dim), "--data", args.data,
           "--queries", str(args.queries), "--m", str(args.m), "--efc", str(args.efc),
           "--ef", args.ef, "--storage", storage, "--no-brute"]
    if dump:
        cmd += ["--dump", args.dir]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    print(out, flush=True)
    m = re.search(r"build ([\d.]+) s .*?index memory (\d+) bytes/vector.*?RSS growth (-?\d+)",
                  out)
    build, mem, rss = float(m.group(1)), int(m.group(2)), int(m.group(3))
    rows = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 10 and f[0] == "hnsw" and f[1] == storage:
            ef, rec, mean, p50, p99 = int(f[2]), float(f[3]), float(f[4]), float(f[5]), float(f[6])
            rows.append((ef, rec, 1e3 / mean, p50, p99))
    print(f"(ours, {storage}: {time.time() - t0:.0f} s wall)", flush=True)
    return {"name": f"quarry {storage}", "build": build, "mem": mem, "rss": rss, "rows": rows}


def run_hnswlib(args):
    import hnswlib
    import numpy as np

    meta = dict(line.split() for line in open(os.path.join(args.dir, "meta.txt")))
    n, dim, nq = int(meta["n"]), int(meta["dim"]), int(meta["queries"])
    base = np.fromfile(os.path.join(args.dir, "base.f32"), dtype=np.float32).reshape(n, dim)
    qs = np.fromfile(os.path.join(args.dir, "queries.f32"), dtype=np.float32).reshape(nq, dim)
    truth = np.fromfile(os.path.join(args.dir, "truth.u64"), dtype=np.uint64).reshape(nq, K)
    space = "cosine" if meta["metric"] == "cosine" else "ip"
    rss0 = rss_bytes()
    idx = hnswlib.Index(space=space, dim=dim)
    idx.init_index(max_elements=n, M=args.m, ef_construction=args.efc, random_seed=100)
    idx.set_num_threads(1)
    t0 = time.perf_counter()
    idx.add_items(base, np.arange(n, dtype=np.uint64), num_threads=1)
    build = time.perf_counter() - t0
    rss = (rss_bytes() - rss0) // n
    # hnswlib's own layout: per element the vector, the layer-0 list
    # (count + 2M ids) and the label, plus upper layers for ~1/M of them.
    mem = dim * 4 + (2 * args.m + 1) * 4 + 8
    print(f"hnswlib {hnswlib.__name__}: {space}, M {args.m}, efConstruction {args.efc}, "
          f"build {build:.1f} s on one thread, RSS growth {rss} bytes/vector", flush=True)
    rows = []
    truths = [set(int(x) for x in t) for t in truth]
    for ef in [int(e) for e in args.ef.split(",")]:
        idx.set_ef(ef)
        t0 = time.perf_counter()
        labels, _ = idx.knn_query(qs, k=K, num_threads=1)
        batch = time.perf_counter() - t0
        ms = []
        for i in range(nq):
            t1 = time.perf_counter()
            idx.knn_query(qs[i:i + 1], k=K, num_threads=1)
            ms.append((time.perf_counter() - t1) * 1e3)
        ms.sort()
        rec = sum(len(truths[i] & set(int(x) for x in labels[i])) for i in range(nq)) / (nq * K)
        rows.append((ef, rec, nq / batch, ms[nq // 2], ms[int((nq - 1) * 0.99)]))
        print(f"  ef {ef}: recall@10 {rec:.4f}, {nq / batch:.0f} queries/s (batch), "
              f"p50 {ms[nq // 2]:.3f} ms", flush=True)
    return {"name": "hnswlib float", "build": build, "mem": mem, "rss": rss, "rows": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/bench/hnsw_bench")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--data", default="clustered")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--ef", default="10,16,32,64,128,256")
    ap.add_argument("--storage", default="float,int8",
                    help="our storages to run (float, int8, int8_rerank)")
    ap.add_argument("--dir", default="/tmp/quarry-hnsw-peer")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"== HNSW beside hnswlib: {a.n} {a.data} vectors, dim {a.dim}, M {a.m}, "
          f"efConstruction {a.efc}, {a.queries} queries, k {K}, one thread each; "
          f"load average at start {load} ==", flush=True)
    results = []
    for i, st in enumerate(a.storage.split(",")):
        results.append(run_ours(a, st, i == 0))
    results.append(run_hnswlib(a))
    print("\nindex            build s  bytes/vector (index, RSS growth)")
    for r in results:
        print(f"{r['name']:<16} {r['build']:7.1f}  {r['mem']:6d}, {r['rss']:6d}")
    print(f"\n{'index':<16} {'ef':>5} {'recall@10':>10} {'queries/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8}")
    for r in results:
        for ef, rec, qps, p50, p99 in r["rows"]:
            print(f"{r['name']:<16} {ef:5d} {rec:10.4f} {qps:10.0f} {p50:8.3f} {p99:8.3f}")
    with open("/proc/loadavg") as f:
        print(f"load average at end {' '.join(f.read().split()[:3])}")
    for name in ("base.f32", "queries.f32", "truth.u64", "meta.txt"):
        try:
            os.unlink(os.path.join(a.dir, name))
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
