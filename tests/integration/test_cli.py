"""The command-line client, build/bin/quarry, against the real stack: ingest
a folder of mixed files (some refused, one whose job fails), run it again
and see what was loaded skipped, ask with and without --json, ask with
filters, show
documents and jobs, list and delete documents, list jobs, manage keys, and
the error cases (bad key, server down, roles, Ctrl-C and resume)."""

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import uuid

import harness
from harness import Case, call

TENANT = "itest-cli"     # a tenant of its own: its documents and rate limit
BAD_KEY = "qk_0000000000000000_" + "A" * 43


class Result:
    def __init__(self, rc, out, err):
        self.rc = rc
        self.out = out
        self.err = err

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (
            self.rc, self.out[-3000:], self.err[-3000:])


class Cli(Case):
    @classmethod
    def setUpClass(cls):
        cls.bin = os.path.join(harness.BIN_DIR, "quarry")
        if not os.access(cls.bin, os.X_OK):
            raise unittest.SkipTest("%s is not built" % cls.bin)
        cls.tmp = tempfile.mkdtemp(prefix="quarry-cli-it-")
        cls.key = harness.key(TENANT)
        cls.url = harness.stack().url

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def env(self, **extra):
        """The developer's QUARRY_* and XDG_* settings never leak in; HOME
        is a scratch folder, so no config file is read."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("QUARRY_") and not k.startswith("XDG_")}
        env.update(HOME=self.tmp, XDG_STATE_HOME=os.path.join(self.tmp, "state"),
                   QUARRY_URL=self.url, QUARRY_API_KEY=self.key)
        env.update(extra)
        return env

    def quarry(self, *args, env=None, timeout=120):
        p = subprocess.run([self.bin] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env or self.env(),
                           cwd=self.tmp, timeout=timeout * harness.slow())
        return Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))

    def folder(self, files):
        """A fresh folder under the scratch dir holding files {relpath: bytes};
        returns its name (relative to the scratch dir, the client's cwd)."""
        name = "docs-" + uuid.uuid4().hex[:8]
        for rel, data in files.items():
            path = os.path.join(self.tmp, name, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        return name

    def items(self, summary):
        return {os.path.relpath(i["path"], i["path"].split("/")[0]): i
                for i in summary["items"]}

    # ---- ingest ---------------------------------------------------------

    MIXED = {
        "guide.md": b"# Kiln Operating Guide\n\nFire the kiln to 1240 C for stoneware.\n",
        "notes/boiler.txt": b"Boiler room checklist\n\nBleed the radiators every October.\n",
        "empty.txt": b"",                                  # refused: 400 empty
        "photo.bin": b"\x89PNG\r\n\x1a\n\x00\x00",         # refused: 415 type
        "latin1.txt": "Caf\u00e9 menu\n".encode("latin-1"),  # accepted (Latin-1 read)
        "broken.pdf": b"%PDF-1.4\n% cut short: no objects\n",  # accepted; job fails
        ".hidden.md": b"# Not uploaded\n",                 # hidden: skipped
    }

    def test_ingest_mixed_folder_then_rerun(self):
        """quarry ingest --json FOLDER (mixed files) → exit 1; two documents
        loaded, the empty and the .bin file refused with the server's
        reason, the Latin-1 file loaded (converted to UTF-8), the broken
        PDF's job failed with its reason, the hidden file never seen. Run
        again → the three loaded are skipped, nothing new uploaded, the
        three failures reported again (exit 1)."""
        name = self.folder(self.MIXED)
        r = self.quarry("ingest", "--json", name)
        self.assertEqual(r.rc, 1, r)
        s = r.json()
        self.assertEqual(s["files"], 6, r)
        self.assertEqual((s["uploaded"], s["skipped"], s["failed"]), (3, 0, 3), r)
        self.assertEqual(s["jobs"], {"total": 4, "done": 3, "failed": 1, "pending": 0}, r)
        self.assertFalse(s["interrupted"])
        it = self.items(s)
        self.assertEqual(set(it), {"guide.md", "notes/boiler.txt", "empty.txt",
                                   "photo.bin", "latin1.txt", "broken.pdf"})
        self.assertEqual(it["guide.md"]["result"], "uploaded")
        self.assertEqual(it["guide.md"]["job_status"], "done")
        self.assertEqual(it["guide.md"]["external_id"], name + "/guide.md")
        self.assertEqual(it["notes/boiler.txt"]["external_id"], name + "/notes/boiler.txt")
        self.assertIn("document is empty", it["empty.txt"]["error"])
        self.assertIn("HTTP 415", it["photo.bin"]["error"])
        self.assertEqual(it["latin1.txt"]["job_status"], "done")
        self.assertEqual(it["broken.pdf"]["job_status"], "failed")
        self.assertIn("PDF", it["broken.pdf"]["error"])

        # The document the client made is the one the API shows.
        doc = call("GET", "/v1/documents/" + it["guide.md"]["document_id"], key=self.key)
        self.assertStatus(doc, 200)
        self.assertEqual(doc.json["external_id"], name + "/guide.md")
        self.assertEqual(doc.json["filename"], "guide.md")
        self.assertEqual(doc.json["sha256"], it["guide.md"]["sha256"])

        again = self.quarry("ingest", name)     # not a TTY: plain lines
        self.assertEqual(again.rc, 1, again)
        self.assertIn("skipped    %s/guide.md (loaded before)" % name, again.out)
        self.assertIn("skipped    %s/notes/boiler.txt (loaded before)" % name, again.out)
        self.assertNotIn("uploaded   %s/guide.md" % name, again.out)
        self.assertIn("FAILED     %s/empty.txt" % name, again.out)
        self.assertIn("skipped    %s/latin1.txt (loaded before)" % name, again.out)
        self.assertIn("0 uploaded, 0 unchanged, 3 skipped (loaded before), 3 failed",
                      again.out)
        self.assertIn("Failed:\n", again.out)

    def test_clean_folder_rerun_and_server_dedup(self):
        """A folder of good files → exit 0; again → exit 0, every file
        skipped, nothing uploaded. With a fresh state file the server
        itself recognises the content: every file "unchanged"."""
        name = self.folder({"a.md": b"# Alpha\n\nThe alpha valve opens at 3 bar.\n",
                            "b.txt": b"Beta pumps are serviced every 400 hours.\n"})
        r = self.quarry("ingest", "--json", name)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual((r.json()["uploaded"], r.json()["jobs"]["done"]), (2, 2), r)
        r = self.quarry("ingest", "--json", name)
        self.assertEqual(r.rc, 0, r)
        s = r.json()
        self.assertEqual((s["uploaded"], s["unchanged"], s["skipped"], s["failed"]),
                         (0, 0, 2, 0), r)
        fresh = os.path.join(self.tmp, "fresh-state.json")
        r = self.quarry("ingest", "--json", "--state", fresh, name)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual((r.json()["uploaded"], r.json()["unchanged"]), (0, 2), r)

    def test_include_and_exclude(self):
        """--include '*.md' takes only Markdown; --exclude notes skips a
        folder."""
        name = self.folder(self.MIXED)
        r = self.quarry("ingest", "--json", "--include", "*.md", name)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(set(self.items(r.json())), {"guide.md"})
        r = self.quarry("ingest", "--json", "--exclude", "notes", "--exclude", "*.txt",
                        "--exclude", "*.bin", "--exclude", "*.pdf", name)
        self.assertEqual(set(self.items(r.json())), {"guide.md"})

    def test_progress_bar_on_a_terminal(self):
        """stderr a terminal → a progress line redrawn with \\r (files and
        MB/s), then the summary on stdout."""
        name = self.folder({"f%02d.txt" % i: (b"line %d of a progress test\n" % i) * 50
                            for i in range(12)})
        master, slave = pty.openpty()
        p = subprocess.Popen([self.bin, "ingest", name], stdout=subprocess.PIPE,
                             stderr=slave, stdin=subprocess.DEVNULL, env=self.env(),
                             cwd=self.tmp)
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + 60 * harness.slow()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                seen += data
            elif p.poll() is not None:
                break
        out = p.stdout.read().decode()
        rc = p.wait()
        os.close(master)
        self.assertEqual(rc, 0, out + seen.decode("utf-8", "replace"))
        self.assertIn(b"\r", seen)
        self.assertIn(b"uploading ", seen)
        self.assertIn(b"/12 files", seen)
        self.assertIn(b"/s", seen)
        self.assertNotIn("uploaded   ", out, "no per-file lines on a terminal")
        self.assertIn("12 files: 12 uploaded", out)

    def test_interrupt_and_resume(self):
        """Ctrl-C during an ingest → exit 130 with the state saved; the same
        command again → exit 0: what was uploaded is skipped (its job waited
        for), the rest uploaded, every job done."""
        n = 60
        name = self.folder({"n%03d.txt" % i: b"Note %d: shelf %d holds spare fuses.\n" % (i, i)
                            for i in range(n)})
        # One file per request, so the Ctrl-C lands between uploads (the
        # batch path's resume is test_killed_batch_run_resumed_...).
        p = subprocess.Popen([self.bin, "ingest", "-j", "1", "--no-batch", name],
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.env(), cwd=self.tmp)
        first = p.stdout.readline()
        self.assertTrue(first.startswith(b"uploaded   "), first)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60 * harness.slow())
        self.assertEqual(p.returncode, 130, out.decode() + err.decode())
        self.assertIn(b"run the same command again", out)

        r = self.quarry("ingest", "--json", "--no-batch", name)
        self.assertEqual(r.rc, 0, r)
        s = r.json()
        self.assertGreaterEqual(s["skipped"], 1, r)
        self.assertEqual(s["skipped"] + s["uploaded"] + s["unchanged"], n, r)
        self.assertEqual(s["jobs"]["done"], n, r)
        self.assertEqual(s["failed"], 0, r)

    # ---- batches ------------------------------------------------------------

    def batch_requests(self):
        """POST /v1/documents/batch requests the gateway has answered, by
        status code (its http_requests_total counter)."""
        r = call("GET", "/metrics", base=harness.stack().metrics_url("gateway"))
        counts = {}
        for line in r.body.decode("utf-8").splitlines():
            if line.startswith("http_requests_total{") and \
                    'route="/v1/documents/batch"' in line:
                code = line.split('code="', 1)[1].split('"', 1)[0]
                counts[code] = counts.get(code, 0) + int(float(line.rsplit(" ", 1)[1]))
        return counts

    def docs_tagged(self, tag):
        """Every document of the tenant whose title holds tag."""
        r = self.quarry("docs", "list", "--all", "--json", "--query", tag)
        self.assertEqual(r.rc, 0, r)
        return r.json()["documents"]

    def test_ingest_batches_small_text_files(self):
        """A folder of 30 small .txt files, a Markdown file, an empty .txt
        (refused) and a .bin (refused) → the .txt files go in one batch (the
        gateway counts one more 202 on /v1/documents/batch), each reported
        per file with "batch": true and its job done; the refused files
        fail alone with the server's reason. Again → every loaded file
        skipped, no batch sent."""
        tag = uuid.uuid4().hex[:8]
        files = {"t-%s-%02d.txt" % (tag, i):
                 ("Valve %d of %s opens at %d bar.\n" % (i, tag, i + 2)).encode()
                 for i in range(30)}
        files.update({"guide.md": self.MIXED["guide.md"], "empty.txt": b"",
                      "photo.bin": self.MIXED["photo.bin"]})
        name = self.folder(files)
        before = self.batch_requests()
        r = self.quarry("ingest", "--json", name)
        self.assertEqual(r.rc, 1, r)
        s = r.json()
        after = self.batch_requests()
        self.assertEqual(after.get("202", 0) - before.get("202", 0), 1, (before, after))
        self.assertEqual(s["batches"], 1, r)
        self.assertEqual((s["uploaded"], s["failed"]), (31, 2), r)
        self.assertEqual(s["jobs"], {"total": 31, "done": 31, "failed": 0, "pending": 0}, r)
        it = self.items(s)
        for rel, item in it.items():
            if rel.startswith("t-"):
                self.assertTrue(item.get("batch"), item)
                self.assertEqual(item["job_status"], "done", item)
        self.assertNotIn("batch", it["guide.md"])
        self.assertIn("document is empty", it["empty.txt"]["error"])
        self.assertIn("HTTP 415", it["photo.bin"]["error"])
        # The batched document is the file: external id, text, title.
        one = it["t-%s-07.txt" % tag]
        doc = call("GET", "/v1/documents/" + one["document_id"], key=self.key)
        self.assertStatus(doc, 200)
        self.assertEqual(doc.json["external_id"], name + "/t-%s-07.txt" % tag)
        self.assertEqual(doc.json["sha256"], one["sha256"])
        self.assertEqual(doc.json["title"], "t-%s-07.txt" % tag)

        again = self.quarry("ingest", name)
        self.assertEqual(again.rc, 1, again)
        self.assertIn("skipped    %s/t-%s-00.txt (loaded before)" % (name, tag), again.out)
        self.assertIn("0 uploaded, 0 unchanged, 31 skipped (loaded before), 2 failed",
                      again.out)
        self.assertEqual(self.batch_requests(), after, "nothing batched again")

        # --no-batch with a fresh state: one request per file, the server
        # answers every file "unchanged".
        fresh = os.path.join(self.tmp, "fresh-%s.json" % tag)
        r = self.quarry("ingest", "--json", "--no-batch", "--state", fresh, name)
        self.assertEqual(r.json()["unchanged"], 31, r)
        self.assertEqual(r.json()["batches"], 0, r)
        self.assertEqual(self.batch_requests(), after)

    def test_killed_batch_run_resumed_without_duplicates(self):
        """400 small .txt files, -j 1 (batches of 100). The client is killed
        (SIGKILL: nothing saved for the batch in flight) once the first
        batch is answered; the same command again → exit 0, every file
        loaded, exactly one document per file and each at version 1: a
        batch the server stored before the kill is replayed (same key), not
        stored again."""
        tag = uuid.uuid4().hex[:8]
        n = 400
        name = self.folder({"k-%s-%03d.txt" % (tag, i):
                            ("Crate %d of %s holds %d fuses.\n" % (i, tag, i)).encode()
                            for i in range(n)})
        p = subprocess.Popen([self.bin, "ingest", "-j", "1", "--no-wait", name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=self.env(), cwd=self.tmp)
        first = p.stdout.readline()
        self.assertTrue(first.startswith(b"uploaded   "), first)
        p.kill()
        p.communicate(timeout=60 * harness.slow())

        r = self.quarry("ingest", "--json", name, timeout=300)
        self.assertEqual(r.rc, 0, r)
        s = r.json()
        self.assertEqual(s["skipped"] + s["uploaded"] + s["unchanged"], n, r)
        self.assertEqual(s["failed"], 0, r)
        self.assertEqual(s["jobs"]["done"], n, r)
        docs = self.docs_tagged(tag)
        self.assertEqual(len(docs), n, [d["title"] for d in docs][:20])
        self.assertEqual(len({d["title"] for d in docs}), n)
        self.assertEqual({d["version"] for d in docs}, {1})

    # ---- ask, show --------------------------------------------------------

    def lighthouse(self):
        """The fact document, ingested into this tenant with the client."""
        name = self.folder({"lighthouse.md": harness.FACT_DOC.encode()})
        r = self.quarry("ingest", "--json", name)
        self.assertEqual(r.rc, 0, r)
        return r.json()["items"][0]

    def test_ask_plain_and_json(self):
        """quarry ask QUESTION → the answer, then numbered sources with the
        title; --json → one QueryResponse document."""
        self.lighthouse()
        r = self.quarry("ask", harness.FACT_QUESTION)
        self.assertEqual(r.rc, 0, r)
        self.assertIn(harness.FACT_ANSWER, r.out)
        self.assertIn("\nSources:\n[1] Lighthouse Keeping Handbook", r.out)
        answer = r.out.split("\nSources:\n")[0]
        self.assertRegex(answer, r"\[1\]")

        r = self.quarry("ask", "--json", "--top-k", "3", harness.FACT_QUESTION)
        self.assertEqual(r.rc, 0, r)
        d = r.json()
        self.assertIn(harness.FACT_ANSWER, d["answer"])
        self.assertTrue(d["query_id"])
        self.assertIn("Lighthouse Keeping Handbook", [c["title"] for c in d["citations"]])
        self.assertLessEqual(len(d["citations"]), 3)

        r = self.quarry("ask", "   ")
        self.assertEqual(r.rc, 2, r)

    def test_ask_with_filters(self):
        """quarry ask with --where / --type / --after / --filter against two
        documents that answer the same question differently, told apart by
        metadata and type: each filter gives the allowed document's answer
        and cites only it; a filter the gateway refuses → its 400 message,
        exit 1; a --filter that is not JSON → exit 2."""
        # A tenant of its own, so no other test's documents answer.
        tenant = "itest-cli-filter-" + uuid.uuid4().hex[:6]
        env = self.env(QUARRY_API_KEY=harness.stack().create_key(tenant, "cli", ["admin"]))
        question = "What is the hotel limit per night in Quillport?"
        for title, ctype, text, meta in [
                ("Legal travel rules", "text/markdown",
                 "# Legal travel rules\n\nThe hotel limit per night in Quillport is 310 "
                 "crowns for the legal team.\n", {"team": "legal"}),
                ("Finance travel rules", "text/plain",
                 "Finance travel rules\n\nThe hotel limit per night in Quillport is 240 "
                 "crowns for the finance team.\n", {"team": "finance"})]:
            qs = urllib.parse.urlencode({"metadata": json.dumps(meta), "title": title})
            r = call("POST", "/v1/documents?" + qs, body=text, key=env["QUARRY_API_KEY"],
                     ctype=ctype)
            self.assertStatus(r, 202)
            job = harness.wait_job(r.json["job_id"], api_key=env["QUARRY_API_KEY"])
            self.assertEqual((job.json or {}).get("status"), "done", job)

        r = self.quarry("ask", "--json", "--where", "meta.team=legal", question, env=env)
        self.assertEqual(r.rc, 0, r)
        d = r.json()
        self.assertIn("310", d["answer"])
        self.assertNotIn("240", d["answer"])
        self.assertTrue(d["citations"], r)
        self.assertEqual({c["title"] for c in d["citations"]}, {"Legal travel rules"}, r)

        r = self.quarry("ask", "--type", "text/plain", "--after", "2020-01-01", question,
                        env=env)
        self.assertEqual(r.rc, 0, r)
        answer, sources = r.out.split("\nSources:\n")
        self.assertIn("240", answer)
        self.assertNotIn("310", answer)
        self.assertIn("Finance travel rules", sources)
        self.assertNotIn("Legal travel rules", sources)

        r = self.quarry("ask", "--json", "--filter",
                        '{"or": [{"field": "meta.team", "eq": "finance"},'
                        ' {"field": "title", "eq": "nothing"}]}',
                        "--where", "title=Finance travel rules", "--no-stream", question,
                        env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual({c["title"] for c in r.json()["citations"]},
                         {"Finance travel rules"}, r)

        # No document was created in 2099: nothing to answer from.
        r = self.quarry("ask", "--json", "--after", "2099-01-01", question, env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json()["citations"], [], r)

        r = self.quarry("ask", "--filter", '{"field": "meta.team", "like": "leg"}',
                        question, env=env)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("HTTP 400 invalid_argument: filter", r.err)
        self.assertIn("unknown operator", r.err)
        self.assertEqual(r.out, "")
        r = self.quarry("ask", "--where", "meta.te am=legal", question, env=env)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("meta.te am", r.err)
        r = self.quarry("ask", "--filter", '{"field": ', question, env=env)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--filter is not JSON", r.err)

    def test_docs_and_jobs_show(self):
        """quarry docs show / jobs show with ids from an ingest; an unknown
        id → exit 1 naming it."""
        item = self.lighthouse()
        r = self.quarry("docs", "show", item["document_id"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("title        Lighthouse Keeping Handbook", r.out)
        self.assertIn("external id  " + item["external_id"], r.out)
        r = self.quarry("--json", "jobs", "show", item["job_id"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json()["status"], "done")
        self.assertEqual(r.json()["document_id"], item["document_id"])
        r = self.quarry("jobs", "show", "00000000-0000-0000-0000-000000000000")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no job 00000000-0000-0000-0000-000000000000", r.err)

    # ---- errors -------------------------------------------------------------

    def test_bad_key_is_exit_3(self):
        """A key the server refuses → exit 3 with a sentence naming where the
        key came from, never the key."""
        env = self.env(QUARRY_API_KEY=BAD_KEY)
        r = self.quarry("ask", "anything", env=env)
        self.assertEqual(r.rc, 3, r)
        self.assertIn("refused the API key from QUARRY_API_KEY", r.err)
        self.assertNotIn(BAD_KEY, r.out + r.err)
        name = self.folder({"x.md": b"# x\n"})
        r = self.quarry("ingest", name, env=env)
        self.assertEqual(r.rc, 3, r)
        self.assertNotIn(BAD_KEY, r.out + r.err)
        r = self.quarry("--json", "ask", "anything", env=env)
        self.assertEqual(r.rc, 3, r)
        self.assertEqual(r.json()["error"]["code"], "unauthenticated")

    def test_server_down_is_exit_4(self):
        """Nothing listening at the URL → exit 4 saying so."""
        port = harness.stackmod.free_port(set(harness.stack().ports.values()))
        env = self.env(QUARRY_URL="http://127.0.0.1:%d" % port)
        r = self.quarry("ask", "anything", env=env)
        self.assertEqual(r.rc, 4, r)
        self.assertIn("cannot reach the Quarry server at http://127.0.0.1:%d" % port, r.err)
        name = self.folder({"x.md": b"# x\n"})
        r = self.quarry("--json", "ingest", name, env=env)
        self.assertEqual(r.rc, 4, r)
        self.assertIn("cannot reach", r.json()["items"][0]["error"])

    def test_docs_list_and_rm(self):
        """quarry docs list (one page, --all, -q, --json) and docs rm against a
        tenant of its own: rm → exit 0, the document gone from the list and
        `docs show` (exit 1); rm again → exit 1; a reader key → exit 3."""
        tenant = "itest-cli-docs-" + uuid.uuid4().hex[:6]
        st = harness.stack()
        admin = st.create_key(tenant, "cli-admin", ["admin"])
        reader = st.create_key(tenant, "cli-reader", ["reader"])
        env = self.env(QUARRY_API_KEY=admin)
        name = self.folder({"a.md": b"# Anvil care\n\nOil the anvil face.\n",
                            "b.md": b"# Bellows repair\n\nPatch the leather.\n",
                            "c.md": b"# Coal storage\n\nKeep coal dry.\n"})
        r = self.quarry("--json", "ingest", name, env=env)
        self.assertEqual(r.rc, 0, r)
        ids = {os.path.basename(i["path"]): i["document_id"] for i in r.json()["items"]}

        r = self.quarry("docs", "list", "--limit", "2", env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(r.out.strip().splitlines()), 3, r)   # heading + 2 rows
        self.assertIn("more: --cursor ", r.err)
        r = self.quarry("--json", "docs", "list", "--all", "--limit", "1", env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(sorted(d["id"] for d in r.json()["documents"]), sorted(ids.values()))
        r = self.quarry("--json", "docs", "list", "-q", "BELLOWS", env=env)
        self.assertEqual([d["id"] for d in r.json()["documents"]], [ids["b.md"]], r)

        r = self.quarry("docs", "show", ids["b.md"], env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"versions\s*\n  v1 +done ", r)
        r = self.quarry("docs", "rm", ids["a.md"], env=self.env(QUARRY_API_KEY=reader))
        self.assertEqual(r.rc, 3, r)
        r = self.quarry("docs", "rm", ids["a.md"], env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("deleted document " + ids["a.md"], r.out)
        r = self.quarry("docs", "rm", ids["a.md"], env=env)
        self.assertEqual(r.rc, 1, r)
        r = self.quarry("docs", "show", ids["a.md"], env=env)
        self.assertEqual(r.rc, 1, r)
        r = self.quarry("--json", "docs", "list", env=env)
        self.assertNotIn(ids["a.md"], [d["id"] for d in r.json()["documents"]])
        r = self.quarry("docs", "list", "--state", "bogus", env=env)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("state", r.err)

    def test_jobs_list(self):
        """quarry jobs --json → the tenant's jobs; --state failed filters."""
        # A job of this tenant whatever ran before (the test runs alone too).
        self.assertStatus(harness.upload("A job for the jobs list.\n", api_key=self.key), 202)
        r = self.quarry("--json", "jobs", "--limit", "500")
        self.assertEqual(r.rc, 0, r)
        jobs = r.json()["jobs"]
        self.assertTrue(jobs, r)
        r = self.quarry("--json", "jobs", "list", "--state", "done")
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(all(j["status"] == "done" for j in r.json()["jobs"]), r)

    def test_keys_create_list_revoke(self):
        """keys create → the secret once, and it works; keys list shows it;
        keys revoke → the key is refused at once (exit 3); a writer key
        cannot manage keys (exit 3)."""
        r = self.quarry("--json", "keys", "create", "cli-made", "--role", "reader")
        self.assertEqual(r.rc, 0, r)
        made = r.json()
        self.assertEqual(made["roles"], ["reader"])
        new_env = self.env(QUARRY_API_KEY=made["api_key"])
        self.assertEqual(self.quarry("--json", "docs", "list", env=new_env).rc, 0)
        r = self.quarry("keys", "list", "--all")
        self.assertEqual(r.rc, 0, r)
        self.assertIn(made["id"], r.out)
        self.assertNotIn(made["api_key"], r.out)
        r = self.quarry("keys", "revoke", made["id"])
        self.assertEqual(r.rc, 0, r)
        r = self.quarry("docs", "list", env=new_env)
        self.assertEqual(r.rc, 3, r)
        writer = harness.stack().create_key(TENANT, "cli-writer", ["writer"])
        r = self.quarry("keys", "list", env=self.env(QUARRY_API_KEY=writer))
        self.assertEqual(r.rc, 3, r)

if __name__ == "__main__":
    unittest.main()
