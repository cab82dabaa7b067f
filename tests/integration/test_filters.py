"""Metadata stored with documents and used as retrieval filters: uploads
with user metadata (query string and multipart), GET /v1/documents/{id}
showing it, POST /v1/query with filters (eq, in, range on numbers and
dates, not), the retriever's Search with the same filters, malformed
filters and metadata → 400 naming the problem, and no reach into another
tenant."""

import json
import urllib.parse

import fixtures
import harness
from harness import Case, call, key, multipart

TERM = "Brindlewick procurement"

DOCS = {
    # name: (content type, body, metadata, via multipart)
    "legal": ("text/markdown", "# Legal memo\n\n%s rules for contracts, by the legal team.\n",
              {"team": "legal", "year": 2019}, False),
    "eng": ("text/markdown", "# Engineering note\n\n%s of build servers by engineering.\n",
            {"team": "eng", "year": 2022, "tags": ["alpha", "beta"]}, False),
    "hr": ("text/html", "<html><head><title>HR page</title></head><body><p>%s of "
           "office chairs, for people operations.</p></body></html>",
           {"team": "hr", "year": 2023, "due": "2024-05-01T00:00:00Z"}, False),
    "ops": ("text/plain", "%s of spare parts, by operations engineering.\n",
            {"team": "eng", "year": 2024, "urgent": True}, True),
}


def sse_events(text):
    out = []
    for block in text.split("\n\n"):
        lines = block.split("\n")
        if len(lines) >= 2 and lines[0].startswith("event: "):
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


class Filters(Case):
    @classmethod
    def setUpClass(cls):
        cls.ids = {}
        cls.names = {}
        for name, (ctype, body, meta, via_multipart) in DOCS.items():
            text = body % TERM
            if via_multipart:
                data, mct = multipart({"metadata": json.dumps(meta), "title": name},
                                      [("file", name + ".txt", ctype, text.encode())])
                r = call("POST", "/v1/documents", body=data, key=key(), ctype=mct)
            else:
                qs = urllib.parse.urlencode({"metadata": json.dumps(meta), "title": name,
                                             "external_id": "filters:" + name})
                r = call("POST", "/v1/documents?" + qs, body=text, key=key(), ctype=ctype)
            if r.status != 202:
                raise AssertionError("uploading %s: %r" % (name, r))
            job = harness.wait_job(r.json["job_id"])
            if (job.json or {}).get("status") != "done":
                raise AssertionError("%s not processed: %r" % (name, job))
            cls.ids[name] = r.json["document_id"]
            cls.names[r.json["document_id"]] = name

    def retrieved(self, flt, api_key=None):
        """Names of this module's documents among the passages a streamed
        /v1/query generates from (its retrieval event), with filter flt."""
        body = {"query": TERM, "top_k": 20, "stream": True, "mode": "lexical"}
        if flt is not None:
            body["filter"] = flt
        r = call("POST", "/v1/query", body=body, key=api_key or key())
        self.assertStatus(r, 200)
        events = sse_events(r.body.decode("utf-8"))
        self.assertTrue(events and events[0][0] == "retrieval", repr(r))
        docs = {p["document_id"] for p in events[0][1]["passages"]}
        return {self.names[d] for d in docs if d in self.names}, docs

    def test_document_shows_its_metadata(self):
        """GET /v1/documents/{id} → 200 with "metadata" as uploaded (query
        string and multipart field)."""
        for name in ("eng", "ops"):
            r = call("GET", "/v1/documents/" + self.ids[name], key=key())
            self.assertStatus(r, 200)
            self.assertEqual(r.json.get("metadata"), DOCS[name][2], repr(r))

    def test_without_filter_all_are_found(self):
        names, _ = self.retrieved(None)
        self.assertEqual(names, set(DOCS), names)

    def test_eq_in_range_not(self):
        """Each filter → exactly the documents that pass it."""
        ct_hr = call("GET", "/v1/documents/" + self.ids["hr"], key=key()).json["content_type"]
        cases = [
            ({"field": "content_type", "eq": ct_hr}, {"hr"}),
            ({"field": "meta.team", "in": ["eng"]}, {"eng", "ops"}),
            ({"field": "meta.tags", "eq": "beta"}, {"eng"}),
            ({"field": "meta.urgent", "eq": True}, {"ops"}),
            ({"field": "meta.year", "gte": 2022, "lt": 2024}, {"eng", "hr"}),
            ({"field": "meta.due", "gt": "2024-04-30"}, {"hr"}),
            ({"not": {"field": "meta.team", "in": ["legal", "hr"]}}, {"eng", "ops"}),
            ({"and": [{"field": "meta.team", "eq": "eng"},
                      {"not": {"field": "meta.year", "lt": 2023}}]}, {"ops"}),
            ({"or": [{"field": "meta.team", "eq": "legal"},
                     {"field": "doc_id", "eq": self.ids["hr"]}]}, {"legal", "hr"}),
            # dates: every document here was uploaded after 2020 and before 2100
            ({"field": "created_at", "gte": "2020-01-01T00:00:00Z",
              "lt": "2100-01-01"}, set(DOCS)),
            ({"field": "created_at", "lt": "2020-01-01"}, set()),
        ]
        for flt, want in cases:
            names, docs = self.retrieved(flt)
            self.assertEqual(names, want, json.dumps(flt))
            if flt.get("field") == "created_at" and not want:
                self.assertEqual(docs, set(), "a date before any upload matched: %s" % docs)

    def test_malformed_filter_is_400_naming_the_problem(self):
        bad = [
            ({"field": "meta.team", "like": "eng"}, 'unknown operator "like"'),
            ({"field": "owner", "eq": "x"}, 'unknown field "owner"'),
            ({"and": [{"field": "title", "gt": "a"}]}, 'filter.and[0]: field "title" takes eq and in'),
            ({"field": "created_at", "gte": "last week"}, "RFC 3339"),
            ({"field": "meta.year", "in": list(range(300))}, '"in" has 300 values'),
            ("content_type = pdf", "must be an object"),
        ]
        nested = {"field": "doc_id", "eq": "x"}
        for _ in range(20):
            nested = {"not": nested}
        bad.append((nested, "nested deeper than 8"))
        for flt, want in bad:
            r = call("POST", "/v1/query", body={"query": TERM, "filter": flt}, key=key())
            err = self.assertError(r, 400)
            self.assertIn(want, err["message"], json.dumps(flt)[:200])

    def test_malformed_metadata_is_400(self):
        bad = [
            ({"a": {"b": 1}}, 'metadata "a": values are strings'),
            ({"a": [1, 2]}, 'metadata "a": item 0 of the list is not a string'),
            (["x"], "metadata must be a JSON object"),
            ({"bad key": 1}, 'metadata key "bad key"'),
        ]
        for meta, want in bad:
            qs = urllib.parse.urlencode({"metadata": json.dumps(meta)})
            r = call("POST", "/v1/documents?" + qs, body="text", key=key(), ctype="text/plain")
            err = self.assertError(r, 400)
            self.assertIn(want, err["message"])
        r = call("POST", "/v1/documents?metadata=%7Bnot%20json", body="text", key=key(),
                 ctype="text/plain")
        self.assertIn("not JSON", self.assertError(r, 400)["message"])
        data, mct = multipart({"metadata": '{"x": null}'},
                              [("file", "a.txt", "text/plain", b"text")])
        r = call("POST", "/v1/documents", body=data, key=key(), ctype=mct)
        self.assertIn('metadata "x"', self.assertError(r, 400)["message"])

    def test_filter_never_reaches_another_tenant(self):
        """Another tenant's query with filters every one of these documents
        passes → none of them."""
        other = key(harness.OTHER_TENANT)
        for flt in ({"field": "doc_id", "in": list(self.ids.values())},
                    {"not": {"field": "meta.team", "eq": "nobody"}},
                    {"or": [{"field": "meta.team", "eq": "eng"},
                            {"not": {"field": "meta.team", "eq": "eng"}}]}):
            _, docs = self.retrieved(flt, api_key=other)
            self.assertFalse(docs & set(self.ids.values()), json.dumps(flt))


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


class ExtractedMetadata(Case):
    def stored(self, body, ctype, name):
        qs = urllib.parse.urlencode({"filename": name})
        r = call("POST", "/v1/documents?" + qs, body=body, key=key(), ctype=ctype)
        self.assertStatus(r, 202)
        job = harness.wait_job(r.json["job_id"])
        self.assertEqual((job.json or {}).get("status"), "done", repr(job))
        d = call("GET", "/v1/documents/" + r.json["document_id"], key=key())
        self.assertStatus(d, 200)
        return d.json

    def test_pdf_author_dates_pages(self):
        """A PDF with /Author and /CreationDate and three pages → GET shows
        author, doc_created_at and page_count 3."""
        body = fixtures.pdf([["Quillmoor page one"], ["page two"], ["page three"]],
                            title="Quillmoor", author="Ada Byron",
                            created="D:20210304050607Z")
        d = self.stored(body, "application/pdf", "quillmoor.pdf")
        self.assertEqual(d.get("author"), "Ada Byron", d)
        self.assertEqual(d.get("page_count"), 3, d)
        self.assertEqual(d.get("doc_created_at"), "2021-03-04T05:06:07.000Z", d)
        self.assertNotIn("language", d)
        # the file's creation date is what created_at filters see
        for flt, found in (({"field": "created_at", "eq": "2021-03-04T05:06:07Z"}, True),
                           ({"field": "created_at", "gte": "2021-03-05"}, False)):
            r = call("POST", "/v1/query", key=key(),
                     body={"query": "Quillmoor", "mode": "lexical", "stream": True,
                           "filter": {"and": [flt, {"field": "doc_id", "eq": d["id"]}]}})
            self.assertStatus(r, 200)
            events = sse_events(r.body.decode("utf-8"))
            got = {p["document_id"] for p in events[0][1]["passages"]}
            self.assertEqual(d["id"] in got, found, json.dumps(flt))

    def test_docx_core_properties(self):
        """A DOCX whose core properties give creator, created, modified and
        language → GET shows them."""
        body = fixtures.docx(fixtures.docx_para("Zentrale Hinweise zur Wartung."),
                             author="Grete Weiss",
                             core_extra='<dcterms:created>2022-01-02T03:04:05Z</dcterms:created>'
                                        '<dcterms:modified>2023-06-07T08:09:10+02:00'
                                        '</dcterms:modified><dc:language>de-DE</dc:language>')
        d = self.stored(body, DOCX, "hinweise.docx")
        self.assertEqual(d.get("author"), "Grete Weiss", d)
        self.assertEqual(d.get("language"), "de-DE", d)
        self.assertEqual(d.get("doc_created_at"), "2022-01-02T03:04:05.000Z", d)
        self.assertEqual(d.get("doc_modified_at"), "2023-06-07T06:09:10.000Z", d)

    def test_html_lang(self):
        """<html lang="fr"> → GET shows language fr."""
        d = self.stored("<html lang=\"fr\"><head><title>Guide</title></head>"
                        "<body><p>Bonjour et bienvenue.</p></body></html>",
                        "text/html", "guide.html")
        self.assertEqual(d.get("language"), "fr", d)

    def test_language_guessed_from_the_text(self):
        """A Markdown document (no declared language) of English prose →
        GET shows language en (libexttextcat's guess)."""
        doc_id = harness.fact_document()
        d = call("GET", "/v1/documents/" + doc_id, key=key())
        self.assertStatus(d, 200)
        self.assertEqual(d.json.get("language"), "en", d)


def filtered(term, flt):
    """Document ids among the passages a streamed lexical /v1/query for
    term retrieves with filter flt."""
    r = call("POST", "/v1/query", key=key(),
             body={"query": term, "mode": "lexical", "stream": True, "top_k": 20,
                   "filter": flt})
    if r.status != 200:
        raise AssertionError("query with %s: %r" % (json.dumps(flt), r))
    events = sse_events(r.body.decode("utf-8"))
    return {p["document_id"] for p in events[0][1]["passages"]}


class AuthorLanguage(Case):
    """author and language, found by extraction, as filter fields."""

    TERM = "Vellichor tidewater"

    @classmethod
    def setUpClass(cls):
        cls.ids = {}
        docs = {
            "pdf": ("application/pdf", "v.pdf",
                    fixtures.pdf([["%s in the English PDF" % cls.TERM]],
                                 title="Vellichor", author="Ada Byron")),
            "docx": (DOCX, "v.docx",
                     fixtures.docx(fixtures.docx_para("%s im deutschen Dokument." % cls.TERM),
                                   author="Grete Weiss",
                                   core_extra="<dc:language>de-DE</dc:language>")),
            "html": ("text/html", "v.html",
                     "<html lang=\"fr\"><head><title>V</title></head><body><p>%s en "
                     "français.</p></body></html>" % cls.TERM),
        }
        for name, (ctype, fname, body) in docs.items():
            r = call("POST", "/v1/documents?" + urllib.parse.urlencode({"filename": fname}),
                     body=body, key=key(), ctype=ctype)
            if r.status != 202:
                raise AssertionError("uploading %s: %r" % (name, r))
            job = harness.wait_job(r.json["job_id"])
            if (job.json or {}).get("status") != "done":
                raise AssertionError("%s not processed: %r" % (name, job))
            cls.ids[name] = r.json["document_id"]

    def found(self, flt):
        got = filtered(self.TERM, flt)
        return {n for n, i in self.ids.items() if i in got}

    def test_author_eq_and_in(self):
        self.assertEqual(self.found({"field": "author", "eq": "Ada Byron"}), {"pdf"})
        self.assertEqual(self.found({"field": "author", "in": ["Grete Weiss", "Nobody"]}),
                         {"docx"})
        # the HTML file names no author: no condition on it holds, its negation does
        self.assertEqual(self.found({"not": {"field": "author", "in": ["Ada Byron",
                                                                      "Grete Weiss"]}}),
                         {"html"})

    def test_language_ignores_case_and_matches_whole_tags(self):
        self.assertEqual(self.found({"field": "language", "eq": "de-de"}), {"docx"})
        self.assertEqual(self.found({"field": "language", "in": ["FR", "de-DE"]}),
                         {"html", "docx"})
        self.assertEqual(self.found({"field": "language", "eq": "de"}), set())

    def test_author_and_language_are_strings_without_ranges(self):
        for flt, want in (({"field": "author", "gt": "A"}, 'field "author" takes eq and in'),
                          ({"field": "language", "eq": 7}, "takes strings")):
            r = call("POST", "/v1/query", body={"query": self.TERM, "filter": flt}, key=key())
            self.assertIn(want, self.assertError(r, 400)["message"])


class MetadataPerVersion(Case):
    """Each version keeps the metadata it was uploaded with; the current
    version's is what its chunks carry."""

    TERM = "Quorvath ledger"

    def upload(self, text, meta):
        qs = urllib.parse.urlencode({"external_id": "filters:versions", "title": "ledger",
                                     "metadata": json.dumps(meta)})
        r = call("POST", "/v1/documents?" + qs, body=text, key=key(), ctype="text/plain")
        self.assertStatus(r, 202)
        if not r.json.get("unchanged"):
            job = harness.wait_job(r.json["job_id"])
            self.assertEqual((job.json or {}).get("status"), "done", repr(job))
        return r.json

    def test_versions_keep_their_metadata_and_chunks_carry_the_current(self):
        v1 = self.upload("%s, first edition." % self.TERM, {"edition": 1, "team": "a"})
        v2 = self.upload("%s, second edition." % self.TERM, {"edition": 2})
        self.assertEqual(v2["document_id"], v1["document_id"])
        doc = v1["document_id"]
        d = call("GET", "/v1/documents/" + doc, key=key())
        self.assertStatus(d, 200)
        self.assertEqual(d.json["metadata"], {"edition": 2})
        by_version = {v["version"]: v["metadata"] for v in d.json["versions"]}
        self.assertEqual(by_version[v2["version"]], {"edition": 2})
        self.assertEqual(by_version[v1["version"]], {"edition": 1, "team": "a"},
                         "a new version must not overwrite its predecessor's metadata")
        ed = lambda n: {"and": [{"field": "doc_id", "eq": doc},
                                {"field": "meta.edition", "eq": n}]}
        self.assertEqual(filtered(self.TERM, ed(2)), {doc})
        self.assertEqual(filtered(self.TERM, ed(1)), set())
        # the same content with other metadata: indexed again, same version
        v3 = self.upload("%s, second edition." % self.TERM, {"edition": 3})
        self.assertFalse(v3.get("unchanged"), v3)
        self.assertEqual(v3["version"], v2["version"])
        self.assertEqual(filtered(self.TERM, ed(3)), {doc})
        self.assertEqual(filtered(self.TERM, ed(2)), set())
        d = call("GET", "/v1/documents/" + doc, key=key())
        by_version = {v["version"]: v["metadata"] for v in d.json["versions"]}
        self.assertEqual(by_version, {v1["version"]: {"edition": 1, "team": "a"},
                                      v2["version"]: {"edition": 3}})
        # the same content and metadata again: nothing to do
        v4 = self.upload("%s, second edition." % self.TERM, {"edition": 3})
        self.assertTrue(v4.get("unchanged"), v4)
