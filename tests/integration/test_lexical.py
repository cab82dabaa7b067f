"""The retriever's lexical settings end to end: a bad stopword file or BM25
parameter stops the service at start naming the variable; a restart with
another stopword list discards the snapshot (made under the old list) and
rebuilds, after which a word the old list dropped is searchable; the title
weight applies at search time (0: a word only in the title finds nothing).

Run with /usr/bin/python3 (grpcio is importable only there)."""

import os
import subprocess
import tempfile
import time
import unittest
import uuid

import harness
from harness import Case
from test_interop import load_messages

try:
    import grpc
except ImportError:     # reported by the test cases
    grpc = None


class Lexical(Case):
    @classmethod
    def setUpClass(cls):
        if grpc is None:
            raise unittest.SkipTest("python3-grpcio is not importable; run with /usr/bin/python3")
        cls.pb = load_messages()

    def unary(self, method, req, resp_cls):
        with grpc.insecure_channel(harness.stack().grpc_addr("retriever")) as ch:
            fn = ch.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=resp_cls.FromString)
            return fn(req, timeout=10 * harness.slow())

    def hits(self, tenant, words):
        m = self.pb["retriever"]
        s = self.unary("/quarry.v1.Retriever/Search",
                       m.SearchRequest(tenant_id=tenant, query=words, mode="lexical"),
                       m.SearchResponse)
        return sorted(p.chunk_id for p in s.passages)

    def restart_retriever(self, env):
        st = harness.stack()
        if env is None:
            st.svc_env.pop("retriever", None)
        else:
            st.svc_env["retriever"] = env
        st.stop("retriever")
        st.start("retriever")

    def start_alone(self, env):
        """Runs quarry-retriever with env on a free port; (exit status, stderr)."""
        full = harness.stack()._base_env()
        full.update({"QUARRY_GRPC_LISTEN": "127.0.0.1:0", "QUARRY_METRICS_LISTEN": ""})
        full.update(env)
        p = subprocess.run([harness.stack().binary("quarry-retriever")], env=full,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * harness.slow())
        return p.returncode, p.stderr.decode(errors="replace")

    def test_bad_settings_stop_the_retriever(self):
        """A missing stopword file, a stopword file with two words on a line,
        b = 1.5, k1 = -1 → exit 2 at once, the message naming the variable
        (and the file and line)."""
        with tempfile.TemporaryDirectory() as d:
            two = os.path.join(d, "two.txt")
            with open(two, "w") as f:
                f.write("fine\ntwo words\n")
            cases = [
                ({"QUARRY_RETRIEVER_STOPWORDS": os.path.join(d, "missing.txt")},
                 ["QUARRY_RETRIEVER_STOPWORDS", "missing.txt"]),
                ({"QUARRY_RETRIEVER_STOPWORDS": two},
                 ["QUARRY_RETRIEVER_STOPWORDS", "two.txt", "line 2"]),
                ({"QUARRY_RETRIEVER_BM25_B": "1.5"}, ["QUARRY_RETRIEVER_BM25_B"]),
                ({"QUARRY_RETRIEVER_BM25_K1": "-1"}, ["QUARRY_RETRIEVER_BM25_K1"]),
                ({"QUARRY_RETRIEVER_BM25_TITLE_WEIGHT": "heavy"},
                 ["QUARRY_RETRIEVER_BM25_TITLE_WEIGHT"]),
            ]
            for env, wants in cases:
                code, err = self.start_alone(env)
                self.assertEqual(code, 2, err)
                for want in wants:
                    self.assertIn(want, err)

    def test_stopword_list_change_rebuilds_and_title_weight_applies(self):
        """Upsert a chunk whose text has "whom" (an English stopword) and
        whose title has a word of its own → "whom" finds nothing; retriever
        restarted with QUARRY_RETRIEVER_STOPWORDS=none → its log says the
        snapshot was discarded (another stopword list) and "whom" finds the
        chunk; restarted with the title weight 0 → the title word finds
        nothing, a text word still finds the chunk; defaults again → the
        title word finds it."""
        m = self.pb["retriever"]
        tenant = "lex-" + uuid.uuid4().hex[:8]
        doc = "doc-" + uuid.uuid4().hex[:8]
        up = m.UpsertRequest(tenant_id=tenant, replace_doc_id=doc)
        chunk_id = "%s:1:0" % doc
        up.chunks.add(chunk_id=chunk_id, doc_id=doc, title="Quorvath manual",
                      text="To whom the beacon signals: mariners near the shoal.")
        self.unary("/quarry.v1.Retriever/Upsert", up, m.UpsertResponse)
        self.assertEqual(self.hits(tenant, "whom"), [])
        self.assertEqual(self.hits(tenant, "quorvath"), [chunk_id])
        st = harness.stack()
        try:
            self.restart_retriever({"QUARRY_RETRIEVER_STOPWORDS": "none"})
            proc = st.procs["retriever"]
            with open(proc.log_path, errors="replace") as f:
                f.seek(proc.log_start)
                text = f.read()
            self.assertIn("another stopword list", text)
            self.assertEqual(self.hits(tenant, "whom"), [chunk_id])
            self.restart_retriever({"QUARRY_RETRIEVER_BM25_TITLE_WEIGHT": "0"})
            self.assertEqual(self.hits(tenant, "quorvath"), [])
            self.assertEqual(self.hits(tenant, "beacon"), [chunk_id])
        finally:
            self.restart_retriever(None)
        deadline = time.monotonic() + 10 * harness.slow()
        while self.hits(tenant, "quorvath") != [chunk_id] and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(self.hits(tenant, "quorvath"), [chunk_id])
        self.assertEqual(self.hits(tenant, "whom"), [])


if __name__ == "__main__":
    unittest.main()
