/* extract_fixtures.h - documents the extractor tests make on the fly (a
 * PDF written object by object, a DOCX zipped with libzip) and a sink that
 * keeps every record, shared by test_extract.c and test_sandbox.c. Header
 * only (static inline): a test binary is built from its test_*.c alone. */
#ifndef QUARRY_TEST_EXTRACT_FIXTURES_H
#define QUARRY_TEST_EXTRACT_FIXTURES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "extract/extract.h"
#include "quarry/buf.h"

#define REC_MAX 256

typedef struct recs {
  int n;
  int kind[REC_MAX], level[REC_MAX], page[REC_MAX];
  char *text[REC_MAX];
} recs_t;

/* An extract_sink_cb that appends to a recs_t (ud). */
static inline q_err_t recs_sink_cb(void *ud, extract_kind_t kind, int level, int page,
                                   const char *text, size_t len) {
  recs_t *r = ud;
  if (r->n >= REC_MAX)
    return Q_ETOOBIG;
  r->kind[r->n] = kind;
  r->level[r->n] = level;
  r->page[r->n] = page;
  r->text[r->n] = strndup(text, len);
  r->n++;
  return Q_OK;
}

static inline void recs_free(recs_t *r) {
  for (int i = 0; i < r->n; i++)
    free(r->text[i]);
  r->n = 0;
}

/* Index of the first record of kind whose text is text, or -1. */
static inline int recs_find(const recs_t *r, int kind, const char *text) {
  for (int i = 0; i < r->n; i++)
    if (r->kind[i] == kind && strcmp(r->text[i], text) == 0)
      return i;
  return -1;
}

/* Whether any record's text contains s. */
static inline bool recs_contain(const recs_t *r, const char *s) {
  for (int i = 0; i < r->n; i++)
    if (strstr(r->text[i], s))
      return true;
  return false;
}

static const extract_limits_t fixture_limits = {64 << 20, 64 << 20, 1000, 256};

/* Runs x in-process on data[0..n) with lim (NULL: generous limits). The
 * records go to r, a failure's reason to err. */
static inline q_err_t run_extractor(const extractor_t *x, const char *data, size_t n,
                                    const char *charset, const extract_limits_t *lim,
                                    recs_t *r, char *err, size_t errlen) {
  extract_ctx_t ctx;
  memset(r, 0, sizeof *r);
  extract_ctx_init(&ctx, data, n, charset, lim ? lim : &fixture_limits, recs_sink_cb, r,
                   err, errlen);
  q_err_t rc = extract_run(x, &ctx);
  extract_ctx_cleanup(&ctx);
  return rc;
}

static inline void pdf_string(q_buf_t *b, const char *s) {
  q_buf_puts(b, "(");
  for (; *s; s++) {
    if (*s == '(' || *s == ')' || *s == '\\')
      q_buf_puts(b, "\\");
    q_buf_append(b, s, 1);
  }
  q_buf_puts(b, ")");
}

/* A PDF of npages pages in Helvetica; page i holds the lines lines[i][0..]
 * (NULL-ended). title and author may be NULL. Returns malloc()ed bytes,
 * *len set. Cross-reference offsets are exact. */
static inline char *make_pdf(const char *const *const *lines, int npages,
                             const char *title, const char *author, size_t *len) {
  q_buf_t b;
  q_buf_init(&b, 1 << 20);
  size_t off[64];
  int nobj = 0;
  q_buf_puts(&b, "%PDF-1.4\n");
  /* 1 catalog, 2 pages, 3 font, then content + page per page, then info. */
  int first_page = 4, info = first_page + 2 * npages;
  off[++nobj] = b.len;
  q_buf_printf(&b, "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
  off[++nobj] = b.len;
  q_buf_puts(&b, "2 0 obj\n<< /Type /Pages /Kids [");
  for (int i = 0; i < npages; i++)
    q_buf_printf(&b, "%d 0 R ", first_page + 2 * i + 1);
  q_buf_printf(&b, "] /Count %d >>\nendobj\n", npages);
  off[++nobj] = b.len;
  q_buf_puts(&b,
             "3 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n");
  for (int i = 0; i < npages; i++) {
    q_buf_t c;
    q_buf_init(&c, 1 << 20);
    q_buf_puts(&c, "BT /F1 12 Tf 72 720 Td 16 TL\n");
    for (int k = 0; lines[i][k]; k++) {
      pdf_string(&c, lines[i][k]);
      q_buf_puts(&c, " Tj T*\n");
    }
    q_buf_puts(&c, "ET");
    off[++nobj] = b.len;
    q_buf_printf(&b, "%d 0 obj\n<< /Length %zu >>\nstream\n%s\nendstream\nendobj\n", nobj,
                 c.len, c.data);
    q_buf_cleanup(&c);
    off[++nobj] = b.len;
    q_buf_printf(&b,
                 "%d 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                 "/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>\nendobj\n",
                 nobj, nobj - 1);
  }
  if (title || author) {
    off[++nobj] = b.len;
    q_buf_printf(&b, "%d 0 obj\n<< ", nobj);
    if (title) {
      q_buf_puts(&b, "/Title ");
      pdf_string(&b, title);
    }
    if (author) {
      q_buf_puts(&b, " /Author ");
      pdf_string(&b, author);
    }
    q_buf_puts(&b, " >>\nendobj\n");
  }
  size_t xref = b.len;
  q_buf_printf(&b, "xref\n0 %d\n0000000000 65535 f \n", nobj + 1);
  for (int i = 1; i <= nobj; i++)
    q_buf_printf(&b, "%010zu 00000 n \n", off[i]);
  q_buf_printf(&b, "trailer\n<< /Size %d /Root 1 0 R", nobj + 1);
  if (title || author)
    q_buf_printf(&b, " /Info %d 0 R", info);
  q_buf_printf(&b, " >>\nstartxref\n%zu\n%%%%EOF\n", xref);
  *len = b.len;
  return q_buf_steal(&b);
}

/* A ZIP of the given members (names[i] holding datas[i], NULL-ended;
 * sizes[i] bytes, or strlen when sizes is NULL), as malloc()ed bytes. */
static inline char *make_zip_sized(const char *const *names, const char *const *datas,
                                   const size_t *sizes, size_t *len) {
  char path[] = "/tmp/quarry-test-zip-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  int ze;
  zip_t *z = zip_open(path, ZIP_TRUNCATE, &ze);
  for (int i = 0; z && names[i]; i++) {
    size_t n = sizes ? sizes[i] : strlen(datas[i]);
    zip_source_t *s = zip_source_buffer(z, datas[i], n, 0);
    zip_file_add(z, names[i], s, ZIP_FL_OVERWRITE);
  }
  zip_close(z);
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)size + 1);
  *len = fread(buf, 1, (size_t)size, f);
  fclose(f);
  unlink(path);
  return buf;
}

static inline char *make_zip(const char *const *names, const char *const *datas,
                             size_t *len) {
  return make_zip_sized(names, datas, NULL, len);
}

#define W_NS "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

/* A DOCX whose word/document.xml body is body (w:p and w:tbl elements),
 * with a styles.xml naming Heading1 and Heading2 and an outline-level
 * style "Custom3", and docProps/core.xml when title is given. */
static inline char *make_docx(const char *body, const char *title, const char *author,
                              size_t *len) {
  q_buf_t doc, core;
  q_buf_init(&doc, 64 << 20);
  q_buf_init(&core, 1 << 20);
  q_buf_printf(&doc,
               "<?xml version=\"1.0\"?><w:document xmlns:w=\"" W_NS "\"><w:body>%s"
               "</w:body></w:document>",
               body);
  q_buf_printf(&core,
               "<?xml version=\"1.0\"?><cp:coreProperties xmlns:cp=\"urn:cp\" "
               "xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:title>%s</dc:title>"
               "<dc:creator>%s</dc:creator></cp:coreProperties>",
               title ? title : "", author ? author : "");
  const char *styles =
      "<?xml version=\"1.0\"?><w:styles xmlns:w=\"" W_NS "\">"
      "<w:style w:type=\"paragraph\" w:styleId=\"Heading1\"><w:name w:val=\"heading 1\"/>"
      "</w:style><w:style w:type=\"paragraph\" w:styleId=\"Heading2\"><w:name "
      "w:val=\"heading 2\"/></w:style><w:style w:type=\"paragraph\" "
      "w:styleId=\"Custom3\">"
      "<w:name w:val=\"Custom\"/><w:pPr><w:outlineLvl w:val=\"2\"/></w:pPr></w:style>"
      "</w:styles>";
  const char *names[] = {"[Content_Types].xml", "word/document.xml", "word/styles.xml",
                         title ? "docProps/core.xml" : NULL, NULL};
  const char *datas[] = {"<Types/>", doc.data, styles, core.data, NULL};
  char *z = make_zip(names, datas, len);
  q_buf_cleanup(&doc);
  q_buf_cleanup(&core);
  return z;
}

#endif
