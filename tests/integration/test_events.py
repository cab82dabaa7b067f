"""Feedback and query events reach Kafka; request ids and trace context."""

import json
import os
import unittest
import uuid

import harness
from harness import Case, call, key, query, TRACEPARENT_RE


class Events(Case):
    @classmethod
    def setUpClass(cls):
        harness.fact_document()

    def test_feedback_reaches_kafka(self):
        """POST /v1/feedback {"query_id", "rating": 1, "comment", "chunk_ids"}
        → 202 {"feedback_id", "queued"}; a message naming the query is in
        topic quarry.feedback."""
        q = query(harness.FACT_QUESTION)
        self.assertStatus(q, 200)
        qid = q.json["query_id"]
        chunk_ids = [c["chunk_id"] for c in q.json["citations"][:1]]
        comment = "itest-comment-" + uuid.uuid4().hex[:8]
        r = call("POST", "/v1/feedback", key=key(), body={
            "query_id": qid, "rating": 1, "comment": comment, "chunk_ids": chunk_ids})
        self.assertStatus(r, 202)
        self.assertTrue(r.json.get("feedback_id"), repr(r))
        self.assertIn("queued", r.json)
        msg, seen = harness.kafka_messages("quarry.feedback", [qid])
        self.assertIsNotNone(msg, "query %s not in quarry.feedback; read %d messages: %s"
                             % (qid, len(seen), json.dumps(seen[-3:])[:1500]))
        ev = json.loads(msg["value"])
        self.assertEqual(ev.get("query_id"), qid)
        self.assertEqual(ev.get("feedback_id"), r.json["feedback_id"])
        self.assertEqual(ev.get("tenant_id"), harness.TENANT)
        self.assertEqual(ev.get("rating"), 1)
        self.assertEqual(ev.get("comment"), comment)
        self.assertEqual(ev.get("chunk_ids"), chunk_ids)

    def test_negative_feedback(self):
        """POST /v1/feedback with rating -1 and no comment → 202."""
        q = query(harness.FACT_QUESTION)
        r = call("POST", "/v1/feedback", key=key(),
                 body={"query_id": q.json["query_id"], "rating": -1})
        self.assertStatus(r, 202)

    def test_query_event_reaches_kafka(self):
        """POST /v1/query → 200; topic quarry.queries has an event with its query_id."""
        q = query(harness.FACT_QUESTION)
        self.assertStatus(q, 200)
        qid = q.json["query_id"]
        msg, seen = harness.kafka_messages("quarry.queries", [qid])
        self.assertIsNotNone(msg, "query %s not in quarry.queries; read %d messages: %s"
                             % (qid, len(seen), json.dumps(seen[-3:])[:1500]))
        ev = json.loads(msg["value"])
        self.assertEqual(ev.get("tenant_id"), harness.TENANT)
        self.assertEqual(ev.get("query"), harness.FACT_QUESTION)
        cited = [c["chunk_id"] for c in q.json["citations"]]
        self.assertTrue(set(cited) <= set(ev.get("chunk_ids", [])), repr(ev))


class Headers(Case):
    def test_request_id_echoed(self):
        """X-Request-Id: <ours> → the reply carries the same X-Request-Id."""
        rid = "itest-" + uuid.uuid4().hex
        r = call("GET", "/v1/jobs/" + str(uuid.uuid4()), key=key(),
                 headers={"X-Request-Id": rid})
        self.assertEqual(r.header("X-Request-Id"), rid)

    def test_request_id_generated(self):
        """No X-Request-Id → the reply has a generated one, and a traceparent."""
        r = call("GET", "/healthz")
        self.assertTrue(r.header("X-Request-Id"))
        self.assertRegex(r.header("traceparent") or "", TRACEPARENT_RE)

    def test_request_id_on_errors(self):
        """Error replies (401 here) also echo X-Request-Id."""
        rid = "itest-" + uuid.uuid4().hex
        r = call("POST", "/v1/query", body={"query": "x"}, headers={"X-Request-Id": rid})
        self.assertError(r, 401)
        self.assertEqual(r.header("X-Request-Id"), rid)

    def test_traceparent_continued(self):
        """traceparent: 00-<trace>-<span>-01 → reply traceparent keeps <trace>,
        new span id."""
        trace = os.urandom(16).hex()
        span = os.urandom(8).hex()
        r = query(harness.FACT_QUESTION,
                  headers={"traceparent": "00-%s-%s-01" % (trace, span)})
        self.assertStatus(r, 200)
        m = TRACEPARENT_RE.match(r.header("traceparent") or "")
        self.assertIsNotNone(m, "bad traceparent %r" % r.header("traceparent"))
        self.assertEqual(m.group(1), trace)
        self.assertNotEqual(m.group(2), span)

    def test_invalid_traceparent_replaced(self):
        """traceparent: garbage → reply has a fresh valid traceparent."""
        r = call("GET", "/healthz", headers={"traceparent": "00-zz-yy-01"})
        self.assertRegex(r.header("traceparent") or "", TRACEPARENT_RE)


if __name__ == "__main__":
    unittest.main()
