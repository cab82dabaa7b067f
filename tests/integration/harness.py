"""harness.py - what the integration tests share: one Stack in test mode
under a temporary run directory, API keys, an HTTP client on urllib and
helpers for jobs, Kafka and promtool.

A test module gets the running stack with `harness.stack()`; the first call
starts it (so a single module can also be run on its own), run.py stops it.
"""

import atexit
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "deploy", "local"))

import stack as stackmod  # noqa: E402

BIN_DIR = os.environ.get("QUARRY_BIN") or os.path.join(REPO, "build", "bin")
PYGEN = os.environ.get("QUARRY_PYGEN") or os.path.join(REPO, "build", "py")

# Settings of the test stack. Small upload limit so 413 is cheap to provoke;
# a short query deadline so "retriever down" is quick to observe.
MAX_UPLOAD_BYTES = 1024 * 1024
QUERY_TIMEOUT_MS = 3000
GRACE_MS = 5000
TEST_ENV = {
    "QUARRY_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    "QUARRY_QUERY_TIMEOUT_MS": str(QUERY_TIMEOUT_MS),
    "QUARRY_GRACE_MS": str(GRACE_MS),
    # Jobs waiting for a stopped dependency come back within 2 s of it.
    "QUARRY_INGEST_RETRY_MAX_BACKOFF_MS": "2000",
}

TENANT = "itest"
OTHER_TENANT = "itest-other"

_stack = None
_run_dir = None
_keys = {}
_cache = {}


def slow():
    """Time multiplier under sanitizers (valgrind is very slow)."""
    return _stack.slow if _stack else 1.0


def stack():
    """The running test stack (started on first use)."""
    global _stack, _run_dir
    if _stack is None:
        _run_dir = tempfile.mkdtemp(prefix="quarry-it-")
        atexit.register(_at_exit)   # a module run on its own
        st = stackmod.Stack(BIN_DIR, _run_dir, test_mode=True, env=TEST_ENV)
        st.start_all()
        st.quiet = True         # restarts inside tests need no banner
        _stack = st
    return _stack


def run_dir():
    return _run_dir


_keep = False


def _at_exit():
    shutdown(keep_run_dir=_keep)


def shutdown(keep_run_dir=False):
    """Stops everything; removes the run dir unless asked to keep it."""
    global _stack, _run_dir, _keep
    _keep = _keep or keep_run_dir
    codes = {}
    if _stack is not None:
        codes = _stack.stop_all()
        _stack = None
    if _run_dir and not keep_run_dir:
        shutil.rmtree(_run_dir, ignore_errors=True)
        _run_dir = None
    return codes


def key(tenant=TENANT):
    """An admin API key of tenant (created once)."""
    if tenant not in _keys:
        _keys[tenant] = stack().create_key(tenant, "integration-tests", ["admin"])
    return _keys[tenant]


# ---- HTTP ------------------------------------------------------------------


class Reply:
    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        return self.headers.get(name) if self.headers is not None else None

    def __repr__(self):
        return "HTTP %s %s" % (self.status, self.body[:600].decode("utf-8", "replace"))


def call(method, path, body=None, key=None, headers=None, ctype=None,
         timeout=None, base=None, retry_429=True):
    """One request. body: bytes, str or a dict/list (sent as JSON). key: API
    key for Authorization (None: no credentials). Never raises for HTTP
    statuses. A 429 (per-principal rate limit, one-second windows) is retried
    in the next window unless retry_429 is False."""
    for _ in range(3):
        r = _call(method, path, body, key, headers, ctype, timeout, base)
        if r.status != 429 or not retry_429:
            return r
        time.sleep(1.05 - time.time() % 1.0)
    return r


def _call(method, path, body, key, headers, ctype, timeout, base):
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        ctype = ctype or "application/json"
    elif isinstance(body, str):
        body = body.encode()
    if ctype:
        hdrs["Content-Type"] = ctype
    if key:
        hdrs["Authorization"] = "Bearer " + key
    url = (base or stack().url) + path
    req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout or 30 * slow()) as r:
            data = r.read()
            return Reply(r.status, r.headers, data, time.monotonic() - t0)
    except urllib.error.HTTPError as e:
        data = e.read()
        return Reply(e.code, e.headers, data, time.monotonic() - t0)


def raw_call(method, path, body_parts, headers, timeout=30):
    """http.client request that tolerates the server answering (and closing)
    before the whole body was sent, as a 413 may. body_parts: iterable of
    bytes, sent as they come (Content-Length must be in headers if not
    chunked)."""
    st = stack()
    conn = http.client.HTTPConnection("127.0.0.1", st.ports["gateway.http"],
                                      timeout=timeout * slow())
    t0 = time.monotonic()
    try:
        conn.putrequest(method, path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        chunked = headers.get("Transfer-Encoding") == "chunked"
        try:
            for part in body_parts:
                if chunked:
                    conn.send(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    conn.send(part)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, r.headers, data, time.monotonic() - t0)
    finally:
        conn.close()


def multipart(fields, files):
    """(body, content type) for multipart/form-data. files: list of
    (field, filename, content type or None, bytes)."""
    boundary = "----quarry-it-" + uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n"
                    % (boundary, name)).encode() + value.encode() + b"\r\n")
    for field, filename, ctype, data in files:
        head = ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; "
                "filename=\"%s\"\r\n" % (boundary, field, filename))
        if ctype:
            head += "Content-Type: %s\r\n" % ctype
        out.append(head.encode() + b"\r\n" + data + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


# ---- documents and queries --------------------------------------------------


def upload(text, title=None, ctype="text/markdown", external_id=None,
           filename=None, api_key=None):
    qs = {}
    if title:
        qs["title"] = title
    if external_id:
        qs["external_id"] = external_id
    if filename:
        qs["filename"] = filename
    path = "/v1/documents" + ("?" + urllib.parse.urlencode(qs) if qs else "")
    body = text.encode() if isinstance(text, str) else text
    return call("POST", path, body=body, key=api_key or key(), ctype=ctype)


def wait_job(job_id, api_key=None, timeout=60):
    """Polls GET /v1/jobs/{id} until done or failed; returns the last reply."""
    deadline = time.monotonic() + timeout * slow()
    while True:
        r = call("GET", "/v1/jobs/" + job_id, key=api_key or key())
        if r.status != 200 or (r.json or {}).get("status") in ("done", "failed"):
            return r
        if time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def query(q, top_k=None, api_key=None, headers=None, timeout=None):
    body = {"query": q}
    if top_k is not None:
        body["top_k"] = top_k
    return call("POST", "/v1/query", body=body, key=api_key or key(),
                headers=headers, timeout=timeout)


def wait_rerank_method(method, timeout=None):
    """Waits until the gateway's background checks have seen the reranker
    rank with method (GET /readyz "rerank_method"; the gateway skips the
    Rerank call while it is "none"): a restarted reranker is seen within
    QUARRY_READYZ_INTERVAL_MS. Returns the last /readyz reply."""
    deadline = time.monotonic() + (timeout or 10 * slow())
    r = call("GET", "/readyz")
    while (r.json or {}).get("rerank_method") != method and time.monotonic() < deadline:
        time.sleep(0.1)
        r = call("GET", "/readyz")
    if (r.json or {}).get("rerank_method") != method:
        raise AssertionError("the gateway did not see rerank method %r: %r" % (method, r))
    return r


# A document every query-side test can rely on, uploaded once.
FACT_DOC = """# Lighthouse Keeping Handbook

## Lamp maintenance

The Varnholt lighthouse lamp uses a xenon bulb of type QX-4471 that must be
replaced every 1800 operating hours. Spare bulbs are kept in the oil store.

## Fog signal

During fog the keeper sounds the horn twice every 30 seconds.

## Supplies

The supply boat from Kettleby harbour arrives every second Thursday.
"""
FACT_QUESTION = "Which bulb type does the Varnholt lighthouse lamp use?"
FACT_ANSWER = "QX-4471"


def fact_document():
    """(document_id, job reply) of FACT_DOC, ingested once and done."""
    if "fact" not in _cache:
        r = upload(FACT_DOC, title="Lighthouse Keeping Handbook",
                   external_id="itest-lighthouse", filename="lighthouse.md")
        if r.status != 202:
            raise AssertionError("uploading the fact document: %r" % r)
        job = wait_job(r.json["job_id"])
        if (job.json or {}).get("status") != "done":
            raise AssertionError("fact document job did not finish: %r" % job)
        _cache["fact"] = (r.json["document_id"], job)
    return _cache["fact"][0]


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# ---- Kafka, promtool -----------------------------------------------------------


def kafka_messages(topic, want, timeout=15):
    """Reads topic from the start with `quarry-devbroker consume` until a
    message whose value contains every string in want shows up. Returns
    (message or None, every message read in the last pass)."""
    st = stack()
    deadline = time.monotonic() + timeout * slow()
    msgs = []
    while True:
        r = subprocess.run(
            [os.path.join(st.bin_dir, "quarry-devbroker"), "consume",
             "--brokers", st.kafka_brokers, "--topic", topic,
             "--count", "100000", "--timeout-ms", "2500"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30 * slow())
        msgs = []
        for line in r.stdout.decode("utf-8", "replace").splitlines():
            try:
                msgs.append(json.loads(line))
            except ValueError:
                msgs.append({"unparsed": line})
        for m in msgs:
            value = m.get("value")
            text = value if isinstance(value, str) else json.dumps(value)
            if all(w in text for w in want):
                return m, msgs
        if time.monotonic() > deadline:
            return None, msgs
        time.sleep(0.5)


def promtool_check(text):
    """(exit code, output) of `promtool check metrics` on text."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return r.returncode, r.stdout.decode("utf-8", "replace")


# ---- assertions ----------------------------------------------------------------

ERROR_SLUGS = {
    400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied",
    404: "not_found", 405: "method_not_allowed", 409: "conflict",
    413: "too_large", 415: "unsupported_media_type", 429: "resource_exhausted",
    500: "internal", 501: "not_implemented", 503: "unavailable",
    504: "deadline_exceeded",
}

TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")


class Case(unittest.TestCase):
    """TestCase with the REST contract's assertions."""

    maxDiff = 2000

    def assertStatus(self, reply, status):
        self.assertEqual(reply.status, status, "expected HTTP %d, got %r" % (status, reply))

    def assertError(self, reply, status, code=None):
        """HTTP status and body {"error":{"code","message"}} with the slug."""
        self.assertStatus(reply, status)
        self.assertIsInstance(reply.json, dict, "error body is not JSON: %r" % reply)
        err = reply.json.get("error")
        self.assertIsInstance(err, dict, "no error object: %r" % reply)
        self.assertEqual(err.get("code"), code or ERROR_SLUGS[status], repr(reply))
        self.assertIsInstance(err.get("message"), str, repr(reply))
        self.assertTrue(err["message"], "empty error message: %r" % reply)
        ctype = reply.header("Content-Type") or ""
        self.assertIn("application/json", ctype, "error Content-Type: %r" % ctype)
        return err
