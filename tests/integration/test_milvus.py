"""The retriever on the Milvus engine: the stack's retriever restarted with
QUARRY_RETRIEVER_ENGINE=milvus against tests/fakes/milvus_fake.py (a Milvus
REST v2 server on a free loopback port): an upload is stored in Milvus and
the query cites it; another tenant does not see it; metadata filters of
/v1/query (eq, in, ranges on numbers and dates, not, hostile strings) run
inside Milvus and give exactly the passing documents; a hybrid query is one
hybrid_search fused by Milvus; Milvus not answering → the retriever's
/readyz says so and /v1/query fails with 503/504 in time
(docs/operations.md), then both recover. The retriever goes back to the
embedded engine afterwards.

Run with /usr/bin/python3."""

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid

import harness
import urllib.parse

from harness import Case, call, key, query, upload, wait_job

TOKEN = "root:Milvus"
DIM = "384"  # the llm-gateway's default embedding dimension


def note(msg):
    print("    note: " + msg, flush=True)


def _fake_get(base, path):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return json.loads(r.read())


FILTER_TERM = "Quillmoor inventory"
FILTER_DOCS = {
    "a": {"team": "legal", "year": 2019, "q": 'say "hi" \\ || tenant_id != "x'},
    "b": {"team": "eng", "year": 2022, "tags": ["alpha", "beta"]},
    "c": {"team": "eng", "year": 2024, "due": "2024-05-01T00:00:00Z", "urgent": True},
}


class MilvusEngine(Case):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="quarry-milvus-it-")
        portfile = os.path.join(cls.tmp, "port")
        cls.fake_log = open(os.path.join(cls.tmp, "fake.log"), "wb")
        cls.fake = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(harness.REPO, "tests", "fakes", "milvus_fake.py"),
             "--port-file", portfile, "--token", TOKEN],
            stdout=cls.fake_log, stderr=subprocess.STDOUT)
        port = 0
        deadline = time.monotonic() + 20
        while not port and time.monotonic() < deadline:
            try:
                with open(portfile) as f:
                    port = int(f.read().strip() or 0)
            except (OSError, ValueError):
                time.sleep(0.05)
        if not port:
            cls.fake.kill()
            raise AssertionError("the fake Milvus did not start")
        cls.base = "http://127.0.0.1:%d" % port
        st = harness.stack()
        st.svc_env["retriever"] = {
            "QUARRY_RETRIEVER_ENGINE": "milvus",
            "QUARRY_MILVUS_URL": cls.base,
            "QUARRY_MILVUS_TOKEN": TOKEN,
            "QUARRY_MILVUS_COLLECTION": "quarry_it",
            "QUARRY_EMBED_DIM": DIM,
            "QUARRY_MILVUS_TIMEOUT_MS": "1000",
            "QUARRY_MILVUS_ATTEMPTS": "2",
            # plain RRF for every embedder: a rule Milvus can fuse itself
            "QUARRY_RETRIEVER_FUSION_WEIGHTS": "*=rrf:100",
        }
        st.stop("retriever")
        st.start("retriever")
        # Every test sees this document, stored while the engine is Milvus.
        cls.marker = "ZX" + uuid.uuid4().hex[:8].upper()
        cls.question = "Which lens model does the Orrinby beacon use?"
        r = upload("# Orrinby beacon\n\nThe Orrinby beacon uses a Fresnel lens of "
                   "model %s, polished every spring.\n" % cls.marker,
                   title="Orrinby beacon", filename="orrinby-%s.md" % cls.marker)
        if r.status != 202:
            raise AssertionError("upload: %r" % r)
        job = wait_job(r.json["job_id"])
        if (job.json or {}).get("status") != "done":
            raise AssertionError("job did not finish on the milvus engine: %r" % job)
        cls.doc_id = r.json["document_id"]
        # Documents with user metadata, for the filters.
        cls.fdocs = {}
        for name, meta in FILTER_DOCS.items():
            qs = urllib.parse.urlencode({"metadata": json.dumps(meta), "title": name})
            r = call("POST", "/v1/documents?" + qs, key=key(), ctype="text/plain",
                     body="%s %s notes of the %s team.\n" % (FILTER_TERM, name, meta["team"]))
            if r.status != 202:
                raise AssertionError("upload %s: %r" % (name, r))
            job = wait_job(r.json["job_id"])
            if (job.json or {}).get("status") != "done":
                raise AssertionError("%s not processed on milvus: %r" % (name, job))
            cls.fdocs[r.json["document_id"]] = name

    def retrieved(self, flt, mode="lexical", api_key=None):
        """Names of the filter documents among the passages of a streamed
        /v1/query (its retrieval event) with filter flt."""
        body = {"query": FILTER_TERM, "top_k": 20, "stream": True, "mode": mode}
        if flt is not None:
            body["filter"] = flt
        r = call("POST", "/v1/query", body=body, key=api_key or key())
        self.assertStatus(r, 200)
        first = r.body.decode("utf-8").split("\n\n")[0].split("\n")
        self.assertEqual(first[0], "event: retrieval", repr(r))
        docs = {p["document_id"] for p in json.loads(first[1][6:])["passages"]}
        return {self.fdocs[d] for d in docs if d in self.fdocs}

    @classmethod
    def tearDownClass(cls):
        st = harness.stack()
        try:
            cls.fake.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass
        st.svc_env.pop("retriever", None)
        try:
            st.stop("retriever")
            st.start("retriever")
        finally:
            cls.fake.terminate()
            try:
                cls.fake.wait(10)
            except subprocess.TimeoutExpired:
                cls.fake.kill()
                cls.fake.wait()
            cls.fake_log.close()

    def test_upload_is_stored_in_milvus_and_cited(self):
        """Upload on the milvus engine → the fake holds its chunks (rows of
        tenant itest) → POST /v1/query cites the document."""
        stats = _fake_get(self.base, "/_fake/stats")
        self.assertGreater(stats["requests"].get("entities/upsert", 0), 0, repr(stats))
        body = stats["last"].get("entities/upsert") or {}
        tenants = {row.get("tenant_id") for row in body.get("data", [])}
        self.assertTrue(tenants, repr(body)[:500])
        r = query(self.question)
        self.assertStatus(r, 200)
        cited = {c["document_id"] for c in r.json["citations"]}
        self.assertIn(self.doc_id, cited, repr(r))
        self.assertIn(self.marker, json.dumps(r.json), "the answer lacks the fact: %r" % r)

    def test_other_tenant_does_not_see_it(self):
        """The same question from tenant itest-other → 200 without the
        document among its citations or its text anywhere."""
        r = query(self.question, api_key=harness.key(harness.OTHER_TENANT))
        self.assertStatus(r, 200)
        cited = {c["document_id"] for c in r.json.get("citations", [])}
        self.assertNotIn(self.doc_id, cited, repr(r))
        self.assertNotIn(self.marker, json.dumps(r.json))

    def test_milvus_not_answering(self):
        """The fake stopped (SIGSTOP: connections hang) → the retriever's
        /readyz → 503 naming Milvus; POST /v1/query → 503 or 504 within the
        query deadline; the fake resumed → /readyz 200 and the document cited
        again."""
        st = harness.stack()
        side = st.metrics_url("retriever")
        self.fake.send_signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 20 * harness.slow()
            r = call("GET", "/readyz", base=side, timeout=10)
            while r.status == 200 and time.monotonic() < deadline:
                time.sleep(0.2)
                r = call("GET", "/readyz", base=side, timeout=10)
            self.assertStatus(r, 503)
            self.assertIn("milvus", json.dumps(r.json).lower(), repr(r))
            t0 = time.monotonic()
            q = query(self.question, timeout=30)
            took = time.monotonic() - t0
            self.assertIn(q.status, (503, 504), repr(q))
            self.assertError(q, q.status)
            limit = harness.QUERY_TIMEOUT_MS / 1000.0 + 2 * harness.slow()
            self.assertLess(took, limit, "%d took %.2fs" % (q.status, took))
            note("milvus stopped: /readyz %r; /v1/query %d in %.2fs" % (
                (r.json or {}).get("error", r.json), q.status, took))
        finally:
            self.fake.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 20 * harness.slow()
        r = call("GET", "/readyz", base=side, timeout=10)
        while r.status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            r = call("GET", "/readyz", base=side, timeout=10)
        self.assertStatus(r, 200)
        r = query(self.question)
        self.assertStatus(r, 200)
        self.assertIn(self.doc_id, {c["document_id"] for c in r.json["citations"]}, repr(r))

    def test_filters_run_inside_milvus(self):
        """/v1/query with a filter on the milvus engine → exactly the passing
        documents, lexical and hybrid; the search Milvus received carries the
        tenant's conjunct and the translated filter."""
        cases = [
            (None, {"a", "b", "c"}),
            ({"field": "meta.team", "eq": "eng"}, {"b", "c"}),
            ({"field": "meta.tags", "eq": "beta"}, {"b"}),
            ({"field": "meta.urgent", "eq": True}, {"c"}),
            ({"field": "meta.year", "gte": 2020, "lt": 2024}, {"b"}),
            ({"field": "meta.due", "gt": "2024-04-30"}, {"c"}),
            ({"not": {"field": "meta.team", "in": ["legal"]}}, {"b", "c"}),
            ({"field": "meta.q", "eq": 'say "hi" \\ || tenant_id != "x'}, {"a"}),
            ({"field": "title", "eq": 'a" || tenant_id != "x'}, set()),
            ({"field": "created_at", "gte": "2020-01-01", "lt": "2100-01-01"},
             {"a", "b", "c"}),
            ({"field": "created_at", "lt": "2020-01-01"}, set()),
        ]
        for flt, want in cases:
            for mode in ("lexical", "hybrid"):
                self.assertEqual(self.retrieved(flt, mode), want, "%s %s" % (mode, json.dumps(flt)))
        body = (_fake_get(self.base, "/_fake/stats")["last"].get("entities/hybrid_search")
                or {})
        filt = (body.get("search") or [{}])[0].get("filter", "")
        self.assertTrue(filt.startswith('tenant_id == "'), filt)
        self.assertIn("created_ms", filt)
        other = self.retrieved({"field": "meta.team", "in": ["eng", "legal"]},
                               api_key=harness.key(harness.OTHER_TENANT))
        self.assertEqual(other, set(), "another tenant's filter reached these documents")

    def test_hybrid_query_is_fused_by_milvus(self):
        """A hybrid /v1/query (rule *=rrf:100) → one entities/hybrid_search
        request with an rrf rerank, and the document is cited."""
        before = _fake_get(self.base, "/_fake/stats")["requests"].get(
            "entities/hybrid_search", 0)
        r = call("POST", "/v1/query", body={"query": self.question, "mode": "hybrid"},
                 key=key())
        self.assertStatus(r, 200)
        self.assertIn(self.doc_id, {c["document_id"] for c in r.json["citations"]}, repr(r))
        stats = _fake_get(self.base, "/_fake/stats")
        self.assertGreater(stats["requests"].get("entities/hybrid_search", 0), before,
                           repr(stats["requests"]))
        rerank = stats["last"]["entities/hybrid_search"]["rerank"]
        self.assertEqual(rerank, {"strategy": "rrf", "params": {"k": 60}})
