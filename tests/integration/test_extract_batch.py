"""Documents claimed together are extracted in one sandboxed child, and a
document over a limit in that batch fails alone while its neighbours are
done. Ingestion runs here with one worker and a 64 KiB limit on extracted
text, so multipart batches of small Markdown files and one text file that
extracts to more text than that are claimed and extracted together. (The
child dying mid-batch - crash, memory, CPU, wall clock, a flood of
records - and the documents after it extracted again alone is covered by
tests/unit/ingestion/test_sandbox.c, sandbox_batch, with extractors that
misbehave on purpose; no real file crashes the extractors.)

Run with /usr/bin/python3."""

import json
import os
import uuid

import harness
from harness import Case, call, key, wait_job

TENANT = "itest-xbatch"


class ExtractBatch(Case):
    @classmethod
    def setUpClass(cls):
        st = harness.stack()
        st.svc_env["ingestion"] = {"QUARRY_INGEST_WORKERS": "1",
                                   "QUARRY_EXTRACT_MAX_TEXT_BYTES": "65536"}
        st.stop("ingestion")
        st.start("ingestion")

    @classmethod
    def tearDownClass(cls):
        st = harness.stack()
        st.svc_env.pop("ingestion", None)
        st.stop("ingestion")
        st.start("ingestion")

    def test_a_hostile_file_in_a_batch_fails_alone(self):
        """Two multipart batches, 3 Markdown files then 2 more and a text
        file that extracts to 80 KiB of text (over the limit) → 202 each,
        6 jobs → the text file's job failed with "text: the extracted text
        is larger than 64 KiB", the 5 others done with their own titles.
        Ingestion's log: none was extracted again alone (the extractor
        refused the text file itself, so its child went on with the next)."""
        tag = uuid.uuid4().hex[:8]

        def md(i):
            data = ("# Note %d %s\n\nThe storeroom %d holds crates.\n" % (i, tag, i)).encode()
            return ("file", "n%d-%s.md" % (i, tag), "text/markdown", data)

        big = ("file", "big-%s.txt" % tag, "text/plain", ("flood %s " % tag * 8000).encode())
        entries = []
        for files in ([md(0), md(1), md(2)], [md(3), big, md(5)]):
            body, ctype = harness.multipart({}, files)
            r = call("POST", "/v1/documents/batch", body=body, key=key(TENANT), ctype=ctype,
                     timeout=120)
            self.assertStatus(r, 202)
            self.assertEqual((r.json["accepted"], r.json["failed"]), (3, 0), repr(r))
            entries += r.json["documents"]
        jobs = [wait_job(e["job_id"], api_key=key(TENANT), timeout=120).json for e in entries]
        for i, j in enumerate(jobs):
            if i == 4:
                self.assertEqual(j["status"], "failed", repr(j))
                self.assertEqual(j["error"], "text: the extracted text is larger than 64 KiB",
                                 repr(j))
            else:
                self.assertEqual(j["status"], "done", repr(j))
                d = call("GET", "/v1/documents/" + j["document_id"], key=key(TENANT))
                self.assertEqual(d.json["title"], "Note %d %s" % (i, tag), repr(d))
        # How each was extracted: the "document extracted" lines of the log.
        alone = {}
        with open(os.path.join(harness.run_dir(), "logs", "ingestion.log"),
                  errors="replace") as f:
            for line in f:
                if '"document extracted"' not in line:
                    continue
                rec = json.loads(line)
                for i, j in enumerate(jobs):
                    if rec.get("job_id") == j["id"]:
                        alone[i] = rec.get("alone")
        self.assertEqual(alone, {i: False for i in range(6)})
