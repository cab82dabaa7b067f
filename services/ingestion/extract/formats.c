/* extract/formats.c - the format table and format decisions (see
 * formats.h). To read a new format: write its extractor (extract.h), add a
 * row here, teach formats_sniff its magic number when it has one. */
#include "extract/formats.h"

#include <iconv.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "extract/ocr.h"
#include "validate.h"

static const char *const text_aliases[] = {NULL};
static const char *const text_exts[] = {".txt", ".text", ".log", NULL};
static const char *const md_aliases[] = {"text/x-markdown", NULL};
static const char *const md_exts[] = {".md", ".markdown", ".mdown", ".mkd", NULL};
static const char *const html_aliases[] = {"application/xhtml+xml", NULL};
static const char *const html_exts[] = {".html", ".htm", ".xhtml", NULL};
static const char *const pdf_aliases[] = {"application/x-pdf", NULL};
static const char *const pdf_exts[] = {".pdf", NULL};
static const char *const docx_aliases[] = {NULL};
static const char *const docx_exts[] = {".docx", NULL};
static const char *const png_aliases[] = {"image/x-png", NULL};
static const char *const png_exts[] = {".png", NULL};
static const char *const jpeg_aliases[] = {"image/jpg", "image/pjpeg", NULL};
static const char *const jpeg_exts[] = {".jpg", ".jpeg", ".jpe", NULL};
static const char *const tiff_aliases[] = {"image/tif", "image/x-tiff", NULL};
static const char *const tiff_exts[] = {".tif", ".tiff", NULL};

/* Images are read by OCR only (extract/ocr.h), which is off unless
 * QUARRY_OCR says otherwise. */
static bool ocr_available(char *why, size_t whylen) {
  if (ocr_settings()->enabled)
    return true;
  snprintf(why, whylen,
           "images are read with OCR, which is disabled on this server (set "
           "QUARRY_OCR=true for quarry-ingestion to enable it)");
  return false;
}

const format_t formats[] = {
    {"text", "text", "text/plain", text_aliases, text_exts, CONTENT_TEXT, true,
     &extract_text, CHUNK_BY_SECTION, NULL},
    {"markdown", "Markdown", "text/markdown", md_aliases, md_exts, CONTENT_TEXT, true,
     &extract_markdown, CHUNK_BY_SECTION, NULL},
    {"html", "HTML", "text/html", html_aliases, html_exts, CONTENT_TEXT, true,
     &extract_html, CHUNK_BY_SECTION, NULL},
    {"pdf", "PDF", "application/pdf", pdf_aliases, pdf_exts, CONTENT_PDF, false,
     &extract_pdf, CHUNK_BY_PAGE, NULL},
    {"docx", "DOCX",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
     docx_aliases, docx_exts, CONTENT_ZIP, false, &extract_docx, CHUNK_BY_SECTION, NULL},
    {"png", "PNG", "image/png", png_aliases, png_exts, CONTENT_PNG, false, &extract_image,
     CHUNK_BY_PAGE, ocr_available},
    {"jpeg", "JPEG", "image/jpeg", jpeg_aliases, jpeg_exts, CONTENT_JPEG, false,
     &extract_image, CHUNK_BY_PAGE, ocr_available},
    {"tiff", "TIFF", "image/tiff", tiff_aliases, tiff_exts, CONTENT_TIFF, false,
     &extract_image, CHUNK_BY_PAGE, ocr_available},
};
const size_t formats_count = sizeof formats / sizeof formats[0];

const format_t *formats_by_media(const char *media) {
  if (!media || !*media)
    return NULL;
  for (size_t i = 0; i < formats_count; i++) {
    if (strcasecmp(media, formats[i].media) == 0)
      return &formats[i];
    for (const char *const *a = formats[i].aliases; *a; a++)
      if (strcasecmp(media, *a) == 0)
        return &formats[i];
  }
  return NULL;
}

const format_t *formats_by_filename(const char *filename) {
  const char *dot = filename ? strrchr(filename, '.') : NULL;
  if (!dot || dot == filename)
    return NULL;
  for (size_t i = 0; i < formats_count; i++)
    for (const char *const *e = formats[i].extensions; *e; e++)
      if (strcasecmp(dot, *e) == 0)
        return &formats[i];
  return NULL;
}

const format_t *formats_by_id(const char *id) {
  for (size_t i = 0; id && i < formats_count; i++)
    if (strcmp(id, formats[i].id) == 0)
      return &formats[i];
  return NULL;
}

/* ---- sniffing --------------------------------------------------------------- */

static const struct {
  content_kind_t kind;
  const char *name;
} content_names[] = {
    {CONTENT_EMPTY, "empty"},
    {CONTENT_TEXT, "text"},
    {CONTENT_HTML, "an HTML page"},
    {CONTENT_BINARY, "binary data of an unknown type"},
    {CONTENT_PDF, "a PDF document"},
    {CONTENT_ZIP, "a ZIP archive"},
    {CONTENT_DOCX, "a Word (DOCX) document"},
    {CONTENT_OLE, "a legacy Microsoft Office file (.doc, .xls or .ppt)"},
    {CONTENT_PNG, "a PNG image"},
    {CONTENT_JPEG, "a JPEG image"},
    {CONTENT_GIF, "a GIF image"},
    {CONTENT_TIFF, "a TIFF image"},
    {CONTENT_GZIP, "a gzip archive"},
    {CONTENT_7Z, "a 7-Zip archive"},
    {CONTENT_RAR, "a RAR archive"},
    {CONTENT_RTF, "an RTF document"},
    {CONTENT_EXE, "an executable program"},
};

const char *formats_content_name(content_kind_t k) {
  for (size_t i = 0; i < sizeof content_names / sizeof content_names[0]; i++)
    if (content_names[i].kind == k)
      return content_names[i].name;
  return "data of an unknown type";
}

static const struct {
  const char *magic;
  size_t len;
  content_kind_t kind;
} magics[] = {
    {"PK\x03\x04", 4, CONTENT_ZIP},
    {"PK\x05\x06", 4, CONTENT_ZIP},
    {"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8, CONTENT_OLE},
    {"\x89PNG\r\n\x1a\n", 8, CONTENT_PNG},
    {"\xff\xd8\xff", 3, CONTENT_JPEG},
    {"GIF87a", 6, CONTENT_GIF},
    {"GIF89a", 6, CONTENT_GIF},
    {"II*\0", 4, CONTENT_TIFF},
    {"MM\0*", 4, CONTENT_TIFF},
    {"\x1f\x8b", 2, CONTENT_GZIP},
    {"7z\xbc\xaf\x27\x1c", 6, CONTENT_7Z},
    {"Rar!\x1a\x07", 6, CONTENT_RAR},
    {"{\\rtf", 5, CONTENT_RTF},
    {"\x7f"
     "ELF",
     4, CONTENT_EXE},
    {"MZ", 2, CONTENT_EXE},
};

static bool has(const char *h, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++)
    if (memcmp(h + i, needle, k) == 0)
      return true;
  return false;
}

static bool starts_ci(const char *s, size_t n, const char *prefix) {
  size_t k = strlen(prefix);
  return n >= k && strncasecmp(s, prefix, k) == 0;
}

/* Text that starts like an HTML page (after white space and comments). */
static bool looks_like_html(const char *s, size_t n) {
  for (int guard = 0; guard < 16; guard++) {
    while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
      s++;
      n--;
    }
    if (starts_ci(s, n, "<!--")) {
      const char *e = NULL;
      for (size_t i = 4; i + 3 <= n && !e; i++)
        if (memcmp(s + i, "-->", 3) == 0)
          e = s + i + 3;
      if (!e)
        return false;
      n -= (size_t)(e - s);
      s = e;
      continue;
    }
    static const char *const starts[] = {"<!doctype html", "<html", "<head", "<body",
                                         "<title"};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
      if (starts_ci(s, n, starts[i]))
        return true;
    return false;
  }
  return false;
}

content_kind_t formats_sniff(const char *head, size_t n) {
  if (n == 0)
    return CONTENT_EMPTY;
  if (n > FORMATS_HEAD_BYTES)
    n = FORMATS_HEAD_BYTES;
  /* PDF readers accept the header anywhere in the first 1024 bytes. */
  if (has(head, n < 1024 ? n : 1024, "%PDF-"))
    return CONTENT_PDF;
  for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++)
    if (n >= magics[i].len && memcmp(head, magics[i].magic, magics[i].len) == 0) {
      if (magics[i].kind == CONTENT_ZIP && has(head, n, "word/"))
        return CONTENT_DOCX;
      return magics[i].kind;
    }
  if (n >= 2 && (memcmp(head, "\xff\xfe", 2) == 0 || memcmp(head, "\xfe\xff", 2) == 0))
    return CONTENT_TEXT; /* UTF-16 with a byte order mark */
  /* NUL bytes: binary, unless they all sit at odd or all at even offsets,
   * as in UTF-16 text without a byte order mark. */
  size_t nul[2] = {0, 0};
  for (size_t i = 0; i < n; i++)
    if (head[i] == '\0')
      nul[i & 1]++;
  bool utf16 = (nul[0] == 0) != (nul[1] == 0) && nul[0] + nul[1] >= n / 8;
  if (nul[0] + nul[1] > 0 && !utf16)
    return CONTENT_BINARY;
  const char *s = head;
  size_t k = n;
  if (k >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
    s += 3;
    k -= 3;
  }
  return looks_like_html(s, k) ? CONTENT_HTML : CONTENT_TEXT;
}

/* ---- decisions -------------------------------------------------------------- */

static bool available(const format_t *f, char *why, size_t whylen) {
  return !f->available || f->available(why, whylen);
}

/* "text/plain, ..., or application/pdf (.txt, .md, ...)": the formats
 * read now (images only with OCR on). */
static void list_formats(char *out, size_t outlen) {
  size_t used = 0, n = 0, last = 0;
  char why[8];
  out[0] = '\0';
  for (size_t i = 0; i < formats_count; i++)
    if (available(&formats[i], why, sizeof why))
      last = i;
  for (size_t i = 0; i < formats_count && used < outlen; i++) {
    if (!available(&formats[i], why, sizeof why))
      continue;
    int k = snprintf(out + used, outlen - used, "%s%s",
                     n++ == 0    ? ""
                     : i == last ? " or "
                                 : ", ",
                     formats[i].media);
    used += k > 0 ? (size_t)k : 0;
  }
  n = 0;
  for (size_t i = 0; i < formats_count && used < outlen; i++) {
    if (!available(&formats[i], why, sizeof why))
      continue;
    int k = snprintf(out + used, outlen - used, "%s%s", n++ == 0 ? " (" : ", ",
                     formats[i].extensions[0]);
    used += k > 0 ? (size_t)k : 0;
  }
  if (used < outlen)
    snprintf(out + used, outlen - used, ")");
}

static bool charset_supported(const char *charset) {
  iconv_t cd = iconv_open("UTF-8", charset);
  if (cd == (iconv_t)-1)
    return false;
  iconv_close(cd);
  return true;
}

q_err_t formats_choose(const char *content_type, const char *filename, format_choice_t *c,
                       char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  q_err_t rc = parse_content_type(content_type, c->declared, sizeof c->declared,
                                  c->charset, sizeof c->charset, err, errlen);
  if (rc)
    return rc;
  snprintf(c->filename, sizeof c->filename, "%s", filename ? filename : "");
  char list[512];
  if (c->declared[0] && strcmp(c->declared, "application/octet-stream") != 0) {
    c->source = FROM_DECLARED;
    c->fmt = formats_by_media(c->declared);
    if (!c->fmt) {
      list_formats(list, sizeof list);
      snprintf(err, errlen, "content type %s is not supported: send %s", c->declared,
               list);
      return Q_EUNSUPPORTED;
    }
  } else if ((c->fmt = formats_by_filename(c->filename))) {
    c->source = FROM_FILENAME;
  } else {
    c->source = FROM_CONTENT;
  }
  if (c->charset[0] && c->fmt && c->fmt->charset && !charset_supported(c->charset)) {
    snprintf(err, errlen, "charset \"%s\" is not supported", c->charset);
    return Q_EUNSUPPORTED;
  }
  if (c->fmt && !c->fmt->charset)
    c->charset[0] = '\0'; /* a charset says nothing about a binary format */
  char why[256];
  if (c->fmt && !available(c->fmt, why, sizeof why)) {
    snprintf(err, errlen, "%s is not read here: %s", c->fmt->media, why);
    return Q_EUNSUPPORTED;
  }
  return Q_OK;
}

static bool agrees(const format_t *f, content_kind_t k) {
  switch (f->content) {
  case CONTENT_TEXT: return k == CONTENT_TEXT || k == CONTENT_HTML;
  case CONTENT_ZIP: return k == CONTENT_ZIP || k == CONTENT_DOCX;
  default: return k == f->content;
  }
}

/* The format the bytes themselves are, when Quarry reads it. */
static const format_t *format_of_content(content_kind_t k) {
  switch (k) {
  case CONTENT_TEXT: return formats_by_id("text");
  case CONTENT_HTML: return formats_by_id("html");
  case CONTENT_PDF: return formats_by_id("pdf");
  case CONTENT_DOCX: return formats_by_id("docx");
  case CONTENT_PNG: return formats_by_id("png");
  case CONTENT_JPEG: return formats_by_id("jpeg");
  case CONTENT_TIFF: return formats_by_id("tiff");
  default: return NULL;
  }
}

q_err_t formats_confirm(format_choice_t *c, const char *head, size_t n, char *err,
                        size_t errlen) {
  content_kind_t k = formats_sniff(head, n);
  if (k == CONTENT_EMPTY) {
    snprintf(err, errlen, "empty document: no data received");
    return Q_EINVAL;
  }
  const format_t *real = format_of_content(k);
  if (c->source == FROM_CONTENT) {
    if (!real) {
      char list[512];
      list_formats(list, sizeof list);
      snprintf(err, errlen, "the content is %s, which Quarry does not read: send %s",
               formats_content_name(k), list);
      return Q_EUNSUPPORTED;
    }
    char why[256];
    if (!available(real, why, sizeof why)) {
      snprintf(err, errlen, "the content is %s, which is not read here: %s",
               formats_content_name(k), why);
      return Q_EUNSUPPORTED;
    }
    c->fmt = real;
    return Q_OK;
  }
  if (agrees(c->fmt, k))
    return Q_OK;
  char hint[160] = "";
  /* Text that is not HTML may well be what a PDF or DOCX declaration was
   * for by mistake, but suggesting text/plain would be a guess. */
  char why[8];
  if (real && k != CONTENT_TEXT && available(real, why, sizeof why))
    snprintf(hint, sizeof hint, " (send it as %s)", real->media);
  if (c->source == FROM_DECLARED)
    snprintf(err, errlen, "declared %s but the content is %s%s", c->declared,
             formats_content_name(k), hint);
  else
    snprintf(err, errlen, "the file name \"%.100s\" says %s but the content is %s%s",
             c->filename, c->fmt->label, formats_content_name(k), hint);
  return Q_EUNSUPPORTED;
}

size_t formats_stored_type(const format_choice_t *c, char *out, size_t outlen) {
  if (!c->fmt)
    return 0;
  int k = c->charset[0] && c->fmt->charset
              ? snprintf(out, outlen, "%s; charset=%s", c->fmt->media, c->charset)
              : snprintf(out, outlen, "%s", c->fmt->media);
  if (k < 0 || (size_t)k >= outlen) {
    if (outlen)
      out[0] = '\0';
    return 0;
  }
  return (size_t)k;
}

const format_t *formats_parse_stored(const char *stored, char *charset,
                                     size_t charsetlen) {
  char media[Q_LIMIT_MEDIA_TYPE_BYTES + 1], err[128];
  if (parse_content_type(stored, media, sizeof media, charset, charsetlen, err,
                         sizeof err))
    return NULL;
  const format_t *f = formats_by_media(media);
  if (f && !f->charset)
    charset[0] = '\0';
  return f;
}

void formats_default_filename(const format_t *f, char *out, size_t outlen) {
  snprintf(out, outlen, "document%s", f && f->extensions[0] ? f->extensions[0] : "");
}
