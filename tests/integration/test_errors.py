"""Bad requests get the REST contract's JSON errors."""

import concurrent.futures
import time
import unittest
import uuid

import harness
from harness import Case, call, key, raw_call


class Authentication(Case):
    def test_no_key(self):
        """POST /v1/query without credentials → 401 unauthenticated."""
        r = call("POST", "/v1/query", body={"query": "hello"})
        self.assertError(r, 401)

    def test_bad_bearer_key(self):
        """POST /v1/query with Authorization: Bearer <unknown key> → 401."""
        r = call("POST", "/v1/query", body={"query": "hello"},
                 key="qk_" + uuid.uuid4().hex)
        self.assertError(r, 401)

    def test_bad_x_api_key(self):
        """GET /v1/jobs/<id> with X-API-Key: <garbage> → 401."""
        r = call("GET", "/v1/jobs/" + str(uuid.uuid4()),
                 headers={"X-API-Key": "not a key"})
        self.assertError(r, 401)

    def test_x_api_key_accepted(self):
        """GET /v1/jobs/<unknown id> with a valid X-API-Key → 404 (authenticated)."""
        r = call("GET", "/v1/jobs/" + str(uuid.uuid4()),
                 headers={"X-API-Key": key()})
        self.assertError(r, 404)


class Routing(Case):
    def test_unknown_route(self):
        """GET /v1/nope → 404 not_found JSON."""
        self.assertError(call("GET", "/v1/nope", key=key()), 404)

    def test_wrong_method_query(self):
        """GET /v1/query → 405 method_not_allowed JSON, Allow: POST."""
        r = call("GET", "/v1/query", key=key())
        self.assertError(r, 405)
        self.assertIn("POST", r.header("Allow") or "")

    def test_wrong_method_documents(self):
        """DELETE /v1/documents → 405 method_not_allowed JSON."""
        self.assertError(call("DELETE", "/v1/documents", key=key()), 405)

    def test_unknown_document(self):
        """GET /v1/documents/<random uuid> → 404."""
        self.assertError(call("GET", "/v1/documents/" + str(uuid.uuid4()), key=key()), 404)

    def test_unknown_job(self):
        """GET /v1/jobs/<random uuid> → 404."""
        self.assertError(call("GET", "/v1/jobs/" + str(uuid.uuid4()), key=key()), 404)


class BadQueries(Case):
    def test_malformed_json(self):
        """POST /v1/query '{"query": "x",' → 400 naming where the JSON breaks."""
        r = call("POST", "/v1/query", body=b'{"query": "x",', key=key(),
                 ctype="application/json")
        err = self.assertError(r, 400)
        self.assertIn("line", err["message"], "message names no line: %r" % r)
        self.assertIn("column", err["message"], "message names no column: %r" % r)

    def test_not_an_object(self):
        """POST /v1/query '[1,2]' → 400."""
        r = call("POST", "/v1/query", body=b"[1,2]", key=key(), ctype="application/json")
        self.assertError(r, 400)

    def test_empty_query(self):
        """POST /v1/query {"query": ""} → 400 naming the query field."""
        r = call("POST", "/v1/query", body={"query": ""}, key=key())
        err = self.assertError(r, 400)
        self.assertIn("query", err["message"])

    def test_missing_query(self):
        """POST /v1/query {"top_k": 3} → 400."""
        self.assertError(call("POST", "/v1/query", body={"top_k": 3}, key=key()), 400)

    def test_top_k_zero(self):
        """POST /v1/query {"query": "x", "top_k": 0} → 400 naming top_k."""
        r = call("POST", "/v1/query", body={"query": "x", "top_k": 0}, key=key())
        err = self.assertError(r, 400)
        self.assertIn("top_k", err["message"])

    def test_top_k_too_big(self):
        """POST /v1/query {"query": "x", "top_k": 51} → 400."""
        r = call("POST", "/v1/query", body={"query": "x", "top_k": 51}, key=key())
        self.assertError(r, 400)

    def test_top_k_wrong_type(self):
        """POST /v1/query {"query": "x", "top_k": "five"} → 400."""
        r = call("POST", "/v1/query", body={"query": "x", "top_k": "five"}, key=key())
        self.assertError(r, 400)

    def test_query_too_long(self):
        """POST /v1/query with a 4097-byte query → 400."""
        r = call("POST", "/v1/query", body={"query": "a" * 4097}, key=key())
        self.assertError(r, 400)

    def test_feedback_bad_rating(self):
        """POST /v1/feedback {"query_id": ..., "rating": 5} → 400 naming rating."""
        r = call("POST", "/v1/feedback",
                 body={"query_id": str(uuid.uuid4()), "rating": 5}, key=key())
        err = self.assertError(r, 400)
        self.assertIn("rating", err["message"])


class BadUploads(Case):
    def test_empty_upload(self):
        """POST /v1/documents with an empty text/plain body → 400."""
        r = call("POST", "/v1/documents", body=b"", key=key(), ctype="text/plain")
        self.assertError(r, 400)

    def test_unsupported_type(self):
        """POST /v1/documents with Content-Type application/x-msdownload → 415."""
        r = call("POST", "/v1/documents", body=b"MZ\x90\x00binary", key=key(),
                 ctype="application/x-msdownload")
        self.assertError(r, 415)

    def test_unsupported_multipart_file(self):
        """multipart upload of tool.exe without a part Content-Type → 415."""
        body, ctype = harness.multipart({}, [("file", "tool.exe", None, b"MZ\x90\x00")])
        r = call("POST", "/v1/documents", body=body, key=key(), ctype=ctype)
        self.assertError(r, 415)

    def test_multipart_without_file(self):
        """multipart upload with only a title field → 400."""
        body, ctype = harness.multipart({"title": "nothing"}, [])
        r = call("POST", "/v1/documents", body=body, key=key(), ctype=ctype)
        self.assertError(r, 400)

    def test_too_large_with_length(self):
        """POST /v1/documents, Content-Length over QUARRY_MAX_UPLOAD_BYTES → 413."""
        size = harness.MAX_UPLOAD_BYTES + 512 * 1024
        line = b"too large but perfectly ordinary text\n"
        data = (line * (size // len(line) + 1))[:size]
        parts = (data[i:i + 65536] for i in range(0, size, 65536))
        r = raw_call("POST", "/v1/documents", parts, {
            "Authorization": "Bearer " + key(), "Content-Type": "text/plain",
            "Content-Length": str(size)})
        self.assertError(r, 413)

    def test_too_large_chunked(self):
        """POST /v1/documents, chunked body growing past the limit → 413."""
        line = b"streamed text that never seems to end\n" * 1700   # ~64 KiB
        n = harness.MAX_UPLOAD_BYTES // len(line) + 4
        r = raw_call("POST", "/v1/documents", (line for _ in range(n)), {
            "Authorization": "Bearer " + key(), "Content-Type": "text/plain",
            "Transfer-Encoding": "chunked"})
        self.assertError(r, 413)

    def test_too_large_leaves_nothing_behind(self):
        """After a 413 the service still takes a normal upload → 202."""
        r = harness.upload("# small\n\nA small document after a rejected one.\n",
                           title="small after 413")
        self.assertStatus(r, 202)


class RateLimit(Case):
    def test_rate_limited(self):
        """150 requests within about a second from one key (limit
        QUARRY_RATE_LIMIT_RPS, default 50/s) → some 429 resource_exhausted;
        in the next second the key is allowed again."""
        k = key("itest-rl")
        path = "/v1/jobs/" + str(uuid.uuid4())
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(
                lambda _: call("GET", path, key=k, retry_429=False), range(150)))
        limited = [r for r in replies if r.status == 429]
        self.assertTrue(limited, "no 429 among %s" % sorted({r.status for r in replies}))
        self.assertError(limited[0], 429)
        self.assertTrue({r.status for r in replies} <= {404, 429},
                        sorted({r.status for r in replies}))
        time.sleep(1.1)
        self.assertError(call("GET", path, key=k, retry_429=False), 404)


if __name__ == "__main__":
    unittest.main()
