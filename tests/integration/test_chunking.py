"""Chunking per upload: the strategy, window and overlap an upload chooses
(query string, multipart field, batch line), refused with a 400 naming the
problem when out of bounds, kept with the version; a table larger than a
chunk split between rows with its header row repeated; and citations whose
document offsets point at the snippet in the document's text, in every
response format. Chunks are read back with Retriever.Search (python3-grpcio,
as test_interop.py)."""

import json
import unittest
import urllib.parse
import uuid

import harness
from harness import Case, call, key, wait_job
from test_interop import grpc, load_messages

TENANT = "itest-chunking"


def upload(body, ctype, **qs):
    path = "/v1/documents" + ("?" + urllib.parse.urlencode(qs) if qs else "")
    return call("POST", path, body=body.encode() if isinstance(body, str) else body,
                key=key(TENANT), ctype=ctype)


def sse_events(text):
    out = []
    for block in text.split("\n\n"):
        lines = block.split("\n")
        if len(lines) >= 2 and lines[0].startswith("event: "):
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


class Chunking(Case):
    @classmethod
    def setUpClass(cls):
        if grpc is None:
            raise unittest.SkipTest("python3-grpcio is not importable; run with /usr/bin/python3")
        cls.pb = load_messages()
        cls.ch = grpc.insecure_channel(harness.stack().grpc_addr("retriever"))

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()

    def stored(self, body, ctype, **qs):
        r = upload(body, ctype, **qs)
        self.assertStatus(r, 202)
        job = wait_job(r.json["job_id"], api_key=key(TENANT))
        self.assertEqual((job.json or {}).get("status"), "done", repr(job))
        return r.json["document_id"]

    def chunks(self, doc_id, words):
        """Every chunk of doc_id the lexical search for words finds, by
        ordinal."""
        m = self.pb["retriever"]
        fn = self.ch.unary_unary("/quarry.v1.Retriever/Search",
                                 request_serializer=lambda x: x.SerializeToString(),
                                 response_deserializer=m.SearchResponse.FromString)
        r = fn(m.SearchRequest(tenant_id=TENANT, query=words, top_k=1000, mode="lexical"),
               timeout=10 * harness.slow())
        return sorted((p for p in r.passages if p.doc_id == doc_id), key=lambda p: p.ordinal)

    def test_split_table_repeats_its_header_row_in_every_piece(self):
        """POST /v1/documents?chunk_tokens=40&chunk_overlap=0 an HTML page
        whose heading is followed by a table of a header row and 60 rows
        (far more than 40 words) → each chunk holding rows starts, after its
        heading path, with the header row; every row is in exactly one
        chunk, whole; the chunk's text from text_offset on is the document
        text at [start_offset, end_offset)."""
        tag = uuid.uuid4().hex[:8]
        rows = "".join("<tr><td>gizmo%s-%d</td><td>red</td><td>%d euro</td></tr>"
                       % (tag, i, i) for i in range(60))
        html = ("<html><head><title>Parts %s</title></head><body><h2>Price list</h2>"
                "<p>Every part we sell.</p><table><tr><th>Part</th><th>Colour</th>"
                "<th>Price</th></tr>%s</table></body></html>" % (tag, rows))
        doc = self.stored(html, "text/html", chunk_tokens="40", chunk_overlap="0")
        got = self.chunks(doc, "red")
        pieces = [p for p in got if "| red |" in p.text]
        self.assertGreater(len(pieces), 1, "the table was split: %r" % [p.text for p in got])
        seen = []
        for p in pieces:
            head, _, body = p.text.partition("\n\n")
            self.assertEqual(head, "Price list", p.text)
            self.assertTrue(body.startswith("Part | Colour | Price\n"), p.text)
            for line in body.split("\n")[1:]:
                self.assertRegex(line, r"^gizmo%s-\d+ \| red \| \d+ euro$" % tag)
                seen.append(int(line.split(" ")[0].split("-")[1]))
            self.assertLess(p.start_offset, p.end_offset)
            self.assertEqual(p.end_offset - p.start_offset, len(p.text) - p.text_offset)
        self.assertEqual(sorted(seen), list(range(60)), "every row once")
        # The second piece repeats the header: what follows its text_offset
        # starts with a data row.
        later = pieces[1]
        self.assertTrue(later.text[later.text_offset:].startswith("gizmo"), later.text)

    def test_fixed_windows_chosen_per_upload(self):
        """POST /v1/documents?chunking=fixed&chunk_tokens=20&chunk_overlap=5
        with 200 words of text/plain → chunks of exactly 20 words starting
        every 15 words, at the character offsets of those words."""
        tag = uuid.uuid4().hex[:6]
        words = []
        for i in range(100):
            words += ["kiwi%s" % tag, "w%d." % i if i % 7 == 6 else "w%d" % i]
        text = " ".join(words)
        doc = self.stored(text, "text/plain", chunking="fixed", chunk_tokens="20",
                          chunk_overlap="5")
        got = self.chunks(doc, "kiwi%s" % tag)
        self.assertEqual(len(got), 13, [p.text for p in got])
        for i, p in enumerate(got):
            want = " ".join(words[15 * i:15 * i + 20])
            self.assertEqual(p.text, want, "chunk %d" % i)
            self.assertEqual(p.start_offset, text.index(want))
            self.assertEqual(text[p.start_offset:p.end_offset], want)
        # The same text under structure (the default) ends chunks at sentence
        # ends instead: another chunking.
        doc2 = self.stored(text, "text/plain", chunk_tokens="20", chunk_overlap="5")
        got2 = self.chunks(doc2, "kiwi%s" % tag)
        self.assertTrue(all(p.text.endswith(".") for p in got2[:-1]),
                        [p.text for p in got2])

    def test_chunking_is_kept_with_the_version(self):
        """The same content and external_id again: with the same chunking →
        unchanged; with another chunking → a new version; GET shows each
        version's resolved chunking."""
        ext = "chunk-version-" + uuid.uuid4().hex[:8]
        text = "Alpha beta gamma. Delta epsilon zeta."
        r1 = upload(text, "text/plain", external_id=ext, chunking="fixed")
        self.assertStatus(r1, 202)
        wait_job(r1.json["job_id"], api_key=key(TENANT))
        r2 = upload(text, "text/plain", external_id=ext, chunking="fixed")
        self.assertStatus(r2, 202)
        self.assertTrue(r2.json["unchanged"], repr(r2))
        r3 = upload(text, "text/plain", external_id=ext, chunking="structure")
        self.assertStatus(r3, 202)
        self.assertFalse(r3.json["unchanged"], repr(r3))
        self.assertEqual(r3.json["version"], r1.json["version"] + 1)
        # GET /v1/documents/{id} names each version's resolved chunking.
        d = call("GET", "/v1/documents/" + r3.json["document_id"], key=key(TENANT))
        self.assertStatus(d, 200)
        got = {v["version"]: v["chunking"] for v in d.json["versions"]}
        self.assertTrue(got[r1.json["version"]].startswith("fixed:"), repr(got))
        self.assertTrue(got[r3.json["version"]].startswith("structure:"), repr(got))

    def test_bad_chunking_is_a_400_naming_it(self):
        """Unknown strategy, tokens 0 or over 4096 or not a number, an overlap
        without tokens or over half of them → 400 naming the parameter;
        the same as a multipart field; a batch line's bad choice fails that
        line alone."""
        for qs, words in (({"chunking": "pages"}, "chunking: unknown strategy \"pages\""),
                          ({"chunk_tokens": "0"}, "chunk_tokens"),
                          ({"chunk_tokens": "4097"}, "chunk_tokens"),
                          ({"chunk_tokens": "ten"}, "chunk_tokens"),
                          ({"chunk_overlap": "5"}, "chunk_overlap: needs chunk_tokens"),
                          ({"chunk_tokens": "10", "chunk_overlap": "6"},
                           "chunk_overlap: must be 0..5")):
            with self.subTest(qs=qs):
                r = upload("some text", "text/plain", **qs)
                self.assertError(r, 400)
                self.assertIn(words, r.json["error"]["message"])
        body, ctype = harness.multipart({"chunking": "bogus"},
                                        [("file", "a.txt", "text/plain", b"some text")])
        r = call("POST", "/v1/documents", body=body, key=key(TENANT), ctype=ctype)
        self.assertError(r, 400)
        self.assertIn("chunking: unknown strategy \"bogus\"", r.json["error"]["message"])
        body, ctype = harness.multipart({"chunking": "fixed", "chunk_tokens": "30"},
                                        [("file", "a.txt", "text/plain", b"multipart text")])
        r = call("POST", "/v1/documents", body=body, key=key(TENANT), ctype=ctype)
        self.assertStatus(r, 202)
        lines = [json.dumps({"text": "good line", "chunking": "fixed", "chunk_tokens": 50}),
                 json.dumps({"text": "bad line", "chunk_tokens": 9999})]
        r = call("POST", "/v1/documents/batch", body=("\n".join(lines) + "\n").encode(),
                 key=key(TENANT), ctype="application/x-ndjson")
        self.assertStatus(r, 202)
        self.assertEqual((r.json["accepted"], r.json["failed"]), (1, 1), repr(r))
        bad = [d for d in r.json["documents"] if d.get("error")][0]
        self.assertIn("chunk_tokens", bad["error"]["message"])

    def test_citation_document_offsets_point_at_the_snippet(self):
        """A text/plain upload cut into small chunks, then a question about
        its third paragraph as JSON, SSE and OpenAI chat: every citation of
        it has document_start:document_end such that the uploaded text
        sliced there (in characters) is the snippet, and chunk_start <=
        document_start <= document_end <= chunk_end."""
        tag = uuid.uuid4().hex[:6]
        text = ("Quarterly café report %s.\n\n"
                "The Zürich office opened in spring. Its team grew to twelve people "
                "over the summer months.\n\n"
                "The Lisbon office ships every parcel with the courier Velomar %s. "
                "Velomar delivers within two days to every city on the coast.\n\n"
                "The Oslo office closes in December for the winter holidays." % (tag, tag))
        doc = self.stored(text, "text/plain", chunk_tokens="16", chunk_overlap="0")
        question = "Which courier does the Lisbon office use for parcels? %s" % tag

        def check(citations, where):
            mine = [c for c in citations if c["document_id"] == doc]
            self.assertTrue(mine, "%s: not cited: %r" % (where, citations))
            for c in mine:
                for f in ("snippet_start", "snippet_end", "document_start", "document_end",
                          "chunk_start", "chunk_end"):
                    self.assertIsInstance(c.get(f), int, "%s: %s in %r" % (where, f, c))
                self.assertEqual(text[c["document_start"]:c["document_end"]], c["snippet"],
                                 "%s: %r" % (where, c))
                self.assertTrue(c["chunk_start"] <= c["document_start"] <=
                                c["document_end"] <= c["chunk_end"], c)
            return mine

        r = call("POST", "/v1/query", body={"query": question}, key=key(TENANT))
        self.assertStatus(r, 200)
        mine = check(r.json["citations"], "json")
        self.assertTrue(any("Velomar" in c["snippet"] for c in mine), repr(mine))
        self.assertTrue(any(c["document_start"] > 0 for c in mine), repr(mine))

        r = call("POST", "/v1/query", body={"query": question, "stream": True},
                 key=key(TENANT))
        self.assertStatus(r, 200)
        events = sse_events(r.body.decode("utf-8"))
        check([e for k, e in events if k == "citation"], "sse citation events")
        check(events[-1][1]["citations"], "sse done")

        r = call("POST", "/v1/chat/completions",
                 body={"model": "quarry", "messages": [{"role": "user", "content": question}]},
                 key=key(TENANT))
        self.assertStatus(r, 200)
        check(r.json["citations"], "openai")
