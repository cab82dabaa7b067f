"""QUARRY_RETRIEVER_VECTOR_TYPE=int8: the stack's retriever restarted with
int8 vectors discards the float32 snapshot (log: snapshot discarded, naming
the vector type) and rebuilds from PostgreSQL; a document uploaded before is
found by dense search with a cosine score, and cited by /v1/query; a second
restart loads the int8 snapshot; an unknown type stops the service (exit 2)
naming the value. The retriever goes back to float32 afterwards.

Run with /usr/bin/python3."""

import os
import sys
import time
import unittest
import uuid

import harness
from harness import Case, query, upload, wait_job

try:
    import grpc
except ImportError:  # pragma: no cover
    grpc = None


def _pb():
    root = harness.PYGEN
    if root not in sys.path:
        sys.path.insert(0, root)
    from quarry.v1 import llm_pb2, retriever_pb2
    return llm_pb2, retriever_pb2


class VectorTypeInt8(Case):
    @classmethod
    def setUpClass(cls):
        if grpc is None or not os.path.exists(
                os.path.join(harness.PYGEN, "quarry", "v1", "retriever_pb2.py")):
            raise unittest.SkipTest("python3-grpcio or build/py missing; run with "
                                    "/usr/bin/python3 after make build/py/quarry/v1/common_pb2.py")
        st = harness.stack()
        # The document goes in while the vectors are float32, so the
        # snapshot written at the clean stop holds a float32 graph; the
        # int8 start must refuse it and rebuild from PostgreSQL.
        cls.marker = "QV" + uuid.uuid4().hex[:8].upper()
        cls.question = "Which alloy is the Quellmoor sluice gate cast from?"
        r = upload("# Quellmoor sluice\n\nThe Quellmoor sluice gate is cast from alloy "
                   "%s and opened twice a day.\n" % cls.marker,
                   title="Quellmoor sluice", filename="quellmoor-%s.md" % cls.marker)
        if r.status != 202:
            raise AssertionError("upload: %r" % r)
        job = wait_job(r.json["job_id"])
        if (job.json or {}).get("status") != "done":
            raise AssertionError("job did not finish: %r" % job)
        cls.doc_id = r.json["document_id"]
        st.stop("retriever")
        st.svc_env["retriever"] = {"QUARRY_RETRIEVER_VECTOR_TYPE": "int8"}
        st.start("retriever")
        cls.first_log = st.log_tail("retriever", lines=400)

    @classmethod
    def tearDownClass(cls):
        st = harness.stack()
        st.svc_env.pop("retriever", None)
        if st.alive("retriever"):
            st.stop("retriever")
        st.start("retriever")

    def dense(self):
        llm_pb2, retriever_pb2 = _pb()
        st = harness.stack()
        with grpc.insecure_channel(st.grpc_addr("llm-gateway")) as ch:
            embed = ch.unary_unary("/quarry.v1.LlmGateway/Embed",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=llm_pb2.EmbedResponse.FromString)
            e = embed(llm_pb2.EmbedRequest(texts=[self.question]), timeout=10 * harness.slow())
        req = retriever_pb2.SearchRequest(tenant_id=harness.TENANT, top_k=5, mode="dense",
                                          embed_model=e.model)
        req.query_embedding.extend(e.embeddings[0].values)
        with grpc.insecure_channel(st.grpc_addr("retriever")) as ch:
            search = ch.unary_unary("/quarry.v1.Retriever/Search",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=retriever_pb2.SearchResponse.FromString)
            return search(req, timeout=10 * harness.slow())

    def test_float_snapshot_discarded_then_int8_snapshot_loaded(self):
        """Start with int8 over a float32 snapshot → 'snapshot discarded'
        naming the vector types; the next start loads the int8 snapshot
        and the document is still found."""
        self.assertIn("snapshot discarded", self.first_log)
        self.assertIn("QUARRY_RETRIEVER_VECTOR_TYPE asks for int8", self.first_log)
        st = harness.stack()
        st.stop("retriever")
        st.start("retriever")
        log = st.log_tail("retriever", lines=400)
        self.assertIn("index loaded from snapshot", log)
        self.assertNotIn("snapshot discarded", log)
        r = self.dense()
        self.assertIn(self.doc_id, [p.doc_id for p in r.passages])

    def test_dense_search_finds_it_with_a_cosine_score(self):
        """Retriever/Search mode dense with the llm-gateway's embedding of the
        question → the document first, scores within [-1, 1], best first."""
        r = self.dense()
        self.assertEqual(r.mode, "dense")
        self.assertTrue(r.passages)
        self.assertEqual(r.passages[0].doc_id, self.doc_id, repr(r)[:800])
        scores = [p.dense_score for p in r.passages]
        self.assertTrue(all(-1.01 <= s <= 1.01 for s in scores), scores)
        self.assertEqual(scores, sorted(scores, reverse=True))

    def test_query_cites_it(self):
        """POST /v1/query with the question → 200 citing the document, the
        marker in the reply. The gateway's channel to the restarted
        retriever may still be in gRPC's reconnect back-off (honest 503s
        naming the retriever) for a moment: asked again until then."""
        deadline = time.monotonic() + 10 * harness.slow()
        r = query(self.question)
        while r.status == 503 and b"retriever" in r.body and time.monotonic() < deadline:
            time.sleep(0.2)
            r = query(self.question)
        self.assertStatus(r, 200)
        self.assertIn(self.doc_id, {c["document_id"] for c in r.json["citations"]}, repr(r))

    def test_unknown_vector_type_stops_the_service(self):
        """QUARRY_RETRIEVER_VECTOR_TYPE=int4 → quarry-retriever exits with 2 and
        says what is wrong; with int8 again it starts."""
        st = harness.stack()
        st.stop("retriever")
        st.svc_env["retriever"] = {"QUARRY_RETRIEVER_VECTOR_TYPE": "int4"}
        try:
            with self.assertRaises(Exception):
                st.start("retriever")
            self.assertEqual(st.exit_code("retriever"), 2)
            self.assertIn("neither float32 nor int8", st.log_tail("retriever", lines=50))
        finally:
            st.svc_env["retriever"] = {"QUARRY_RETRIEVER_VECTOR_TYPE": "int8"}
            if not st.alive("retriever"):
                st.start("retriever")
