"""Replicas: two quarry-retriever processes over one PostgreSQL stay
consistent through the change log (docs/retrieval.md, "Replicas").

The stack's retriever is replica A; each case starts a second retriever
binary, replica B, with the same environment on other loopback ports. An
upsert or delete through one is searchable on the other within a second;
B reports its lag on /readyz and /metrics; a B that was down catches up
when it starts again.

Run with /usr/bin/python3 (grpcio is importable only there)."""

import json
import os
import re
import subprocess
import time
import unittest
import uuid

import harness
import stack as stackmod
from harness import Case
from test_interop import load_messages

try:
    import grpc
except ImportError:     # reported by the test cases
    grpc = None

VISIBLE_S = 1.0     # the requirement: visible on every replica within a second


class Replica:
    """A second quarry-retriever sharing the stack's database."""

    def __init__(self, st, name):
        taken = set(st.ports.values())
        self.grpc = "127.0.0.1:%d" % stackmod.free_port(taken)
        self.side = "127.0.0.1:%d" % stackmod.free_port(taken)
        self.log_path = os.path.join(harness.run_dir(), "logs", "%s.log" % name)
        self.env = st.service_env("retriever")
        self.env["QUARRY_GRPC_LISTEN"] = self.grpc
        self.env["QUARRY_METRICS_LISTEN"] = self.side
        # one snapshot directory per replica
        self.env["QUARRY_RETRIEVER_DATA_DIR"] = os.path.join(harness.run_dir(), name + "-data")
        self.argv = st._wrapper() + [st.binary("quarry-retriever")]
        self.proc = None
        self.log_start = 0

    def start(self, timeout=60):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        out = open(self.log_path, "ab")
        t0 = time.time()
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=harness.run_dir())
        out.close()
        deadline = t0 + timeout * harness.slow()
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("replica exited with %s:\n%s" % (
                    self.proc.returncode, self.log()))
            code, _ = stackmod.http_get("http://%s/readyz" % self.side, timeout=2)
            if code == 200:
                return time.time() - t0
            time.sleep(0.05)
        raise AssertionError("replica not ready after %.0fs:\n%s" % (timeout, self.log()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(20 * harness.slow())
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return None

    def log(self):
        return stackmod.tail(self.log_path, self.log_start, 60)

    def log_records(self, msg):
        """The JSON log records of this run of the replica whose msg is msg."""
        out = []
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            for line in f.read().decode("utf-8", "replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("msg") == msg:
                    out.append(rec)
        return out

    def metric(self, name):
        code, body = stackmod.http_get("http://%s/metrics" % self.side, timeout=5)
        if code != 200:
            return None
        text = body.decode() if isinstance(body, bytes) else body
        m = re.search(r"^%s(?:\{\})? ([-+0-9.eE]+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else None


class Replicas(Case):
    @classmethod
    def setUpClass(cls):
        if grpc is None:
            raise unittest.SkipTest("python3-grpcio is not importable; run with /usr/bin/python3")
        cls.pb = load_messages()
        cls.st = harness.stack()
        cls.b = Replica(cls.st, "retriever-b")
        cls.b.start()
        cls.channels = {}

    @classmethod
    def tearDownClass(cls):
        for ch in getattr(cls, "channels", {}).values():
            ch.close()
        if getattr(cls, "b", None):
            cls.b.stop()

    def channel(self, addr):
        if addr not in self.channels:
            self.channels[addr] = grpc.insecure_channel(addr)
        return self.channels[addr]

    def unary(self, addr, method, req, resp_cls, timeout=10):
        fn = self.channel(addr).unary_unary(
            method, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp_cls.FromString)
        return fn(req, timeout=timeout)

    @property
    def a(self):
        return self.st.grpc_addr("retriever")

    def upsert(self, addr, tenant, doc, words, n=2):
        m = self.pb["retriever"]
        up = m.UpsertRequest(tenant_id=tenant, replace_doc_id=doc)
        for i in range(n):
            up.chunks.add(chunk_id="%s:%s:1:%d" % (tenant, doc, i), doc_id=doc,
                          text="%s passage %d" % (words, i))
        return self.unary(addr, "/quarry.v1.Retriever/Upsert", up, m.UpsertResponse)

    def hits(self, addr, tenant, word):
        m = self.pb["retriever"]
        s = self.unary(addr, "/quarry.v1.Retriever/Search",
                       m.SearchRequest(tenant_id=tenant, query=word, mode="lexical"),
                       m.SearchResponse)
        return sorted(p.chunk_id for p in s.passages)

    def wait_hits(self, addr, tenant, word, want, limit=VISIBLE_S):
        """Seconds until Search on addr returns want; fails past limit."""
        t0 = time.time()
        while True:
            got = self.hits(addr, tenant, word)
            took = time.time() - t0
            if got == want:
                return took
            if took > limit * harness.slow():
                self.fail("after %.2fs %s answers %s for %r, want %s\n%s" % (
                    took, addr, got, word, want, self.b.log()))
            time.sleep(0.02)

    def test_upsert_and_delete_reach_the_other_replica(self):
        """Upsert {doc u} through A → searchable on B within 1 s; upsert {doc v}
        through B → on A within 1 s; Delete {doc u} through B → gone from A and
        B within 1 s; B's metrics count the change it applied from the log."""
        tenant = "itest-rep-" + uuid.uuid4().hex[:8]
        before = self.b.metric("quarry_retriever_changes_applied") or 0
        word_u, word_v = "quinceorchard", "medlarhedge"
        self.upsert(self.a, tenant, "u", word_u)
        want_u = ["%s:u:1:0" % tenant, "%s:u:1:1" % tenant]
        self.assertEqual(self.hits(self.a, tenant, word_u), want_u)
        took = self.wait_hits(self.b.grpc, tenant, word_u, want_u)
        stackmod.log("upsert via A visible on B after %.3fs" % took)

        self.upsert(self.b.grpc, tenant, "v", word_v, n=1)
        took = self.wait_hits(self.a, tenant, word_v, ["%s:v:1:0" % tenant])
        stackmod.log("upsert via B visible on A after %.3fs" % took)

        m = self.pb["retriever"]
        d = self.unary(self.b.grpc, "/quarry.v1.Retriever/Delete",
                       m.DeleteRequest(tenant_id=tenant, doc_id="u"), m.DeleteResponse)
        self.assertEqual(d.retired, 2)
        self.assertEqual(self.hits(self.b.grpc, tenant, word_u), [])
        took = self.wait_hits(self.a, tenant, word_u, [])
        stackmod.log("delete via B gone from A after %.3fs" % took)

        after = self.b.metric("quarry_retriever_changes_applied")
        self.assertIsNotNone(after, "B exports quarry_retriever_changes_applied")
        self.assertGreaterEqual(after - before, 1)
        self.assertEqual(self.b.metric("quarry_retriever_replica_lag_seconds"), 0)

    def test_replacing_a_document_replaces_it_on_the_other_replica(self):
        """Upsert {doc r: 3 chunks} through A, then {doc r: 1 chunk, new words}
        through A → B holds exactly the one new chunk."""
        tenant = "itest-rep-" + uuid.uuid4().hex[:8]
        self.upsert(self.a, tenant, "r", "loquatgrove", n=3)
        self.wait_hits(self.b.grpc, tenant, "loquatgrove",
                       ["%s:r:1:%d" % (tenant, i) for i in range(3)])
        self.upsert(self.a, tenant, "r", "sorbtree", n=1)
        self.wait_hits(self.b.grpc, tenant, "sorbtree", ["%s:r:1:0" % tenant])
        self.assertEqual(self.hits(self.b.grpc, tenant, "loquatgrove"), [])

    def test_a_stopped_replica_catches_up_at_start(self):
        """B stopped (SIGTERM: it writes a snapshot); upsert {doc w} and delete
        {doc x} through A; B started again → loads its snapshot, replays only
        the changes after it (2 of them, not the whole table), is ready within
        the start-time target, serves w and not x."""
        tenant = "itest-rep-" + uuid.uuid4().hex[:8]
        self.upsert(self.a, tenant, "x", "pawpawpatch", n=1)
        self.wait_hits(self.b.grpc, tenant, "pawpawpatch", ["%s:x:1:0" % tenant])
        self.assertEqual(self.b.stop(), 0, self.b.log())
        # at the latest at shutdown (maybe in the background before)
        written = self.b.log_records("snapshot written")
        self.assertTrue(written, self.b.log())
        snap_pos = written[-1]["log_position"]
        self.upsert(self.a, tenant, "w", "yuzuterrace", n=2)
        m = self.pb["retriever"]
        self.unary(self.a, "/quarry.v1.Retriever/Delete",
                   m.DeleteRequest(tenant_id=tenant, doc_id="x"), m.DeleteResponse)
        took = self.b.start()
        stackmod.log("replica B ready again after %.2fs" % took)
        self.assertLess(took, 10 * harness.slow())
        self.assertEqual(self.hits(self.b.grpc, tenant, "yuzuterrace"),
                         ["%s:w:1:0" % tenant, "%s:w:1:1" % tenant])
        self.assertEqual(self.hits(self.b.grpc, tenant, "pawpawpatch"), [])
        loaded = self.b.log_records("index loaded from snapshot")
        self.assertEqual(len(loaded), 1, self.b.log())
        self.assertEqual(loaded[0]["log_position"], snap_pos)
        self.assertEqual(self.b.log_records("index rebuilt"), [], "not rebuilt")
        replayed = self.b.log_records("change log tail replayed")
        self.assertEqual(len(replayed), 1, self.b.log())
        self.assertEqual(replayed[0]["changes"], 2, "only the tail: w and x")

    def test_a_corrupt_snapshot_is_rebuilt_not_served(self):
        """B stopped; a byte of its index.snap flipped; B started → logs the
        snapshot discarded, rebuilds from PostgreSQL and serves what A holds."""
        tenant = "itest-rep-" + uuid.uuid4().hex[:8]
        self.upsert(self.a, tenant, "y", "jujubeyard", n=1)
        self.wait_hits(self.b.grpc, tenant, "jujubeyard", ["%s:y:1:0" % tenant])
        self.assertEqual(self.b.stop(), 0, self.b.log())
        path = os.path.join(self.b.env["QUARRY_RETRIEVER_DATA_DIR"], "index.snap")
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x40]))
        self.b.start()
        self.assertTrue(self.b.log_records(
            "snapshot discarded; rebuilding the index from PostgreSQL"), self.b.log())
        self.assertEqual(len(self.b.log_records("index rebuilt")), 1, self.b.log())
        self.assertEqual(self.hits(self.b.grpc, tenant, "jujubeyard"), ["%s:y:1:0" % tenant])


if __name__ == "__main__":
    unittest.main()
