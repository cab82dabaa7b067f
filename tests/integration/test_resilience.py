"""Services going away and coming back: a dead retriever, SIGTERM to each
service while calls are in flight. Runs last: it restarts processes."""

import collections
import signal
import sys
import threading
import time
import unittest
import uuid

import harness
from harness import Case, call, key, query, raw_call, wait_job

SLACK_S = 2.0


def note(msg):
    sys.stdout.write("\n    " + msg + "\n")
    sys.stdout.flush()


def wait_query_ok(timeout=20):
    """Retries the fact question until it answers 200; returns (reply, seconds)."""
    t0 = time.monotonic()
    deadline = t0 + timeout * harness.slow()
    while True:
        r = query(harness.FACT_QUESTION)
        if r.status == 200 or time.monotonic() > deadline:
            return r, time.monotonic() - t0
        time.sleep(0.2)


class QueryLoad(threading.Thread):
    """Sends queries back to back until stopped; records every outcome."""

    def __init__(self):
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.replies = []
        self.failures = []

    def run(self):
        while not self.halt.is_set():
            try:
                self.replies.append(query(harness.FACT_QUESTION, timeout=15))
            except Exception as e:      # transport error: no proper reply
                self.failures.append(repr(e))

    def finish(self):
        self.halt.set()
        self.join(30)


class SlowUpload(threading.Thread):
    """A chunked upload that trickles in over ~duration seconds."""

    PATH = "/v1/documents?title=slow+upload"

    def __init__(self, duration=2.5, parts=25, headers=None):
        super().__init__(daemon=True)
        self.duration, self.parts = duration, parts
        self.headers = headers or {}
        self.reply = None
        self.error = None
        self.started = threading.Event()

    def line(self, i):
        return ("Line %d of a slowly uploaded shutdown drill document.\n" % i).encode()

    def whole(self):
        """The body, all at once (what a retry sends)."""
        return b"".join(self.line(i) for i in range(self.parts))

    def body(self):
        self.started.set()
        for i in range(self.parts):
            yield self.line(i)
            time.sleep(self.duration / self.parts)

    def run(self):
        try:
            self.reply = raw_call("POST", self.PATH, self.body(), dict({
                "Authorization": "Bearer " + key(), "Content-Type": "text/plain",
                "Transfer-Encoding": "chunked"}, **self.headers), timeout=30)
        except Exception as e:
            self.error = repr(e)


class RetrieverDown(Case):
    @classmethod
    def setUpClass(cls):
        cls.doc_id = harness.fact_document()

    def test_retriever_killed_then_restarted(self):
        """retriever SIGKILLed → POST /v1/query → 503 unavailable within
        QUARRY_QUERY_TIMEOUT_MS; retriever restarted (gateway untouched) →
        the same query → 200 citing the document ingested before the crash
        (index rebuilt from PostgreSQL)."""
        st = harness.stack()
        self.assertStatus(query(harness.FACT_QUESTION), 200)   # warm channels
        st.kill("retriever")
        try:
            r = query(harness.FACT_QUESTION, timeout=30)
            self.assertError(r, 503)
            limit = harness.QUERY_TIMEOUT_MS / 1000.0 + SLACK_S * harness.slow()
            self.assertLess(r.elapsed, limit, "503 took %.2fs" % r.elapsed)
            note("503 after %.2fs with the retriever down" % r.elapsed)
        finally:
            st.start("retriever")
        r, took = wait_query_ok()
        note("queries answered again %.2fs after the retriever restart" % took)
        self.assertStatus(r, 200)
        cited = {c["document_id"] for c in r.json["citations"]}
        self.assertIn(self.doc_id, cited, "not found after retriever restart: %r" % r)
        self.assertIn(harness.FACT_ANSWER, r.json["answer"])
        self.assertLess(took, 10 * harness.slow(),
                        "gateway needed %.1fs to reach the new retriever" % took)


class GracefulStop(Case):
    """SIGTERM → exit status 0 within QUARRY_GRACE_MS, calls in flight get
    a proper reply, and the service comes back."""

    @classmethod
    def setUpClass(cls):
        cls.doc_id = harness.fact_document()

    def sigterm(self, svc):
        st = harness.stack()
        t0 = time.monotonic()
        rc = st.stop(svc, signal.SIGTERM, timeout=harness.GRACE_MS / 1000.0 + 20)
        took = time.monotonic() - t0
        log = st.log_tail(svc, 15)
        self.assertEqual(rc, 0, "quarry-%s exit status %s after SIGTERM; log:\n%s"
                         % (svc, rc, log))
        self.assertLess(took, harness.GRACE_MS / 1000.0 + SLACK_S * harness.slow(),
                        "quarry-%s took %.1fs to stop" % (svc, took))
        note("quarry-%s stopped in %.2fs" % (svc, took))
        return took

    def under_query_load(self, svc):
        load = QueryLoad()
        load.start()
        try:
            time.sleep(0.4)
            self.sigterm(svc)
            time.sleep(0.3)
        finally:
            load.finish()
            if not harness.stack().alive(svc):
                harness.stack().start(svc)
        note("%d queries during the stop: %s" % (
            len(load.replies), dict(collections.Counter(r.status for r in load.replies))))
        self.assertEqual(load.failures, [], "queries without a reply")
        self.assertTrue(load.replies)
        self.assertEqual(load.replies[0].status, 200, repr(load.replies[0]))
        for r in load.replies:
            self.assertIn(r.status, (200, 503), repr(r))
            self.assertIsInstance(r.json, dict, repr(r))
        _, took = wait_query_ok()
        note("queries answered again %.2fs after the restart" % took)
        r = query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)

    def test_sigterm_auth(self):
        """SIGTERM quarry-auth during back-to-back queries → exit 0; every
        query got 200 or 503 JSON; after restart queries work."""
        self.under_query_load("auth")

    def test_sigterm_retriever(self):
        """SIGTERM quarry-retriever during queries → exit 0; replies 200/503;
        after restart the document is still found."""
        self.under_query_load("retriever")
        r = query(harness.FACT_QUESTION)
        self.assertIn(self.doc_id, {c["document_id"] for c in r.json["citations"]})

    def test_sigterm_reranker(self):
        """SIGTERM quarry-reranker during queries → exit 0; replies 200/503."""
        self.under_query_load("reranker")

    def test_sigterm_llm_gateway(self):
        """SIGTERM quarry-llm-gateway during queries → exit 0; replies 200/503."""
        self.under_query_load("llm-gateway")

    def test_sigterm_feedback(self):
        """SIGTERM quarry-feedback during queries → exit 0; replies 200/503
        (query events are best effort)."""
        self.under_query_load("feedback")

    def test_sigterm_ingestion(self):
        """SIGTERM quarry-ingestion while an upload streams into it → the
        upload still gets 202, ingestion exits 0, and after restart the
        accepted document's job finishes."""
        up = SlowUpload()
        up.start()
        up.started.wait(10)
        time.sleep(0.6)
        try:
            self.sigterm("ingestion")
        finally:
            up.join(40)
            harness.stack().start("ingestion")
        self.assertIsNone(up.error, "upload got no reply: %s" % up.error)
        note("in-flight upload: %r after %.2fs" % (up.reply, up.reply.elapsed))
        self.assertStatus(up.reply, 202)
        job = wait_job(up.reply.json["job_id"])
        self.assertEqual((job.json or {}).get("status"), "done", repr(job))

    def test_sigterm_gateway(self):
        """SIGTERM quarry-gateway while an upload streams into it → the upload
        still gets 202 and the gateway exits 0; restarted, it answers."""
        up = SlowUpload()
        up.start()
        up.started.wait(10)
        time.sleep(0.6)
        try:
            self.sigterm("gateway")
        finally:
            up.join(40)
            harness.stack().start("gateway")
        self.assertIsNone(up.error, "upload got no reply: %s" % up.error)
        note("in-flight upload: %r after %.2fs" % (up.reply, up.reply.elapsed))
        self.assertStatus(up.reply, 202)
        job = wait_job(up.reply.json["job_id"])
        self.assertEqual((job.json or {}).get("status"), "done", repr(job))
        self.assertStatus(call("GET", "/readyz"), 200)


class IdempotentRetry(Case):
    """Uploads retried with an Idempotency-Key across failures store the
    document exactly once."""

    def test_retry_across_a_gateway_restart(self):
        """POST with key K → 202; gateway restarted; POST with K again →
        202, the same body, Idempotent-Replayed: true (the keys live in
        PostgreSQL, not in the gateway)."""
        k = "itest-restart-" + uuid.uuid4().hex
        text = b"# Restart\n\nKeys survive a gateway restart.\n"
        hdrs = {"Idempotency-Key": k}
        r1 = call("POST", "/v1/documents", body=text, key=key(), ctype="text/markdown",
                  headers=hdrs)
        self.assertStatus(r1, 202)
        harness.stack().restart("gateway")
        r2 = call("POST", "/v1/documents", body=text, key=key(), ctype="text/markdown",
                  headers=hdrs)
        self.assertStatus(r2, 202)
        self.assertEqual(r2.header("Idempotent-Replayed"), "true")
        self.assertEqual(r2.json, r1.json)

    def test_upload_cut_by_an_ingestion_crash_is_stored_once(self):
        """SIGKILL quarry-ingestion while a keyed upload streams into it →
        the client gets a 5xx and nothing was stored; ingestion restarted,
        the retry with the same key → 202 (stored now, not a replay); one
        more retry → the same answer, replayed; its job finishes."""
        st = harness.stack()
        k = "itest-crash-" + uuid.uuid4().hex
        up = SlowUpload(headers={"Idempotency-Key": k})
        up.start()
        up.started.wait(10)
        time.sleep(0.6)
        try:
            st.kill("ingestion")
        finally:
            up.join(40)
            st.start("ingestion")
        self.assertIsNone(up.error, "upload got no reply: %s" % up.error)
        note("upload cut by the crash: %r" % up.reply)
        self.assertGreaterEqual(up.reply.status, 500, repr(up.reply))
        hdrs = {"Idempotency-Key": k}
        r1 = call("POST", SlowUpload.PATH, body=up.whole(), key=key(), ctype="text/plain",
                  headers=hdrs)
        self.assertStatus(r1, 202)
        self.assertIsNone(r1.header("Idempotent-Replayed"), "nothing was stored before")
        r2 = call("POST", SlowUpload.PATH, body=up.whole(), key=key(), ctype="text/plain",
                  headers=hdrs)
        self.assertStatus(r2, 202)
        self.assertEqual(r2.header("Idempotent-Replayed"), "true")
        self.assertEqual(r2.json, r1.json)
        job = wait_job(r1.json["job_id"])
        self.assertEqual((job.json or {}).get("status"), "done", repr(job))


if __name__ == "__main__":
    unittest.main()
