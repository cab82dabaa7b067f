"""Crashes of quarry-ingestion: SIGKILL mid-job, then a restart → the job
completes exactly once, with every chunk indexed once; the temporary file of
an upload cut by the crash is removed when ingestion starts again; the blob
of a deleted document is removed. Disruptive (kills ingestion): runs among
the modules that restart services."""

import os
import shutil
import subprocess
import sys
import threading
import time
import unittest
import uuid

import harness
from harness import Case, call, key, query, raw_call, upload, wait_job


def note(msg):
    sys.stdout.write("\n    " + msg + "\n")
    sys.stdout.flush()


def psql(sql):
    """One statement's rows as psql -At prints them (fields split by |)."""
    exe = os.path.join(harness.stackmod.PG_BIN, "psql")
    if not os.path.exists(exe):
        exe = shutil.which("psql") or exe
    r = subprocess.run([exe, "-At", "-d", harness.stack().pg_dsn, "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        raise AssertionError("psql: %s" % r.stderr.decode(errors="replace"))
    return r.stdout.decode()


def big_document(tag, limit):
    """Markdown text just under limit bytes: distinct words, so hundreds of
    200-word chunks, and one sentence a query can find."""
    head = ("# Crash drill %s\n\nThe quorrelite crash drill %s checks that the "
            "Pemberley turbine log survives a killed worker.\n\n" % (tag, tag))
    words, n, size = [], 0, len(head)
    while size < limit - 64:
        w = "turbine%d blade%d vibration%d" % (n, n % 311, n % 97)
        words.append(w)
        size += len(w) + 1
        n += 1
        if n % 120 == 0:
            words.append("\n\n")
            size += 2
    return head + " ".join(words) + "\n"


def job(job_id):
    try:
        r = call("GET", "/v1/jobs/" + job_id, key=key(), timeout=5)
    except Exception:
        return None
    return r.json if r.status == 200 else None


def wait_stage(job_id, want, timeout=60):
    """Polls the job until want(json) is true; returns the JSON (or the last
    one seen when the timeout passed or the job ended first)."""
    deadline = time.monotonic() + timeout * harness.slow()
    last = None
    while time.monotonic() < deadline:
        j = job(job_id)
        if j:
            last = j
            if want(j) or j.get("status") in ("done", "failed"):
                return j
        time.sleep(0.02)
    return last


def chunk_rows(doc_id):
    """(active rows, distinct ordinals, min ordinal, max ordinal, distinct
    versions) of the document in the retriever's table."""
    out = psql("SELECT count(*), count(DISTINCT ordinal), coalesce(min(ordinal), -1), "
               "coalesce(max(ordinal), -1), count(DISTINCT version) "
               "FROM retriever_chunks WHERE doc_id = '%s' AND active" % doc_id)
    return tuple(int(x) for x in out.strip().split("|"))


def temp_files():
    d = harness.stack().blob_dir
    return {f for f in os.listdir(d) if f.startswith(".upload-")}


class KillMidJob(Case):
    """SIGKILL while a many-chunk document's job runs; restart; the job is
    done once and the retriever holds each chunk once."""

    def crash_at(self, label, want):
        st = harness.stack()
        tag = uuid.uuid4().hex[:8]
        text = big_document(tag, harness.MAX_UPLOAD_BYTES - 4096)
        r = upload(text, title="crash drill " + tag, filename="crash-%s.md" % tag)
        self.assertStatus(r, 202)
        job_id, doc_id = r.json["job_id"], r.json["document_id"]
        seen = wait_stage(job_id, want)
        self.assertIsNotNone(seen, "the job never answered")
        self.assertEqual(seen.get("status"), "running",
                         "the job ended before the kill point (%s): %r" % (label, seen))
        t0 = time.monotonic()
        rc = st.kill("ingestion")
        note("%s: killed ingestion (status %s) at stage %r, progress %r, attempts %s"
             % (label, rc, seen.get("stage"), seen.get("progress"), seen.get("attempts")))
        before = chunk_rows(doc_id)
        st.start("ingestion")
        end = harness.wait_job(job_id, timeout=120)
        took = time.monotonic() - t0
        self.assertStatus(end, 200)
        j = end.json
        note("%s: job %s %s after %.1fs: attempts %s, chunk_count %s, stage %r, "
             "retries %s; rows before restart %r"
             % (label, job_id, j.get("status"), took, j.get("attempts"),
                j.get("chunk_count"), j.get("stage"), j.get("dependency_retries"), before))
        self.assertEqual(j["status"], "done", repr(j))
        self.assertEqual(j["error"], "", repr(j))
        # One attempt crashed, the second finished: no third, no lost count.
        self.assertEqual(j["attempts"], 2, repr(j))
        n = j["chunk_count"]
        self.assertGreater(n, 100, "the document should have hundreds of chunks")
        self.assertEqual((j.get("progress") or {}).get("done"), n, repr(j))
        # Exactly one job row for the document, and it is done.
        rows = psql("SELECT status FROM jobs WHERE document_id = '%s'" % doc_id).split()
        self.assertEqual(rows, ["done"], "jobs of the document: %r" % rows)
        doc = call("GET", "/v1/documents/" + doc_id, key=key())
        self.assertStatus(doc, 200)
        self.assertEqual(doc.json.get("status"), "done", repr(doc))
        # No duplicate, none missing: ordinals 0..n-1, each once, one version.
        self.assertEqual(chunk_rows(doc_id), (n, n, 0, n - 1, 1))
        q = query("What does the quorrelite crash drill %s check?" % tag, top_k=5)
        self.assertStatus(q, 200)
        cited = {c.get("document_id") for c in q.json.get("citations", [])}
        self.assertIn(doc_id, cited, repr(q))
        return seen, j

    def test_kill_while_indexing(self):
        """Killed after some chunks were indexed and before all were."""
        seen, _ = self.crash_at(
            "indexing", lambda j: j.get("status") == "running"
            and 0 < (j.get("progress") or {}).get("done", 0)
            < (j.get("progress") or {}).get("total", 0))
        self.assertGreater(seen["progress"]["done"], 0)

    def test_kill_as_soon_as_running(self):
        """Killed at the first sight of the running job (extracting or
        chunking or the first embedding batch: nothing indexed yet, or
        very little)."""
        self.crash_at("first running", lambda j: j.get("status") == "running")


class SlowBigUpload(threading.Thread):
    """A chunked upload that sends 64 KiB, then trickles for ~duration s."""

    def __init__(self, duration=8.0):
        super().__init__(daemon=True)
        self.duration = duration
        self.reply = None
        self.error = None
        self.halt = threading.Event()

    def body(self):
        yield b"# Crashed upload\n\n" + b"interrupted upload filler text\n" * 2200
        steps = int(self.duration / 0.1)
        for i in range(steps):
            if self.halt.is_set():
                return
            yield b"trickle line %d of an upload cut by a crash\n" % i
            time.sleep(0.1)

    def run(self):
        try:
            self.reply = raw_call("POST", "/v1/documents?title=crashed+upload", self.body(), {
                "Authorization": "Bearer " + key(), "Content-Type": "text/plain",
                "Transfer-Encoding": "chunked"}, timeout=30)
        except Exception as e:
            self.error = repr(e)


class CrashLeftovers(Case):
    def test_temp_file_of_a_crashed_upload_removed_at_start(self):
        """SIGKILL quarry-ingestion while a large upload streams into it →
        its .upload-* temporary file is left behind; ingestion restarted →
        the file is gone once it is ready; a new upload works."""
        st = harness.stack()
        before = temp_files()
        up = SlowBigUpload()
        up.start()
        deadline = time.monotonic() + 15 * harness.slow()
        mine = set()
        while not mine and time.monotonic() < deadline:
            mine = temp_files() - before
            time.sleep(0.02)
        self.assertTrue(mine, "no temporary upload file appeared in %s" % st.blob_dir)
        time.sleep(0.3)
        try:
            st.kill("ingestion")
            left = temp_files() & mine
            note("left behind by the crash: %s" % sorted(left))
            self.assertTrue(left, "the crash should leave the temporary file")
        finally:
            up.halt.set()
            up.join(40)
            st.start("ingestion")
        self.assertIsNone(up.error, "upload got no reply: %s" % up.error)
        self.assertGreaterEqual(up.reply.status, 500, repr(up.reply))
        self.assertEqual(temp_files() & mine, set(),
                         "temporary files still there after the restart")
        self.assertIn("left-over upload files", st.log_tail("ingestion", lines=200))
        r = upload("# After the crash\n\nUploads work after the sweep %s.\n"
                   % uuid.uuid4().hex)
        self.assertStatus(r, 202)
        self.assertEqual(wait_job(r.json["job_id"]).json.get("status"), "done")

    def test_blob_of_a_deleted_document_removed(self):
        """DELETE /v1/documents/{id} → the document's blob file is gone."""
        text = "# Short lived\n\nA document deleted right away %s.\n" % uuid.uuid4().hex
        r = upload(text)
        self.assertStatus(r, 202)
        self.assertEqual(wait_job(r.json["job_id"]).json.get("status"), "done")
        path = os.path.join(harness.stack().blob_dir, harness.sha256_hex(text.encode()))
        self.assertTrue(os.path.exists(path), "blob %s missing before delete" % path)
        d = call("DELETE", "/v1/documents/" + r.json["document_id"], key=key())
        self.assertIn(d.status, (200, 202, 204), repr(d))
        deadline = time.monotonic() + 10 * harness.slow()
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(os.path.exists(path), "blob kept after the delete")


if __name__ == "__main__":
    unittest.main()
