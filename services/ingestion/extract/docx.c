/* extract/docx.c - Word documents (Office Open XML): a ZIP archive read
 * with libzip, whose XML members are parsed with libxml2.
 *
 *   word/document.xml  the body: paragraphs (w:p), tables (w:tbl),
 *                      content controls (w:sdt), text boxes
 *   word/styles.xml    which paragraph styles are headings: a style named
 *                      "heading N" or "Title", or with an outline level
 *   docProps/core.xml  title (dc:title) and author (dc:creator)
 *
 * A paragraph with a heading style is a heading; one with numbering
 * (w:numPr) or a list style is a list item at level w:ilvl + 1; each table
 * row is a row of cells. Deleted text (tracked changes), field codes and
 * the fallback copy of text boxes are skipped. DOCX has no fixed pages, so
 * page is 0.
 *
 * Hostile archives: more than limits.max_zip_entries members, or a member
 * that unpacks to more than limits.max_unzipped_bytes (counted while
 * unpacking, whatever the archive claims), fails the document. XML is
 * parsed without network access, without loading external DTDs or
 * entities, without substituting entities (so a billion laughs stays a
 * handful of references, which the walk skips) and with libxml2's default
 * limits on depth and sizes (no XML_PARSE_HUGE). */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zip.h>

#include "extract/extract.h"

#define TEXT_MAX (64u << 20)
#define MAX_STYLES 4096

typedef struct style {
  char id[64];
  int heading; /* 1..6, 0 when not a heading */
  bool list;
} style_t;

typedef struct docx {
  extract_ctx_t *ctx;
  zip_t *zip;
  style_t *styles;
  size_t nstyles;
  q_buf_t text;
  int in_cell;
  q_err_t rc;
} docx_t;

static void fail(docx_t *d, q_err_t rc) {
  if (!d->rc)
    d->rc = rc;
}

static bool is(const xmlNode *n, const char *name) {
  return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* The value of attribute name (any namespace: w:val is "val") of n (may be
 * NULL), or NULL. Points into the tree. */
static const char *attr(const xmlNode *n, const char *name) {
  for (xmlAttr *a = n ? n->properties : NULL; a; a = a->next)
    if (strcmp((const char *)a->name, name) == 0 && a->children &&
        a->children->type == XML_TEXT_NODE)
      return (const char *)a->children->content;
  return NULL;
}

static const xmlNode *child(const xmlNode *n, const char *name) {
  for (const xmlNode *c = n ? n->children : NULL; c; c = c->next)
    if (is(c, name))
      return c;
  return NULL;
}

/* Reads member name into *out (malloc()ed) counting every byte against
 * the unpacked limit. Q_ENOTFOUND when there is no such member. */
static q_err_t read_member(docx_t *d, const char *name, char **out, size_t *outlen) {
  extract_ctx_t *ctx = d->ctx;
  *out = NULL;
  *outlen = 0;
  zip_int64_t idx = zip_name_locate(d->zip, name, 0);
  if (idx < 0)
    return Q_ENOTFOUND;
  size_t max = (size_t)ctx->limits.max_unzipped_bytes;
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(d->zip, (zip_uint64_t)idx, 0, &st) == 0 &&
      (st.valid & ZIP_STAT_SIZE) && st.size > max)
    return extract_fail(ctx, Q_ETOOBIG, "%s unpacks to more than %zu MiB (a zip bomb?)",
                        name, max >> 20);
  zip_file_t *f = zip_fopen_index(d->zip, (zip_uint64_t)idx, 0);
  if (!f) {
    int ze = zip_error_code_zip(zip_get_error(d->zip));
    if (ze == ZIP_ER_NOPASSWD || ze == ZIP_ER_WRONGPASSWD)
      return extract_fail(ctx, Q_EUNSUPPORTED, "the document is password protected");
    return extract_fail(ctx, Q_EINVAL, "cannot open %s in the archive: %s", name,
                        zip_strerror(d->zip));
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  q_err_t rc = buf ? Q_OK : extract_fail(ctx, Q_ENOMEM, "out of memory");
  while (!rc) {
    if (len + 65536 + 1 > cap) {
      if (cap > max + 1) {
        rc = extract_fail(ctx, Q_ETOOBIG, "%s unpacks to more than %zu MiB (a zip bomb?)",
                          name, max >> 20);
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        rc = extract_fail(ctx, Q_ENOMEM, "out of memory");
        break;
      }
      buf = nb;
      cap *= 2;
    }
    zip_int64_t r = zip_fread(f, buf + len, 65536);
    if (r < 0)
      rc = extract_fail(ctx, Q_EINVAL, "%s is damaged: %s", name, zip_file_strerror(f));
    else if (r == 0)
      break;
    else if ((len += (size_t)r) > max)
      rc = extract_fail(ctx, Q_ETOOBIG, "%s unpacks to more than %zu MiB (a zip bomb?)",
                        name, max >> 20);
  }
  zip_fclose(f);
  if (rc) {
    free(buf);
    return rc;
  }
  buf[len] = '\0';
  *out = buf;
  *outlen = len;
  return Q_OK;
}

static xmlParserInputPtr no_entities_cb(const char *url, const char *id,
                                        xmlParserCtxtPtr c) {
  return NULL; /* nothing outside the archive is ever loaded */
}

static xmlDocPtr parse_member(docx_t *d, const char *name, bool required) {
  char *xml;
  size_t n;
  q_err_t rc = read_member(d, name, &xml, &n);
  if (rc == Q_ENOTFOUND) {
    if (required)
      fail(d, extract_fail(d->ctx, Q_EINVAL, "not a Word document: the archive has no %s",
                           name));
    return NULL;
  }
  if (rc) {
    fail(d, rc);
    return NULL;
  }
  if (n > (size_t)INT32_MAX) {
    free(xml);
    fail(d, extract_fail(d->ctx, Q_ETOOBIG, "%s is too large", name));
    return NULL;
  }
  int opts =
      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_COMPACT;
  xmlDocPtr doc = xmlReadMemory(xml, (int)n, name, NULL, opts);
  free(xml);
  if (!doc && required) {
    const xmlError *e = xmlGetLastError();
    char why[160] = "";
    if (e && e->message) {
      snprintf(why, sizeof why, ": %s", e->message);
      size_t k = strlen(why);
      while (k > 0 && (why[k - 1] == '\n' || why[k - 1] == ' '))
        why[--k] = '\0';
    }
    fail(d, extract_fail(d->ctx, Q_EINVAL, "%s is not well-formed XML%s", name, why));
  }
  return doc;
}

/* ---- styles ------------------------------------------------------------------ */

static int heading_level_of_name(const char *name) {
  if (!name)
    return 0;
  if (strcasecmp(name, "title") == 0)
    return 1;
  if (strncasecmp(name, "heading", 7) == 0) {
    const char *p = name + 7;
    while (*p == ' ')
      p++;
    if (*p >= '1' && *p <= '9' && !p[1])
      return *p - '0' > 6 ? 6 : *p - '0';
  }
  return 0;
}

static void load_styles(docx_t *d) {
  xmlDocPtr doc = parse_member(d, "word/styles.xml", false);
  xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
  size_t n = 0;
  for (xmlNode *s = root ? root->children : NULL; s; s = s->next)
    n += is(s, "style");
  if (n > MAX_STYLES)
    n = MAX_STYLES;
  d->styles = n ? calloc(n, sizeof *d->styles) : NULL;
  for (xmlNode *s = root ? root->children : NULL; s && d->styles && d->nstyles < n;
       s = s->next) {
    const char *id = attr(s, "styleId");
    if (!is(s, "style") || !id)
      continue;
    style_t *st = &d->styles[d->nstyles++];
    snprintf(st->id, sizeof st->id, "%s", id);
    const char *name = attr(child(s, "name"), "val");
    st->heading = heading_level_of_name(name);
    const char *v = attr(child(child(s, "pPr"), "outlineLvl"), "val");
    if (!st->heading && v && v[0] >= '0' && v[0] <= '5' && !v[1])
      st->heading = v[0] - '0' + 1;
    st->list = name && strncasecmp(name, "list", 4) == 0;
  }
  if (doc)
    xmlFreeDoc(doc);
}

static const style_t *style(const docx_t *d, const char *id) {
  for (size_t i = 0; id && i < d->nstyles; i++)
    if (strcmp(d->styles[i].id, id) == 0)
      return &d->styles[i];
  return NULL;
}

/* ---- the body ---------------------------------------------------------------- */

static void add(docx_t *d, const char *s, size_t n) {
  if (d->rc)
    return;
  q_err_t rc = q_buf_append(&d->text, s, n);
  if (rc)
    fail(d, rc == Q_ETOOBIG
                ? extract_fail(d->ctx, rc, "a paragraph is larger than %u MiB",
                               TEXT_MAX >> 20)
                : extract_fail(d->ctx, rc, "out of memory"));
}

static void table(docx_t *d, const xmlNode *tbl, int depth);

/* Appends the text under n (runs, hyperlinks, insertions, text boxes...). */
static void inline_text(docx_t *d, const xmlNode *n, int depth) {
  if (depth > d->ctx->limits.max_depth) {
    fail(d, extract_fail(d->ctx, Q_EINVAL, "elements are nested deeper than %d levels",
                         d->ctx->limits.max_depth));
    return;
  }
  for (const xmlNode *c = n->children; c && !d->rc; c = c->next) {
    if (c->type != XML_ELEMENT_NODE)
      continue; /* entity references are never expanded */
    const char *name = (const char *)c->name;
    if (is(c, "t")) {
      for (const xmlNode *t = c->children; t; t = t->next)
        if ((t->type == XML_TEXT_NODE || t->type == XML_CDATA_SECTION_NODE) && t->content)
          add(d, (const char *)t->content, strlen((const char *)t->content));
    } else if (is(c, "tab")) {
      add(d, " ", 1);
    } else if (is(c, "br") || is(c, "cr")) {
      add(d, d->in_cell ? " " : "\n", 1);
    } else if (is(c, "noBreakHyphen")) {
      add(d, "-", 1);
    } else if (is(c, "p")) { /* a paragraph in a text box */
      add(d, " ", 1);
      inline_text(d, c, depth + 1);
      add(d, " ", 1);
    } else if (is(c, "tbl")) {
      add(d, " ", 1);
      d->in_cell++;
      inline_text(d, c, depth + 1);
      d->in_cell--;
      add(d, " ", 1);
    } else if (strcmp(name, "del") == 0 || strcmp(name, "delText") == 0 ||
               strcmp(name, "instrText") == 0 || strcmp(name, "Fallback") == 0 ||
               strcmp(name, "rPr") == 0 || strcmp(name, "pPr") == 0) {
      continue;
    } else {
      inline_text(d, c, depth + 1);
    }
  }
}

static void paragraph(docx_t *d, const xmlNode *p, int depth) {
  q_buf_reset(&d->text);
  inline_text(d, p, depth);
  if (d->rc || d->text.len == 0)
    return;
  const xmlNode *ppr = child(p, "pPr");
  const char *sid = attr(child(ppr, "pStyle"), "val");
  const style_t *st = style(d, sid);
  int heading = st ? st->heading : heading_level_of_name(sid);
  const char *lv = attr(child(ppr, "outlineLvl"), "val");
  if (!heading && lv && lv[0] >= '0' && lv[0] <= '5' && !lv[1])
    heading = lv[0] - '0' + 1;
  const xmlNode *num = child(ppr, "numPr");
  const char *numid = attr(child(num, "numId"), "val");
  const char *ilvl = attr(child(num, "ilvl"), "val");
  bool list = (num && !(numid && strcmp(numid, "0") == 0)) || (st && st->list);
  q_err_t rc;
  if (heading)
    rc = extract_emit(d->ctx, EXTRACT_HEADING, heading, 0, d->text.data, d->text.len);
  else if (list)
    rc = extract_emit(d->ctx, EXTRACT_LIST_ITEM, ilvl ? atoi(ilvl) + 1 : 1, 0,
                      d->text.data, d->text.len);
  else
    rc = extract_emit(d->ctx, EXTRACT_PARAGRAPH, 0, 0, d->text.data, d->text.len);
  q_buf_reset(&d->text);
  fail(d, rc);
}

static void table(docx_t *d, const xmlNode *tbl, int depth) {
  for (const xmlNode *tr = tbl->children; tr && !d->rc; tr = tr->next) {
    if (!is(tr, "tr"))
      continue;
    for (const xmlNode *tc = tr->children; tc && !d->rc; tc = tc->next) {
      if (!is(tc, "tc"))
        continue;
      q_buf_reset(&d->text);
      d->in_cell++;
      for (const xmlNode *c = tc->children; c && !d->rc; c = c->next)
        if (is(c, "p") || is(c, "tbl") || is(c, "sdt")) {
          inline_text(d, c, depth + 2);
          add(d, " ", 1);
        }
      d->in_cell--;
      if (!d->rc)
        fail(d, extract_cell(d->ctx, d->text.data ? d->text.data : "", d->text.len));
    }
    if (!d->rc)
      fail(d, extract_row_end(d->ctx, 0));
  }
  q_buf_reset(&d->text);
}

static void blocks(docx_t *d, const xmlNode *parent, int depth) {
  if (depth > d->ctx->limits.max_depth) {
    fail(d, extract_fail(d->ctx, Q_EINVAL, "elements are nested deeper than %d levels",
                         d->ctx->limits.max_depth));
    return;
  }
  for (const xmlNode *c = parent->children; c && !d->rc; c = c->next) {
    if (is(c, "p"))
      paragraph(d, c, depth + 1);
    else if (is(c, "tbl"))
      table(d, c, depth + 1);
    else if (is(c, "sdt") || is(c, "sdtContent") || is(c, "customXml") || is(c, "ins") ||
             is(c, "smartTag"))
      blocks(d, c, depth + 1);
  }
}

/* ---- metadata ---------------------------------------------------------------- */

static void metadata(docx_t *d) {
  xmlDocPtr doc = parse_member(d, "docProps/core.xml", false);
  xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
  for (xmlNode *c = root ? root->children : NULL; c && !d->rc; c = c->next) {
    extract_kind_t k = is(c, "title")      ? EXTRACT_TITLE
                       : is(c, "creator")  ? EXTRACT_AUTHOR
                       : is(c, "created")  ? EXTRACT_CREATED
                       : is(c, "modified") ? EXTRACT_MODIFIED
                       : is(c, "language") ? EXTRACT_LANGUAGE
                                           : 0;
    const xmlNode *t = c->children;
    if (k && t && t->type == XML_TEXT_NODE && t->content)
      fail(d, extract_emit(d->ctx, k, 0, 0, (const char *)t->content,
                           strlen((const char *)t->content)));
  }
  if (doc)
    xmlFreeDoc(doc);
}

static q_err_t docx_prepare(extract_ctx_t *ctx) {
  xmlInitParser();
  return Q_OK;
}

static q_err_t docx_run(extract_ctx_t *ctx) {
  xmlSetExternalEntityLoader(no_entities_cb);
  docx_t d = {.ctx = ctx};
  q_buf_init(&d.text, TEXT_MAX);
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t *src = zip_source_buffer_create(ctx->data, ctx->size, 0, &ze);
  if (src && !(d.zip = zip_open_from_source(src, ZIP_RDONLY, &ze)))
    zip_source_free(src);
  if (!d.zip) {
    q_err_t rc = extract_fail(ctx, Q_EINVAL, "the ZIP archive is damaged: %s",
                              zip_error_strerror(&ze));
    zip_error_fini(&ze);
    q_buf_cleanup(&d.text);
    return rc;
  }
  zip_error_fini(&ze);
  zip_int64_t entries = zip_get_num_entries(d.zip, 0);
  if (entries > ctx->limits.max_zip_entries)
    fail(&d, extract_fail(ctx, Q_ETOOBIG, "the archive has %lld members, more than %d",
                          (long long)entries, ctx->limits.max_zip_entries));
  xmlDocPtr body = d.rc ? NULL : parse_member(&d, "word/document.xml", true);
  if (body) {
    metadata(&d);
    load_styles(&d);
    xmlNode *root = xmlDocGetRootElement(body);
    const xmlNode *b = child(root, "body");
    if (!d.rc && !b)
      fail(&d, extract_fail(ctx, Q_EINVAL, "word/document.xml has no body"));
    if (!d.rc)
      blocks(&d, b, 1);
    xmlFreeDoc(body);
  }
  zip_discard(d.zip);
  free(d.styles);
  q_buf_cleanup(&d.text);
  return d.rc;
}

const extractor_t extract_docx = {"docx", docx_prepare, docx_run};
