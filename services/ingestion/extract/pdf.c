/* extract/pdf.c - PDF with poppler-glib: the text of each page in reading
 * order (poppler_page_get_text), split into paragraphs at blank lines,
 * every record carrying its page number (1, 2, ...), plus the document's
 * title and author from its metadata. Pages without text (scans) give
 * nothing: Quarry does not run OCR. Damaged files that poppler can repair
 * are read; the others, and encrypted ones, fail with a reason. */
#include <poppler.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extract/extract.h"

static bool blank_line(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f')
      return false;
  return true;
}

/* Emits a page's text as paragraphs separated by blank lines. */
static q_err_t page_text(extract_ctx_t *ctx, const char *t, int page) {
  size_t n = strlen(t), para = 0;
  q_err_t rc = Q_OK;
  for (size_t i = 0; i <= n && !rc;) {
    const char *nl = i < n ? memchr(t + i, '\n', n - i) : NULL;
    size_t e = nl ? (size_t)(nl - t) : n;
    if (i == n || blank_line(t + i, e - i)) {
      if (i > para)
        rc = extract_emit(ctx, EXTRACT_PARAGRAPH, 0, page, t + para, i - para);
      para = e + 1;
    }
    if (i == n)
      break;
    i = e < n ? e + 1 : n;
  }
  return rc;
}

static q_err_t meta(extract_ctx_t *ctx, extract_kind_t kind, gchar *s) {
  q_err_t rc = s ? extract_emit(ctx, kind, 0, 0, s, strlen(s)) : Q_OK;
  g_free(s);
  return rc;
}

/* A date of the document information dictionary (poppler parses the PDF
 * date syntax), emitted as ISO 8601. */
static q_err_t date_meta(extract_ctx_t *ctx, extract_kind_t kind, GDateTime *dt) {
  if (!dt)
    return Q_OK;
  gchar *s = g_date_time_format_iso8601(dt);
  g_date_time_unref(dt);
  return meta(ctx, kind, s);
}

static q_err_t pdf_run(extract_ctx_t *ctx) {
  GError *gerr = NULL;
  GBytes *bytes = g_bytes_new_static(ctx->data, ctx->size);
  PopplerDocument *doc = poppler_document_new_from_bytes(bytes, NULL, &gerr);
  g_bytes_unref(bytes);
  if (!doc) {
    q_err_t rc;
    if (gerr && gerr->domain == POPPLER_ERROR && gerr->code == POPPLER_ERROR_ENCRYPTED)
      rc = extract_fail(ctx, Q_EUNSUPPORTED,
                        "the document is encrypted (password protected)");
    else
      rc = extract_fail(ctx, Q_EINVAL, "the file is damaged or is not a PDF (%s)",
                        gerr && gerr->message ? gerr->message : "poppler cannot open it");
    if (gerr)
      g_error_free(gerr);
    return rc;
  }
  q_err_t rc = meta(ctx, EXTRACT_TITLE, poppler_document_get_title(doc));
  if (!rc)
    rc = meta(ctx, EXTRACT_AUTHOR, poppler_document_get_author(doc));
  if (!rc)
    rc = date_meta(ctx, EXTRACT_CREATED, poppler_document_get_creation_date_time(doc));
  if (!rc)
    rc = date_meta(ctx, EXTRACT_MODIFIED,
                   poppler_document_get_modification_date_time(doc));
  int pages = poppler_document_get_n_pages(doc);
  if (!rc && pages > 0) {
    char n[16];
    snprintf(n, sizeof n, "%d", pages);
    rc = extract_emit(ctx, EXTRACT_PAGES, 0, 0, n, strlen(n));
  }
  for (int i = 0; i < pages && !rc; i++) {
    PopplerPage *page = poppler_document_get_page(doc, i);
    if (!page)
      continue;
    gchar *t = poppler_page_get_text(page);
    if (t)
      rc = page_text(ctx, t, i + 1);
    g_free(t);
    g_object_unref(page);
  }
  g_object_unref(doc);
  return rc;
}

const extractor_t extract_pdf = {"pdf", NULL, pdf_run};
