"""The lease of a running job: an ingestion instance is SIGKILLed mid-job
and never comes back; another instance (another host name, so it does not
take the job over at start) leaves the job running until its heartbeat is
older than QUARRY_INGEST_LEASE_MS, then queues it again, claims it and
finishes it exactly once: attempts 2, one job row, every chunk once
(ordinals 0..n-1, one version). Disruptive (replaces ingestion): runs among
the modules that restart services."""

import time
import uuid

import harness
from harness import Case, call, key, query, upload
from test_crash import big_document, chunk_rows, note, psql, wait_stage

LEASE_MS = 8000
# Each instance: a short lease (the extraction limit and the call deadline
# must stay below it) and a host name of its own.
ENV = {"QUARRY_INGEST_LEASE_MS": str(LEASE_MS),
       "QUARRY_EXTRACT_TIMEOUT_MS": "7000",
       "QUARRY_INGEST_CALL_TIMEOUT_MS": "2500"}


def claimed_by(job_id):
    return psql("SELECT claimed_by FROM jobs WHERE id = '%s'" % job_id).strip()


class LeaseExpiry(Case):
    def run_as(self, host):
        st = harness.stack()
        if st.alive("ingestion"):
            st.stop("ingestion")
        st.svc_env["ingestion"] = dict(ENV, QUARRY_INGEST_HOST=host)
        st.start("ingestion")

    def tearDown(self):
        st = harness.stack()
        st.svc_env.pop("ingestion", None)
        if st.alive("ingestion"):
            st.stop("ingestion")
        st.start("ingestion")

    def test_a_dead_hosts_job_is_taken_over_after_the_lease(self):
        st = harness.stack()
        tag = uuid.uuid4().hex[:8]
        self.run_as("lease-host-a-" + tag)
        r = upload(big_document(tag, harness.MAX_UPLOAD_BYTES - 4096),
                   title="lease drill " + tag, filename="lease-%s.md" % tag)
        self.assertStatus(r, 202)
        job_id, doc_id = r.json["job_id"], r.json["document_id"]
        seen = wait_stage(job_id, lambda j: j.get("status") == "running"
                          and 0 < (j.get("progress") or {}).get("done", 0)
                          < (j.get("progress") or {}).get("total", 0))
        self.assertIsNotNone(seen, "the job never answered")
        self.assertEqual(seen.get("status"), "running",
                         "the job ended before the kill point: %r" % seen)
        self.assertTrue(claimed_by(job_id).startswith("lease-host-a-%s:" % tag))
        st.kill("ingestion")
        t_kill = time.monotonic()
        before = chunk_rows(doc_id)
        note("killed host a at progress %r; rows indexed %r" % (seen.get("progress"), before))

        # Host b starts: it must not take host a's job over at start, only
        # once the heartbeat is older than the lease.
        self.run_as("lease-host-b-" + tag)
        j = call("GET", "/v1/jobs/" + job_id, key=key()).json
        waited = time.monotonic() - t_kill
        if waited < LEASE_MS / 1000.0 - 1:
            self.assertEqual(j["status"], "running",
                             "host b requeued a job of host a %.1fs after the kill, "
                             "before the lease of %d ms: %r" % (waited, LEASE_MS, j))
            self.assertTrue(claimed_by(job_id).startswith("lease-host-a-"))
        requeued = wait_stage(job_id, lambda j: j.get("status") != "running"
                              or j.get("attempts", 0) >= 2, timeout=60)
        took = time.monotonic() - t_kill
        self.assertGreaterEqual(took, LEASE_MS / 1000.0 - 1,
                                "taken over %.1fs after the kill, before the lease" % took)
        end = harness.wait_job(job_id, timeout=120)
        total = time.monotonic() - t_kill
        self.assertStatus(end, 200)
        j = end.json
        note("job %s %s %.1fs after the kill (taken over after %.1fs): attempts %s, "
             "chunk_count %s" % (job_id, j.get("status"), total, took, j.get("attempts"),
                                 j.get("chunk_count")))
        self.assertEqual(j["status"], "done", repr(j))
        self.assertEqual(j["error"], "", repr(j))
        self.assertEqual(j["attempts"], 2, repr(j))
        self.assertTrue(claimed_by(job_id).startswith("lease-host-b-%s:" % tag),
                        claimed_by(job_id))
        n = j["chunk_count"]
        self.assertGreater(n, 100)
        rows = psql("SELECT status FROM jobs WHERE document_id = '%s'" % doc_id).split()
        self.assertEqual(rows, ["done"], "jobs of the document: %r" % rows)
        self.assertEqual(chunk_rows(doc_id), (n, n, 0, n - 1, 1))
        self.assertIn("stale jobs queued again", st.log_tail("ingestion", lines=400))
        q = query("What does the quorrelite crash drill %s check?" % tag, top_k=5)
        self.assertStatus(q, 200)
        self.assertIn(doc_id, {c.get("document_id") for c in q.json.get("citations", [])})
        self.assertIsNotNone(requeued)
