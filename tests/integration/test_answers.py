"""The built-in answerer through the whole pipeline: paraphrased questions
over the bundled samples, an honest "do not know", and citations whose
snippet and offsets point at the sentences the answer quotes."""

import json
import os
import re

import harness
from harness import Case, call, key

TENANT = "itest-answers"  # its own tenant: other modules' questions see none of this
SAMPLES = os.path.join(harness.REPO, "deploy", "local", "samples")
MARKER = re.compile(r"\[(\d+)\]")
NO_ANSWER = "The provided documents do not contain an answer to this question."


def ask(q, stream=False):
    return call("POST", "/v1/query", body={"query": q, "stream": stream}, key=key(TENANT))


def sse_events(text):
    out = []
    for block in text.split("\n\n"):
        lines = block.split("\n")
        if len(lines) >= 2 and lines[0].startswith("event: "):
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


class Answers(Case):
    @classmethod
    def setUpClass(cls):
        cls.docs = {}
        for name in ("travel-policy.md", "oncall-runbook.md", "leave-policy.md"):
            with open(os.path.join(SAMPLES, name), "rb") as f:
                body = f.read()
            r = harness.upload(body, title=body.split(b"\n", 1)[0].lstrip(b"# ").decode(),
                               external_id="sample:" + name, filename=name,
                               api_key=key(TENANT))
            if r.status != 202:
                raise AssertionError("uploading %s: %r" % (name, r))
            job = harness.wait_job(r.json["job_id"], api_key=key(TENANT))
            if (job.json or {}).get("status") != "done":
                raise AssertionError("%s not processed: %r" % (name, job))
            cls.docs[name] = r.json["document_id"]

    def test_paraphrase_is_answered_with_its_citation(self):
        """POST /v1/query {"query": "how much can I spend on a hotel in
        London?"} → 200; the answer quotes the London row with [n]; citation
        n is the travel policy, its snippet the quoted sentences."""
        r = ask("how much can I spend on a hotel in London?")
        self.assertStatus(r, 200)
        body = r.json
        self.assertIn("240 GBP", body["answer"])
        ns = {int(n) for n in MARKER.findall(body["answer"])}
        self.assertTrue(ns)
        cited = {c["n"]: c for c in body["citations"]}
        self.assertEqual(ns, set(cited), "every marker has its citation and no more")
        c = cited[min(ns)]
        self.assertEqual(c["document_id"], self.docs["travel-policy.md"])
        self.assertIn("London | 240 GBP", c["snippet"])
        self.assertLess(c["snippet_start"], c["snippet_end"])

    def test_snippet_offsets_point_into_the_chunk(self):
        """The same question streamed → the retrieval event's passage (the
        chunk's start, all of it for a short chunk) sliced at the citation's
        snippet_start:snippet_end is the citation's snippet."""
        r = ask("how much can I spend on a hotel in London?", stream=True)
        self.assertStatus(r, 200)
        events = sse_events(r.body.decode("utf-8"))
        kinds = [e for e, _ in events]
        self.assertIn("citation", kinds)
        passages = {p["n"]: p for p in events[kinds.index("retrieval")][1]["passages"]}
        for name, c in events:
            if name != "citation":
                continue
            whole = passages[c["n"]]["snippet"]
            self.assertEqual(whole[c["snippet_start"]:c["snippet_end"]], c["snippet"], c)
        done = events[-1][1]
        self.assertEqual([c["snippet"] for c in done["citations"]],
                         [d["snippet"] for e, d in events if e == "citation"])

    def test_question_type_picks_the_sentence(self):
        """"When is the on-call hand-over?" → the sentence with the day and
        time, not the one about the hand-over note."""
        r = ask("When is the on-call hand-over?")
        self.assertStatus(r, 200)
        self.assertIn("Tuesday at 10:00 UTC", r.json["answer"])
        self.assertNotIn("hand-over note", r.json["answer"])

    def test_unanswerable_says_so(self):
        """A plausible question the samples do not cover → the plain
        "do not contain an answer" reply without markers or citations."""
        for q in ("Is the office closed over Easter?", "Can I bring my dog to the office?"):
            r = ask(q)
            self.assertStatus(r, 200)
            self.assertEqual(r.json["answer"], NO_ANSWER, q)
            self.assertEqual(r.json["citations"], [], q)

    def test_invalid_markers_metric_is_exposed(self):
        """After an answered query the gateway's /metrics has
        quarry_citations_invalid_total."""
        ask("how much can I spend on a hotel in London?")
        r = call("GET", "/metrics", base=harness.stack().metrics_url("gateway"))
        self.assertIn("\nquarry_citations_invalid_total ", r.body.decode("utf-8"))
