"""Uploading documents: raw and multipart, jobs, versions, tenants."""

import re
import unittest
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


if __name__ == "__main__":
    unittest.main()
