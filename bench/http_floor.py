"""The HTTP floor of three server libraries and nginx on this box: the same
15-byte GET /healthz JSON reply from libmicrohttpd (what the gateway uses),
h2o's libh2o-evloop, libevent's evhttp (bench/http_floor.c) and nginx
(figures only, no pass/fail; docs/edge.md).

    make bench-http-floor [FLOOR_ARGS=...]
    /usr/bin/python3 bench/http_floor.py --bin build/bench/http_floor [--seconds 5]

Each library serves with --threads threads (default 2, one per core), nginx
with as many workers. For each server, in turn and --rounds times (so the
rows of one round come from the same minutes): wrk at 16 and 256
connections, then --idle keep-alive connections that each made one request
are held open, the server's RSS is read and wrk at 16 connections measures
/healthz beside them. All servers listen on 127.0.0.1 on ports chosen at
run time and are stopped by pid.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import edge_bench  # noqa: E402
from edge_bench import IdleHolder, rss_kib, stop_proc, wrk_row, WRK_HEAD  # noqa: E402
from edge_bench import run_wrk, machine, stack  # noqa: E402


def start_lib(binary, lib, threads):
    port = stack.free_port(set())
    p = subprocess.Popen([binary, lib, str(port), str(threads)], stdout=subprocess.PIPE)
    line = p.stdout.readline().decode()
    if not line.startswith("listening"):
        p.kill()
        raise SystemExit("http_floor: %s did not start" % lib)
    return p, "http://127.0.0.1:%d" % port


def nginx_pids(master):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master.pid)],
                         capture_output=True, text=True).stdout
    return [master.pid] + [int(x) for x in out.split()]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench", "http_floor"))
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--wrk-threads", type=int, default=2)
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print("HTTP floor, %s; %s; load average %s" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine(),
        " ".join("%.1f" % x for x in os.getloadavg())))
    rows = []
    with tempfile.TemporaryDirectory(prefix="quarry-floor-") as tmp:
        for rnd in range(1, args.rounds + 1):
            for name in ("libmicrohttpd", "h2o", "evhttp", "nginx"):
                if name == "nginx":
                    p, url, _ = edge_bench.start_nginx(tmp, str(args.threads))
                else:
                    lib = {"libmicrohttpd": "mhd", "h2o": "h2o", "evhttp": "evhttp"}[name]
                    p, url = start_lib(args.bin, lib, args.threads)
                try:
                    for c in (16, 256):
                        r = run_wrk(url + "/healthz", args.seconds, args.wrk_threads, c)
                        rows.append(wrk_row("r%d %s c=%d" % (rnd, name, c), r))
                        print(rows[-1], flush=True)
                    pids = nginx_pids(p) if name == "nginx" else [p.pid]
                    rss0 = sum(rss_kib(x) for x in pids)
                    port = int(url.rsplit(":", 1)[1])
                    holder = IdleHolder("127.0.0.1", port, args.idle)
                    try:
                        opened = holder.open()
                        time.sleep(0.5)
                        rss1 = sum(rss_kib(x) for x in pids)
                        r = run_wrk(url + "/healthz", args.seconds, args.wrk_threads, 16)
                        answered = holder.check()
                    finally:
                        holder.close()
                    rows.append(wrk_row("r%d %s c=16 +%d idle" % (rnd, name, opened), r) +
                                "  %.1f KiB/idle conn, %d still answered"
                                % ((rss1 - rss0) / max(1, opened), answered))
                    print(rows[-1], flush=True)
                finally:
                    stop_proc(p)
                time.sleep(1)
    print()
    print(WRK_HEAD)
    for r in rows:
        print(r)
    print("load average at the end: %s" % " ".join("%.1f" % x for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
