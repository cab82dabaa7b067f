#!/usr/bin/python3
"""Benchmarks the gateway's edge (the REST/SSE server) under load, each figure
beside its peer in the same run (figures only, no pass/fail).

    make bench-edge [DATA=../shared/data/scifact]   (also part of make bench)
    /usr/bin/python3 bench/edge_bench.py [--data DIR] [--seconds 10]

One private stack (deploy/local/stack.py, test mode, rate limiting off, the
per-address connection cap off, QUARRY_HTTP_MAX_CONNECTIONS 16384, keep-alive
idle and header timeouts 120 s so idle connections are not reaped during the
run) with the corpus uploaded through REST, then:

1. Uncached POST /v1/query: wrk, --seconds each, at 16, 64, 256 and 1,024
   connections, bodies rotating through the test queries (bench/query.lua).
2. Idle keep-alive: wrk measures /healthz at 16 connections; then --idle
   connections (asyncio, this process) each send one GET /healthz and stay
   open while the same wrk run is repeated; then every idle connection sends a second request, and those
   answered are the ones the gateway really held. The gateway's RSS and its
   quarry_http_connections gauge are read while they are held.
3. Streaming answers: the llm-gateway is restarted with its openai generation
   provider pointed at bench/fake_openai.py (2 s per answer), and N streamed
   queries ("stream": true) start at once: how many complete, time to first
   token p50/p99, gateway RSS delta per stream. N = 100 and 1,000, with every
   default ("defaults"), then with the gateway's defaults and the
   llm-gateway's QUARRY_GRPC_THREADS at 1024 ("gw-defaults": its Generate
   holds one gRPC thread per answer, which otherwise bounds the run), then
   with the gateway's pipeline limits raised too ("raised").
4. GET /healthz next to nginx (Debian) returning the same 15-byte JSON from a
   minimal private config, same wrk settings, at 16 and 256 connections.

All servers listen on 127.0.0.1 with ports chosen at run time; every run is
bounded; everything started is stopped by pid at the end.
"""
import argparse
import asyncio
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
sys.path.insert(0, HERE)

import beir_eval  # noqa: E402
from beir_eval import stack  # noqa: E402
from retrieval_bench import run_wrk, machine, pct, ingest_quarry  # noqa: E402

TENANT = beir_eval.TENANT


# ---- helpers -------------------------------------------------------------

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def gauge(st, name):
    with urllib.request.urlopen(st.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else float("nan")


class RssSampler:
    """Samples a pid's VmRSS every 50 ms in a thread; keeps the peak."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop_ = pid, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            time.sleep(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_.set()
        self.t.join()


def wrk_row(name, res):
    ok = (res["requests"] - res["err_status"]) / (res["duration_us"] / 1e6)
    return "%-34s %9d %9.0f %9.0f %8.2f %8.2f %8.2f %7d %7d" % (
        name, res["requests"], res["rps"], ok, res["p50_us"] / 1000, res["p95_us"] / 1000,
        res["p99_us"] / 1000, res["err_status"],
        res["errors"] - res["err_status"])


WRK_HEAD = "%-34s %9s %9s %9s %8s %8s %8s %7s %7s" % (
    "run", "requests", "req/s", "2xx/s", "p50 ms", "p95 ms", "p99 ms", "non2xx", "sockerr")


# ---- 2. idle keep-alive connections --------------------------------------

class IdleHolder:
    """Opens n connections to host:port from an asyncio loop in a thread;
    each sends GET /healthz, reads the answer and stays open."""

    REQ = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"

    def __init__(self, host, port, n, parallel=256):
        self.host, self.port, self.n, self.parallel = host, port, n, parallel
        self.loop = asyncio.new_event_loop()
        self.conns = []
        self.failed = 0
        self.t = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.t.start()

    async def _one_request(self, r, w):
        w.write(self.REQ)
        await w.drain()
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
        m = re.search(rb"content-length: *(\d+)", head, re.I)
        if m:
            await asyncio.wait_for(r.readexactly(int(m.group(1))), 30)
        return head.startswith(b"HTTP/1.1 200")

    async def _open(self, sem):
        async with sem:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), 30)
            except (OSError, asyncio.TimeoutError):
                self.failed += 1
                return
            try:
                if await self._one_request(r, w):
                    self.conns.append((r, w))
                    return
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                pass
            self.failed += 1
            w.close()

    async def _open_all(self):
        sem = asyncio.Semaphore(self.parallel)
        await asyncio.gather(*(self._open(sem) for _ in range(self.n)))

    async def _check(self, sem, r, w):
        async with sem:
            try:
                return await self._one_request(r, w)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                return False

    async def _check_all(self):
        sem = asyncio.Semaphore(self.parallel)
        ok = await asyncio.gather(*(self._check(sem, r, w) for r, w in self.conns))
        return sum(ok)

    async def _close_all(self):
        for _, w in self.conns:
            w.close()
        self.conns = []

    def run(self, coro, timeout):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open(self):
        self.run(self._open_all(), 300)
        return len(self.conns)

    def check(self):
        return self.run(self._check_all(), 300)

    def close(self):
        try:
            self.run(self._close_all(), 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.t.join(10)


# ---- 3. concurrent streamed answers --------------------------------------

async def one_stream(host, port, body, key, timeout, out):
    t0 = time.monotonic()
    res = {"status": None, "ttft": None, "total": None, "done": False, "error": None}
    out.append(res)
    w = None
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        w.write(b"POST /v1/query HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer %s\r\nAccept: text/event-stream\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (key.encode(), len(body), body))
        await w.drain()
        deadline = t0 + timeout
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), deadline - time.monotonic())
        res["status"] = int(head.split(b" ", 2)[1])
        if res["status"] != 200:
            return res
        buf = b""
        while True:
            chunk = await asyncio.wait_for(r.read(65536), deadline - time.monotonic())
            if not chunk:
                res["error"] = "cut"
                break
            buf += chunk
            if res["ttft"] is None and b"event: token" in buf:
                res["ttft"] = time.monotonic() - t0
            if b"event: done" in buf:
                res["done"] = True
                break
            if b"event: error" in buf:
                res["error"] = "error event"
                break
    except asyncio.TimeoutError:
        res["error"] = "client timeout"
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
        res["error"] = type(e).__name__
    finally:
        res["total"] = time.monotonic() - t0
        if w:
            w.close()
    return res


async def many_streams(host, port, bodies, key, n, timeout):
    out = []
    await asyncio.gather(*(one_stream(host, port, bodies[i % len(bodies)], key, timeout, out)
                           for i in range(n)))
    return out


def stream_run(st, bodies, key, n, timeout):
    gw = st.pid("gateway")
    base = rss_kib(gw)
    base_threads = threads_of(gw)
    port = int(st.url.rsplit(":", 1)[1])
    with RssSampler(gw) as s:
        t0 = time.monotonic()
        res = asyncio.run(many_streams("127.0.0.1", port, bodies, key, n, timeout))
        wall = time.monotonic() - t0
    statuses = {}
    for r in res:
        k = str(r["status"]) if r["status"] is not None else (r["error"] or "none")
        statuses[k] = statuses.get(k, 0) + 1
    done = [r for r in res if r["done"]]
    ttft = [r["ttft"] for r in done if r["ttft"] is not None]
    errs = {}
    for r in res:
        if r["status"] == 200 and not r["done"]:
            errs[r["error"]] = errs.get(r["error"], 0) + 1
    return {"n": n, "done": len(done), "statuses": statuses, "stream_errors": errs,
            "ttft_p50": pct(ttft, 50) if ttft else float("nan"),
            "ttft_p99": pct(ttft, 99) if ttft else float("nan"),
            "total_p50": pct([r["total"] for r in done], 50) if done else float("nan"),
            "wall": wall, "rss_base": base, "rss_peak": s.peak,
            "threads": base_threads}


# ---- 4. nginx --------------------------------------------------------------

NGINX_CONF = """worker_processes %(workers)s;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path %(dir)s/body;
  proxy_temp_path %(dir)s/proxy;
  fastcgi_temp_path %(dir)s/fastcgi;
  uwsgi_temp_path %(dir)s/uwsgi;
  scgi_temp_path %(dir)s/scgi;
  server {
    listen 127.0.0.1:%(port)d;
    location / {
      default_type application/json;
      return 200 '{"status":"ok"}';
    }
  }
}
"""


def start_nginx(tmp, workers):
    d = os.path.join(tmp, "nginx")
    os.makedirs(d, exist_ok=True)
    port = stack.free_port(set())
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF % {"dir": d, "port": port, "workers": workers})
    argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", d, "-c", conf,
            "-e", os.path.join(d, "error.log"), "-g", "daemon off;"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d" % port
    for _ in range(100):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return p, url, argv
        except OSError:
            time.sleep(0.05)
    p.terminate()
    raise SystemExit("edge_bench: nginx did not start; see %s/error.log" % d)


def stop_proc(p):
    if p and p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---- main ----------------------------------------------------------------

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "scifact"))
    ap.add_argument("--docs", type=int, default=0,
                    help="upload only the first N corpus documents (default 0: all)")
    ap.add_argument("--threads", type=int, default=8, help="parallel uploads (default 8)")
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run (default 10)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--connections", default="16,64,256,1024",
                    help="wrk connection counts for /v1/query (default 16,64,256,1024)")
    ap.add_argument("--idle", type=int, default=10000,
                    help="idle keep-alive connections to hold (default 10000; 0 skips)")
    ap.add_argument("--streams", default="100,1000",
                    help="concurrent streamed answers per run (default 100,1000; empty skips)")
    ap.add_argument("--answer-seconds", type=float, default=2.0,
                    help="the fake model's time per answer (default 2)")
    ap.add_argument("--stream-timeout", type=float, default=60,
                    help="client cap on one streamed answer (default 60 s)")
    ap.add_argument("--nginx-workers", default="auto")
    ap.add_argument("--parts", default="1,2,3,4",
                    help="which parts to run (default 1,2,3,4)")
    ap.add_argument("--query-top-k", type=int, default=8)
    ap.add_argument("--env", action="append", default=[],
                    help="VAR=value for every service (repeatable)")
    args = ap.parse_args(argv)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            raise SystemExit("edge_bench: %s is missing; run bench/deps.sh" % tool)

    # Every process started from here inherits the raised descriptor limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = args.idle + 2048
    if hard < need:
        print("warning: RLIMIT_NOFILE hard limit %d < %d; the idle test will be short of "
              "descriptors" % (hard, need))

    data = os.path.abspath(args.data)
    corpus, queries, qrels = beir_eval.load_beir(data)
    if args.docs:
        corpus = corpus[:args.docs]
    qids = list(qrels)
    bodies = [json.dumps({"query": queries[q], "top_k": args.query_top_k}) for q in qids]
    sbodies = [json.dumps({"query": queries[q], "top_k": args.query_top_k,
                           "stream": True}).encode() for q in qids]
    started = datetime.datetime.now().astimezone()
    print("Quarry edge benchmark, %s" % started.strftime("%Y-%m-%d %H:%M %Z"))
    print("machine: %s; RLIMIT_NOFILE %d" % (machine(), hard))
    print("dataset: %s (%d documents uploaded, %d test queries as bodies)"
          % (data, len(corpus), len(qids)), flush=True)

    env = {"QUARRY_RATE_LIMIT_RPS": "0",
           "QUARRY_HTTP_MAX_CONNECTIONS": "16384",
           "QUARRY_HTTP_MAX_CONNECTIONS_PER_IP": "0",
           "QUARRY_HTTP_HEADER_TIMEOUT_MS": "120000",
           "QUARRY_HTTP_IDLE_TIMEOUT_MS": "120000"}
    env.update(kv.split("=", 1) for kv in args.env)
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    parts = set(args.parts.split(","))
    conns = [int(c) for c in args.connections.split(",") if c] if "1" in parts else []
    nstreams = [int(c) for c in args.streams.split(",") if c] if "3" in parts else []
    if "2" not in parts:
        args.idle = 0
    results = {"query": [], "idle": None, "streams": [], "healthz": []}
    fake = nginx = None
    cmds = []

    with tempfile.TemporaryDirectory(prefix="quarry-edge-") as tmp, \
            tempfile.TemporaryDirectory(prefix="quarry-edge-run-") as run_dir:
        st = stack.Stack(bin_dir, run_dir, test_mode=True, env=env, quiet=True)
        try:
            st.start_all()
            key = st.create_key(TENANT, "bench", ("admin",))
            to_beir, up_s, index_s, chunks = ingest_quarry(st, key, corpus, args.threads)
            print("uploaded %d documents in %.1f s, all indexed (%d chunks) after %.1f s"
                  % (len(to_beir), up_s, chunks, index_s), flush=True)
            bfile = os.path.join(tmp, "bodies.jsonl")
            with open(bfile, "w") as f:
                f.write("\n".join(bodies) + "\n")
            gw_pid = st.pid("gateway")

            # 1. uncached /v1/query at rising connection counts
            print("1. POST /v1/query, wrk %d s each" % args.seconds, flush=True)
            for c in conns:
                res = run_wrk(st.url + "/v1/query", args.seconds, args.wrk_threads, c, bfile, key)
                res["c"] = c
                res["rss"] = rss_kib(gw_pid)
                results["query"].append(res)
                print("   " + wrk_row("c=%d" % c, res), flush=True)
            if conns:
                cmds.append("wrk -t%d -c{%s} -d%ds --timeout 5s -s bench/query.lua URL/v1/query "
                            "-- bodies.jsonl KEY" % (args.wrk_threads, ",".join(map(str, conns)),
                                                     args.seconds))

            # 4. (run before the idle test so its connections do not weigh on it)
            if "4" in parts:
                print("4. GET /healthz, gateway vs nginx", flush=True)
                nginx, nurl, nargv = start_nginx(tmp, args.nginx_workers)
            for c in ((16, 256) if "4" in parts else ()):
                g = run_wrk(st.url + "/healthz", args.seconds, args.wrk_threads, c)
                n = run_wrk(nurl + "/healthz", args.seconds, args.wrk_threads, c)
                results["healthz"].append((c, g, n))
                print("   " + wrk_row("gateway c=%d" % c, g), flush=True)
                print("   " + wrk_row("nginx c=%d" % c, n), flush=True)
            stop_proc(nginx)
            nginx = None
            if "4" in parts:
                cmds.append("wrk -t%d -c{16,256} -d%ds --timeout 5s -s bench/query.lua "
                            "URL/healthz   (gateway, then nginx)"
                            % (args.wrk_threads, args.seconds))
                cmds.append(" ".join(nargv).replace(tmp, "$TMP"))

            # 2. idle keep-alive connections
            if args.idle:
                print("2. %d idle keep-alive connections" % args.idle, flush=True)
                port = int(st.url.rsplit(":", 1)[1])
                # The same wrk run just before, so the two /healthz rows
                # are from the same minute.
                h0 = run_wrk(st.url + "/healthz", args.seconds, args.wrk_threads, 16)
                rss0 = rss_kib(gw_pid)
                g0 = gauge(st, "quarry_http_connections")
                holder = IdleHolder("127.0.0.1", port, args.idle)
                try:
                    t0 = time.monotonic()
                    opened = holder.open()
                    open_s = time.monotonic() - t0
                    time.sleep(1)
                    held_gauge = gauge(st, "quarry_http_connections")
                    rss1 = rss_kib(gw_pid)
                    h = run_wrk(st.url + "/healthz", args.seconds, args.wrk_threads, 16)
                    rss2 = rss_kib(gw_pid)
                    answered = holder.check()
                    with urllib.request.urlopen(st.url + "/metrics", timeout=10) as r:
                        rejected = [l for l in r.read().decode().splitlines()
                                    if l.startswith("quarry_http_rejected_total{")
                                    and not l.endswith(" 0")]
                finally:
                    holder.close()
                results["idle"] = {"asked": args.idle, "opened": opened,
                                   "failed": holder.failed, "open_s": open_s,
                                   "gauge0": g0, "gauge": held_gauge, "answered": answered,
                                   "rss0": rss0, "rss1": rss1, "rss2": rss2, "healthz": h, "healthz0": h0, "rejected": rejected,
                                   "threads": threads_of(gw_pid)}
                print("   opened %d (failed %d) in %.1f s; gauge %.0f; still answering after "
                      "the wrk run: %d; RSS %d -> %d KiB"
                      % (opened, holder.failed, open_s, held_gauge, answered, rss0, rss1),
                      flush=True)
                print("   " + wrk_row("healthz c=16 beside idle", h), flush=True)
                time.sleep(2)

            # 3. streamed answers through a 2 s fake model
            if nstreams:
                raised = {"QUARRY_PIPELINE_MAX_INFLIGHT": "1024", "QUARRY_PIPELINE_QUEUE": "4096",
                          "QUARRY_TENANT_MAX_INFLIGHT": "1024",
                          "QUARRY_QUERY_TIMEOUT_MS": "60000"}
                fake = subprocess.Popen(
                    [sys.executable, os.path.join(HERE, "fake_openai.py"),
                     "--seconds", str(args.answer_seconds), "--lifetime", "1800"],
                    stdout=subprocess.PIPE)
                fport = int(fake.stdout.readline().split()[1])
                furl = "http://127.0.0.1:%d" % fport
                st.svc_env.setdefault("llm-gateway", {}).update({
                    "QUARRY_GEN_PROVIDER": "openai",
                    "QUARRY_GEN_URL": furl + "/v1/chat/completions",
                    "QUARRY_GEN_TIMEOUT_MS": "60000"})
                st.restart("llm-gateway")
                cmds.append("gw-defaults: the gateway's defaults, llm-gateway "
                            "QUARRY_GRPC_THREADS=1024 (its Generate holds a gRPC thread "
                            "per answer)")
                cmds.append("raised limits: gateway " + " ".join(
                    "%s=%s" % kv for kv in sorted(raised.items())) +
                    "; llm-gateway QUARRY_GRPC_THREADS=256")
                cmds.append("bench/fake_openai.py --seconds %g  (llm-gateway: "
                            "QUARRY_GEN_PROVIDER=openai QUARRY_GEN_URL=http://127.0.0.1:PORT"
                            "/v1/chat/completions QUARRY_GEN_TIMEOUT_MS=60000)"
                            % args.answer_seconds)
                # defaults everywhere; the gateway's defaults with the
                # llm-gateway's generation threads out of the way; both raised.
                for label, genv, llm_threads in (("defaults", {}, None),
                                                 ("gw-defaults", {}, "1024"),
                                                 ("raised", raised, "256")):
                    if genv or llm_threads:
                        st.svc_env.setdefault("gateway", {}).update(genv)
                        st.svc_env["llm-gateway"]["QUARRY_GRPC_THREADS"] = llm_threads
                        st.restart("llm-gateway")
                        st.restart("gateway")
                    for n in nstreams:
                        print("3. %d streamed answers at once, gateway %s limits"
                              % (n, label), flush=True)
                        r = stream_run(st, sbodies, key, n, args.stream_timeout)
                        r["label"] = label
                        with urllib.request.urlopen(furl + "/stats", timeout=5) as f:
                            r["fake"] = json.load(f)
                        results["streams"].append(r)
                        print("   %s" % json.dumps(r), flush=True)
                        time.sleep(2)
        finally:
            stop_proc(nginx)
            st.stop_all()
            stop_proc(fake)

    report(args, results, cmds)
    print("\nfinished in %.0f s" % (time.time() - started.timestamp()))
    return 0


def report(args, res, cmds):
    print()
    print("== 1. Uncached POST /v1/query, wrk %d s, %d threads, rising connections =="
          % (args.seconds, args.wrk_threads))
    print(WRK_HEAD + " %9s" % "gw RSS MiB")
    for r in res["query"]:
        print(wrk_row("c=%d" % r["c"], r) + " %9.0f" % (r["rss"] / 1024))
    if res["idle"]:
        i = res["idle"]
        print()
        print("== 2. %d idle keep-alive connections, /healthz measured beside them ==" % i["asked"])
        print("opened and answered once: %d (failed %d) in %.1f s" % (i["opened"], i["failed"],
                                                                       i["open_s"]))
        print("gateway quarry_http_connections: %.0f before, %.0f while held"
              % (i["gauge0"], i["gauge"]))
        print("still answering a second request after the wrk run: %d" % i["answered"])
        print("guard refusals so far: %s" % (", ".join(i.get("rejected") or []) or "none"))
        print("gateway RSS: %.1f MiB before, %.1f MiB while held (%.2f KiB per connection), "
              "%.1f MiB after wrk; %d threads"
              % (i["rss0"] / 1024, i["rss1"] / 1024,
                 (i["rss1"] - i["rss0"]) / max(1, i["opened"]), i["rss2"] / 1024, i["threads"]))
        print(WRK_HEAD)
        print(wrk_row("GET /healthz c=16, just before", i["healthz0"]))
        print(wrk_row("GET /healthz c=16, idle held", i["healthz"]))
    if res["streams"]:
        print()
        print("== 3. N streamed answers at once, fake model %.1f s per answer ==" %
              args.answer_seconds)
        print("%-11s %6s %6s %-28s %9s %9s %9s %9s %9s %10s"
              % ("limits", "N", "done", "statuses", "ttft p50", "ttft p99", "total p50",
                 "wall s", "RSS +MiB", "KiB/stream"))
        for r in res["streams"]:
            st = ",".join("%s:%d" % kv for kv in sorted(r["statuses"].items()))
            if r["stream_errors"]:
                st += " " + ",".join("%s:%d" % kv for kv in r["stream_errors"].items())
            d = r["rss_peak"] - r["rss_base"]
            print("%-11s %6d %6d %-28s %9.2f %9.2f %9.2f %9.1f %9.1f %10.1f"
                  % (r["label"], r["n"], r["done"], st, r["ttft_p50"], r["ttft_p99"],
                     r["total_p50"], r["wall"], d / 1024, d / r["n"]))
        print("fake model: %s" % json.dumps(res["streams"][-1]["fake"]))
    if res["healthz"]:
        print()
        print("== 4. GET /healthz: gateway vs nginx (static reply), wrk %d s, %d threads =="
              % (args.seconds, args.wrk_threads))
        print(WRK_HEAD)
        for c, g, n in res["healthz"]:
            print(wrk_row("gateway c=%d" % c, g))
            print(wrk_row("nginx c=%d (workers %s)" % (c, args.nginx_workers), n))
    print()
    print("Commands:")
    for c in cmds:
        print("  " + c)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
