"""The OpenAI-compatible API: POST /v1/chat/completions (both modes) and
GET /v1/models, driven by the official `openai` npm client (Node) and by
plain Python http for the exact wire format, with Quarry's citations in
the `citations` extension field.

The npm client is installed at test time with npm into the build
directory (build/npm-openai, reused by later runs). OpenAIClient skips,
saying why, only when npm cannot install it (no npm, registry
unreachable); every other failure is a failure."""

import http.client
import json
import os
import subprocess
import sys
import unittest
import urllib.parse

import harness
from harness import Case, call, key

OPENAI_NPM = "openai@4.104.0"     # v4 supports Node 18 and 20
NPM_DIR = os.path.join(os.path.dirname(os.path.abspath(harness.BIN_DIR)), "npm-openai")
MODEL = "quarry-rag"

FOLLOW_UP = [
    {"role": "user", "content": harness.FACT_QUESTION},
    {"role": "assistant", "content": "It uses a xenon bulb of type QX-4471 [1]."},
    {"role": "user", "content": "And how often must it be replaced?"},
]


# Two documents of a tenant of their own that answer FILTER_QUESTION
# differently, told apart by their metadata: the extension field
# quarry.filter must keep the answer and its citations to the one allowed.
FILTER_TENANT = "itest-openai-filter"
FILTER_QUESTION = "What is the hotel limit per night in Vellmark?"
FILTER_DOCS = {
    "north": ("North desk travel rules", "The hotel limit per night in Vellmark is 410 "
              "marks for the north desk."),
    "south": ("South desk travel rules", "The hotel limit per night in Vellmark is 170 "
              "marks for the south desk."),
}
_filter_ids = {}


def filter_documents():
    """{desk: document id} of the two documents, uploaded once."""
    if not _filter_ids:
        api_key = key(FILTER_TENANT)
        for desk, (title, text) in FILTER_DOCS.items():
            qs = urllib.parse.urlencode({"metadata": json.dumps({"desk": desk}),
                                         "title": title})
            r = call("POST", "/v1/documents?" + qs, body="# %s\n\n%s\n" % (title, text),
                     key=api_key, ctype="text/markdown")
            if r.status != 202:
                raise AssertionError("uploading %s: %r" % (title, r))
            job = harness.wait_job(r.json["job_id"], api_key=api_key)
            if (job.json or {}).get("status") != "done":
                raise AssertionError("%s not processed: %r" % (title, job))
            _filter_ids[desk] = r.json["document_id"]
    return dict(_filter_ids)


def chat(body, api_key=None):
    return call("POST", "/v1/chat/completions", body=body,
                key=key() if api_key is None else api_key)


def stream_frames(body):
    """(status, content type, [data payloads]) of a streamed chat, read
    with http.client."""
    st = harness.stack()
    conn = http.client.HTTPConnection("127.0.0.1", st.ports["gateway.http"],
                                      timeout=30 * harness.slow())
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Authorization": "Bearer " + key(),
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read().decode("utf-8")
        return resp.status, resp.getheader("Content-Type") or "", raw
    finally:
        conn.close()


class OpenAIWire(Case):
    """The raw wire format, request → reply."""

    @classmethod
    def setUpClass(cls):
        cls.doc_id = harness.fact_document()

    def assertCitesFact(self, citations, where):
        self.assertIsInstance(citations, list, where)
        mine = [c for c in citations if c["document_id"] == self.doc_id]
        self.assertTrue(mine, "%s: document %s not cited: %r" % (where, self.doc_id, citations))
        for f in ("n", "document_id", "title", "chunk_id", "page", "snippet", "score"):
            self.assertIn(f, mine[0], where)

    def test_completion_object(self):
        """POST /v1/chat/completions {model, messages:[user]} → 200
        chat.completion with the answer, usage and citations."""
        r = chat({"model": "gpt-4o", "messages": [{"role": "user",
                                                   "content": harness.FACT_QUESTION}],
                  "temperature": 0, "presence_penalty": 0})
        self.assertStatus(r, 200)
        b = r.json
        self.assertTrue(b["id"].startswith("chatcmpl-"), b["id"])
        self.assertEqual(b["object"], "chat.completion")
        # OpenAI's "model" is the model that answered: on the default stack
        # the built-in extractive answerer (docs/providers.md).
        self.assertEqual(b["model"], "quarry-extractive", "names the model that answered")
        self.assertEqual(b["quarry"]["generation"]["model"], b["model"])
        self.assertEqual(b["quarry"]["generation"]["provider"], "extractive")
        self.assertIsInstance(b["created"], int)
        self.assertEqual(len(b["choices"]), 1)
        ch = b["choices"][0]
        self.assertEqual(ch["index"], 0)
        self.assertEqual(ch["message"]["role"], "assistant")
        self.assertIn(harness.FACT_ANSWER, ch["message"]["content"])
        self.assertEqual(ch["finish_reason"], "stop")
        u = b["usage"]
        # usage is the generator's own count (docs/providers.md): the whole
        # prompt, question and passages; the built-in answerer counts words.
        self.assertGreater(u["prompt_tokens"], len(harness.FACT_QUESTION.split()))
        self.assertEqual(u["completion_tokens"], len(ch["message"]["content"].split()))
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])
        self.assertCitesFact(b["citations"], "completion")
        self.assertEqual(b["id"], "chatcmpl-" + b["quarry"]["query_id"])
        self.assertEqual(b["quarry"]["query"], harness.FACT_QUESTION, "not a follow-up")

    def test_stream_frames(self):
        """stream: true → text/event-stream of data: chunks - role first,
        content pieces, an empty delta with finish_reason and citations -
        then data: [DONE]."""
        status, ctype, raw = stream_frames({"model": MODEL, "stream": True,
                                            "messages": [{"role": "user",
                                                          "content": harness.FACT_QUESTION}]})
        self.assertEqual(status, 200, raw[:500])
        self.assertIn("text/event-stream", ctype)
        self.assertTrue(raw.endswith("data: [DONE]\n\n"), raw[-200:])
        frames = raw.split("\n\n")[:-1]
        for f in frames:
            self.assertTrue(f.startswith("data: "), "frame %r" % f)
        chunks = [json.loads(f[6:]) for f in frames[:-1]]
        self.assertGreaterEqual(len(chunks), 3)
        ids = {c["id"] for c in chunks}
        self.assertEqual(len(ids), 1, "one id for the whole stream")
        for c in chunks:
            self.assertEqual(c["object"], "chat.completion.chunk")
        # The configured model until the one that answered is known: the
        # last chunk names it.
        for c in chunks[:-1]:
            self.assertEqual(c["model"], MODEL)
        self.assertEqual(chunks[-1]["model"], "quarry-extractive")
        self.assertEqual(chunks[-1]["quarry"]["generation"]["provider"], "extractive")
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        self.assertIn(harness.FACT_ANSWER, text)
        last = chunks[-1]
        self.assertEqual(last["choices"][0]["delta"], {})
        self.assertEqual(last["choices"][0]["finish_reason"], "stop")
        for c in chunks[:-1]:
            self.assertIsNone(c["choices"][0]["finish_reason"])
        self.assertCitesFact(last["citations"], "final chunk")
        self.assertEqual(last["usage"]["completion_tokens"], len(text.split()))

    def test_follow_up_uses_the_previous_turn(self):
        """A follow-up ("And how often must it be replaced?") after the bulb
        question → the lighthouse document is cited and the answer gives
        the replacement interval."""
        r = chat({"model": MODEL, "messages": FOLLOW_UP})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["quarry"]["query"],
                         "bulb type Varnholt lighthouse lamp And how often must it be replaced?",
                         "the salient terms of the previous user turn come first")
        self.assertCitesFact(r.json["citations"], "follow-up")
        self.assertIn("1800", r.json["choices"][0]["message"]["content"])

    def test_errors_have_openai_shape(self):
        """n: 2 → 400 {"error":{"message","type":"invalid_request_error",
        "param":"n","code"}}; no user message → 400 param messages; no key →
        401 authentication_error; GET on the POST route → 405; a body that
        is not application/json → 415."""
        def check(r, status, etype, param):
            self.assertStatus(r, status)
            err = r.json["error"]
            self.assertEqual(set(err), {"message", "type", "param", "code"}, repr(r))
            self.assertEqual(err["type"], etype, repr(r))
            self.assertEqual(err["param"], param, repr(r))
            self.assertTrue(err["message"], repr(r))
            self.assertIsInstance(err["code"], str)

        msgs = [{"role": "user", "content": "hi there"}]
        check(chat({"model": MODEL, "messages": msgs, "n": 2}), 400, "invalid_request_error",
              "n")
        check(chat({"model": MODEL, "messages": [{"role": "system", "content": "x"}]}), 400,
              "invalid_request_error", "messages")
        check(chat({"model": MODEL, "messages": msgs}, api_key=""), 401,
              "authentication_error", None)
        check(call("POST", "/v1/chat/completions", body=b"{not json", key=key(),
                   ctype="application/json"), 400,
              "invalid_request_error", None)
        check(call("GET", "/v1/chat/completions", key=key()), 405, "invalid_request_error",
              None)
        check(call("POST", "/v1/chat/completions", body=json.dumps({"messages": msgs}),
                   key=key(), ctype="text/plain"), 415, "invalid_request_error", None)
        # Other routes keep Quarry's own error shape.
        self.assertError(call("POST", "/v1/query", body={"query": ""}, key=key()), 400)

    def test_quarry_filter(self):
        """{"quarry": {"filter": ...}} keeps retrieval to the documents the
        filter allows: each desk's filter gives that desk's answer citing only
        its document, streamed too; a bad filter → 400 param quarry.filter
        naming the place; quarry not an object or with another field → 400
        param quarry."""
        ids = filter_documents()
        api_key = key(FILTER_TENANT)
        msgs = [{"role": "user", "content": FILTER_QUESTION}]
        for desk, want, other in [("north", "410", "170"), ("south", "170", "410")]:
            r = chat({"model": MODEL, "messages": msgs,
                      "quarry": {"filter": {"field": "meta.desk", "eq": desk}}},
                     api_key=api_key)
            self.assertStatus(r, 200)
            text = r.json["choices"][0]["message"]["content"]
            self.assertIn(want, text)
            self.assertNotIn(other, text)
            cited = {c["document_id"] for c in r.json["citations"]}
            self.assertEqual(cited, {ids[desk]}, r.json["citations"])
        # Without a filter both documents are candidates.
        r = chat({"model": MODEL, "messages": msgs, "quarry": None}, api_key=api_key)
        self.assertStatus(r, 200)
        # Streamed: the citations of the final chunk.
        st = harness.stack()
        conn = http.client.HTTPConnection("127.0.0.1", st.ports["gateway.http"],
                                          timeout=30 * harness.slow())
        try:
            conn.request("POST", "/v1/chat/completions", body=json.dumps(
                {"model": MODEL, "stream": True, "messages": msgs,
                 "quarry": {"filter": {"not": {"field": "meta.desk", "eq": "north"}}}}),
                headers={"Authorization": "Bearer " + api_key,
                         "Content-Type": "application/json"})
            raw = conn.getresponse().read().decode("utf-8")
        finally:
            conn.close()
        chunks = [json.loads(f[6:]) for f in raw.split("\n\n")[:-2]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        self.assertIn("170", text)
        self.assertEqual({c["document_id"] for c in chunks[-1]["citations"]}, {ids["south"]})

        for ext, param, says in [
                ({"filter": {"field": "meta.desk", "like": "north"}}, "quarry.filter",
                 "unknown operator"),
                ({"filter": {"and": [{"field": "title", "eq": "x"},
                                     {"field": "colour", "eq": "red"}]}},
                 "quarry.filter", "quarry.filter.and[1]"),
                ({"filter": "desk=north"}, "quarry.filter", "quarry.filter"),
                ({"top_k": 3}, "quarry", "unknown field"),
                ("north", "quarry", "must be an object")]:
            r = chat({"model": MODEL, "messages": msgs, "quarry": ext}, api_key=api_key)
            self.assertStatus(r, 400)
            err = r.json["error"]
            self.assertEqual((err["type"], err["param"]), ("invalid_request_error", param),
                             repr(r))
            self.assertIn(says, err["message"])

    def test_models(self):
        """GET /v1/models → 200 {"object":"list","data":[{"id":"quarry-rag",
        "object":"model","created","owned_by"}]}; without a key → 401."""
        r = call("GET", "/v1/models", key=key())
        self.assertStatus(r, 200)
        self.assertEqual(r.json["object"], "list")
        self.assertEqual([m["id"] for m in r.json["data"]], [MODEL])
        m = r.json["data"][0]
        self.assertEqual(m["object"], "model")
        self.assertIsInstance(m["created"], int)
        self.assertEqual(m["owned_by"], "quarry")
        r = call("GET", "/v1/models", key="")
        self.assertStatus(r, 401)
        self.assertEqual(r.json["error"]["type"], "authentication_error")


NODE_SCRIPT = r"""
const OpenAI = require(process.env.OPENAI_MODULE);
const client = new OpenAI({apiKey: process.env.QKEY, baseURL: process.env.QBASE + '/v1',
                           maxRetries: 0, timeout: 30000});
(async () => {
  const out = {};
  out.models = (await client.models.list()).data.map(m => m.id);
  const c = await client.chat.completions.create(
      {model: 'quarry-rag', messages: [{role: 'user', content: process.env.QQUESTION}]});
  out.completion = {id: c.id, object: c.object, content: c.choices[0].message.content,
                    finish: c.choices[0].finish_reason, usage: c.usage,
                    citations: c.citations};
  const stream = await client.chat.completions.create(
      {model: 'quarry-rag', stream: true,
       messages: [{role: 'user', content: process.env.QQUESTION}]});
  const s = {chunks: 0, text: '', role: null, finish: null, citations: null};
  for await (const ch of stream) {
    s.chunks++;
    const choice = ch.choices[0] || {};
    const d = choice.delta || {};
    if (d.role) s.role = d.role;
    if (d.content) s.text += d.content;
    if (choice.finish_reason) s.finish = choice.finish_reason;
    if (ch.citations) s.citations = ch.citations;
  }
  out.stream = s;
  // Quarry's extension field, sent by the client as an extra body field.
  const filtered = new OpenAI({apiKey: process.env.QKEY_FILTER,
                               baseURL: process.env.QBASE + '/v1', maxRetries: 0,
                               timeout: 30000});
  const ask = {model: 'quarry-rag',
               messages: [{role: 'user', content: process.env.QFILTER_QUESTION}],
               quarry: {filter: {field: 'meta.desk', eq: 'south'}}};
  const fc = await filtered.chat.completions.create(ask);
  out.filtered = {content: fc.choices[0].message.content,
                  cited: fc.citations.map(x => x.document_id)};
  const fs = await filtered.chat.completions.create({...ask, stream: true});
  out.filtered_stream = {text: '', cited: null};
  for await (const ch of fs) {
    out.filtered_stream.text += (ch.choices[0] && ch.choices[0].delta.content) || '';
    if (ch.citations) out.filtered_stream.cited = ch.citations.map(x => x.document_id);
  }
  try {
    await filtered.chat.completions.create(
        {...ask, quarry: {filter: {field: 'meta.desk', like: 'south'}}});
    out.filter_error = null;
  } catch (e) {
    out.filter_error = {status: e.status, param: e.param, message: e.message,
                        name: e.constructor.name};
  }
  try {
    await client.chat.completions.create(
        {model: 'quarry-rag', n: 2, messages: [{role: 'user', content: 'hi'}]});
    out.error = null;
  } catch (e) {
    out.error = {status: e.status, type: e.type, param: e.param, code: e.code,
                 name: e.constructor.name};
  }
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""


def install_openai_npm():
    """Path of the installed openai module, or raises SkipTest saying why
    npm could not install it."""
    module = os.path.join(NPM_DIR, "node_modules", "openai")
    if os.path.exists(os.path.join(module, "package.json")):
        return module
    os.makedirs(NPM_DIR, exist_ok=True)
    try:
        p = subprocess.run(["npm", "install", "--prefix", NPM_DIR, "--no-audit", "--no-fund",
                            "--no-save", "--loglevel=error", OPENAI_NPM],
                           capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise unittest.SkipTest("npm could not install %s: %s" % (OPENAI_NPM, e))
    if p.returncode != 0 or not os.path.exists(os.path.join(module, "package.json")):
        lines = (p.stderr or p.stdout).strip().splitlines()
        why = [ln for ln in lines if " code" in ln or "errno" in ln] or lines[-3:]
        raise unittest.SkipTest("npm could not install %s (exit %d): %s" % (
            OPENAI_NPM, p.returncode, " | ".join(ln.strip() for ln in why[:4])))
    return module


class OpenAIClient(Case):
    """The official openai npm client against the gateway, both modes."""

    @classmethod
    def setUpClass(cls):
        try:
            cls.module = install_openai_npm()
        except unittest.SkipTest as e:
            sys.stdout.write("\n    SKIP OpenAIClient: %s\n" % e)
            sys.stdout.flush()
            raise
        cls.doc_id = harness.fact_document()
        cls.filter_ids = filter_documents()

    def test_official_client_both_modes(self):
        """openai.chat.completions.create without and with stream: the
        answer, citations in both modes, models.list, quarry.filter passed as
        an extra body field (both modes cite only the allowed document; a bad
        one raises BadRequestError with param quarry.filter), and an n: 2
        request raising the client's BadRequestError with param n."""
        env = dict(os.environ, OPENAI_MODULE=self.module, QKEY=key(),
                   QBASE=harness.stack().url, QQUESTION=harness.FACT_QUESTION,
                   QKEY_FILTER=key(FILTER_TENANT), QFILTER_QUESTION=FILTER_QUESTION)
        p = subprocess.run(["node", "-e", NODE_SCRIPT], capture_output=True, text=True,
                           env=env, timeout=60 * harness.slow())
        self.assertEqual(p.returncode, 0, "node failed: %s %s" % (p.stdout, p.stderr))
        out = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertEqual(out["models"], [MODEL])
        c = out["completion"]
        self.assertEqual(c["object"], "chat.completion")
        self.assertTrue(c["id"].startswith("chatcmpl-"))
        self.assertIn(harness.FACT_ANSWER, c["content"])
        self.assertEqual(c["finish"], "stop")
        self.assertGreater(c["usage"]["completion_tokens"], 0)
        self.assertIn(self.doc_id, [x["document_id"] for x in c["citations"]])
        s = out["stream"]
        self.assertEqual(s["role"], "assistant")
        self.assertGreaterEqual(s["chunks"], 3)
        self.assertIn(harness.FACT_ANSWER, s["text"])
        self.assertEqual(s["text"], c["content"], "both modes give the same answer")
        self.assertEqual(s["finish"], "stop")
        self.assertIn(self.doc_id, [x["document_id"] for x in s["citations"] or []],
                      "citations arrive in the stream: %r" % s)
        # quarry.filter as an extra body field: only the south desk's document.
        f = out["filtered"]
        self.assertIn("170", f["content"])
        self.assertNotIn("410", f["content"])
        self.assertEqual(set(f["cited"]), {self.filter_ids["south"]}, f)
        fs = out["filtered_stream"]
        self.assertEqual(fs["text"], f["content"])
        self.assertEqual(set(fs["cited"] or []), {self.filter_ids["south"]}, fs)
        fe = out["filter_error"]
        self.assertIsNotNone(fe, "a bad quarry.filter was accepted")
        self.assertEqual((fe["status"], fe["param"], fe["name"]),
                         (400, "quarry.filter", "BadRequestError"))
        self.assertIn("unknown operator", fe["message"])
        e = out["error"]
        self.assertIsNotNone(e, "n: 2 was accepted")
        self.assertEqual((e["status"], e["type"], e["param"], e["name"]),
                         (400, "invalid_request_error", "n", "BadRequestError"))


if __name__ == "__main__":
    unittest.main()
