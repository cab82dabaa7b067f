"""Document life cycle and accounts: GET /v1/documents (paging, filters),
versions, DELETE /v1/documents/{id}, GET /v1/jobs, GET /v1/me and /v1/keys
(roles, tenant isolation, revocation)."""

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import uuid

import harness
from harness import Case, call, upload, wait_job


def fresh_tenant(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def admin_key(tenant):
    return harness.stack().create_key(tenant, "lifecycle-admin", ["admin"])


def psql(sql):
    """One statement's rows as psql -At prints them (fields split by |)."""
    exe = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    r = subprocess.run([exe, "-At", "-d", harness.stack().pg_dsn, "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        raise AssertionError("psql: %s" % r.stderr.decode(errors="replace"))
    return r.stdout.decode()


def list_all(path, api_key, field, limit):
    """Every item of a list, page by page; (items, pages)."""
    items, pages, cursor = [], 0, None
    while True:
        qs = {"limit": str(limit)}
        if cursor:
            qs["cursor"] = cursor
        sep = "&" if "?" in path else "?"
        r = call("GET", path + sep + urllib.parse.urlencode(qs), key=api_key)
        if r.status != 200:
            raise AssertionError("listing %s: %r" % (path, r))
        items += r.json[field]
        pages += 1
        cursor = r.json["next_cursor"]
        if not cursor:
            return items, pages
        if pages > 100:
            raise AssertionError("paging does not end")


class Documents(Case):
    @classmethod
    def setUpClass(cls):
        cls.tenant = fresh_tenant("itest-docs")
        cls.key = admin_key(cls.tenant)
        cls.docs = []
        # Five documents, oldest first: two markdown, three plain text.
        specs = [("Alpha Orchard Notes", "alpha.md", "text/markdown"),
                 ("Beta Boiler Manual", "beta.txt", "text/plain"),
                 ("Gamma Greenhouse Log", "gamma.txt", "text/plain"),
                 ("Delta 100% Plan_x", "delta.md", "text/markdown"),
                 ("Epsilon Inventory", "epsilon.txt", "text/plain")]
        for title, name, ctype in specs:
            r = upload("%s\n\nSome text about %s.\n" % (title, title.split()[0]),
                       title=title, filename=name, ctype=ctype, api_key=cls.key)
            if r.status != 202:
                raise AssertionError("upload: %r" % r)
            job = wait_job(r.json["job_id"], api_key=cls.key)
            if (job.json or {}).get("status") != "done":
                raise AssertionError("job: %r" % job)
            cls.docs.append(r.json["document_id"])
            time.sleep(0.01)

    def test_paging_newest_first(self):
        """GET /v1/documents?limit=2 → pages of 2, 2, 1 following next_cursor;
        newest first; every document exactly once; the last page's
        next_cursor is null."""
        items, pages = list_all("/v1/documents", self.key, "documents", 2)
        self.assertEqual(pages, 3)
        self.assertEqual([d["id"] for d in items], list(reversed(self.docs)))
        for f in ("id", "title", "filename", "content_type", "version", "size_bytes",
                  "chunk_count", "job_id", "status", "created_at", "updated_at"):
            self.assertIn(f, items[0])
        self.assertEqual(items[0]["status"], "done")
        self.assertGreaterEqual(items[0]["chunk_count"], 1)

    def test_default_limit(self):
        r = call("GET", "/v1/documents", key=self.key)
        self.assertStatus(r, 200)
        self.assertEqual(len(r.json["documents"]), 5)
        self.assertIsNone(r.json["next_cursor"])

    def test_filter_q(self):
        """q matches title or file name, any case; % and _ are literal."""
        r = call("GET", "/v1/documents?q=GREENHOUSE", key=self.key)
        self.assertStatus(r, 200)
        self.assertEqual([d["id"] for d in r.json["documents"]], [self.docs[2]])
        r = call("GET", "/v1/documents?q=epsilon.t", key=self.key)
        self.assertEqual([d["id"] for d in r.json["documents"]], [self.docs[4]])
        r = call("GET", "/v1/documents?q=" + urllib.parse.quote("100%"), key=self.key)
        self.assertEqual([d["id"] for d in r.json["documents"]], [self.docs[3]])
        r = call("GET", "/v1/documents?q=" + urllib.parse.quote("n_x"), key=self.key)
        self.assertEqual([d["id"] for d in r.json["documents"]], [self.docs[3]])
        r = call("GET", "/v1/documents?q=" + urllib.parse.quote("a_p"), key=self.key)
        self.assertEqual(r.json["documents"], [])

    def test_filter_content_type_and_state(self):
        r = call("GET", "/v1/documents?content_type=text/markdown", key=self.key)
        self.assertStatus(r, 200)
        self.assertEqual([d["id"] for d in r.json["documents"]],
                         [self.docs[3], self.docs[0]])
        items, pages = list_all("/v1/documents?content_type=text/plain", self.key,
                                "documents", 1)
        self.assertEqual([d["id"] for d in items],
                         [self.docs[4], self.docs[2], self.docs[1]])
        r = call("GET", "/v1/documents?state=done", key=self.key)
        self.assertEqual(len(r.json["documents"]), 5)
        r = call("GET", "/v1/documents?state=failed", key=self.key)
        self.assertEqual(r.json["documents"], [])

    def test_filter_created(self):
        """created_after / created_before (RFC 3339) bound the list."""
        r = call("GET", "/v1/documents/" + self.docs[2], key=self.key)
        mid = r.json["created_at"]
        r = call("GET", "/v1/documents?created_after=" + urllib.parse.quote(mid),
                 key=self.key)
        self.assertStatus(r, 200)
        self.assertEqual([d["id"] for d in r.json["documents"]],
                         [self.docs[4], self.docs[3]])
        r = call("GET", "/v1/documents?created_before=" + urllib.parse.quote(mid),
                 key=self.key)
        self.assertEqual([d["id"] for d in r.json["documents"]],
                         [self.docs[1], self.docs[0]])
        r = call("GET", "/v1/documents?created_after=2999-01-01T00:00:00Z", key=self.key)
        self.assertEqual(r.json["documents"], [])

    def test_bad_parameters(self):
        """Each bad parameter → 400 JSON naming it."""
        cases = {"limit=0": "limit", "limit=501": "limit", "limit=ten": "limit",
                 "state=finished": "state", "cursor=abc": "cursor",
                 "cursor=c1" + "0" * 16 + "g" * 32: "cursor",
                 "created_after=yesterday": "created_after",
                 "created_before=2026-13-01T00:00:00Z": "created_before",
                 "color=red": "color", "limit=1&limit=2": "limit",
                 "q=" + "x" * 600: "q"}
        for qs, name in cases.items():
            r = call("GET", "/v1/documents?" + qs, key=self.key)
            self.assertError(r, 400, "invalid_argument")
            self.assertIn(name, r.json["error"]["message"], "%s: %r" % (qs, r))

    def test_tenant_isolation(self):
        """Tenant B lists none of A's documents and cannot read or delete one."""
        other = admin_key(fresh_tenant("itest-docs-b"))
        r = call("GET", "/v1/documents", key=other)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["documents"], [])
        self.assertError(call("GET", "/v1/documents/" + self.docs[0], key=other), 404)
        self.assertError(call("DELETE", "/v1/documents/" + self.docs[0], key=other), 404)
        self.assertStatus(call("GET", "/v1/documents/" + self.docs[0], key=self.key), 200)
        r = call("GET", "/v1/jobs", key=other)
        self.assertEqual(r.json["jobs"], [])


class Versions(Case):
    def test_versions_listed(self):
        """Two uploads with one external_id → GET /v1/documents/{id} lists
        versions 2 and 1, newest first, each with its size and job."""
        k = admin_key(fresh_tenant("itest-ver"))
        ext = "ver-" + uuid.uuid4().hex[:8]
        a = upload("First text of the document.\n", external_id=ext, filename="v.md",
                   api_key=k)
        wait_job(a.json["job_id"], api_key=k)
        b = upload("Second, longer text of the same document.\n", external_id=ext,
                   filename="v.md", api_key=k)
        self.assertEqual(b.json["version"], 2)
        wait_job(b.json["job_id"], api_key=k)
        r = call("GET", "/v1/documents/" + a.json["document_id"], key=k)
        self.assertStatus(r, 200)
        vs = r.json["versions"]
        self.assertEqual([v["version"] for v in vs], [2, 1])
        self.assertEqual(vs[0]["job_id"], b.json["job_id"])
        self.assertEqual(vs[1]["job_id"], a.json["job_id"])
        self.assertEqual(vs[1]["size_bytes"], len(b"First text of the document.\n"))
        self.assertEqual(vs[0]["status"], "done")


class Delete(Case):
    @classmethod
    def setUpClass(cls):
        cls.tenant = fresh_tenant("itest-del")
        st = harness.stack()
        cls.admin = st.create_key(cls.tenant, "del-admin", ["admin"])
        cls.writer = st.create_key(cls.tenant, "del-writer", ["writer"])
        cls.reader = st.create_key(cls.tenant, "del-reader", ["reader"])
        # Other documents of the tenant, so BM25 has a corpus to weigh terms in.
        for i, text in enumerate(["The canteen serves soup on Mondays.\n",
                                  "Parking permits are renewed every January.\n",
                                  "The library closes at eight in the evening.\n"]):
            r = upload(text, title="Filler %d" % i, api_key=cls.writer)
            wait_job(r.json["job_id"], api_key=cls.writer)

    def ingest(self, text, title):
        r = upload(text, title=title, filename="x.md", api_key=self.writer)
        self.assertStatus(r, 202)
        job = wait_job(r.json["job_id"], api_key=self.writer)
        self.assertEqual(job.json["status"], "done", repr(job))
        return r.json["document_id"]

    def test_delete_leaves_retrieval(self):
        """A cited document → DELETE (writer) → 204; GET → 404; a second
        DELETE → 404; the list leaves it out; the same question no longer
        cites it."""
        doc = self.ingest("# Quillfeather Station\n\nThe Quillfeather weather station "
                          "records wind speed with an anemometer of model ZR-5582.\n",
                          "Quillfeather Station")
        question = "Which anemometer model does the Quillfeather station use?"
        r = harness.query(question, api_key=self.reader)
        self.assertStatus(r, 200)
        self.assertIn(doc, {c["document_id"] for c in r.json["citations"]}, repr(r))

        self.assertError(call("DELETE", "/v1/documents/" + doc, key=self.reader), 403,
                         "permission_denied")
        r = call("DELETE", "/v1/documents/" + doc, key=self.writer)
        self.assertStatus(r, 204)
        self.assertEqual(r.body, b"")
        self.assertError(call("GET", "/v1/documents/" + doc, key=self.reader), 404)
        self.assertError(call("DELETE", "/v1/documents/" + doc, key=self.admin), 404)
        r = call("GET", "/v1/documents?q=Quillfeather", key=self.reader)
        self.assertEqual(r.json["documents"], [])
        r = harness.query(question, api_key=self.reader)
        self.assertStatus(r, 200)
        self.assertNotIn(doc, {c["document_id"] for c in r.json["citations"]}, repr(r))

    def test_reader_cannot_upload(self):
        """A reader key: POST /v1/documents (512 KiB) and POST
        /v1/documents/batch → 403 permission_denied naming the roles, before
        the body is read; nothing is stored."""
        sent = [0]

        def parts():
            for _ in range(8):
                sent[0] += 65536
                yield b"x" * 65536
        r = harness.raw_call("POST", "/v1/documents?title=Reader%20upload", parts(),
                             {"Authorization": "Bearer " + self.reader,
                              "Content-Type": "text/plain",
                              "Content-Length": str(8 * 65536)})
        self.assertError(r, 403, "permission_denied")
        self.assertIn("needs the writer or admin role", r.json["error"]["message"])
        line = json.dumps({"text": "Reader batch line.", "title": "Reader batch"})
        r = call("POST", "/v1/documents/batch", body=(line + "\n").encode(),
                 key=self.reader, ctype="application/x-ndjson")
        self.assertError(r, 403, "permission_denied")
        for q in ("Reader%20upload", "Reader%20batch"):
            r = call("GET", "/v1/documents?q=" + q, key=self.reader)
            self.assertEqual(r.json["documents"], [], repr(r))

    def test_delete_recorded_and_external_id_free(self):
        """The row stays in PostgreSQL with who and when; the blob of its
        version 2 is removed, its version 1's blob, which another document
        shares, is kept; a new
        upload with the deleted document's external_id starts a new
        document."""
        ext = "del-ext-" + uuid.uuid4().hex[:8]
        shared = "Shared text %s.\n" % uuid.uuid4().hex
        r = upload(shared, external_id=ext, api_key=self.writer)
        doc = r.json["document_id"]
        wait_job(r.json["job_id"], api_key=self.writer)
        twin = upload(shared, external_id=ext + "-twin", api_key=self.writer)
        wait_job(twin.json["job_id"], api_key=self.writer)
        text = "Text to delete %s.\n" % uuid.uuid4().hex
        r = upload(text, external_id=ext, api_key=self.writer)
        self.assertEqual(r.json["version"], 2)
        wait_job(r.json["job_id"], api_key=self.writer)
        blobs = harness.stack().blob_dir
        mine = os.path.join(blobs, harness.sha256_hex(text.encode()))
        theirs = os.path.join(blobs, harness.sha256_hex(shared.encode()))
        self.assertTrue(os.path.exists(mine) and os.path.exists(theirs))
        self.assertStatus(call("DELETE", "/v1/documents/" + doc, key=self.admin), 204)
        self.assertFalse(os.path.exists(mine), "the blob of version 2 was removed")
        self.assertTrue(os.path.exists(theirs), "a blob another document uses is kept")
        out = psql(
            "SELECT deleted_by <> '' AND deleted_at IS NOT NULL, deleted_external_id "
            "FROM documents WHERE id = '%s'" % doc)
        self.assertEqual(out.strip(), "t|" + ext)
        again = upload(text, external_id=ext, api_key=self.writer)
        self.assertStatus(again, 202)
        self.assertNotEqual(again.json["document_id"], doc)
        self.assertEqual(again.json["version"], 1)

    def test_jobs_of_deleted_document(self):
        """A queued job of a deleted document ends failed, 'document deleted'."""
        r = upload("Quick text.\n", api_key=self.writer)
        doc, job = r.json["document_id"], r.json["job_id"]
        self.assertStatus(call("DELETE", "/v1/documents/" + doc, key=self.writer), 204)
        j = wait_job(job, api_key=self.writer)
        self.assertStatus(j, 200)
        if j.json["status"] == "failed":
            self.assertEqual(j.json["error"], "document deleted")

    def test_delete_while_indexing(self):
        """A large document deleted while its job is indexing (stage
        "indexing", batches of chunks going to the retriever) → 204; the job
        has ended; a moment later none of its chunks is found. (The race
        this guards against, a batch landing after the retirement, is rare
        even without the guard; ingestion's log shows the delete waiting for
        the worker: "delete: the indexing worker let go".)"""
        token = "zq" + uuid.uuid4().hex[:10]
        para = ("The %s relay station logs pressure, humidity and wind on every "
                "shift of the harbour crew. " % token) * 8 + "\n\n"
        text = (para * 2000)[:1000000]
        r = upload(text, title="Relay logs", filename="relay.md", api_key=self.writer)
        self.assertStatus(r, 202)
        doc, job = r.json["document_id"], r.json["job_id"]
        stage = None
        deadline = time.monotonic() + 60 * harness.slow()
        while time.monotonic() < deadline:
            j = call("GET", "/v1/jobs/" + job, key=self.writer).json
            stage = (j["status"], j.get("stage"))
            if j["status"] in ("done", "failed") or j.get("stage") == "indexing":
                break
            time.sleep(0.01)
        r = call("DELETE", "/v1/documents/" + doc, key=self.writer, timeout=30)
        self.assertStatus(r, 204)
        print("\n    deleted while the job was %s/%s" % stage, flush=True)
        j = call("GET", "/v1/jobs/" + job, key=self.writer).json
        self.assertIn(j["status"], ("done", "failed"), j)
        time.sleep(1.0)
        q = harness.query("%s relay station pressure" % token, api_key=self.reader)
        self.assertStatus(q, 200)
        self.assertNotIn(doc, {c["document_id"] for c in q.json["citations"]}, repr(q))

    def test_retriever_down_keeps_document(self):
        """Retriever stopped → DELETE → 503 and the document stays; retriever
        back → DELETE → 204."""
        doc = self.ingest("Harbour crane inspection every March.\n", "Crane")
        st = harness.stack()
        st.stop("retriever")
        try:
            r = call("DELETE", "/v1/documents/" + doc, key=self.admin, timeout=30)
            self.assertError(r, 503, "unavailable")
            self.assertIn("retriever", r.json["error"]["message"])
            self.assertStatus(call("GET", "/v1/documents/" + doc, key=self.admin), 200)
        finally:
            st.start("retriever")
            st.wait_ready("retriever")
        deadline = time.monotonic() + 20
        while True:
            r = call("DELETE", "/v1/documents/" + doc, key=self.admin)
            if r.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertStatus(r, 204)


class Jobs(Case):
    def test_list_filters_and_paging(self):
        k = admin_key(fresh_tenant("itest-jobs"))
        jobs = []
        for i in range(3):
            r = upload("Job list text %d.\n" % i, api_key=k)
            jobs.append((r.json["job_id"], r.json["document_id"]))
            wait_job(r.json["job_id"], api_key=k)
        items, pages = list_all("/v1/jobs", k, "jobs", 2)
        self.assertEqual(pages, 2)
        self.assertEqual([j["id"] for j in items], [j for j, _ in reversed(jobs)])
        r = call("GET", "/v1/jobs?document_id=" + jobs[1][1], key=k)
        self.assertStatus(r, 200)
        self.assertEqual([j["id"] for j in r.json["jobs"]], [jobs[1][0]])
        r = call("GET", "/v1/jobs?state=done", key=k)
        self.assertEqual(len(r.json["jobs"]), 3)
        r = call("GET", "/v1/jobs?state=queued", key=k)
        self.assertEqual(r.json["jobs"], [])
        for qs, name in {"state=nope": "state", "document_id=%2F%2F": "document_id",
                         "limit=-1": "limit", "cursor=zz": "cursor"}.items():
            r = call("GET", "/v1/jobs?" + qs, key=k)
            self.assertError(r, 400, "invalid_argument")
            self.assertIn(name, r.json["error"]["message"], "%s: %r" % (qs, r))


class Accounts(Case):
    @classmethod
    def setUpClass(cls):
        cls.tenant = fresh_tenant("itest-keys")
        st = harness.stack()
        cls.admin = st.create_key(cls.tenant, "keys-admin", ["admin"])
        cls.writer = st.create_key(cls.tenant, "keys-writer", ["writer", "reader"])

    def test_me(self):
        r = call("GET", "/v1/me", key=self.writer)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["tenant_id"], self.tenant)
        self.assertEqual(r.json["key_name"], "keys-writer")
        self.assertEqual(sorted(r.json["roles"]), ["reader", "writer"])
        self.assertTrue(self.writer.startswith("qk_" + r.json["key_id"]))
        self.assertError(call("GET", "/v1/me"), 401)
        self.assertError(call("GET", "/v1/me", key="qk_0000000000000000_bogus"), 401)

    def test_roles(self):
        """Only admin manages keys: writer → 403 on every /v1/keys route."""
        self.assertError(call("GET", "/v1/keys", key=self.writer), 403, "permission_denied")
        self.assertError(call("POST", "/v1/keys", body={"name": "x", "roles": ["reader"]},
                              key=self.writer), 403)
        self.assertError(call("DELETE", "/v1/keys/0123456789abcdef", key=self.writer), 403)

    def test_create_list_revoke(self):
        """POST → 201 with the secret once; the key works; GET lists it
        without a secret; DELETE → 204; the key → 401 at once; a second
        DELETE → 404."""
        r = call("POST", "/v1/keys", body={"name": "ci-bot", "roles": ["reader"]},
                 key=self.admin)
        self.assertStatus(r, 201)
        new, kid = r.json["api_key"], r.json["id"]
        self.assertEqual(r.json["roles"], ["reader"])
        me = call("GET", "/v1/me", key=new)
        self.assertStatus(me, 200)
        self.assertEqual(me.json["key_id"], kid)

        items, _ = list_all("/v1/keys", self.admin, "keys", 1)
        mine = [k for k in items if k["id"] == kid]
        self.assertEqual(len(mine), 1)
        self.assertEqual(mine[0]["name"], "ci-bot")
        self.assertIs(mine[0]["revoked"], False)
        for k in items:
            self.assertEqual(set(k), {"id", "name", "roles", "created_at", "revoked",
                                      "revoked_at"})
        self.assertNotIn(new.encode(), call("GET", "/v1/keys", key=self.admin).body)

        # Tenant B neither sees nor revokes it.
        other = admin_key(fresh_tenant("itest-keys-b"))
        r = call("GET", "/v1/keys", key=other)
        self.assertNotIn(kid, [k["id"] for k in r.json["keys"]])
        self.assertError(call("DELETE", "/v1/keys/" + kid, key=other), 404)
        self.assertStatus(call("GET", "/v1/me", key=new), 200)

        self.assertStatus(call("DELETE", "/v1/keys/" + kid, key=self.admin), 204)
        self.assertError(call("GET", "/v1/me", key=new), 401)
        self.assertError(call("GET", "/v1/documents", key=new), 401)
        self.assertError(call("DELETE", "/v1/keys/" + kid, key=self.admin), 404)
        r = call("GET", "/v1/keys?limit=500", key=self.admin)
        revoked = [k for k in r.json["keys"] if k["id"] == kid][0]
        self.assertIs(revoked["revoked"], True)
        self.assertTrue(revoked["revoked_at"])

    def test_bad_bodies(self):
        for body, word in (({"name": "", "roles": ["reader"]}, "name"),
                           ({"name": "x", "roles": []}, "roles"),
                           ({"name": "x", "roles": ["root"]}, "roles"),
                           ({"name": "x", "roles": ["reader", "reader"]}, "roles"),
                           ({"name": "x", "roles": ["reader"], "tenant_id": "t"},
                            "tenant_id")):
            r = call("POST", "/v1/keys", body=body, key=self.admin)
            self.assertError(r, 400, "invalid_argument")
            self.assertIn(word, r.json["error"]["message"], repr(r))
        self.assertError(call("GET", "/v1/keys?limit=0", key=self.admin), 400)
        self.assertError(call("GET", "/v1/keys?cursor=k1zz", key=self.admin), 400)
