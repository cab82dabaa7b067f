"""Bulk loading: POST /v1/documents/batch with NDJSON lines and with several
multipart files; one document and one job each, per-line errors, limits,
Idempotency-Key across a retried batch, metadata stored."""

import json
import os
import subprocess
import uuid

import harness
from harness import Case, call, key, query, wait_job

TENANT = "itest-batch"


def ndjson(lines):
    return ("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n").encode()


def batch(body, ctype="application/x-ndjson", headers=None, api_key=None):
    return call("POST", "/v1/documents/batch", body=body, key=api_key or key(TENANT),
                ctype=ctype, headers=headers, timeout=120)


def sql(q):
    st = harness.stack()
    r = subprocess.run([os.path.join(harness.stackmod.PG_BIN, "psql"), st.pg_dsn, "-tAc", q],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        raise AssertionError("psql: " + r.stderr.decode(errors="replace"))
    return r.stdout.decode().strip()


class Batch(Case):
    def test_ndjson_batch_all_done_and_searchable(self):
        """Three NDJSON lines → 202 with three entries (line, document_id,
        job_id, queued) → every job done → a query finds the text; the
        metadata object is stored with its document."""
        tag = uuid.uuid4().hex[:8]
        docs = [{"external_id": "b-%s-%d" % (tag, i), "title": "Batch note %d" % i,
                 "text": "The quarry%s storeroom %d holds %d crates of granite." % (tag, i, i + 3),
                 "metadata": {"shelf": i, "tags": ["granite", tag]}}
                for i in range(3)]
        r = batch(ndjson(docs))
        self.assertStatus(r, 202)
        self.assertEqual((r.json["accepted"], r.json["failed"]), (3, 0), repr(r))
        for i, e in enumerate(r.json["documents"]):
            self.assertEqual((e["index"], e["line"], e["status"], e["version"]),
                             (i, i + 1, "queued", 1), repr(e))
            self.assertIs(e["replayed"], False)
            job = wait_job(e["job_id"], api_key=key(TENANT))
            self.assertEqual((job.json or {}).get("status"), "done", repr(job))
            d = call("GET", "/v1/documents/" + e["document_id"], key=key(TENANT))
            self.assertEqual((d.json["external_id"], d.json["title"], d.json["content_type"]),
                             (docs[i]["external_id"], docs[i]["title"], "text/plain; charset=utf-8"))
        meta = json.loads(sql("SELECT metadata::text FROM documents WHERE id = '%s'"
                              % r.json["documents"][1]["document_id"]))
        self.assertEqual(meta, {"shelf": 1, "tags": ["granite", tag]})
        q = query("How many crates of granite does storeroom 2 hold? quarry%s" % tag,
                  api_key=key(TENANT))
        self.assertStatus(q, 200)
        self.assertTrue(any("storeroom 2" in (c.get("snippet") or "")
                            for c in q.json.get("citations", [])) or
                        "storeroom 2" in q.json.get("answer", ""), repr(q))

    def test_malformed_lines_fail_alone_naming_their_line(self):
        """Good lines around bad ones (not JSON, bad UTF-8, no text, unknown
        key, wrong type, metadata not an object, a line over the line limit)
        → 202; each bad line has its own error naming its line number; the
        good lines are stored and their jobs finish."""
        tag = uuid.uuid4().hex[:8]
        good = lambda i: json.dumps({"external_id": "m-%s-%d" % (tag, i),
                                     "text": "Good line %d of %s." % (i, tag)}).encode()
        long_line = json.dumps({"text": "x" * (1 << 20)}).encode()
        lines = [good(1), b"{not json", b'{"text": "caf\xc3"}', b'{"title": "no text"}',
                 b"", b'{"text": "t", "colour": "red"}', b'{"text": 42}',
                 b'{"text": "t", "metadata": [1]}', long_line, good(2)]
        r = batch(b"\n".join(lines) + b"\n")
        self.assertStatus(r, 202)
        self.assertEqual((r.json["accepted"], r.json["failed"]), (2, 7), repr(r))
        by_line = {e["line"]: e for e in r.json["documents"]}
        self.assertNotIn(5, by_line, "a blank line is skipped")
        for line, words in ((2, "not valid JSON"), (3, "UTF-8"), (4, "\"text\" is required"),
                            (6, "unknown key \"colour\""), (7, "\"text\" is required"),
                            (8, "\"metadata\" must be a JSON object"), (9, "longer than")):
            err = by_line[line].get("error")
            self.assertIsNotNone(err, "line %d: %r" % (line, by_line[line]))
            self.assertTrue(err["message"].startswith("line %d: " % line), repr(err))
            self.assertIn(words, err["message"])
            self.assertIn(err["code"], ("invalid_argument", "too_large"), repr(err))
        for line in (1, 10):
            job = wait_job(by_line[line]["job_id"], api_key=key(TENANT))
            self.assertEqual((job.json or {}).get("status"), "done", repr(job))

    def test_nothing_accepted_is_400_with_the_reasons(self):
        r = batch(b'{"title": "only a title"}\n')
        self.assertError(r, 400)
        self.assertEqual(r.json["documents"][0]["line"], 1)
        self.assertIn("\"text\" is required", r.json["documents"][0]["error"]["message"])

    def test_limits_refuse_the_whole_batch(self):
        """Over Q_LIMIT_BATCH_DOCUMENTS lines → 413; an empty batch → 400;
        another Content-Type → 415; a batch key over its limit → 400; each
        with the JSON error body, and nothing of the refused batch stored."""
        tag = uuid.uuid4().hex[:8]
        lines = [json.dumps({"external_id": "lim-%s-%d" % (tag, i), "text": "d"})
                 for i in range(1001)]
        self.assertError(batch(ndjson(lines)), 413)
        self.assertEqual(sql("SELECT count(*) FROM documents WHERE external_id LIKE 'lim-%s-%%'"
                             % tag), "0")
        self.assertError(batch(b"\n\n"), 400)
        self.assertError(batch(b'{"text": "x"}', ctype="application/json"), 415)
        self.assertError(batch(b'{"text": "x"}\n', headers={"Idempotency-Key": "k" * 121}), 400)

    def test_multipart_files_one_job_each_with_a_part_error(self):
        """Three "file" parts (Markdown, text, an empty one) → 202: two
        documents with their file names and types, each job done; the empty
        part fails alone naming its part."""
        tag = uuid.uuid4().hex[:8]
        body, ctype = harness.multipart({}, [
            ("file", "kiln-%s.md" % tag, "text/markdown",
             b"# Kiln Log\n\nThe kiln reached 1240 degrees on Tuesday.\n"),
            ("file", "empty.txt", "text/plain", b""),
            ("file", "glaze-%s.txt" % tag, "text/plain", b"Glaze batches are mixed on Fridays.\n"),
        ])
        r = batch(body, ctype=ctype)
        self.assertStatus(r, 202)
        self.assertEqual((r.json["accepted"], r.json["failed"]), (2, 1), repr(r))
        parts = {e["part"]: e for e in r.json["documents"]}
        self.assertIn("part 2: ", parts[2]["error"]["message"])
        self.assertEqual(parts[2]["filename"], "empty.txt")
        for p, name, ctype_want in ((1, "kiln-%s.md" % tag, "text/markdown"),
                                    (3, "glaze-%s.txt" % tag, "text/plain")):
            job = wait_job(parts[p]["job_id"], api_key=key(TENANT))
            self.assertEqual((job.json or {}).get("status"), "done", repr(job))
            d = call("GET", "/v1/documents/" + parts[p]["document_id"], key=key(TENANT))
            self.assertEqual((d.json["filename"], d.json["content_type"]), (name, ctype_want))
        # A field that is not a file refuses the whole request.
        body, ctype = harness.multipart({"title": "x"}, [("file", "a.txt", "text/plain", b"a")])
        self.assertError(batch(body, ctype=ctype), 400)

    def test_idempotency_key_replays_a_retried_batch(self):
        """A keyed batch, then the same batch again → the same document and
        job ids, replayed: true, no new version; the key with a changed
        document at one position → that entry 409, the others replayed."""
        tag = uuid.uuid4().hex[:8]
        k = "batch-" + tag
        docs = [{"external_id": "idem-%s-%d" % (tag, i), "text": "Idempotent %d %s" % (i, tag)}
                for i in range(3)]
        first = batch(ndjson(docs), headers={"Idempotency-Key": k})
        self.assertStatus(first, 202)
        again = batch(ndjson(docs), headers={"Idempotency-Key": k})
        self.assertStatus(again, 202)
        for a, b in zip(first.json["documents"], again.json["documents"]):
            self.assertEqual((a["document_id"], a["job_id"], a["version"]),
                             (b["document_id"], b["job_id"], b["version"]))
            self.assertIs(b["replayed"], True)
        docs[1]["text"] = "changed " + tag
        changed = batch(ndjson(docs), headers={"Idempotency-Key": k})
        self.assertStatus(changed, 202)
        e = changed.json["documents"]
        self.assertEqual(e[1]["error"]["code"], "conflict", repr(changed))
        self.assertTrue(e[0]["replayed"] and e[2]["replayed"], repr(changed))
