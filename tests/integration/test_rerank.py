"""The reranker's methods: the answer names the one that ordered its
passages, a method can be asked for by name, the feature vectors come back
on request, and a bad weights file or method stops the service at start.

Run with /usr/bin/python3 (grpcio is importable only there)."""

import os
import subprocess
import tempfile
import unittest

import harness
from harness import Case, query
from test_interop import grpc, load_messages

FEATURES = ["retrieval", "rank", "lexical", "dense", "bm25_body", "bm25_title",
            "coverage", "proximity", "phrase", "length"]


class Rerank(Case):
    @classmethod
    def setUpClass(cls):
        if grpc is None:
            raise unittest.SkipTest("python3-grpcio is not importable; run with /usr/bin/python3")
        cls.pb = load_messages()
        cls.doc_id = harness.fact_document()

    def rerank(self, **kw):
        m, c = self.pb["reranker"], self.pb["common"]
        passages = [
            c.Passage(chunk_id="d:1:0", doc_id="d", title="Fog",
                      text="During fog the keeper sounds the horn twice.", score=2.0),
            c.Passage(chunk_id="d:1:1", doc_id="d", title="Lamp",
                      text="The lamp uses a xenon bulb of type QX-4471.", score=1.0,
                      lexical_score=7.5),
        ]
        with grpc.insecure_channel(harness.stack().grpc_addr("reranker")) as ch:
            fn = ch.unary_unary("/quarry.v1.Reranker/Rerank",
                                request_serializer=lambda x: x.SerializeToString(),
                                response_deserializer=m.RerankResponse.FromString)
            return fn(m.RerankRequest(query="which xenon bulb does the lamp use",
                                      passages=passages, **kw),
                      timeout=10 * harness.slow())

    def test_query_names_the_configured_method(self):
        """POST /v1/query → 200 with rerank_method "none" (the default:
        docs/retrieval.md) and nothing degraded."""
        r = query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["rerank_method"], "none", repr(r))
        self.assertEqual(r.json["degraded"], [], repr(r))

    def test_query_with_the_feature_model(self):
        """The reranker restarted with QUARRY_RERANK_METHOD=features →
        within the gateway's next round of dependency checks
        (QUARRY_READYZ_INTERVAL_MS, 1 s: until then it may still skip the
        call for `none`), POST /v1/query says rerank_method "features" and
        still cites the fact's document."""
        st = harness.stack()
        st.svc_env["reranker"] = {"QUARRY_RERANK_METHOD": "features"}
        try:
            st.stop("reranker")
            st.start("reranker")
            harness.wait_rerank_method("features")
            r = query(harness.FACT_QUESTION)
            self.assertStatus(r, 200)
            self.assertEqual(r.json["rerank_method"], "features", repr(r))
            self.assertEqual(r.json["degraded"], [], repr(r))
            self.assertIn(self.doc_id, {c["document_id"] for c in r.json["citations"]})
        finally:
            st.svc_env.pop("reranker", None)
            st.stop("reranker")
            st.start("reranker")
            harness.wait_rerank_method("none")

    def test_method_by_name(self):
        """Rerank {method none} → retrieval order, method "none";
        {method features} → the lamp passage first, method "features"."""
        r = self.rerank(method="none")
        self.assertEqual(r.method, "none")
        self.assertEqual([p.chunk_id for p in r.passages], ["d:1:0", "d:1:1"])
        r = self.rerank(method="features")
        self.assertEqual(r.method, "features")
        self.assertEqual([p.chunk_id for p in r.passages], ["d:1:1", "d:1:0"])

    def test_unknown_method(self):
        """Rerank {method "colbert"} → INVALID_ARGUMENT naming it."""
        with self.assertRaises(grpc.RpcError) as cm:
            self.rerank(method="colbert")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn('method "colbert" is unknown', cm.exception.details())

    def test_return_features(self):
        """Rerank {return_features, top_n 1} → the feature names and one
        vector per request passage, in request order."""
        r = self.rerank(return_features=True, top_n=1)
        self.assertEqual(len(r.passages), 1)
        self.assertEqual(list(r.feature_names), FEATURES)
        self.assertEqual(len(r.features), 2)
        fog, lamp = (dict(zip(FEATURES, f.values)) for f in r.features)
        self.assertEqual(fog["rank"], 1.0)
        self.assertEqual(lamp["lexical"], 1.0)
        self.assertEqual(fog["lexical"], 0.0)
        self.assertEqual(lamp["bm25_title"], 1.0)

    def start_alone(self, env):
        """Runs quarry-reranker with env on a free port; (exit status, stderr)."""
        full = harness.stack()._base_env()
        full.update({"QUARRY_GRPC_LISTEN": "127.0.0.1:0", "QUARRY_METRICS_LISTEN": ""})
        full.update(env)
        p = subprocess.run([harness.stack().binary("quarry-reranker")], env=full,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * harness.slow())
        return p.returncode, p.stderr.decode(errors="replace")

    def test_bad_weights_file_stops_the_service(self):
        """quarry-reranker with a weights file that is missing, not JSON, or
        lacks a weight → exit 2 at once, the message naming the variable, the
        file and the problem."""
        with tempfile.TemporaryDirectory() as d:
            cases = [
                (os.path.join(d, "missing.json"), None, "No such file"),
                (os.path.join(d, "garbage.json"), b"\x00\xffnot json", "not valid JSON"),
                (os.path.join(d, "short.json"),
                 b'{"format":"quarry-rerank-linear","version":1,"name":"x",'
                 b'"weights":{"retrieval":1}}', 'feature "rank" is missing'),
            ]
            for path, content, why in cases:
                if content is not None:
                    with open(path, "wb") as f:
                        f.write(content)
                code, err = self.start_alone({"QUARRY_RERANK_MODEL": path})
                self.assertEqual(code, 2, err)
                self.assertIn("QUARRY_RERANK_MODEL", err)
                self.assertIn(path, err)
                self.assertIn(why, err)

    def test_unknown_configured_method_stops_the_service(self):
        """QUARRY_RERANK_METHOD=bm42 → exit 2, the message listing the methods."""
        code, err = self.start_alone({"QUARRY_RERANK_METHOD": "bm42"})
        self.assertEqual(code, 2, err)
        self.assertIn("QUARRY_RERANK_METHOD", err)
        self.assertIn("features", err)
        self.assertIn("none", err)
