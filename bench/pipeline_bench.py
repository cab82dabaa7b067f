#!/usr/bin/python3
"""Measures POST /v1/query throughput and latency of the gateway at several
connection counts (figures only, no pass/fail).

    /usr/bin/python3 bench/pipeline_bench.py [--seconds 10]
        [--connections 16,64,256] [--wrk-threads 2] [--docs 200]

A private stack (deploy/local/stack.py, test mode, rate limiting off, the
pipeline queue large enough that no query is refused) gets --docs small
synthetic documents through the REST API; once the retriever has them all,
wrk (bench/query.lua) posts queries for --seconds at each connection count,
one run after the other on the same server. QUARRY_BIN picks the binaries,
so one checkout can measure two builds (before/after a change) on the same
machine. Needs wrk (bench/deps.sh).
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))

import beir_eval  # noqa: E402
from beir_eval import grpc, stack, retriever_pb2  # noqa: E402
from retrieval_bench import run_wrk  # noqa: E402

WORDS = ("alpha beta gamma delta epsilon zeta theta kappa lambda sigma "
         "protein cell gene enzyme membrane receptor signal pathway tissue "
         "vaccine virus immune response dose trial cohort risk factor").split()


def corpus(n):
    docs = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(120)]
        docs.append({"_id": "d%d" % i, "title": "doc %d" % i, "text": " ".join(words) + "."})
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", default="16,64,256")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--docs", type=int, default=200)
    args = ap.parse_args()
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    env = {"QUARRY_RATE_LIMIT_RPS": "0", "QUARRY_PIPELINE_QUEUE": "4096",
           "QUARRY_TENANT_MAX_INFLIGHT": "1024"}
    with tempfile.TemporaryDirectory(prefix="quarry-pbench-run-") as run_dir, \
            tempfile.TemporaryDirectory(prefix="quarry-pbench-") as tmp:
        st = stack.Stack(bin_dir, run_dir, test_mode=True, env=env, quiet=True)
        try:
            st.start_all()
            key = st.create_key(beir_eval.TENANT, "bench", ("admin",))
            docs = corpus(args.docs)
            beir_eval.ingest(st, key, docs, 4)
            rch = grpc.insecure_channel(st.grpc_addr("retriever"))
            stats = rch.unary_unary(
                "/quarry.v1.Retriever/Stats",
                request_serializer=retriever_pb2.StatsRequest.SerializeToString,
                response_deserializer=retriever_pb2.StatsResponse.FromString)
            deadline = time.time() + 300
            while stats(retriever_pb2.StatsRequest(tenant_id=beir_eval.TENANT),
                        timeout=10).documents < len(docs):
                if time.time() > deadline:
                    raise SystemExit("pipeline_bench: indexing did not finish")
                time.sleep(0.2)
            rch.close()
            bfile = os.path.join(tmp, "bodies")
            with open(bfile, "w") as f:
                for i in range(64):
                    q = " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(4))
                    f.write(json.dumps({"query": q, "top_k": 5}) + "\n")
            run_wrk(st.url + "/v1/query", 2, args.wrk_threads, 8, bfile, key)  # warm-up
            print("bin: %s" % bin_dir)
            print("| connections | req/s | p50 ms | p99 ms | errors |")
            print("|---:|---:|---:|---:|---:|")
            for c in (int(x) for x in args.connections.split(",")):
                r = run_wrk(st.url + "/v1/query", args.seconds, args.wrk_threads, c, bfile, key)
                print("| %d | %.0f | %.1f | %.1f | %d |"
                      % (c, r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000, r["errors"]),
                      flush=True)
        finally:
            st.stop_all()


if __name__ == "__main__":
    main()
