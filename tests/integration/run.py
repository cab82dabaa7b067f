#!/usr/bin/python3
"""Quarry integration tests: start the real binaries (deploy/local/stack.py in
test mode, private PostgreSQL/Redis/devbroker under a temporary run dir) and
check them over REST and gRPC.

  /usr/bin/python3 tests/integration/run.py            every case
  /usr/bin/python3 tests/integration/run.py -k Query   cases whose id contains "Query"
  /usr/bin/python3 tests/integration/run.py --round    one ingest+query round, then
      SIGTERM every service and check exit statuses (make asan / make valgrind)

Environment: QUARRY_BIN (binaries), QUARRY_PYGEN (protoc --python_out output),
QUARRY_SANITIZER (asan|valgrind), QUARRY_IT_TIMEOUT (seconds for the whole run).
Exit status 0 when every case passed.
"""

import argparse
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

# Order matters only in that disruptive cases (restarts) come last.
MODULES = ["test_health", "test_errors", "test_documents", "test_lifecycle", "test_formats",
           "test_query", "test_answers",
           "test_events", "test_metrics", "test_interop", "test_openai", "test_stream",
           "test_providers",
           "test_cli", "test_hostile", "test_web", "test_jobs", "test_crash", "test_lease", "test_swap",
           "test_concurrency",
           "test_resilience", "test_rerank", "test_batch", "test_extract_batch", "test_filters", "test_milvus",
           "test_replicas", "test_chunking", "test_vector_type", "test_lexical"]

SANITIZER_PATTERNS = [
    re.compile(rb"ERROR: AddressSanitizer"),
    re.compile(rb"ERROR: LeakSanitizer"),
    re.compile(rb"runtime error:"),               # UBSan
    re.compile(rb"==\d+== ERROR SUMMARY: [1-9]"),   # valgrind
]


class SuiteTimeout(BaseException):
    pass


def on_alarm(signum, frame):
    raise SuiteTimeout()


def on_term(signum, frame):
    raise KeyboardInterrupt()


def sanitizer_reports(st):
    """{log name: first offending lines} for sanitizer/valgrind reports."""
    found = {}
    for name in harness.stackmod.SERVICES + ["devbroker"]:
        try:
            with open(st.log_path(name), "rb") as f:
                data = f.read()
        except OSError:
            continue
        for pat in SANITIZER_PATTERNS:
            m = pat.search(data)
            if m:
                start = data.rfind(b"\n", 0, m.start()) + 1
                found[name] = data[start:start + 3000].decode("utf-8", "replace")
                break
    return found


def retry_503(what, fn, attempts=30):
    """Calls fn until it answers something other than 503. Under valgrind a
    peer can be too slow for the gRPC client's first connection handshake;
    503 then means "try again", as it would for any client."""
    for i in range(attempts):
        r = fn()
        if r.status != 503:
            return r
        print("  %s: 503 (%s), retrying" % (what, (r.json or {}).get("error", {}).get("message", "")[:160]))
        time.sleep(1)
    return r


def run_round():
    """Ingest the samples, ask, give feedback; then SIGTERM each service and
    require exit status 0 and no sanitizer report."""
    problems = []
    st = harness.stack()
    k = harness.key()
    sdir = os.path.join(harness.REPO, "deploy", "local", "samples")
    jobs = []
    for name in sorted(os.listdir(sdir)):
        ctype = "text/plain" if name.endswith(".txt") else "text/markdown"
        with open(os.path.join(sdir, name), "rb") as f:
            data = f.read()
        r = retry_503("upload " + name, lambda: harness.upload(
            data, title=name, ctype=ctype, filename=name))
        print("upload %-22s -> %.200s" % (name, r))
        if r.status != 202:
            problems.append("upload %s: %r" % (name, r))
        else:
            jobs.append(r.json["job_id"])
    for job in jobs:
        r = harness.wait_job(job, timeout=120)
        if (r.json or {}).get("status") != "done":
            problems.append("job %s: %r" % (job, r))
    r = retry_503("query", lambda: harness.query(
        "What is the hotel limit per night in London?"))
    print("query -> %.300s" % r)
    if r.status != 200 or not (r.json or {}).get("citations"):
        problems.append("query: %r" % r)
    else:
        f = retry_503("feedback", lambda: harness.call(
            "POST", "/v1/feedback", key=k,
            body={"query_id": r.json["query_id"], "rating": 1}))
        print("feedback -> %s" % f)
        if f.status != 202:
            problems.append("feedback: %r" % f)
    print("stopping services with SIGTERM")
    for svc in reversed(harness.stackmod.SERVICES):
        t0 = time.monotonic()
        rc = st.stop(svc)
        print("  quarry-%-12s exit %s (%.1fs)" % (svc, rc, time.monotonic() - t0))
        if rc != 0:
            problems.append("quarry-%s exited with status %s:\n%s"
                            % (svc, rc, st.log_tail(svc, 60)))
    st.stop_all()
    for name, text in sanitizer_reports(st).items():
        problems.append("%s log has a sanitizer report:\n%s" % (name, text))
    return problems


def run_suite(pattern, verbosity):
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for mod in MODULES:
        for test in iter_tests(loader.loadTestsFromName(mod)):
            if not pattern or re.search(pattern, test.id()):
                suite.addTest(test)
    print("%d cases" % suite.countTestCases(), flush=True)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=verbosity,
                                     descriptions=False)
    return runner.run(suite)


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--round", action="store_true",
                    help="only an ingest+query round, then SIGTERM and exit checks")
    ap.add_argument("-k", metavar="REGEX", help="only cases whose id matches")
    ap.add_argument("--keep", action="store_true", help="keep the run dir")
    ap.add_argument("-q", action="store_true", help="less output")
    args = ap.parse_args()

    sanitizer = os.environ.get("QUARRY_SANITIZER", "")
    default_timeout = {"": 900, "asan": 1200, "valgrind": 3600}.get(sanitizer, 900)
    timeout = int(os.environ.get("QUARRY_IT_TIMEOUT", default_timeout))
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.alarm(timeout)

    t0 = time.monotonic()
    failed = True
    try:
        try:
            st = harness.stack()
        except harness.stackmod.StackError as e:
            print("FAILED to start the stack: %s" % e)
            return 1
        print("stack up in %.1fs; run dir %s; REST %s" % (
            time.monotonic() - t0, harness.run_dir(), st.url), flush=True)
        if args.round:
            problems = run_round()
            print("\n==== round summary (%.0fs) ====" % (time.monotonic() - t0))
            for p in problems:
                print("FAIL: " + p)
            print("OK" if not problems else "%d problem(s)" % len(problems))
            failed = bool(problems)
            return 1 if problems else 0

        result = run_suite(args.k, 1 if args.q else 2)
        codes = harness.shutdown(keep_run_dir=True)
        bad_exit = {k: v for k, v in codes.items() if v != 0}
        print("\n==== summary (%.0fs) ====" % (time.monotonic() - t0))
        print("ran %d, failures %d, errors %d, skipped %d" % (
            result.testsRun, len(result.failures), len(result.errors),
            len(result.skipped)))
        for test, _ in result.failures:
            print("FAIL  " + test.id())
        for test, _ in result.errors:
            print("ERROR " + test.id())
        for name, rc in bad_exit.items():
            print("EXIT  %s exited with status %s on the final SIGTERM" % (name, rc))
        failed = not result.wasSuccessful() or bool(bad_exit)
        print("OK" if not failed else "FAILED")
        return 1 if failed else 0
    except SuiteTimeout:
        print("\nFAILED: the integration run exceeded %ds (QUARRY_IT_TIMEOUT)" % timeout)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted")
        return 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        keep = args.keep or failed
        harness.shutdown(keep_run_dir=keep)
        if keep and harness.run_dir():
            print("run dir kept: %s (logs in logs/)" % harness.run_dir())


if __name__ == "__main__":
    sys.exit(main())
