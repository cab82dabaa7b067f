"""Questions get grounded answers with citations."""

import re
import unittest

import harness
from harness import Case, call, key, query

MARKER = re.compile(r"\[(\d+)\]")


class Query(Case):
    @classmethod
    def setUpClass(cls):
        cls.doc_id = harness.fact_document()

    def test_answer_cites_the_document(self):
        """POST /v1/query {"query": <question answered by the lighthouse
        document>} → 200; answer states the fact with [n] markers; every
        marker is a citation; a citation names the document's chunk."""
        r = query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)
        body = r.json
        for f in ("query_id", "answer", "citations", "timings_ms", "cache_hit", "degraded"):
            self.assertIn(f, body, repr(r))
        self.assertTrue(body["query_id"])
        markers = {int(n) for n in MARKER.findall(body["answer"])}
        self.assertTrue(markers, "no [n] marker in the answer: %r" % body["answer"])
        ns = {c["n"] for c in body["citations"]}
        self.assertTrue(markers <= ns, "markers %s without citation (have %s)" % (markers, ns))
        mine = [c for c in body["citations"] if c["document_id"] == self.doc_id]
        self.assertTrue(mine, "document %s not cited: %r" % (self.doc_id, r))
        for c in mine:
            for f in ("n", "document_id", "title", "chunk_id", "snippet", "score", "page"):
                self.assertIn(f, c)
            self.assertTrue(c["chunk_id"].startswith(self.doc_id), c["chunk_id"])
            self.assertEqual(c["title"], "Lighthouse Keeping Handbook")
        self.assertIn(harness.FACT_ANSWER, body["answer"])
        for f in ("auth", "embed", "retrieve", "rerank", "generate", "total"):
            self.assertIn(f, body["timings_ms"])
        self.assertIsInstance(body["degraded"], list)
        self.assertEqual(body["degraded"], [], "degraded with every service up: %r" % r)
        # The default stack has no chat provider: the extractive answerer is
        # the configuration, named and not a fallback.
        gen = body["generation"]
        self.assertEqual((gen["provider"], gen["model"], gen["fallback"]),
                         ("extractive", "quarry-extractive", False), gen)
        self.assertGreater(gen["completion_tokens"], 0, gen)

    def test_top_k_bounds_citations(self):
        """POST /v1/query {..., "top_k": 1} → 200 with at most one citation."""
        r = query(harness.FACT_QUESTION, top_k=1)
        self.assertStatus(r, 200)
        self.assertLessEqual(len(r.json["citations"]), 1, repr(r))

    def test_other_tenant_does_not_see_it(self):
        """The same question with another tenant's key → 200 citing none of
        tenant itest's documents."""
        r = query(harness.FACT_QUESTION, api_key=key(harness.OTHER_TENANT))
        self.assertStatus(r, 200)
        cited = {c["document_id"] for c in r.json["citations"]}
        self.assertNotIn(self.doc_id, cited)
        self.assertNotIn(harness.FACT_ANSWER, r.json["answer"])

    def test_modes(self):
        """POST /v1/query {..., "mode": lexical | dense | hybrid} → 200 each,
        lexical and hybrid citing the lighthouse document; "mode": "semantic"
        → 400 naming the field."""
        for mode in ("lexical", "dense", "hybrid"):
            r = call("POST", "/v1/query", body={"query": harness.FACT_QUESTION, "mode": mode},
                     key=key())
            self.assertStatus(r, 200)
            if mode != "dense":
                cited = {c["document_id"] for c in r.json["citations"]}
                self.assertIn(self.doc_id, cited, "%s: %r" % (mode, r))
        r = call("POST", "/v1/query", body={"query": "q", "mode": "semantic"}, key=key())
        self.assertStatus(r, 400)
        self.assertIn("mode", r.json["error"]["message"])

    def test_unrelated_question(self):
        """A question matching nothing → 200 (an answer saying so), no crash."""
        r = query("zyxwvut qqqqq plorf")
        self.assertStatus(r, 200)
        self.assertIsInstance(r.json["citations"], list)


if __name__ == "__main__":
    unittest.main()
