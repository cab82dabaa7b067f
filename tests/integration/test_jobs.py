"""Jobs that tell the truth: an accepted document survives a dependency
outage, a job's outcome is recorded across a PostgreSQL restart, one
tenant's bulk load does not hold up another tenant's small document, and
GET /v1/jobs/{id} says where a job is. Disruptive (stops services): runs
just before test_resilience."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import harness
from harness import Case, call, key, upload

JOB_FIELDS_NEW = {"stage", "progress", "stage_ms", "dependency_retries"}


def note(msg):
    sys.stdout.write("\n    " + msg + "\n")
    sys.stdout.flush()


def job(job_id, api_key=None):
    """GET /v1/jobs/{id}: the JSON, or None while the stack cannot answer."""
    try:
        r = call("GET", "/v1/jobs/" + job_id, key=api_key or key(), timeout=5)
    except Exception:       # the gateway is fine; this is belt and braces
        return None
    return r.json if r.status == 200 else None


def wait_ended(job_ids, api_key=None, timeout=40):
    """Polls until every job is done or failed (tolerating 5xx meanwhile);
    returns {job_id: last JSON}."""
    deadline = time.monotonic() + timeout * harness.slow()
    last = {}
    while True:
        for j in job_ids:
            if (last.get(j) or {}).get("status") in ("done", "failed"):
                continue
            last[j] = job(j, api_key) or last.get(j)
        if all((last.get(j) or {}).get("status") in ("done", "failed")
               for j in job_ids) or time.monotonic() > deadline:
            return last
        time.sleep(0.2)


def listeners(timeout=10):
    """(connections in LISTEN quarry_jobs, psql's stderr), waiting up to
    timeout seconds for at least one."""
    st = harness.stack()
    sql = "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN quarry_jobs'"
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([harness.stackmod.PG_BIN + "/psql", st.pg_dsn, "-tAc", sql],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        n = int(out.stdout.strip() or 0) if out.returncode == 0 else 0
        if n >= 1 or time.monotonic() > deadline:
            return n, out.stderr
        time.sleep(0.5)


def words(n, seed):
    """n words of text that differ per seed (so no upload is 'unchanged')."""
    base = ("greenhouse tomato orchid misting valve sensor humidity "
            "irrigation schedule morning evening reservoir").split()
    out = ["%s%d" % (base[(i * 7 + seed) % len(base)], (i + seed) % 97)
           for i in range(n)]
    return "# Document %s\n\n" % seed + " ".join(out) + "\n"


class Jobs(Case):
    def upload_ok(self, text, api_key=None, title=None):
        r = upload(text, title=title or "jobs " + uuid.uuid4().hex[:6],
                   api_key=api_key)
        self.assertStatus(r, 202)
        return r.json["job_id"]

    def test_job_reports_stage_progress_and_timings(self):
        """GET /v1/jobs/{id} of a finished job → stage, progress done of
        total, milliseconds per stage, dependency_retries."""
        j = self.upload_ok(words(900, 11))
        body = wait_ended([j])[j]
        self.assertEqual(body["status"], "done", body)
        self.assertTrue(JOB_FIELDS_NEW <= set(body), body)
        self.assertEqual(body["stage"], "indexing")
        self.assertGreater(body["progress"]["total"], 0)
        self.assertEqual(body["progress"]["done"], body["progress"]["total"])
        self.assertEqual(body["progress"]["done"], body["chunk_count"])
        for stage in ("extracting", "chunking", "embedding", "indexing"):
            self.assertIn(stage, body["stage_ms"], body)
        self.assertEqual(body["dependency_retries"], 0)

    def test_ingestion_listens_for_queued_jobs(self):
        """pg_stat_activity → a connection of quarry-ingestion sits in
        LISTEN quarry_jobs (workers are woken by NOTIFY, not polling)."""
        n, err = listeners()
        self.assertGreaterEqual(n, 1, err)

    def test_ingestion_metrics_show_the_queue(self):
        """GET ingestion /metrics after a job → jobs by state, the oldest
        queued job's age, extraction seconds by format, bytes and chunks."""
        j = self.upload_ok(words(200, 21))
        self.assertEqual(wait_ended([j])[j]["status"], "done")
        r = call("GET", "/metrics", base=harness.stack().metrics_url("ingestion"))
        self.assertStatus(r, 200)
        text = r.body.decode()
        for want in ('quarry_ingest_jobs{state="queued"}',
                     'quarry_ingest_jobs{state="done"}',
                     "quarry_ingest_queue_oldest_seconds ",
                     'quarry_ingest_extract_seconds_count{format="markdown"}',
                     "quarry_ingest_bytes_total ", "quarry_ingest_chunks_total "):
            self.assertIn(want, text)

    def test_llm_gateway_outage_fails_no_job(self):
        """llm-gateway stopped ~20 s while documents are uploaded → jobs
        wait (queued, dependency_retries > 0, never failed); restarted →
        all done."""
        st = harness.stack()
        st.stop("llm-gateway")
        jobs = []
        try:
            t0 = time.monotonic()
            for i in range(6):
                jobs.append(self.upload_ok(words(300, 100 + i)))
                time.sleep(0.5)
            while time.monotonic() - t0 < 20:
                time.sleep(1)
                seen = [job(j) or {} for j in jobs]
                failed = [s for s in seen if s.get("status") == "failed"]
                self.assertFalse(failed, "failed during the outage: %r" % failed)
            waiting = [s for s in seen if s.get("dependency_retries", 0) > 0]
            note("after 20 s down: %d of %d jobs retried for the dependency, "
                 "statuses %s" % (len(waiting), len(jobs),
                                  sorted({s.get("status") for s in seen})))
            self.assertTrue(waiting, seen)
        finally:
            st.start("llm-gateway")
        t1 = time.monotonic()
        ended = wait_ended(jobs, timeout=30)
        note("all ended %.1fs after the restart" % (time.monotonic() - t1))
        for j in jobs:
            self.assertEqual((ended.get(j) or {}).get("status"), "done", ended.get(j))
            self.assertEqual(ended[j]["attempts"], 1,
                             "waiting for a dependency spends no attempt: %r" % ended[j])

    def test_postgres_restart_while_a_job_finishes(self):
        """Retriever paused while a job indexes; PostgreSQL stopped, the
        retriever resumed (the job now finishes with the database down),
        PostgreSQL started 3 s later → the job ends done, not running."""
        st = harness.stack()
        j = None
        retriever = st.procs["retriever"].pid
        os.kill(retriever, signal.SIGSTOP)
        resumed = pg_down = False
        try:
            j = self.upload_ok(words(300, 300))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                s = job(j) or {}
                if s.get("status") == "running" and s.get("stage") == "indexing":
                    break
                time.sleep(0.1)
            self.assertEqual(s.get("stage"), "indexing", s)
            st.stop_postgres()
            pg_down = True
            os.kill(retriever, signal.SIGCONT)
            resumed = True
            time.sleep(3)
        finally:
            if not resumed:
                os.kill(retriever, signal.SIGCONT)
            if pg_down:
                st.start_postgres()
        t1 = time.monotonic()
        ended = wait_ended([j], timeout=30)[j] or {}
        note("job %s %.1fs after PostgreSQL came back (dependency_retries %s)" % (
            ended.get("status"), time.monotonic() - t1, ended.get("dependency_retries")))
        self.assertEqual(ended.get("status"), "done", ended)
        n, err = listeners(timeout=15)
        self.assertGreaterEqual(n, 1, "the LISTEN connection came back: %r" % err)

    def test_bulk_tenant_does_not_delay_a_small_one(self):
        """Tenant A uploads 10 large documents at once, then tenant B one
        line → B's job is done within a bound, and at most one of A's jobs
        that were still queued when B uploaded finished before it."""
        a_key, b_key = key(), key(harness.OTHER_TENANT)
        texts = [words(80000, 500 + i) for i in range(10)]
        big = [None] * len(texts)

        def up(i):
            big[i] = self.upload_ok(texts[i], api_key=a_key)
        threads = [threading.Thread(target=up, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        t0 = time.monotonic()
        small = self.upload_ok("A one-line note from another tenant %s.\n"
                               % uuid.uuid4().hex, api_key=b_key)
        queued = [j for j in big if (job(j, a_key) or {}).get("status") == "queued"]
        ended = wait_ended([small], api_key=b_key, timeout=30)[small] or {}
        took = time.monotonic() - t0
        done_big = wait_ended(big, api_key=a_key, timeout=60)
        overtook = [j for j in queued
                    if done_big[j]["updated_at"] < ended.get("updated_at", "")]
        note("small job %s after %.2fs; %d large jobs were queued when it came, "
             "%d of them finished before it" % (ended.get("status"), took,
                                                 len(queued), len(overtook)))
        self.assertEqual(ended.get("status"), "done", ended)
        self.assertLess(took, 10 * harness.slow())
        self.assertGreaterEqual(len(queued), 2, "the test needs a queue to jump")
        self.assertLessEqual(len(overtook), 1, "the small job waited for the bulk load")
