"""CPU time per uncached POST /v1/query in every service of the stack
(figures only; docs/benchmarks.md).

    QUARRY_BIN=build/bin QUARRY_PYGEN=build/py /usr/bin/python3 bench/cpu_per_query.py \
        [--docs 300] [--seconds 15] [--connections 16] [--perf gateway]

One private stack (test mode, rate limiting off) with the first --docs
SciFact documents uploaded; wrk sends the test queries (bench/query.lua)
for --seconds at --connections after a warm-up; each service's user+system
CPU time (/proc/<pid>/stat) over the run is divided by the answered
queries. With --perf SVC, `perf record -g` samples that service during the
run and the top of `perf report` is printed. The load average is printed
beside the figures: compare runs made in the same minutes.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import edge_bench  # noqa: E402
from edge_bench import beir_eval, stack, run_wrk, ingest_quarry, TENANT  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / TICK


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "scifact"))
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--perf", default="", help="service to sample with perf record -g")
    ap.add_argument("--perf-out", default="", help="keep perf.data here")
    ap.add_argument("--env", action="append", default=[])
    args = ap.parse_args(argv)
    corpus, queries, qrels = beir_eval.load_beir(os.path.abspath(args.data))
    corpus = corpus[:args.docs]
    bodies = [json.dumps({"query": queries[q], "top_k": 8}) for q in qrels]
    env = {"QUARRY_RATE_LIMIT_RPS": "0", "QUARRY_HTTP_MAX_CONNECTIONS_PER_IP": "0"}
    env.update(kv.split("=", 1) for kv in args.env)
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    with tempfile.TemporaryDirectory(prefix="quarry-cpu-") as tmp, \
            tempfile.TemporaryDirectory(prefix="quarry-cpu-run-") as run_dir:
        st = stack.Stack(bin_dir, run_dir, test_mode=True, env=env, quiet=True)
        try:
            st.start_all()
            key = st.create_key(TENANT, "bench", ("admin",))
            ingest_quarry(st, key, corpus, 4)
            bfile = os.path.join(tmp, "bodies.jsonl")
            with open(bfile, "w") as f:
                f.write("\n".join(bodies) + "\n")
            svcs = ["gateway"] + [s for s in stack.SERVICES if s != "gateway"]
            pids = {s: st.pid(s) for s in svcs if st.pid(s)}
            run_wrk(st.url + "/v1/query", 3, 2, args.connections, bfile, key)  # warm-up
            for rnd in range(args.rounds):
                perf = None
                if args.perf:
                    pdata = args.perf_out or os.path.join(tmp, "perf.data")
                    perf = subprocess.Popen(
                        ["perf", "record", "-F", "499", "-g", "-o", pdata, "-p",
                         str(pids[args.perf])], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
                    time.sleep(0.5)
                load0 = os.getloadavg()[0]
                c0 = {s: cpu_ms(p) for s, p in pids.items()}
                res = run_wrk(st.url + "/v1/query", args.seconds, 2, args.connections, bfile,
                              key)
                c1 = {s: cpu_ms(p) for s, p in pids.items()}
                if perf:
                    perf.send_signal(2)
                    perf.wait()
                ok = res["requests"] - res["err_status"]
                print("round %d: %d answered (%.0f/s), p50 %.1f ms, p99 %.1f ms, c=%d, "
                      "load average %.1f -> %.1f" % (
                          rnd + 1, ok, ok / (res["duration_us"] / 1e6), res["p50_us"] / 1000,
                          res["p99_us"] / 1000, args.connections, load0,
                          os.getloadavg()[0]))
                print("%-12s %12s %14s" % ("service", "CPU ms", "CPU ms/query"))
                total = 0
                for s in pids:
                    d = c1[s] - c0[s]
                    total += d
                    print("%-12s %12.0f %14.3f" % (s, d, d / max(1, ok)))
                print("%-12s %12.0f %14.3f" % ("all", total, total / max(1, ok)))
                if perf:
                    for sort, limit in (("comm", "1"), ("symbol", "0.8")):
                        rep = subprocess.run(
                            ["perf", "report", "-i", pdata, "--no-children", "--stdio",
                             "--sort", sort, "-g", "none", "--percent-limit", limit],
                            capture_output=True, text=True).stdout
                        print("perf, %s, by %s:" % (args.perf, sort))
                        for line in rep.splitlines():
                            if line.strip() and not line.startswith("#"):
                                print("  " + " ".join(line.split())[:110])
        finally:
            st.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
