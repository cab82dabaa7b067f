"""fixtures.py - documents of every format ingestion reads, made on the fly
with the standard library (no tools, nothing checked in): a PDF written
object by object, a DOCX zipped from its XML parts, HTML, text in legacy
encodings, and the hostile ones (truncated PDF, zip bomb, billion laughs,
deep nesting, invalid UTF-8)."""

import io
import zipfile


# ---- PDF ---------------------------------------------------------------------


def _pdf_str(s):
    return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf(pages, title=None, author=None, created=None):
    """A PDF with one page per entry of pages (a list of lines each), in the
    standard Helvetica font, with an Info dictionary when title, author or
    created (a PDF date, "D:20210304050607Z") is given. Offsets in the xref
    table are exact."""
    objs = []   # bodies, object n is objs[n - 1]

    def add(body):
        objs.append(body)
        return len(objs)

    catalog = add(None)
    pages_obj = add(None)
    font = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
               "/Encoding /WinAnsiEncoding >>")
    kids = []
    for lines in pages:
        ops = ["BT", "/F1 12 Tf", "72 720 Td", "16 TL"]
        for line in lines:
            ops.append(_pdf_str(line) + " Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream
                      + b"\nendstream")
        kids.append(add("<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] "
                        "/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                        % (pages_obj, font, content)))
    objs[catalog - 1] = "<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    objs[pages_obj - 1] = "<< /Type /Pages /Kids [%s] /Count %d >>" % (
        " ".join("%d 0 R" % k for k in kids), len(kids))
    info = None
    if title or author or created:
        fields = []
        if title:
            fields.append("/Title " + _pdf_str(title))
        if author:
            fields.append("/Author " + _pdf_str(author))
        if created:
            fields.append("/CreationDate " + _pdf_str(created))
        info = add("<< %s >>" % " ".join(fields))

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(out.tell())
        data = body if isinstance(body, bytes) else body.encode("latin-1")
        out.write(b"%d 0 obj\n" % i + data + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    trailer = "<< /Size %d /Root %d 0 R" % (len(objs) + 1, catalog)
    if info:
        trailer += " /Info %d 0 R" % info
    out.write(("trailer\n%s >>\nstartxref\n%d\n%%%%EOF\n" % (trailer, xref)).encode())
    return out.getvalue()


# ---- DOCX --------------------------------------------------------------------

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.wordprocessingml.document.main+xml"/></Types>')
RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/></Relationships>')
STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<w:styles xmlns:w="%s">'
    '<w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/></w:style>'
    '<w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/></w:style>'
    '<w:style w:type="paragraph" w:styleId="Berschrift3"><w:name w:val="Custom"/>'
    '<w:pPr><w:outlineLvl w:val="2"/></w:pPr></w:style>'
    '</w:styles>' % W)


def _esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def docx_para(text, style=None, num_level=None):
    ppr = ""
    if style or num_level is not None:
        ppr = "<w:pPr>"
        if style:
            ppr += '<w:pStyle w:val="%s"/>' % style
        if num_level is not None:
            ppr += '<w:numPr><w:ilvl w:val="%d"/><w:numId w:val="1"/></w:numPr>' % num_level
        ppr += "</w:pPr>"
    return "<w:p>%s<w:r><w:t xml:space=\"preserve\">%s</w:t></w:r></w:p>" % (ppr, _esc(text))


def docx_table(rows):
    out = "<w:tbl>"
    for row in rows:
        out += "<w:tr>" + "".join(
            "<w:tc>%s</w:tc>" % docx_para(cell) for cell in row) + "</w:tr>"
    return out + "</w:tbl>"


def docx(body_xml, title=None, author=None, document_xml=None, extra=(), core_extra=""):
    """A DOCX whose body is body_xml (w:p, w:tbl elements); document_xml
    replaces the whole word/document.xml when given. extra: (name, bytes)
    members added as they are."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("_rels/.rels", RELS)
        z.writestr("word/document.xml", document_xml if document_xml is not None else (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<w:document xmlns:w="%s"><w:body>%s</w:body></w:document>' % (W, body_xml)))
        z.writestr("word/styles.xml", STYLES)
        if title or author or core_extra:
            z.writestr("docProps/core.xml", (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
                'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" '
                'xmlns:dcterms="http://purl.org/dc/terms/">'
                '%s%s%s</cp:coreProperties>') % (
                    "<dc:title>%s</dc:title>" % _esc(title) if title else "",
                    "<dc:creator>%s</dc:creator>" % _esc(author) if author else "",
                    core_extra))
        for name, data in extra:
            z.writestr(name, data)
    return buf.getvalue()


def docx_zip_bomb(unpacked=300 << 20):
    """A DOCX whose word/document.xml unpacks to `unpacked` bytes of spaces
    inside a paragraph (a few hundred KB packed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("_rels/.rels", RELS)
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            f.write(('<w:document xmlns:w="%s"><w:body><w:p><w:r><w:t>' % W).encode())
            block = b" " * (1 << 20)
            for _ in range(unpacked >> 20):
                f.write(block)
            f.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return buf.getvalue()


def docx_billion_laughs():
    doc = ('<?xml version="1.0"?>\n<!DOCTYPE w:document [\n'
           '<!ENTITY lol "lol">\n'
           + "".join('<!ENTITY lol%d "%s">\n' % (i, ("&lol%d;" % (i - 1) if i > 1 else "&lol;") * 10)
                     for i in range(1, 10))
           + ']>\n<w:document xmlns:w="%s"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>'
           '</w:body></w:document>' % W)
    return docx("", document_xml=doc)


# ---- HTML and text ------------------------------------------------------------


def deep_html(depth=100000):
    return ("<html><body>" + "<div>" * depth + "deep" + "</div>" * depth
            + "</body></html>").encode()
