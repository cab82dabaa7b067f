#!/usr/bin/env python3
"""bench_ingest.py - `quarry ingest` on a folder of SciFact abstracts, one
upload per file (--no-batch) against batches (POST /v1/documents/batch).

Writes the first N abstracts of corpus.jsonl as <id>.txt files (title, blank
line, text) to a temporary folder, starts a private stack in test mode
(deploy/local/stack.py, rate limit off), and runs build/bin/quarry ingest on
the folder in both modes, alternating, each into a tenant of its own with a
fresh state file. Reports per run: seconds until every upload was answered
(the first "done" line of the plain output, which starts the waiting phase)
and until every job was done (the command's exit), as files/s.

  QUARRY_BIN=build/bin QUARRY_PYGEN=build/py python3 tools/cli/bench_ingest.py \\
      --data ../shared/data/scifact --files 2000 --reps 2
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "deploy", "local"))
import stack  # noqa: E402


def write_corpus(data, n, folder):
    os.makedirs(folder)
    size = 0
    with open(os.path.join(data, "corpus.jsonl")) as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            d = json.loads(line)
            body = ("%s\n\n%s\n" % (d.get("title") or "", d.get("text") or "")).encode()
            with open(os.path.join(folder, "%s.txt" % d["_id"]), "wb") as out:
                out.write(body)
            size += len(body)
    return i if i < n else n, size


def run(quarry, folder, url, key, state, extra, concurrency):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QUARRY_") and not k.startswith("XDG_")}
    env.update(QUARRY_URL=url, QUARRY_API_KEY=key, QUARRY_STATE=state)
    t0 = time.perf_counter()
    p = subprocess.Popen([quarry, "ingest", "-j", str(concurrency)] + extra + [folder],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         cwd=os.path.dirname(folder))
    uploads = None
    tail = []
    for line in p.stdout:
        if uploads is None and line.startswith(b"done       "):
            uploads = time.perf_counter() - t0
        tail = (tail + [line])[-3:]
    err = p.stderr.read()
    rc = p.wait()
    total = time.perf_counter() - t0
    return rc, uploads or total, total, b"".join(tail).decode().strip(), err.decode()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "scifact"))
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("-j", "--concurrency", type=int, default=4)
    args = ap.parse_args(argv)
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    quarry = os.path.join(bin_dir, "quarry")
    print("quarry ingest benchmark, %s" %
          datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    with tempfile.TemporaryDirectory(prefix="quarry-cbench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="quarry-cbench-run-") as run_dir:
        folder = os.path.join(tmp, "scifact")
        n, size = write_corpus(args.data, args.files, folder)
        print("folder: %d SciFact abstracts as .txt files, %.2f MB; -j %d; load %s"
              % (n, size / 1e6, args.concurrency, os.getloadavg()), flush=True)
        st = stack.Stack(bin_dir, run_dir, test_mode=True,
                         env={"QUARRY_RATE_LIMIT_RPS": "0"}, quiet=True)
        try:
            st.start_all()
            print("%-28s %6s %10s %10s %10s %10s" % ("run", "exit", "uploads s", "files/s",
                                                    "all done s", "files/s"))
            for rep in range(args.reps):
                for mode, extra in (("one file per request", ["--no-batch"]),
                                    ("batches", [])):
                    tenant = "cbench-%d-%s" % (rep, "single" if extra else "batch")
                    key = st.create_key(tenant, "bench", ("admin",))
                    state = os.path.join(tmp, tenant + ".json")
                    rc, up, total, tail, err = run(quarry, folder, st.url, key, state,
                                                   extra, args.concurrency)
                    print("%-28s %6d %10.2f %10.1f %10.2f %10.1f" %
                          (mode, rc, up, n / up, total, n / total), flush=True)
                    if rc != 0:
                        print("  " + tail + "\n  " + err[-500:])
            print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
        finally:
            st.stop_all()


if __name__ == "__main__":
    main(sys.argv[1:])
