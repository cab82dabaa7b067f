"""Model providers over HTTP: the stack's llm-gateway (and reranker) pointed
at loopback fakes of an OpenAI-compatible server and of the rerank APIs
(tests/fakes/provider_fake.py), through QUARRY_PROVIDERS_FILE.

Each case sets how the fakes behave, asks the real gateway, and checks what
the client saw and what the fakes saw: tokens arriving as the provider sends
them, 429 retried after Retry-After, failover down the list, a mid-stream
failure ending in an `error` event, every provider down giving the built-in
answer marked degraded, the provider's connection closed when the client
leaves, and the API key sent but never logged."""

import http.client
import json
import os
import sys
import tempfile
import time

import harness
from harness import Case, call, key

sys.path.insert(0, os.path.join(harness.REPO, "tests", "fakes"))
from provider_fake import Fake  # noqa: E402

SECRET = "sk-quarry-test-4f9d2c7a1b"
COOLDOWN_MS = 400


class SSE:
    """A streamed POST /v1/query read event by event, with arrival times
    (time.time(), comparable with the fake's)."""

    def __init__(self, body, timeout=30):
        st = harness.stack()
        self.conn = http.client.HTTPConnection("127.0.0.1", st.ports["gateway.http"],
                                               timeout=timeout * harness.slow())
        self.conn.request("POST", "/v1/query", body=json.dumps(body), headers={
            "Authorization": "Bearer " + key(), "Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.events = []

    def next_event(self):
        name, data = None, None
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and name is not None:
                ev = (name, data, time.time())
                self.events.append(ev)
                return ev

    def read_all(self):
        while self.next_event():
            pass
        return self.events

    def close(self):
        self.conn.close()


def stream_query():
    s = SSE({"query": harness.FACT_QUESTION, "stream": True})
    try:
        return s.status, s.read_all()
    finally:
        s.close()


class Providers(Case):
    @classmethod
    def setUpClass(cls):
        harness.fact_document()
        cls.a = Fake(name="a")
        cls.b = Fake(name="b")
        cls.r = Fake(name="rerank")
        cls.a.key = SECRET
        cls.b.key = SECRET
        cls.tmp = tempfile.mkdtemp(prefix="quarry-providers-")
        cls.path = os.path.join(cls.tmp, "providers.json")
        conf = {
            "chat": [
                {"kind": "openai-chat", "name": "fake-a", "base_url": cls.a.base_url,
                 "model": "model-a", "key_env": "FAKE_PROVIDER_KEY", "timeout_ms": 2500,
                 "stall_timeout_ms": 600, "connect_timeout_ms": 500,
                 "cost_per_1k_prompt": 0.5, "cost_per_1k_completion": 1.5},
                {"kind": "openai-chat", "name": "fake-b", "base_url": cls.b.base_url,
                 "model": "model-b", "key_env": "FAKE_PROVIDER_KEY", "timeout_ms": 2500},
            ],
            "rerank": [
                {"kind": "cohere-rerank", "name": "fake-rerank", "base_url": cls.r.base_url,
                 "model": "rerank-x", "key_env": "FAKE_PROVIDER_KEY"},
            ],
            "retry": {"max_attempts": 2, "base_ms": 20, "max_backoff_ms": 100,
                      "max_retry_after_ms": 1500},
            "breaker": {"failures": 50, "cooldown_ms": COOLDOWN_MS},
        }
        with open(cls.path, "w") as f:
            json.dump(conf, f)
        st = harness.stack()
        for svc in ("llm-gateway", "reranker"):
            env = st.svc_env.setdefault(svc, {})
            env["QUARRY_PROVIDERS_FILE"] = cls.path
            env["FAKE_PROVIDER_KEY"] = SECRET
            st.restart(svc)
        harness.wait_rerank_method("remote")  # the gateway calls it again

    @classmethod
    def tearDownClass(cls):
        st = harness.stack()
        for svc in ("llm-gateway", "reranker"):
            env = st.svc_env.get(svc, {})
            env.pop("QUARRY_PROVIDERS_FILE", None)
            env.pop("FAKE_PROVIDER_KEY", None)
            st.restart(svc)
        harness.wait_rerank_method("none")
        cls.a.stop()
        cls.b.stop()
        cls.r.stop()

    def setUp(self):
        self.a.reset()
        self.b.reset()
        self.r.reset()

    def chat_requests(self, fake):
        return fake.seen("/v1/chat/completions")

    def test_tokens_arrive_as_the_provider_sends_them(self):
        """Provider streams one piece every 120 ms → each token event reaches
        the client well before the provider sends the next one, so the first
        token is there long before the last is sent."""
        self.a.interval = 0.12
        status, events = stream_query()
        self.assertEqual(status, 200)
        tokens = [(d["text"], at) for n, d, at in events if n == "token"]
        self.assertEqual(events[-1][0], "done", events[-1])
        req = self.chat_requests(self.a)[-1]
        self.assertTrue(req["body"]["stream"])
        self.assertGreaterEqual(len(tokens), 10)
        first_at = tokens[0][1]
        self.assertLess(first_at, req["t_last_piece"] - 1.0,
                        "the first token must reach the client while the provider "
                        "is still generating")
        # The first token arrives within 100 ms of being sent (sends are 120 ms
        # apart).
        lag = first_at - req["t_first_piece"]
        self.assertLess(lag, 0.1 * harness.slow(), "first-token lag %.3fs" % lag)
        done = events[-1][1]
        self.assertEqual("".join(t for t, _ in tokens), done["answer"])
        self.assertEqual(done["degraded"], [])
        gen = done["generation"]
        self.assertEqual((gen["provider"], gen["model"], gen["fallback"]),
                         ("fake-a", "model-a", False), gen)
        self.assertTrue(gen["prompt_version"].startswith("answer."), gen)

    def test_429_is_retried_after_retry_after(self):
        """First call → 429 with Retry-After: 1 → the same provider is asked
        again about 1 s later and its answer is used."""
        self.a.mode = "429"
        self.a.fail_times = 1
        self.a.retry_after = "1"
        r = harness.query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)
        reqs = self.chat_requests(self.a)
        self.assertEqual(len(reqs), 2, [x["t_start"] for x in reqs])
        gap = reqs[1]["t_start"] - reqs[0]["t_start"]
        self.assertGreaterEqual(gap, 0.95)
        self.assertLess(gap, 2.0)
        self.assertEqual(self.chat_requests(self.b), [])
        self.assertIn("first passage", r.json["answer"])

    def test_first_provider_down_second_answers(self):
        """fake-a answers 500 to every call → retried once, then fake-b
        answers; not degraded."""
        self.a.mode = "500"
        self.b.answer = "Answer from the second provider [1]."
        r = harness.query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)
        self.assertEqual(len(self.chat_requests(self.a)), 2)
        self.assertEqual(len(self.chat_requests(self.b)), 1)
        self.assertIn("second provider", r.json["answer"])
        self.assertEqual(r.json["degraded"], [])
        gen = r.json["generation"]
        self.assertEqual((gen["provider"], gen["model"], gen["fallback"]),
                         ("fake-b", "model-b", False), "the provider that answered: %r" % gen)

    def test_malformed_stream_before_first_token_fails_over(self):
        """fake-a sends a broken SSE event before any text → fake-b answers."""
        self.a.mode = "malformed"
        self.a.stall_after = 0
        self.b.answer = "Clean answer from b [1]."
        r = harness.query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)
        self.assertIn("Clean answer from b", r.json["answer"])

    def test_stall_before_first_token_fails_over(self):
        """fake-a accepts the call and says nothing: after its stall timeout
        (600 ms) fake-b answers within the query's deadline."""
        self.a.mode = "stall"
        self.a.stall_after = 0
        self.a.stall_seconds = 10
        self.b.answer = "Answer after a stall [1]."
        t0 = time.time()
        r = harness.query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)
        self.assertIn("Answer after a stall", r.json["answer"])
        self.assertLess(time.time() - t0, 3.0)

    def test_failure_mid_stream_ends_in_an_error_event(self):
        """fake-a sends three pieces, then drops the connection → the client
        got those tokens, then an `error` event, no `done`; nobody else was
        asked to continue the answer."""
        self.a.mode = "close"
        self.a.stall_after = 3
        status, events = stream_query()
        self.assertEqual(status, 200)
        names = [n for n, _, _ in events]
        self.assertEqual(names.count("token"), 3, names)
        self.assertEqual(names[-1], "error", names)
        self.assertNotIn("done", names)
        self.assertIn("message", events[-1][1]["error"])
        self.assertEqual(self.chat_requests(self.b), [])

    def test_every_provider_down_gives_the_builtin_answer_marked_degraded(self):
        """Both fakes answer 500 → 200 with the extractive answer (it quotes
        the document) and "generate" in degraded."""
        self.a.mode = "500"
        self.b.mode = "500"
        r = harness.query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)
        self.assertIn("generate", r.json["degraded"])
        self.assertIn(harness.FACT_ANSWER, r.json["answer"])
        gen = r.json["generation"]
        self.assertEqual((gen["provider"], gen["model"], gen["fallback"]),
                         ("extractive", "quarry-extractive", True), gen)
        # The chat completion says the same, and names the built-in model.
        c = call("POST", "/v1/chat/completions", key=key(), body={
            "model": "quarry-rag",
            "messages": [{"role": "user", "content": harness.FACT_QUESTION}]})
        self.assertStatus(c, 200)
        self.assertEqual(c.json["model"], "quarry-extractive")
        cg = c.json["quarry"]["generation"]
        self.assertEqual((cg["provider"], cg["fallback"]), ("extractive", True), cg)
        self.assertIn("generate", c.json["quarry"]["degraded"])

    def test_client_leaving_closes_the_provider_connection(self):
        """The client reads the first token and hangs up → the provider's
        HTTP connection is closed within 1.5 s (the fake would stream for 6 s)."""
        self.a.interval = 0.4
        s = SSE({"query": harness.FACT_QUESTION, "stream": True})
        try:
            while True:
                ev = s.next_event()
                self.assertIsNotNone(ev, "stream ended before a token")
                if ev[0] == "token":
                    break
        finally:
            left = time.time()
            s.close()
        deadline = left + 1.5 * harness.slow()
        req = self.chat_requests(self.a)[-1]
        while time.time() < deadline and not req["closed_by_client"]:
            time.sleep(0.02)
        self.assertIsNotNone(req["closed_by_client"], "provider connection still open")
        self.assertLess(req["pieces"], 10)
        sys.stdout.write("\n    provider connection closed %.0f ms after the client left\n"
                         % ((req["closed_by_client"] - left) * 1000))

    def test_api_key_is_sent_and_never_logged(self):
        """The fake got "Authorization: Bearer <key>" from the key_env
        variable; no service log contains the key."""
        r = harness.query(harness.FACT_QUESTION)
        self.assertStatus(r, 200)
        self.assertEqual(self.chat_requests(self.a)[-1]["headers"].get("Authorization"),
                         "Bearer " + SECRET)
        st = harness.stack()
        for svc in harness.stackmod.SERVICES:
            with open(st.log_path(svc), "rb") as f:
                self.assertNotIn(SECRET.encode(), f.read(), svc + " log holds the key")

    def test_wrong_key_is_not_retried_and_fails_over(self):
        """fake-a wants another key (401) → asked once, fake-b answers."""
        self.a.key = "another-key"
        try:
            r = harness.query(harness.FACT_QUESTION)
        finally:
            self.a.key = SECRET
        self.assertStatus(r, 200)
        self.assertEqual(len(self.chat_requests(self.a)), 1)
        self.assertEqual(len(self.chat_requests(self.b)), 1)

    def test_chat_completions_usage_is_the_providers(self):
        """POST /v1/chat/completions → usage is what the provider reported
        (prompt 321, completion = pieces streamed), not a word count."""
        r = call("POST", "/v1/chat/completions", key=key(), body={
            "model": "quarry-rag",
            "messages": [{"role": "user", "content": harness.FACT_QUESTION}]})
        self.assertStatus(r, 200)
        usage = r.json["usage"]
        self.assertEqual(usage["prompt_tokens"], 321)
        self.assertEqual(usage["completion_tokens"], len(self.a.answer.split(" ")))
        self.assertEqual(usage["total_tokens"], 321 + usage["completion_tokens"])
        # OpenAI's "model": the model that answered, not the id asked for.
        self.assertEqual(r.json["model"], "model-a")
        gen = r.json["quarry"]["generation"]
        self.assertEqual((gen["provider"], gen["model"], gen["fallback"]),
                         ("fake-a", "model-a", False), gen)
        self.assertEqual((gen["prompt_tokens"], gen["completion_tokens"]),
                         (usage["prompt_tokens"], usage["completion_tokens"]))
        self.assertGreater(gen["cost"], 0, "fake-a has prices: %r" % gen)

    def test_prompt_has_system_rules_and_numbered_context(self):
        """The chat request carries the v2 template: a system message that
        demands answers only from the documents with [n] citations, and the
        passages numbered [1].. in the user message."""
        harness.query(harness.FACT_QUESTION)
        body = self.chat_requests(self.a)[-1]["body"]
        msgs = body["messages"]
        self.assertEqual([m["role"] for m in msgs], ["system", "user"])
        self.assertIn("only", msgs[0]["content"])
        self.assertIn("[1]", msgs[0]["content"])
        self.assertIn("[1] ", msgs[1]["content"])
        self.assertIn(harness.FACT_QUESTION, msgs[1]["content"])
        self.assertTrue(body["stream_options"]["include_usage"])

    def test_rerank_api_is_used(self):
        """A query → the reranker called the Cohere-style /v1/rerank of the
        fake with the query and the candidates."""
        harness.query(harness.FACT_QUESTION)
        reqs = self.r.seen("/v1/rerank")
        self.assertTrue(reqs, "no rerank call")
        self.assertEqual(reqs[-1]["body"]["query"], harness.FACT_QUESTION)
        self.assertTrue(reqs[-1]["body"]["documents"])
        self.assertEqual(reqs[-1]["headers"].get("Authorization"), "Bearer " + SECRET)

    def test_metrics_account_per_provider(self):
        """After an answer, /metrics of the llm-gateway has TTFT, duration,
        tokens and cost for fake-a / model-a."""
        harness.query(harness.FACT_QUESTION)
        st = harness.stack()
        conn = http.client.HTTPConnection("127.0.0.1", st.ports["llm-gateway.metrics"],
                                          timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        for name in ('quarry_llm_ttft_seconds_count{provider="fake-a",model="model-a"}',
                     'quarry_llm_duration_seconds_count{op="generate",provider="fake-a",'
                     'model="model-a"}',
                     'quarry_llm_provider_tokens_total{provider="fake-a",model="model-a",'
                     'kind="prompt"}',
                     'quarry_llm_cost_total{provider="fake-a",model="model-a"}'):
            self.assertIn(name, text)
