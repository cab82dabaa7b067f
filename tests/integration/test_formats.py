"""Document formats end to end: each fixture (fixtures.py) is uploaded
through the REST API; its job ends done with the expected chunk text,
page and heading (read back from the retriever's table), or failed with a
reason a person can read, and the service stays healthy throughout.

OCR (FormatsOCR): scanned pages drawn here with python3-cairo (a PNG, and
a PDF with a text page beside an image-only page) are read by Tesseract
with QUARRY_OCR=true on ingestion (restarted for those cases), and a query
cites the OCR'd text with its page; with OCR off (the default) an image
upload is refused with 415 saying how to enable it."""

import io
import os
import struct
import subprocess
import unittest
import urllib.request
import zlib

import fixtures
import harness
from harness import Case, call, key, query, wait_job

TENANT = "itest-formats"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def chunks(document_id):
    """[(ordinal, page, text)] of the document's active chunks, read from
    retriever_chunks with psql (the retriever owns chunk text)."""
    st = harness.stack()
    psql = os.path.join(harness.stackmod.PG_BIN, "psql")
    r = subprocess.run(
        [psql, st.pg_dsn, "-At", "-F", "\x1f", "-R", "\x1e", "-c",
         "SELECT ordinal, page, text FROM retriever_chunks WHERE doc_id = '%s' "
         "AND active ORDER BY ordinal" % document_id],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        raise AssertionError("psql: " + r.stderr.decode(errors="replace"))
    out = []
    for row in r.stdout.decode().split("\x1e"):
        row = row.strip("\n")
        if row:
            o, p, t = row.split("\x1f", 2)
            out.append((int(o), int(p), t))
    return out


class Formats(Case):
    def upload(self, data, ctype, filename=None, status=202):
        path = "/v1/documents"
        if filename:
            path += "?filename=" + filename
        r = call("POST", path, body=data, key=key(TENANT), ctype=ctype)
        self.assertStatus(r, status)
        return r

    def ingest(self, data, ctype, filename=None):
        """Uploads and waits: (document id, job reply)."""
        r = self.upload(data, ctype, filename)
        job = wait_job(r.json["job_id"], api_key=key(TENANT))
        return r.json["document_id"], job

    def done(self, data, ctype, filename=None):
        doc_id, job = self.ingest(data, ctype, filename)
        self.assertEqual((job.json or {}).get("status"), "done", repr(job))
        got = chunks(doc_id)
        self.assertEqual(len(got), job.json["chunk_count"])
        return doc_id, got

    def failed(self, data, ctype, reason, filename=None):
        _, job = self.ingest(data, ctype, filename)
        self.assertEqual((job.json or {}).get("status"), "failed", repr(job))
        self.assertIn(reason, job.json["error"])
        self.assertHealthy()
        return job.json["error"]

    def assertHealthy(self):
        """ingestion's /healthz answers 200 and its process is still the one
        that started."""
        st = harness.stack()
        self.assertTrue(st.alive("ingestion"), "quarry-ingestion died")
        self.assertStatus(_get(st.metrics_url("ingestion") + "/healthz"), 200)

    def test_pdf_pages_and_title(self):
        """A three-page PDF (application/pdf) → done; each chunk carries the
        page its text is on; the document takes the PDF's title."""
        pdf = fixtures.pdf([["Boiler room procedures start on page one."],
                            ["The turbine QX-9 is inspected every spring."],
                            ["Emergency exits are marked in green paint."]],
                           title="Plant Handbook", author="Ada Lovelace")
        doc_id, got = self.done(pdf, "application/pdf", "plant.pdf")
        pages = {t.strip(): p for _, p, t in got}
        self.assertEqual(pages.get("Boiler room procedures start on page one."), 1, got)
        self.assertEqual(pages.get("The turbine QX-9 is inspected every spring."), 2, got)
        self.assertEqual(pages.get("Emergency exits are marked in green paint."), 3, got)
        doc = call("GET", "/v1/documents/" + doc_id, key=key(TENANT))
        self.assertEqual(doc.json["title"], "Plant Handbook")
        self.assertEqual(doc.json["content_type"], "application/pdf")

    def test_docx_headings_lists_tables(self):
        """A DOCX with headings, a list and a table (multipart, octet-stream,
        guide.docx) → done; chunks carry their heading path; rows keep cells."""
        body = (fixtures.docx_para("Installation", "Heading1")
                + fixtures.docx_para("Read the whole guide first.")
                + fixtures.docx_para("Linux", "Heading2")
                + fixtures.docx_para("Install the package with apt.")
                + fixtures.docx_para("Download the key", num_level=0)
                + fixtures.docx_para("Verify the checksum", num_level=1)
                + fixtures.docx_table([["Service", "Port"], ["gateway", "8080"]]))
        data = fixtures.docx(body, title="Install Guide", author="Grace Hopper")
        mp, ctype = harness.multipart({}, [("file", "guide.docx", "application/octet-stream",
                                            data)])
        r = call("POST", "/v1/documents", body=mp, key=key(TENANT), ctype=ctype)
        self.assertStatus(r, 202)
        job = wait_job(r.json["job_id"], api_key=key(TENANT))
        self.assertEqual((job.json or {}).get("status"), "done", repr(job))
        got = chunks(r.json["document_id"])
        text = "\n".join(t for _, _, t in got)
        self.assertIn("Installation\n\nRead the whole guide first.", text)
        self.assertIn("Installation > Linux\n\nInstall the package with apt.", text)
        self.assertIn("- Download the key\n- Verify the checksum", text)
        self.assertIn("Service | Port\ngateway | 8080", text)
        self.assertTrue(all(p == 0 for _, p, _ in got), "DOCX has no pages")
        doc = call("GET", "/v1/documents/" + r.json["document_id"], key=key(TENANT))
        self.assertEqual(doc.json["content_type"], DOCX)
        self.assertEqual(doc.json["title"], "Install Guide")

    def test_html_drops_script_and_nav(self):
        """An HTML page (text/html) with script, style, nav and footer → done;
        only the content and its headings are indexed; <title> is the title."""
        html = (b"<!doctype html><html><head><title>Cafeteria Menu</title>"
                b"<script>var tracking = 'abc';</script><style>body{}</style></head>"
                b"<body><nav>Home | About | Contact</nav><main><h1>Lunch</h1>"
                b"<p>Soup of the day is pumpkin.</p></main>"
                b"<footer>Copyright 2024</footer></body></html>")
        doc_id, got = self.done(html, "text/html")
        text = "\n".join(t for _, _, t in got)
        self.assertIn("Lunch\n\nSoup of the day is pumpkin.", text)
        for gone in ("tracking", "Home | About", "Copyright", "body{}"):
            self.assertNotIn(gone, text)
        doc = call("GET", "/v1/documents/" + doc_id, key=key(TENANT))
        self.assertEqual(doc.json["title"], "Cafeteria Menu")
        self.assertEqual(doc.json["filename"], "document.html")

    def test_legacy_encodings(self):
        """Latin-1 (no charset declared) and UTF-16 with a BOM (text/plain) →
        done, indexed as UTF-8."""
        _, got = self.done("Le café de l'équipe ferme à midi.".encode("latin-1"),
                           "text/plain")
        self.assertEqual(got[0][2], "Le café de l'équipe ferme à midi.")
        _, got = self.done("\ufeffÜberstunden werden monatlich ausgezahlt.".encode("utf-16-le"),
                           "text/plain")
        self.assertEqual(got[0][2], "Überstunden werden monatlich ausgezahlt.")

    def test_hostile_documents_fail_their_own_job(self):
        """Truncated PDF, DOCX zip bomb, billion laughs in a DOCX, deeply
        nested HTML, invalid UTF-8 declared as UTF-8 → each job failed with a
        readable reason; ingestion stays healthy and takes the next upload."""
        pdf = fixtures.pdf([["Some text that will be cut off."]])
        self.failed(pdf[:len(pdf) // 2], "application/pdf", "PDF: the file is damaged")
        self.failed(fixtures.docx_zip_bomb(), DOCX, "DOCX: word/document.xml unpacks to more "
                    "than 256 MiB (a zip bomb?)")
        self.failed(fixtures.docx_billion_laughs(), DOCX, "DOCX: word/document.xml is not "
                    "well-formed XML")
        self.failed(fixtures.deep_html(50000), "text/html",
                    "HTML: elements are nested deeper than 256 levels")
        self.failed(b"caf\xe9 au lait", "text/plain; charset=utf-8",
                    "text: the text is not valid UTF-8 (first invalid byte at offset 3)")
        self.done(b"Still working after all that.", "text/plain")

    def test_wrong_declared_type_and_empty_file(self):
        """Declared application/pdf but the bytes are a ZIP, declared
        text/plain but a PDF → 415 naming both; an empty file → 400."""
        r = self.upload(fixtures.docx(fixtures.docx_para("x")), "application/pdf", status=415)
        self.assertEqual(r.json["error"]["message"],
                         "ingestion: declared application/pdf but the content is a Word "
                         "(DOCX) document (send it as %s)" % DOCX)
        r = self.upload(fixtures.pdf([["x"]]), "text/plain", status=415)
        self.assertIn("declared text/plain but the content is a PDF document", r.body.decode())
        r = self.upload(b"PK\x03\x04" + b"\0" * 40, "application/pdf", status=415)
        self.assertIn("declared application/pdf but the content is a ZIP archive",
                      r.body.decode())
        self.upload(b"", "application/pdf", status=400)

    def test_image_refused_while_ocr_is_off(self):
        """With OCR off (the default): a PNG (image/png) → 415 saying OCR is
        disabled and how to enable it; a JPEG declared as PDF → 415 naming
        both types."""
        r = self.upload(scan_png(["Not read"]), "image/png", status=415)
        msg = r.json["error"]["message"]
        self.assertIn("image/png is not read here: images are read with OCR, which is "
                      "disabled on this server", msg)
        self.assertIn("QUARRY_OCR=true", msg)
        r = self.upload(JPEG, "application/pdf", status=415)
        self.assertIn("declared application/pdf but the content is a JPEG image",
                      r.json["error"]["message"])


# ---- scanned pages (python3-cairo) --------------------------------------------


def _scan_surface(lines):
    import cairo
    s = cairo.ImageSurface(cairo.FORMAT_RGB24, 1400, 140 + 64 * len(lines))
    cr = cairo.Context(s)
    cr.set_source_rgb(1, 1, 1)
    cr.paint()
    cr.set_source_rgb(0, 0, 0)
    cr.select_font_face("DejaVu Sans")
    cr.set_font_size(40)
    for i, line in enumerate(lines):
        cr.move_to(60, 100 + 64 * i)
        cr.show_text(line)
    s.flush()
    return s


def scan_png(lines):
    """A PNG of a scanned page: black lines of text on white, 40 px high."""
    out = io.BytesIO()
    _scan_surface(lines).write_to_png(out)
    return out.getvalue()


def scan_pdf(text_lines, scan_lines):
    """A two-page PDF: page 1 has text_lines as text, page 2 is only an
    image of scan_lines (no text layer)."""
    import cairo
    out = io.BytesIO()
    pdf = cairo.PDFSurface(out, 612, 792)
    cr = cairo.Context(pdf)
    cr.select_font_face("DejaVu Sans")
    cr.set_font_size(12)
    for i, line in enumerate(text_lines):
        cr.move_to(72, 720 - 16 * i)
        cr.show_text(line)
    cr.show_page()
    img = _scan_surface(scan_lines)
    cr.translate(72, 72)
    cr.scale(504.0 / 1400, 504.0 / 1400)
    cr.set_source_surface(img, 0, 0)
    cr.paint()
    cr.show_page()
    pdf.finish()
    return out.getvalue()


def png_claiming(width, height):
    """A PNG whose header claims width x height pixels, with almost no data:
    a decompression bomb's shape."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


JPEG = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\0" * 64)


class FormatsOCR(Formats):
    """The same stack with QUARRY_OCR=true on ingestion."""

    @classmethod
    def setUpClass(cls):
        st = harness.stack()
        st.svc_env.setdefault("ingestion", {})["QUARRY_OCR"] = "true"
        st.restart("ingestion")

    @classmethod
    def tearDownClass(cls):
        st = harness.stack()
        st.svc_env.get("ingestion", {}).pop("QUARRY_OCR", None)
        st.restart("ingestion")

    # Formats' own cases run once, in Formats.
    test_pdf_pages_and_title = None
    test_docx_headings_lists_tables = None
    test_html_drops_script_and_nav = None
    test_legacy_encodings = None
    test_hostile_documents_fail_their_own_job = None
    test_wrong_declared_type_and_empty_file = None
    test_image_refused_while_ocr_is_off = None

    def cited_page(self, question, doc_id):
        """The page of the first citation of doc_id in the answer to question."""
        r = query(question, api_key=key(TENANT))
        self.assertStatus(r, 200)
        mine = [c for c in r.json["citations"] if c["document_id"] == doc_id]
        self.assertTrue(mine, "no citation of %s: %r" % (doc_id, r.json["citations"]))
        return mine[0]["page"], mine[0]["snippet"]

    def test_png_scan_is_read_and_cited(self):
        """A PNG of a scanned page (image/png) → job done; the chunk holds
        the OCR'd words on page 1; a query about them cites the document,
        page 1."""
        png = scan_png(["The zirconium crucible anneals",
                        "at 1180 degrees for nine hours."])
        doc_id, got = self.done(png, "image/png", "crucible.png")
        text = " ".join(t for _, _, t in got)
        self.assertIn("zirconium crucible anneals", text, got)
        self.assertIn("1180 degrees", text, got)
        self.assertEqual({p for _, p, _ in got}, {1}, got)
        page, snippet = self.cited_page("How long does the zirconium crucible anneal?",
                                        doc_id)
        self.assertEqual(page, 1)
        self.assertIn("crucible", snippet)

    def test_pdf_scanned_page_beside_text_page(self):
        """A PDF whose page 1 has text and page 2 is a scan (no text layer)
        → done; page 1's chunk is its text as before, page 2's the OCR'd
        words; a query about the scan cites page 2."""
        pdf = scan_pdf(["Glazes for the spring catalogue mature at cone six."],
                       ["The tungsten filament spool", "ships from Harwick depot."])
        doc_id, got = self.done(pdf, "application/pdf", "catalogue.pdf")
        pages = {p: t for _, p, t in got}
        self.assertEqual(pages.get(1), "Glazes for the spring catalogue mature at cone six.",
                         got)
        self.assertIn("tungsten filament spool", pages.get(2, ""), got)
        self.assertIn("Harwick depot", pages.get(2, ""), got)
        page, _ = self.cited_page("Where does the tungsten filament spool ship from?",
                                  doc_id)
        self.assertEqual(page, 2)

    def test_hostile_images_fail_their_own_job(self):
        """A truncated PNG and a PNG claiming 100000 x 100000 pixels → each
        job failed with its reason (the bomb refused from its header, before
        decoding); a JPEG declared as PDF → 415 naming both types; ingestion
        stays healthy."""
        png = scan_png(["Cut short"])
        self.failed(png[:len(png) // 2], "image/png", "PNG: the image is damaged")
        self.failed(png_claiming(100000, 100000), "image/png",
                    "PNG: the image is 100000 x 100000 pixels, more than the limit of "
                    "40000000 pixels (QUARRY_OCR_MAX_PIXELS)")
        r = self.upload(JPEG, "application/pdf", status=415)
        self.assertEqual(r.json["error"]["message"],
                         "ingestion: declared application/pdf but the content is a JPEG "
                         "image (send it as image/jpeg)")
        self.done(b"Still reading after the bad images.", "text/plain")


class OCRSettings(unittest.TestCase):
    def test_missing_language_stops_ingestion_at_start(self):
        """quarry-ingestion with QUARRY_OCR=true and QUARRY_OCR_LANGS=eng+zz_qq
        (no such tessdata) → exits 2 at once, naming the language and the
        Debian package to install; QUARRY_OCR_DPI=5 → exits 2 naming the
        variable."""
        exe = os.path.join(harness.BIN_DIR, "quarry-ingestion")
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        r = subprocess.run([exe], env=dict(base, QUARRY_OCR="true",
                                           QUARRY_OCR_LANGS="eng+zz_qq"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 2, r)
        err = r.stderr.decode()
        self.assertIn('QUARRY_OCR_LANGS: language "zz_qq" is not installed', err)
        self.assertIn("install the Debian package tesseract-ocr-zz-qq", err)
        r = subprocess.run([exe], env=dict(base, QUARRY_OCR_DPI="5"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("QUARRY_OCR_DPI", r.stderr.decode())


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return harness.Reply(resp.status, resp.headers, resp.read(), 0)


if __name__ == "__main__":
    unittest.main()
