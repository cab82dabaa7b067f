"""Hostile clients against the gateway's edge (services/gateway/guard.h):
slow heads and bodies, connection floods from one address, broken framing,
oversized targets and heads, bodies nobody asked for, the wrong media type,
and /readyz while PostgreSQL is down.

Most cases talk raw sockets to a second gateway started here with tight
limits (one-second deadlines, 50 connections per address, 300 in all) and
the stack's services behind it, so they run fast and never disturb the
stack's own gateway. Client sockets bind to other loopback addresses
(127.0.0.2, ...) to play other hosts; the kernel routes all of 127/8 to lo.
"""

import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import Case, call, key

LIMITS = {
    "QUARRY_HTTP_HEADER_TIMEOUT_MS": "1000",
    "QUARRY_HTTP_BODY_TIMEOUT_MS": "1000",
    "QUARRY_HTTP_BODY_MIN_RATE": "1000",
    "QUARRY_HTTP_REQUEST_TIMEOUT_MS": "6000",
    "QUARRY_HTTP_MAX_CONNECTIONS": "300",
    "QUARRY_HTTP_MAX_CONNECTIONS_PER_IP": "50",
    "QUARRY_HTTP_THREADS": "4",
}
IDLE_SOCKETS = 2000

_gw = {}


def setUpModule():
    """Starts the second gateway on free loopback ports."""
    st = harness.stack()
    taken = set(st.ports.values())
    http_port = harness.stackmod.free_port(taken)
    env = st.service_env("gateway")
    env.update(LIMITS)
    env["QUARRY_HTTP_LISTEN"] = "127.0.0.1:%d" % http_port
    env["QUARRY_GRPC_LISTEN"] = "127.0.0.1:%d" % harness.stackmod.free_port(taken)
    log_path = os.path.join(harness.run_dir(), "logs", "gateway-hostile.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen(st._wrapper() + [st.binary("quarry-gateway")], env=env,
                            stdout=log, stderr=subprocess.STDOUT,
                            cwd=harness.run_dir())
    log.close()
    _gw.update(proc=proc, port=http_port, log=log_path)
    deadline = time.monotonic() + 20 * harness.slow()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("hostile-test gateway exited: %s" % tail(log_path))
        try:
            if exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", wait=1).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("hostile-test gateway not serving: %s" % tail(log_path))


SANITIZER = re.compile(rb"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:"
                       rb"|==\d+== ERROR SUMMARY: [1-9]")


def tearDownModule():
    """SIGTERM: the second gateway must exit 0 with a clean log, as the
    stack's own services must at the end of the run."""
    proc = _gw.get("proc")
    if not proc:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15 * harness.slow())
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with open(_gw["log"], "rb") as f:
        bad = SANITIZER.search(f.read())
    if proc.returncode != 0 or bad:
        raise AssertionError("hostile-test gateway: exit status %s%s; log %s:\n%s" % (
            proc.returncode, ", sanitizer report" if bad else "", _gw["log"],
            tail(_gw["log"])))


def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
    except OSError:
        return "(no log)"


# ---- raw HTTP -----------------------------------------------------------------


class Raw:
    """What came back on a raw connection."""

    def __init__(self, data, eof, elapsed):
        self.data, self.eof, self.elapsed = data, eof, elapsed
        self.status, self.headers, self.body = 0, {}, b""
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.1 (\d{3})", head)
        if m:
            self.status = int(m.group(1))
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                self.headers[k.strip().lower().decode()] = v.strip().decode()
            n = int(self.headers.get("content-length", len(body)))
            self.body = body[:n]
        try:
            self.json = json.loads(self.body) if self.body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "Raw(%r, eof=%s, %.2fs)" % (self.data[:400], self.eof, self.elapsed)


def dial(src=None, port=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(5 * harness.slow())
    s.connect(("127.0.0.1", port or _gw["port"]))
    return s


def read_all(s, wait):
    """Reads until end of file or wait seconds: (bytes, eof)."""
    out = b""
    deadline = time.monotonic() + wait * harness.slow()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, False
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            return out, False
        except ConnectionResetError:
            return out, True
        if not b:
            return out, True
        out += b


def exchange(data, wait=3, src=None, port=None):
    """Sends data on a new connection and reads what comes back."""
    t0 = time.monotonic()
    s = dial(src, port)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out, eof = read_all(s, wait)
        return Raw(out, eof, time.monotonic() - t0)
    finally:
        s.close()


def rejected(reason):
    """quarry_http_rejected_total{reason} on the hostile-test gateway."""
    r = exchange(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 src="127.0.0.99")
    m = re.search(rb'^quarry_http_rejected_total\{reason="%s"\} (\S+)$'
                  % reason.encode(), r.body, re.M)
    return float(m.group(1)) if m else 0.0


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class HostileCase(Case):
    def assertRefused(self, r, status, code, what):
        """A JSON error with the slug, and the connection closed."""
        self.assertEqual(r.status, status, "%s: %r" % (what, r))
        self.assertIn("application/json", r.headers.get("content-type", ""), repr(r))
        err = (r.json or {}).get("error") or {}
        self.assertEqual(err.get("code"), code, "%s: %r" % (what, r))
        self.assertTrue(err.get("message"), repr(r))
        self.assertTrue(r.eof, "%s: connection left open: %r" % (what, r))


# ---- slow clients ---------------------------------------------------------------


class SlowClients(HostileCase):
    def test_trickled_head_gets_408(self):
        """A head trickled one byte every 250 ms (each byte would reset
        libmicrohttpd's own timeout) → 408 request_timeout JSON and close at
        the 1 s header deadline, while the trickle goes on."""
        s = dial()
        stop = threading.Event()
        before = rejected("header_timeout")

        def trickle():
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
                while not stop.wait(0.25):
                    s.sendall(b"X")
            except OSError:
                pass

        t0 = time.monotonic()
        th = threading.Thread(target=trickle, daemon=True)
        th.start()
        out, eof = read_all(s, 5)
        stop.set()
        s.close()
        r = Raw(out, eof, time.monotonic() - t0)
        self.assertRefused(r, 408, "request_timeout", "trickled head")
        self.assertLess(r.elapsed, 2.5 * harness.slow(), repr(r))
        self.assertEqual(rejected("header_timeout"), before + 1)

    def test_slow_upload_body_gets_408(self):
        """An authenticated upload announcing 100 kB and sending 50 bytes/s
        (QUARRY_HTTP_BODY_MIN_RATE is 1000) → 408 at the end of the first
        1 s window, connection closed (the Upload call to ingestion is
        cancelled, as for a client that leaves)."""
        s = dial()
        head = ("POST /v1/documents?title=slow-body-test HTTP/1.1\r\nHost: t\r\n"
                "Authorization: Bearer %s\r\nContent-Type: text/plain\r\n"
                "Content-Length: 100000\r\n\r\n" % key()).encode()
        stop = threading.Event()
        before = rejected("body_rate")

        def drip():
            try:
                s.sendall(head)
                while not stop.wait(0.2):
                    s.sendall(b"0123456789")
            except OSError:
                pass

        t0 = time.monotonic()
        threading.Thread(target=drip, daemon=True).start()
        out, eof = read_all(s, 6)
        stop.set()
        s.close()
        r = Raw(out, eof, time.monotonic() - t0)
        self.assertRefused(r, 408, "request_timeout", "slow body")
        self.assertLess(r.elapsed, 3.5 * harness.slow(), repr(r))
        self.assertEqual(rejected("body_rate"), before + 1)


# ---- connection floods ------------------------------------------------------------


class Floods(HostileCase):
    def test_idle_connections_from_one_address_leave_room_for_others(self):
        """2,000 idle connections from 127.0.0.2: at most 50 (plus a few
        accepts racing on the 4 threads) stay open, the rest are closed on
        accept and counted; meanwhile /healthz from 127.0.0.1 answers at
        once and an authenticated query is served."""
        limit = raise_nofile(IDLE_SOCKETS + 512)
        n = min(IDLE_SOCKETS, limit - 256)
        if n < IDLE_SOCKETS:
            print("\n    only %d sockets: RLIMIT_NOFILE is %d" % (n, limit))
        before = rejected("connections_per_ip")
        socks = []
        try:
            for _ in range(n):
                try:
                    socks.append(dial("127.0.0.2"))
                except OSError:
                    break  # the accept queue overflowed: the rest would be refused too
            time.sleep(0.3)
            held = 0
            for s in socks:
                s.setblocking(False)
                try:
                    held += s.recv(1) != b""
                except BlockingIOError:
                    held += 1  # nothing to read, still open
                except OSError:
                    pass
            self.assertLessEqual(held, 50 + 4, "held %d of %d" % (held, len(socks)))
            self.assertGreaterEqual(held, 50, "held %d of %d" % (held, len(socks)))
            r = exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                         wait=2)
            self.assertEqual(r.status, 200, repr(r))
            self.assertLess(r.elapsed, 1.0 * harness.slow(), repr(r))
            q = call("POST", "/v1/query", body={"query": "lighthouse lamp"}, key=key(),
                     base="http://127.0.0.1:%d" % _gw["port"])
            self.assertIn(q.status, (200,), repr(q))
            self.assertGreaterEqual(rejected("connections_per_ip"),
                                    before + len(socks) - held)
        finally:
            for s in socks:
                s.close()

    def test_total_connection_cap(self):
        """50 connections from each of 7 addresses (350 > the cap of 300):
        the cap holds (plus racing accepts), the excess is closed; once they
        go, /healthz answers again and the refusals were counted as
        "connections" (the scrape itself would be refused before)."""
        before = rejected("connections")
        socks = []
        try:
            for i in range(7):
                for _ in range(50):
                    try:
                        socks.append(dial("127.0.0.%d" % (10 + i)))
                    except OSError:
                        break
            time.sleep(0.3)
            held = 0
            for s in socks:
                s.setblocking(False)
                try:
                    held += s.recv(1) != b""
                except BlockingIOError:
                    held += 1
                except OSError:
                    pass
            self.assertLessEqual(held, 300 + 4, "held %d" % held)
            self.assertGreaterEqual(held, 300 - 4, "held %d" % held)
        finally:
            for s in socks:
                s.close()
        deadline = time.monotonic() + 5 * harness.slow()
        while True:
            r = exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", wait=1)
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 200, repr(r))
        self.assertGreaterEqual(rejected("connections"), before + 350 - held)


# ---- framing and sizes ----------------------------------------------------------------


class Framing(HostileCase):
    def test_broken_framing_is_400_and_closed(self):
        """Conflicting Content-Length, Transfer-Encoding identity / gzip,
        chunked / with Content-Length, bare LF, NUL in a header, %00 in a
        path id → 400 (501 for gzip, chunked) JSON, connection closed."""
        k = ("Authorization: Bearer %s\r\n" % key()).encode()
        cases = [
            ("conflicting Content-Length", 400, "invalid_argument",
             b"POST /v1/query HTTP/1.1\r\nHost: t\r\n" + k +
             b"Content-Type: application/json\r\nContent-Length: 2\r\n"
             b"Content-Length: 20\r\n\r\n{}"),
            ("Transfer-Encoding: identity", 400, "invalid_argument",
             b"POST /v1/query HTTP/1.1\r\nHost: t\r\n" + k +
             b"Content-Type: application/json\r\nTransfer-Encoding: identity\r\n\r\n{}"),
            ("Transfer-Encoding: gzip, chunked", 501, "not_implemented",
             b"POST /v1/query HTTP/1.1\r\nHost: t\r\n" + k +
             b"Content-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n"
             b"\r\n2\r\n{}\r\n0\r\n\r\n"),
            ("Content-Length and Transfer-Encoding", 400, "invalid_argument",
             b"POST /v1/query HTTP/1.1\r\nHost: t\r\n" + k +
             b"Content-Type: application/json\r\nContent-Length: 4\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
            ("bare LF", 400, "invalid_argument",
             b"GET /healthz HTTP/1.1\nHost: t\n\n"),
            ("NUL in a header", 400, "invalid_argument",
             b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Note: a\x00b\r\n\r\n"),
            ("%00 in a path id", 400, "invalid_argument",
             b"GET /v1/documents/abc%00def HTTP/1.1\r\nHost: t\r\n" + k + b"\r\n"),
        ]
        for what, status, code, data in cases:
            with self.subTest(what):
                r = exchange(data)
                self.assertRefused(r, status, code, what)
                self.assertLess(r.elapsed, 2 * harness.slow(), repr(r))

    def test_huge_targets_and_heads(self):
        """5,000 query parameters → 400 (libmicrohttpd alone closed without a
        reply); a 10 kB target → 414; 100 header fields → 431; each closed."""
        many = b"&".join(b"p%d=1" % i for i in range(5000))
        r = exchange(b"GET /healthz?" + many[:7000] + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertRefused(r, 400, "invalid_argument", "~1,000 parameters in 7 kB")
        r = exchange(b"GET /healthz?" + many + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertRefused(r, 414, "uri_too_long", "5,000 parameters in 39 kB")
        r = exchange(b"GET /healthz?q=" + b"a" * 10000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertRefused(r, 414, "uri_too_long", "a 10 kB target")
        fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(100))
        r = exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n")
        self.assertRefused(r, 431, "header_fields_too_large", "100 header fields")


# ---- bodies nobody asked for -------------------------------------------------------------


class Bodies(HostileCase):
    def test_unauthenticated_large_body_gets_401_unread(self):
        """POST /v1/documents announcing 100 MiB without a credential → 401
        at once and the connection closed: the client can push no more than
        the kernel's socket buffers before its writes fail."""
        s = dial()
        total = 100 << 20
        sent = [0]

        def pump():
            chunk = b"x" * 65536
            try:
                s.sendall(b"POST /v1/documents HTTP/1.1\r\nHost: t\r\n"
                          b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                          % total)
                while sent[0] < total:
                    sent[0] += s.send(chunk)
            except OSError:
                pass

        t0 = time.monotonic()
        th = threading.Thread(target=pump, daemon=True)
        th.start()
        out, eof = read_all(s, 5)
        elapsed = time.monotonic() - t0
        th.join(5)
        s.close()
        r = Raw(out, eof, elapsed)
        self.assertRefused(r, 401, "unauthenticated", "unauthenticated upload")
        self.assertLess(elapsed, 1.0 * harness.slow(), repr(r))
        self.assertLess(sent[0], 32 << 20, "%d bytes went in" % sent[0])

    def test_json_routes_want_json(self):
        """POST /v1/query with text/plain or no Content-Type, POST
        /v1/feedback with a form type → 415 unsupported_media_type JSON;
        application/json; charset=utf-8 is fine."""
        body = {"query": "lighthouse lamp"}
        for ctype in ("text/plain", None):
            r = call("POST", "/v1/query", body=json.dumps(body).encode(), key=key(),
                     ctype=ctype)
            self.assertError(r, 415)
        r = call("POST", "/v1/feedback", body=b'{"query_id":"q","rating":1}', key=key(),
                 ctype="application/x-www-form-urlencoded")
        self.assertError(r, 415)
        r = call("POST", "/v1/query", body=body, key=key(),
                 ctype="application/json; charset=utf-8")
        self.assertStatus(r, 200)


# ---- readiness --------------------------------------------------------------------------


class Readiness(HostileCase):
    def test_readyz_is_503_while_postgres_is_down(self):
        """PostgreSQL stopped → auth's readiness fails, so its gRPC health
        check says NOT_SERVING and the gateway's /readyz answers 503 JSON
        naming auth under "down", quickly; PostgreSQL back → 200 again."""
        st = harness.stack()
        self.assertStatus(call("GET", "/readyz"), 200)
        st.stop_postgres()
        try:
            deadline = time.monotonic() + 10 * harness.slow()
            while True:
                r = call("GET", "/readyz", timeout=5)
                # The retriever (its change-log tailer) may be seen down a
                # round before auth is: both are named once both are checked.
                down = (r.json or {}).get("down", []) if r.status == 503 else []
                if "auth" in down or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertError(r, 503, "unavailable")
            self.assertIn("auth", r.json.get("down", []), repr(r))
            self.assertLess(r.elapsed, 1.5 * harness.slow(), "503 took %.2fs" % r.elapsed)
            self.assertStatus(call("GET", "/readyz", base=st.metrics_url("auth")), 503)
        finally:
            st.start_postgres()
        deadline = time.monotonic() + 20 * harness.slow()
        while True:
            r = call("GET", "/readyz", timeout=5)
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertStatus(r, 200)


if __name__ == "__main__":
    unittest.main()
