"""Many queries waiting at once on the real stack: a query that waits on a
downstream service holds no gateway thread (the pipeline runs on
asynchronous gRPC completions, services/gateway/pipeline.h)."""
import json
import os
import signal
import socket
import time

import harness
from harness import Case, call, key


def note(msg):
    print("\n    note: " + msg, end=" ", flush=True)

N = 512


def gateway_threads(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def metric(name):
    r = call("GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


class ManyWaitingQueries(Case):
    @classmethod
    def setUpClass(cls):
        harness.fact_document()
        st = harness.stack()
        env = st.svc_env.setdefault("gateway", {})
        env["QUARRY_TENANT_MAX_INFLIGHT"] = str(2 * N)
        env["QUARRY_QUERY_TIMEOUT_MS"] = "30000"
        env["QUARRY_RATE_LIMIT_RPS"] = "0"  # one key sends them all
        st.restart("gateway")

    @classmethod
    def tearDownClass(cls):
        st = harness.stack()
        if not st.alive("retriever"):
            st.restart("retriever")
        env = st.svc_env.get("gateway", {})
        env.pop("QUARRY_TENANT_MAX_INFLIGHT", None)
        env.pop("QUARRY_QUERY_TIMEOUT_MS", None)
        env.pop("QUARRY_RATE_LIMIT_RPS", None)
        st.restart("gateway")

    def test_512_queries_wait_on_a_frozen_retriever_without_a_thread_each(self):
        """Retriever stopped (SIGSTOP) → 512 POST /v1/query in flight at once;
        the gateway's threads (/proc/<pid>/task) stay well below 512 and
        GET /healthz answers within 1 s; retriever continued (SIGCONT) →
        every query answers 200."""
        st = harness.stack()
        gw_pid = st.procs["gateway"].pid
        rt_pid = st.procs["retriever"].pid
        before = gateway_threads(gw_pid)
        body = json.dumps({"query": harness.FACT_QUESTION}).encode()
        head = ("POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (key(), len(body))).encode()
        port = st.ports["gateway.http"]
        socks = []
        os.kill(rt_pid, signal.SIGSTOP)
        try:
            for _ in range(N):
                s = socket.create_connection(("127.0.0.1", port), timeout=60)
                s.sendall(head + body)
                socks.append(s)
            deadline = time.time() + 30
            while metric("quarry_pipeline_running") < N and time.time() < deadline:
                time.sleep(0.1)
            running = metric("quarry_pipeline_running")
            threads = gateway_threads(gw_pid)
            t0 = time.time()
            h = call("GET", "/healthz", timeout=5)
            health_s = time.time() - t0
            note("%d queries in flight: gateway threads %d (idle: %d), /healthz %.1f ms"
                 % (running, threads, before, health_s * 1000))
            self.assertEqual(running, N, "every query in flight at once")
            self.assertLess(threads, before + 16, "no thread per waiting query")
            self.assertLess(threads, N // 4)
            self.assertEqual(h.status, 200)
            self.assertLess(health_s, 1.0)
        finally:
            os.kill(rt_pid, signal.SIGCONT)
        ok = 0
        for s in socks:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            if data.startswith(b"HTTP/1.1 200"):
                ok += 1
        self.assertEqual(ok, N, "every query answered once the retriever continued")
