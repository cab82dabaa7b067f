#!/usr/bin/python3
"""Benchmarks ingestion per file format through the REST API, beside
Xapian's in-process indexing of the same text, and measures the peak
memory of ingestion and of its extractor while a 100 MB PDF is ingested
(figures only, no pass/fail).

    make bench-ingest-formats [DATA=../shared/data/scifact] [FORMATS_ARGS=...]
    /usr/bin/python3 bench/ingest_formats.py [--data DIR] [--limit N]
        [--formats txt,md,html,docx,pdf] [--clients 16] [--batch 200]
        [--batch-clients 2] [--big-mb 100] [--skip-big]

What is measured:

- The corpus (SciFact by default, read in place; --limit N takes the first
  N documents) is converted by this script into each format, in memory:
  txt (title, blank line, text), md ("# title" then the text), html (a
  <title>, an <h1> and a <p>), docx (a minimal WordprocessingML package
  written with zipfile: core.xml title, a Heading1 and a paragraph), pdf
  (python3-cairo: the title in a larger font, the text wrapped over A4
  pages).
- Xapian (python3-xapian): title + text of every document, as in
  bench/ingest_bench.py (the same text, not the files).
- Per format, one document per request: --clients threads, POST
  /v1/documents with the file as the raw body, its Content-Type and a file
  name (no explicit title: the extractor's title is used, as for a user's
  upload). Then bulk: multipart POST /v1/documents/batch with --batch files
  per request (part name "file"), --batch-clients at a time. Each run has a
  tenant of its own.
- For each run the clock runs from the first request until the
  retriever's Stats counts every document of the tenant (searchable).
  docs/s; MB/s of the files as uploaded; the CPU milliseconds per document
  of ingestion (its zygotes and extractor children included), PostgreSQL
  and the other services.
- The big PDF: --big-mb MB of A4 pages, each with SciFact text and an
  incompressible noise image (the size of a scanned report), uploaded once.
  Peak resident memory of ingestion (VmHWM, reset before the upload by
  writing 5 to /proc/<pid>/clear_refs) and of the gateway, and the
  extractor child's peak (max_rss_kb of ingestion's "document extracted"
  log line, the child's getrusage). Product requirement < 1 GB; Quarry's
  target < 256 MB.

Needs the binaries ($QUARRY_BIN), the Python messages ($QUARRY_PYGEN) and
bench/deps.sh (python3-xapian, python3-cairo).
"""
import argparse
import concurrent.futures
import datetime
import html
import http.client
import io
import json
import os
import random
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
import uuid
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import ingest_bench as ib  # noqa: E402  (puts tools/eval and deploy/local on sys.path)
from ingest_bench import beir_eval, stack  # noqa: E402
from retrieval_bench import build_xapian, machine  # noqa: E402

import cairo  # noqa: E402  (Debian python3-cairo)

FORMATS = {
    "txt": ("text/plain; charset=utf-8", ".txt"),
    "md": ("text/markdown; charset=utf-8", ".md"),
    "html": ("text/html; charset=utf-8", ".html"),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             ".docx"),
    "pdf": ("application/pdf", ".pdf"),
}


def title_text(d):
    return (d.get("title") or "").strip() or d["_id"], (d.get("text") or "").strip() or "-"


def to_txt(d):
    t, x = title_text(d)
    return ("%s\n\n%s\n" % (t, x)).encode()


def to_md(d):
    t, x = title_text(d)
    return ("# %s\n\n%s\n" % (t.replace("\n", " "), x)).encode()


def to_html(d):
    t, x = title_text(d)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s"
            "</title></head><body><h1>%s</h1><p>%s</p></body></html>\n"
            % (html.escape(t), html.escape(t), html.escape(x))).encode()


def xml_text(s):
    # XML 1.0 allows no control characters but tab, newline, carriage return.
    return html.escape("".join(c for c in s if c >= " " or c in "\t\n\r"), quote=True)


DOCX_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxml'
    'formats-officedocument.wordprocessingml.document.main+xml"/>'
    '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxml'
    'formats-package.core-properties+xml"/></Types>')
DOCX_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
    '2006/relationships/officeDocument" Target="word/document.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/'
    'relationships/metadata/core-properties" Target="docProps/core.xml"/>'
    '</Relationships>')


def to_docx(d):
    t, x = title_text(d)
    body = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/'
            '2006/main"><w:body>'
            '<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>%s</w:t></w:r>'
            '</w:p><w:p><w:r><w:t xml:space="preserve">%s</w:t></w:r></w:p>'
            '</w:body></w:document>' % (xml_text(t), xml_text(x)))
    core = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
            'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            '<dc:title>%s</dc:title><dc:language>en</dc:language></cp:coreProperties>'
            % xml_text(t))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", DOCX_TYPES)
        z.writestr("_rels/.rels", DOCX_RELS)
        z.writestr("word/document.xml", body)
        z.writestr("docProps/core.xml", core)
    return out.getvalue()


A4 = (595.0, 842.0)


def wrap(text, chars):
    """Lines of at most chars characters (by word): about a line's width in
    11 pt DejaVu Sans on A4 (measuring every word with cairo is slow)."""
    return textwrap.wrap(text, chars) or [""]


def pdf_pages(ctx, surface, paragraphs, title=None, rnd=None):
    """Writes title (larger) and paragraphs over A4 pages; with rnd each
    page also carries a 128 x 128 RGB noise image (48 KiB that do not
    compress), as a scanned page would."""
    margin, lead = 56.0, 14.0
    y = margin

    def decorate():
        if rnd is None:
            return
        img = cairo.ImageSurface(cairo.FORMAT_RGB24, 128, 128)
        buf = img.get_data()
        buf[:] = rnd.randbytes(len(buf))
        img.mark_dirty()
        ctx.save()
        ctx.set_source_surface(img, margin, A4[1] - margin - 128)
        ctx.paint()
        ctx.restore()
        ctx.set_source_rgb(0, 0, 0)

    decorate()
    if title:
        ctx.set_font_size(18)
        for line in wrap(title, 48):
            ctx.move_to(margin, y + 18)
            ctx.show_text(line)
            y += 24
        y += 10
    ctx.set_font_size(11)
    bottom = A4[1] - margin - (140 if rnd is not None else 0)
    for para in paragraphs:
        for line in wrap(para, 88):
            if y + lead > bottom:
                surface.show_page()
                y = margin
                decorate()
            ctx.move_to(margin, y + lead)
            ctx.show_text(line)
            y += lead
        y += lead / 2


def to_pdf(d):
    t, x = title_text(d)
    out = io.BytesIO()
    surface = cairo.PDFSurface(out, *A4)
    surface.set_metadata(cairo.PDFMetadata.TITLE, t)
    ctx = cairo.Context(surface)
    ctx.select_font_face("DejaVu Sans")
    pdf_pages(ctx, surface, [x], title=t)
    surface.finish()
    return out.getvalue()


CONVERT = {"txt": to_txt, "md": to_md, "html": to_html, "docx": to_docx, "pdf": to_pdf}


def big_pdf(corpus, mb):
    """A PDF of about mb MB: SciFact text on every page plus a noise image
    of 48 KiB per page (incompressible)."""
    out = io.BytesIO()
    surface = cairo.PDFSurface(out, *A4)
    surface.set_metadata(cairo.PDFMetadata.TITLE, "Quarry benchmark: a large PDF")
    ctx = cairo.Context(surface)
    ctx.select_font_face("DejaVu Sans")
    rnd = random.Random(8)
    paras, i, want = [], 0, mb * 1_000_000
    # A page: 48 KiB of noise and 41 lines of text (about 3 KB); pdf_pages
    # adds half a line between paragraphs.
    pages = int(want / (49152 + 2700)) + 1
    lines = 0
    while lines < pages * 41:
        p = title_text(corpus[i % len(corpus)])[1]
        paras.append(p)
        lines += len(wrap(p, 88)) + 0.5
        i += 1
    pdf_pages(ctx, surface, paras, title="A large PDF", rnd=rnd)
    surface.finish()
    return out.getvalue()


def single(st, key, files, ctype, clients):
    local = threading.local()

    def upload(item):
        name, body = item
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = ib.Client(st.url, key)
        q = urllib.parse.urlencode({"filename": name, "external_id": name})
        status, data = c.post("/v1/documents?" + q, body, ctype)
        if status != 202:
            raise SystemExit("ingest_formats: upload of %s: %d %s" % (name, status,
                                                                       data[:200]))

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        list(ex.map(upload, files))


def multipart(files, ctype):
    boundary = "quarry-" + uuid.uuid4().hex
    parts = []
    for name, body in files:
        parts.append(("--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                      "filename=\"%s\"\r\nContent-Type: %s\r\n\r\n"
                      % (boundary, name, ctype)).encode())
        parts.append(body)
        parts.append(b"\r\n")
    parts.append(("--%s--\r\n" % boundary).encode())
    return b"".join(parts), "multipart/form-data; boundary=" + boundary


def bulk(st, key, files, ctype, batch, clients):
    bodies = [multipart(files[i:i + batch], ctype) for i in range(0, len(files), batch)]
    local = threading.local()

    def send(b):
        body, bct = b
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = ib.Client(st.url, key)
        status, data = c.post("/v1/documents/batch", body, bct)
        if status != 202:
            raise SystemExit("ingest_formats: batch: %d %s" % (status, data[:300]))
        reply = json.loads(data)
        if reply.get("failed"):
            raise SystemExit("ingest_formats: batch items failed: %s" % data[:300])

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        list(ex.map(send, bodies))
    return len(bodies)


def pid_of(st, svc):
    p = st.procs[svc]
    return p.popen.pid if hasattr(p, "popen") else p.pid


def vm(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def extractor_peak_kb(run_dir, job_id):
    """max_rss_kb of the "document extracted" line of the job, from
    ingestion's log."""
    with open(os.path.join(run_dir, "logs", "ingestion.log"), errors="replace") as f:
        for line in f:
            if '"document extracted"' in line and job_id in line:
                try:
                    return json.loads(line).get("max_rss_kb", 0), json.loads(line)
                except ValueError:
                    pass
    return 0, None


def run_big(st, run_dir, corpus, mb):
    t0 = time.perf_counter()
    pdf = big_pdf(corpus, mb)
    gen_s = time.perf_counter() - t0
    key = st.create_key("bench-big", "bench", ("admin",))
    ing, gw = pid_of(st, "ingestion"), pid_of(st, "gateway")
    for pid in (ing, gw):
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    base = {"ingestion": vm(ing, "VmRSS"), "gateway": vm(gw, "VmRSS")}
    c = ib.Client(st.url, key)
    t0 = time.perf_counter()
    status, data = c.post("/v1/documents?filename=big.pdf", pdf, "application/pdf")
    if status != 202:
        raise SystemExit("ingest_formats: big PDF: %d %s" % (status, data[:300]))
    job = json.loads(data)["job_id"]
    doc = json.loads(data)["document_id"]
    up_s = time.perf_counter() - t0
    state = {}
    while time.perf_counter() - t0 < 900:
        status, data = get(st, key, "/v1/jobs/" + job)
        state = json.loads(data)
        if state.get("status") in ("done", "failed"):
            break
        time.sleep(0.5)
    total_s = time.perf_counter() - t0
    child_kb, line = extractor_peak_kb(run_dir, job)
    return {
        "bytes": len(pdf), "gen_s": gen_s, "upload_s": up_s, "total_s": total_s,
        "status": state.get("status"), "error": state.get("error", ""),
        "chunks": state.get("chunk_count", 0), "doc": doc,
        "ingestion_hwm_kb": vm(ing, "VmHWM"), "ingestion_base_kb": base["ingestion"],
        "gateway_hwm_kb": vm(gw, "VmHWM"), "gateway_base_kb": base["gateway"],
        "extractor_kb": child_kb,
        "extract_ms": line.get("ms") if line else None,
        "pages": line.get("pages") if line else None,
        "text_bytes": line.get("text_bytes") if line else None,
    }


def get(st, key, path):
    u = urllib.parse.urlparse(st.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + key})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "scifact"))
    ap.add_argument("--limit", type=int, default=0, help="the first N documents only")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--batch", type=int, default=200, help="files per multipart batch")
    ap.add_argument("--batch-clients", type=int, default=2)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-single", action="store_true")
    ap.add_argument("--skip-bulk", action="store_true")
    ap.add_argument("--env", action="append", default=[], help="VAR=value for every service")
    ap.add_argument("--run-dir", default=None,
                    help="where the stack's run directory (PostgreSQL data, blobs) goes; "
                         "default: the system's temporary directory")
    args = ap.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    for f in formats:
        if f not in FORMATS:
            raise SystemExit("ingest_formats: unknown format %r (one of %s)"
                             % (f, ", ".join(FORMATS)))
    corpus, _, _ = beir_eval.load_beir(args.data)
    if args.limit:
        corpus = corpus[:args.limit]
    n = len(corpus)
    text_mb = ib.text_bytes(corpus) / 1e6
    print("Quarry ingestion per format, %s"
          % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M %Z"))
    print("machine: %s" % machine())
    print("dataset: %s (%d documents, %.2f MB of title + text)" % (args.data, n, text_mb))
    print("load average at the start: %s" % " ".join(open("/proc/loadavg").read().split()[:3]),
          flush=True)
    files = {}
    for f in formats:
        t0 = time.perf_counter()
        ext = FORMATS[f][1]
        files[f] = [(d["_id"] + ext, CONVERT[f](d)) for d in corpus]
        print("converted to %-4s %6.2f MB in %.1f s" % (
            f, sum(len(b) for _, b in files[f]) / 1e6, time.perf_counter() - t0), flush=True)
    # Large enough for the big PDF, for every service (the gateway checks it too).
    env = {"QUARRY_RATE_LIMIT_RPS": "0",
           "QUARRY_MAX_UPLOAD_BYTES": str(max(64 << 20, (args.big_mb + 28) << 20))}
    env.update(kv.split("=", 1) for kv in args.env)
    bin_dir = os.environ.get("QUARRY_BIN", os.path.join(ROOT, "build", "bin"))
    rows, big = [], None
    with tempfile.TemporaryDirectory(prefix="quarry-fbench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="quarry-fbench-run-", dir=args.run_dir) as run_dir:
        x_s = build_xapian(corpus, os.path.join(tmp, "xapian"))
        rows.append(("xapian", "in process", x_s, text_mb, None))
        st = stack.Stack(bin_dir, run_dir, test_mode=True, env=env, quiet=True)
        try:
            st.start_all()
            for f in formats:
                ctype = FORMATS[f][0]
                mb = sum(len(b) for _, b in files[f]) / 1e6
                for mode in ("single", "bulk"):
                    if (mode == "single" and args.skip_single) or \
                            (mode == "bulk" and args.skip_bulk):
                        continue
                    tenant = "bench-%s-%s" % (f, mode)
                    key = st.create_key(tenant, "bench", ("admin",))
                    c0 = ib.cpu_seconds(st)
                    t0 = time.perf_counter()
                    if mode == "single":
                        single(st, key, files[f], ctype, args.clients)
                        how = "1 per request, c=%d" % args.clients
                    else:
                        nb = bulk(st, key, files[f], ctype, args.batch, args.batch_clients)
                        how = "multipart %dx%d, c=%d" % (nb, args.batch, args.batch_clients)
                    secs, _ = ib.wait_indexed(st, tenant, n, t0, 1800)
                    c1 = ib.cpu_seconds(st)
                    cpu = {k: (c1[k] - c0.get(k, 0.0)) * 1000 / n for k in c1}
                    rows.append((f, how, secs, mb, cpu))
                    print("%-5s %-26s %7.2f s %6.0f docs/s %6.2f MB/s" % (
                        f, how, secs, n / secs, mb / secs), flush=True)
            if not args.skip_big:
                big = run_big(st, run_dir, corpus, args.big_mb)
        finally:
            st.stop_all()
    report(rows, n, big)


def report(rows, n, big):
    print()
    print("%-6s %-26s %8s %8s %8s  %s" % ("format", "run", "seconds", "docs/s", "MB/s",
                                          "CPU ms per document"))
    for f, how, secs, mb, cpu in rows:
        line = "" if cpu is None else ", ".join(
            "%s %.2f" % (k, v) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
            if v >= 0.005)
        print("%-6s %-26s %8.2f %8.0f %8.2f  %s" % (f, how, secs, n / secs, mb / secs, line))
    if big:
        print()
        print("large PDF: %.1f MB (%s pages, %s bytes of text), generated in %.1f s"
              % (big["bytes"] / 1e6, big["pages"], big["text_bytes"], big["gen_s"]))
        print("  upload answered in %.1f s; job %s after %.1f s (extraction %s ms), %s chunks%s"
              % (big["upload_s"], big["status"], big["total_s"], big["extract_ms"],
                 big["chunks"], (": " + big["error"]) if big["error"] else ""))
        print("  peak RSS: ingestion %.0f MB (%.0f MB before), gateway %.0f MB (%.0f MB "
              "before), extractor child %.0f MB"
              % (big["ingestion_hwm_kb"] / 1024, big["ingestion_base_kb"] / 1024,
                 big["gateway_hwm_kb"] / 1024, big["gateway_base_kb"] / 1024,
                 big["extractor_kb"] / 1024))
        print("  (product requirement < 1 GB; Quarry's target < 256 MB)")
    print("load average at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    print("""
notes:
- seconds: the first request until the retriever's Stats counts every
  document of the run's tenant (searchable); Xapian: title + text into an
  on-disk database until commit().
- MB/s: bytes of the files as uploaded (Xapian: title + text).
- CPU ms per document: each service's CPU time over the run (ingestion with
  its zygotes and extractor children, PostgreSQL with every backend)
  divided by the documents.""")


if __name__ == "__main__":
    main(sys.argv[1:])
