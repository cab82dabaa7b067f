"""A new version of a document of thousands of chunks replaces the old one
atomically: while it is indexed (staged batch by batch, then published by
one commit), searches run without pause on the retriever, and every one of
them sees exactly one version, complete: never both, never neither, never
part of the new one (a term only in the last chunk of each version is always
found). Ingestion runs with 24-word chunks so a 0.6 MiB text makes over
3000 of them. Disruptive (restarts ingestion): runs among the modules that
restart services. Run with /usr/bin/python3 (grpcio)."""

import threading
import time
import unittest
import uuid

import harness
from harness import Case, call, key
from test_crash import chunk_rows, note, psql
from test_interop import load_messages

try:
    import grpc
except ImportError:     # reported by the test case
    grpc = None

WORDS = 24


def version_text(tag, version, paragraphs):
    """paragraphs of WORDS words, each a chunk of its own: the shared term
    and the version in every one, the tail term in the last one only."""
    out = ["# Swap drill %s\n" % tag]
    for i in range(paragraphs):
        words = ["zephyrine%s" % tag, "edition%d" % version, "paragraph%d" % i]
        if i == paragraphs - 1:
            words.append("tailmark%s" % tag)
        while len(words) < WORDS - 2:
            words.append("filler%d" % ((i * 7 + len(words)) % 509))
        out.append(" ".join(words) + ".")
    return "\n\n".join(out) + "\n"


class AtomicSwap(Case):
    @classmethod
    def setUpClass(cls):
        if grpc is None:
            raise unittest.SkipTest("python3-grpcio is not importable; run with /usr/bin/python3")
        cls.pb = load_messages()
        st = harness.stack()
        st.svc_env["ingestion"] = {"QUARRY_CHUNK_TOKENS": str(WORDS),
                                   "QUARRY_CHUNK_OVERLAP": "0"}
        st.restart("ingestion")
        cls.channel = grpc.insecure_channel(st.grpc_addr("retriever"))
        m = cls.pb["retriever"]
        cls.search_rpc = cls.channel.unary_unary(
            "/quarry.v1.Retriever/Search", request_serializer=lambda x: x.SerializeToString(),
            response_deserializer=m.SearchResponse.FromString)

    @classmethod
    def tearDownClass(cls):
        st = harness.stack()
        st.svc_env.pop("ingestion", None)
        if getattr(cls, "channel", None):
            cls.channel.close()
            st.restart("ingestion")

    def versions_seen(self, doc, term):
        """{version: passages} of doc among the lexical hits for term."""
        m = self.pb["retriever"]
        req = m.SearchRequest(tenant_id=harness.TENANT, query=term, mode="lexical",
                              top_k=50, filter='{"field":"doc_id","eq":"%s"}' % doc)
        resp = self.search_rpc(req, timeout=10)
        seen = {}
        for p in resp.passages:
            version = int(p.chunk_id.split(":")[1])
            seen[version] = seen.get(version, 0) + 1
        return seen

    def upload(self, tag, version, paragraphs):
        r = call("POST", "/v1/documents?external_id=swap-%s&title=swap" % tag,
                 body=version_text(tag, version, paragraphs), key=key(),
                 ctype="text/markdown")
        self.assertStatus(r, 202)
        return r.json

    def test_every_search_sees_exactly_one_whole_version(self):
        tag = uuid.uuid4().hex[:8]
        v1 = self.upload(tag, 1, 3100)
        j1 = harness.wait_job(v1["job_id"], timeout=300)
        self.assertEqual(j1.json["status"], "done", repr(j1))
        doc = v1["document_id"]
        n1 = j1.json["chunk_count"]
        self.assertGreater(n1, 3000)
        self.assertEqual(self.versions_seen(doc, "zephyrine" + tag), {1: 50})

        bad, counts, stop, newest = [], {}, threading.Event(), [1]

        def search_loop():
            while not stop.is_set():
                for term in ("zephyrine" + tag, "tailmark" + tag):
                    try:
                        seen = self.versions_seen(doc, term)
                    except Exception as e:      # a failed search is a failure too
                        bad.append((term, repr(e)))
                        continue
                    if len(seen) != 1:
                        bad.append((term, seen))
                    else:
                        v = next(iter(seen))
                        counts[(term, v)] = counts.get((term, v), 0) + 1
                        if v < newest[0]:
                            bad.append((term, "version %d after %d" % (v, newest[0])))
                        newest[0] = max(newest[0], v)

        loop = threading.Thread(target=search_loop, daemon=True)
        loop.start()
        t0 = time.monotonic()
        v2 = self.upload(tag, 2, 3300)
        self.assertEqual(v2["document_id"], doc)
        self.assertEqual(v2["version"], 2)
        j2 = harness.wait_job(v2["job_id"], timeout=300)
        took = time.monotonic() - t0
        time.sleep(0.5)
        stop.set()
        loop.join(30)
        note("swap of %d chunks by %d: %.1fs; searches by (term, version): %r; bad: %d"
             % (n1, j2.json.get("chunk_count"), took, counts, len(bad)))
        self.assertEqual(j2.json["status"], "done", repr(j2))
        n2 = j2.json["chunk_count"]
        self.assertGreater(n2, n1)
        self.assertEqual(bad[:5], [], "searches that saw both versions or neither")
        # The loop ran across the swap: it saw the old version, then the new.
        for term in ("zephyrine" + tag, "tailmark" + tag):
            self.assertGreater(counts.get((term, 1), 0), 0, counts)
            self.assertGreater(counts.get((term, 2), 0), 0, counts)
        self.assertEqual(chunk_rows(doc), (n2, n2, 0, n2 - 1, 1))
        self.assertEqual(psql("SELECT count(*) FROM retriever_staged WHERE doc_id = '%s'"
                              % doc).strip(), "0")
