"""Uploading documents: raw and multipart, jobs, versions, tenants."""

import re
import threading
import unittest
import urllib.parse
import uuid

import harness
from harness import Case, call, key, upload, wait_job

UUIDISH = re.compile(r"^[0-9A-Za-z_:.\-]{8,128}$")

DOC_FIELDS = {"id", "title", "filename", "content_type", "external_id", "version",
              "size_bytes", "sha256", "status", "chunk_count", "job_id",
              "created_at", "updated_at"}
JOB_FIELDS = {"id", "document_id", "status", "error", "chunk_count", "attempts",
              "created_at", "updated_at"}


class Upload(Case):
    def test_raw_markdown(self):
        """POST /v1/documents?title=..&external_id=.. (text/markdown) → 202;
        GET /v1/jobs/{job} → done; GET /v1/documents/{id} → 200 with the
        upload's title, type, size, sha256 and chunks."""
        ext = "itest-raw-" + uuid.uuid4().hex[:8]
        text = ("# Greenhouse Watering Guide\n\n"
                "Tomatoes in the east greenhouse get 2.5 litres of water each "
                "morning at 06:30.\n\n## Orchids\n\nOrchids are misted every "
                "third day with rain water.\n")
        r = upload(text, title="Greenhouse Watering Guide", external_id=ext,
                   filename="greenhouse.md")
        self.assertStatus(r, 202)
        for f in ("document_id", "job_id", "version", "unchanged", "status"):
            self.assertIn(f, r.json, repr(r))
        self.assertRegex(r.json["document_id"], UUIDISH)
        self.assertEqual(r.json["version"], 1)
        self.assertIs(r.json["unchanged"], False)

        job = wait_job(r.json["job_id"])
        self.assertStatus(job, 200)
        self.assertTrue(JOB_FIELDS <= set(job.json), "job fields: %r" % job)
        self.assertEqual(job.json["status"], "done", repr(job))
        self.assertEqual(job.json["id"], r.json["job_id"])
        self.assertEqual(job.json["document_id"], r.json["document_id"])
        self.assertGreaterEqual(job.json["chunk_count"], 1)

        doc = call("GET", "/v1/documents/" + r.json["document_id"], key=key())
        self.assertStatus(doc, 200)
        d = doc.json
        self.assertTrue(DOC_FIELDS <= set(d), "missing %s in %r" % (DOC_FIELDS - set(d), doc))
        self.assertEqual(d["id"], r.json["document_id"])
        self.assertEqual(d["title"], "Greenhouse Watering Guide")
        self.assertEqual(d["filename"], "greenhouse.md")
        self.assertEqual(d["content_type"], "text/markdown")
        self.assertEqual(d["external_id"], ext)
        self.assertEqual(d["version"], 1)
        self.assertEqual(d["size_bytes"], len(text.encode()))
        self.assertEqual(d["sha256"], harness.sha256_hex(text.encode()))
        self.assertEqual(d["status"], "done")
        self.assertEqual(d["job_id"], r.json["job_id"])
        self.assertEqual(d["chunk_count"], job.json["chunk_count"])

    def test_multipart(self):
        """multipart/form-data with a text/plain `file` part and a `title`
        field → 202 → job done → document carries the title, filename and
        text/plain."""
        text = b"Boiler room checklist\n\nBleed the radiators every October.\n"
        body, ctype = harness.multipart(
            {"title": "Boiler Checklist", "external_id": "itest-mp-" + uuid.uuid4().hex[:8]},
            [("file", "boiler.txt", "text/plain", text)])
        r = call("POST", "/v1/documents", body=body, key=key(), ctype=ctype)
        self.assertStatus(r, 202)
        job = wait_job(r.json["job_id"])
        self.assertEqual((job.json or {}).get("status"), "done", repr(job))
        doc = call("GET", "/v1/documents/" + r.json["document_id"], key=key())
        self.assertStatus(doc, 200)
        self.assertEqual(doc.json["title"], "Boiler Checklist")
        self.assertEqual(doc.json["filename"], "boiler.txt")
        self.assertEqual(doc.json["content_type"], "text/plain")
        self.assertEqual(doc.json["size_bytes"], len(text))

    def test_multipart_type_from_extension(self):
        """multipart `file` part notes.md without Content-Type → 202, stored
        as text/markdown."""
        body, ctype = harness.multipart({}, [("file", "notes.md", None,
                                              b"# Notes\n\nThe wifi password rotates monthly.\n")])
        r = call("POST", "/v1/documents", body=body, key=key(), ctype=ctype)
        self.assertStatus(r, 202)
        doc = call("GET", "/v1/documents/" + r.json["document_id"], key=key())
        self.assertStatus(doc, 200)
        self.assertEqual(doc.json["content_type"], "text/markdown")
        self.assertEqual(doc.json["filename"], "notes.md")

    def test_versions(self):
        """Same external_id: identical bytes → 202 unchanged, same document;
        different bytes → version 2 of the same document."""
        ext = "itest-ver-" + uuid.uuid4().hex[:8]
        v1 = "# Parking\n\nStaff park on level -2 of the north garage.\n"
        r1 = upload(v1, external_id=ext, ctype="text/markdown")
        self.assertStatus(r1, 202)
        self.assertEqual(wait_job(r1.json["job_id"]).json.get("status"), "done")

        r2 = upload(v1, external_id=ext, ctype="text/markdown")
        self.assertStatus(r2, 202)
        self.assertIs(r2.json["unchanged"], True, repr(r2))
        self.assertEqual(r2.json["document_id"], r1.json["document_id"])
        self.assertEqual(r2.json["version"], 1)

        r3 = upload(v1 + "\nVisitors park on level -1.\n", external_id=ext,
                    ctype="text/markdown")
        self.assertStatus(r3, 202)
        self.assertIs(r3.json["unchanged"], False)
        self.assertEqual(r3.json["document_id"], r1.json["document_id"])
        self.assertEqual(r3.json["version"], 2)
        self.assertEqual(wait_job(r3.json["job_id"]).json.get("status"), "done")
        doc = call("GET", "/v1/documents/" + r1.json["document_id"], key=key())
        self.assertEqual(doc.json["version"], 2, repr(doc))

    def test_text_without_spaces_is_ingested(self):
        """A 150 KB Japanese paragraph without spaces (text/plain) and a
        Markdown file with a 100 KB data-URI image → 202 → jobs done: every
        chunk fits the embedder (Q_LIMIT_CHUNK_BYTES <= Q_LIMIT_EMBED_TEXT_BYTES).
        The image's URI is markup, not text: its document is one chunk."""
        kana = "日本語の文章検索と資料社員規程出張経費申請承認手続き"
        ja = "".join(kana[(i * 7) % len(kana)] for i in range(50000))
        md = ("# Architecture\n\nThe request flow:\n\n![flow](data:image/png;base64,"
              + "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                        [(i * 13 + i // 64) % 64] for i in range(100 * 1024))
              + ")\n\nThe gateway forwards each request.\n")
        for text, ctype, chunks in ((ja, "text/plain", 3), (md, "text/markdown", 1)):
            r = upload(text, ctype=ctype)
            self.assertStatus(r, 202)
            job = wait_job(r.json["job_id"])
            self.assertEqual((job.json or {}).get("status"), "done", repr(job))
            self.assertGreaterEqual(job.json["chunk_count"], chunks, repr(job))

    def test_other_tenant_cannot_read(self):
        """GET /v1/documents/{id} and /v1/jobs/{id} with another tenant's key → 404."""
        r = upload("# Private\n\nOnly for tenant itest.\n", title="private")
        self.assertStatus(r, 202)
        other = key(harness.OTHER_TENANT)
        self.assertError(call("GET", "/v1/documents/" + r.json["document_id"], key=other), 404)
        self.assertError(call("GET", "/v1/jobs/" + r.json["job_id"], key=other), 404)


class Idempotency(Case):
    """Idempotency-Key on POST /v1/documents: a retry answers the first
    upload's result (Idempotent-Replayed: true) and stores nothing; the
    same key with another document is a 409."""

    def keyed(self, text, idem_key, ctype="text/markdown", **kw):
        qs = {k: v for k, v in kw.items() if v is not None}
        path = "/v1/documents" + ("?" + urllib.parse.urlencode(qs) if qs else "")
        return call("POST", path, body=text, key=key(), ctype=ctype,
                    headers={"Idempotency-Key": idem_key})

    def test_retry_after_success_answers_the_same_ids(self):
        """POST with key K → 202; POST again with K and the same body → 202,
        the same body (same ids, version 1) with Idempotent-Replayed: true;
        the document has one version and one job."""
        k = "itest-" + uuid.uuid4().hex
        text = "# Retry drill\n\nThe fire drill is on the first Monday.\n"
        r1 = self.keyed(text, k, filename="drill.md")
        self.assertStatus(r1, 202)
        self.assertIsNone(r1.header("Idempotent-Replayed"))
        r2 = self.keyed(text, k, filename="drill.md")
        self.assertStatus(r2, 202)
        self.assertEqual(r2.header("Idempotent-Replayed"), "true")
        self.assertEqual(r2.json, r1.json)
        self.assertEqual(wait_job(r1.json["job_id"]).json.get("status"), "done")
        doc = call("GET", "/v1/documents/" + r1.json["document_id"], key=key())
        self.assertEqual(doc.json["version"], 1)
        self.assertEqual(doc.json["job_id"], r1.json["job_id"])
        # Without the key the same bytes are a new document, as always.
        r3 = upload(text, filename="drill.md")
        self.assertStatus(r3, 202)
        self.assertNotEqual(r3.json["document_id"], r1.json["document_id"])

    def test_same_key_with_other_content_is_409(self):
        """POST with key K, then K with other bytes (or another external_id)
        → 409 conflict naming what differs; nothing new is stored."""
        k = "itest-" + uuid.uuid4().hex
        ext = "itest-idem-" + uuid.uuid4().hex[:8]
        r1 = self.keyed("# One\n\nfirst text\n", k, external_id=ext)
        self.assertStatus(r1, 202)
        r2 = self.keyed("# One\n\nsecond text\n", k, external_id=ext)
        err = self.assertError(r2, 409)
        self.assertIn("Idempotency-Key", err["message"])
        self.assertIn("content (sha256) differs", err["message"])
        r3 = self.keyed("# One\n\nfirst text\n", k, external_id=ext + "-b")
        err = self.assertError(r3, 409)
        self.assertIn("external_id differs", err["message"])
        doc = call("GET", "/v1/documents/" + r1.json["document_id"], key=key())
        self.assertEqual(doc.json["version"], 1, repr(doc))

    def test_keys_and_external_ids(self):
        """external_id versions keep working under keys: the same bytes under
        a new key → unchanged (not a replay); new bytes under a third key →
        version 2; the first key still replays version 1's answer."""
        ext = "itest-idem-ext-" + uuid.uuid4().hex[:8]
        k1, k2, k3 = ("itest-" + uuid.uuid4().hex for _ in range(3))
        v1 = "# Keys\n\nversion one\n"
        r1 = self.keyed(v1, k1, external_id=ext)
        self.assertStatus(r1, 202)
        r2 = self.keyed(v1, k2, external_id=ext)
        self.assertStatus(r2, 202)
        self.assertIs(r2.json["unchanged"], True)
        self.assertIsNone(r2.header("Idempotent-Replayed"))
        r3 = self.keyed(v1 + "more\n", k3, external_id=ext)
        self.assertStatus(r3, 202)
        self.assertEqual(r3.json["version"], 2)
        r4 = self.keyed(v1, k1, external_id=ext)
        self.assertEqual(r4.header("Idempotent-Replayed"), "true")
        self.assertEqual(r4.json, r1.json)

    def test_concurrent_requests_with_one_key_store_once(self):
        """Four simultaneous POSTs with one key and one body → all 202 with
        the same ids; exactly one is not a replay."""
        k = "itest-" + uuid.uuid4().hex
        text = "# Race\n\nfour clients, one key\n"
        replies = [None] * 4

        def send(i):
            replies[i] = self.keyed(text, k)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for r in replies:
            self.assertStatus(r, 202)
        self.assertEqual(len({r.json["document_id"] for r in replies}), 1, repr(replies))
        self.assertEqual(len({r.json["job_id"] for r in replies}), 1, repr(replies))
        fresh = [r for r in replies if r.header("Idempotent-Replayed") != "true"]
        self.assertEqual(len(fresh), 1, repr([r.headers.items() for r in replies]))

    def test_malformed_key_is_400(self):
        """Idempotency-Key of 129 characters, or with a non-ASCII byte → 400."""
        for bad in ("k" * 129, "caf\u00e9"):
            r = call("POST", "/v1/documents", body="x", key=key(), ctype="text/plain",
                     headers={"Idempotency-Key": bad.encode("utf-8").decode("latin-1")})
            err = self.assertError(r, 400)
            self.assertIn("Idempotency-Key", err["message"])

    def test_committed_but_the_client_saw_an_error(self):
        """Ingestion stored an upload whose answer never reached the client
        (here: sent to ingestion's gRPC Upload directly, so the gateway
        never saw it). The client's retry through the gateway with the same
        key → 202 with the stored ids, Idempotent-Replayed: true; a second
        direct Upload → replayed too."""
        try:
            import grpc
            from test_interop import load_messages
        except ImportError:
            self.skipTest("python3-grpcio is not importable; run with /usr/bin/python3")
        m = load_messages()["ingestion"]
        k = "itest-" + uuid.uuid4().hex
        data = b"# Lost reply\n\nThe answer to this upload was lost.\n"
        header = m.UploadHeader(tenant_id=harness.TENANT, filename="lost.md",
                                content_type="text/markdown", idempotency_key=k)

        def direct():
            with grpc.insecure_channel(harness.stack().grpc_addr("ingestion")) as ch:
                fn = ch.stream_unary("/quarry.v1.Ingestion/Upload",
                                     request_serializer=lambda x: x.SerializeToString(),
                                     response_deserializer=m.UploadResponse.FromString)
                return fn(iter([m.UploadRequest(header=header, data=data[:10]),
                                m.UploadRequest(data=data[10:])]),
                          timeout=30 * harness.slow())

        first = direct()
        self.assertFalse(first.replayed)
        r = self.keyed(data, k, filename="lost.md")
        self.assertStatus(r, 202)
        self.assertEqual(r.header("Idempotent-Replayed"), "true")
        self.assertEqual(r.json["document_id"], first.document_id)
        self.assertEqual(r.json["job_id"], first.job_id)
        self.assertEqual(r.json["version"], first.version)
        again = direct()
        self.assertTrue(again.replayed)
        self.assertEqual(again.document_id, first.document_id)


if __name__ == "__main__":
    unittest.main()
