/* extract/pdf.c - PDF with poppler-glib: the text of each page in reading
 * order (poppler_page_get_text), split into paragraphs at blank lines,
 * every record carrying its page number (1, 2, ...), plus the document's
 * title and author from its metadata. A page without a text layer that
 * shows an image (a scan) is rendered with cairo and read by OCR
 * (extract/ocr.h) when OCR is on, keeping its page number; with OCR off
 * it gives nothing. Pages with text are never OCR'd. Damaged files that
 * poppler can repair are read; the others, and encrypted ones, fail with
 * a reason. */
#include <cairo.h>
#include <math.h>
#include <poppler.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extract/extract.h"
#include "extract/ocr.h"

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

static bool blank_text(const char *t) {
  for (; *t; t++)
    if (*t != ' ' && *t != '\t' && *t != '\r' && *t != '\n' && *t != '\f')
      return false;
  return true;
}

/* Whether a page shows at least one image: a page with neither text nor
 * image is blank, and rendering it for OCR would find nothing. */
static bool has_image(PopplerPage *page) {
  GList *m = poppler_page_get_image_mapping(page);
  bool any = m != NULL;
  poppler_page_free_image_mapping(m);
  return any;
}

/* Renders page (number no) to pixels and reads it with OCR. */
static q_err_t page_ocr(extract_ctx_t *ctx, ocr_t *ocr, PopplerPage *page, int no) {
  double wpt = 0, hpt = 0;
  poppler_page_get_size(page, &wpt, &hpt);
  int dpi = ocr_render_dpi(ocr_settings(), wpt, hpt);
  if (!dpi)
    return extract_fail(ctx, Q_ETOOBIG,
                        "page %d (%.0f x %.0f points) is too large to render for OCR "
                        "within QUARRY_OCR_MAX_PIXELS",
                        no, wpt, hpt);
  int w = (int)ceil(wpt * dpi / 72.0), h = (int)ceil(hpt * dpi / 72.0);
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    return extract_fail(ctx, Q_ENOMEM, "out of memory rendering page %d for OCR", no);
  }
  cairo_t *cr = cairo_create(s);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_scale(cr, dpi / 72.0, dpi / 72.0);
  poppler_page_render(page, cr);
  cairo_destroy(cr);
  cairo_surface_flush(s);
  q_err_t rc = ocr_page_xrgb(ocr, ctx, cairo_image_surface_get_data(s), w, h,
                             cairo_image_surface_get_stride(s), dpi, no);
  cairo_surface_destroy(s);
  return rc;
}

/* With OCR on, Tesseract is loaded now, before the sandbox's lockdown: it
 * reads its language files, which the locked-down process cannot open.
 * That costs every PDF the load (docs/benchmarks.md), whether or not a
 * page needs OCR, since which pages do is known only once the document
 * is parsed, and parsing a hostile document is what the lockdown is for. */
static q_err_t pdf_prepare(extract_ctx_t *ctx) {
  if (!ocr_settings()->enabled)
    return Q_OK;
  ocr_t *ocr;
  q_err_t rc = ocr_new(ocr_settings(), &ocr, ctx->err, ctx->errlen);
  if (!rc)
    ctx->state = ocr;
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

static q_err_t pdf_read(extract_ctx_t *ctx, ocr_t *ocr) {
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
    if (ocr && (!t || blank_text(t)) && has_image(page))
      rc = page_ocr(ctx, ocr, page, i + 1);
    else if (t)
      rc = page_text(ctx, t, i + 1);
    g_free(t);
    g_object_unref(page);
  }
  g_object_unref(doc);
  return rc;
}

static q_err_t pdf_run(extract_ctx_t *ctx) {
  ocr_t *ocr = ctx->state;
  ctx->state = NULL;
  q_err_t rc = pdf_read(ctx, ocr);
  ocr_free(ocr);
  return rc;
}

const extractor_t extract_pdf = {"pdf", pdf_prepare, pdf_run};
