/* extract/html.c - HTML with libxml2's HTML parser (forgiving, as browsers
 * are). The page is decoded to UTF-8 first (extract_decode: declared
 * charset, BOM, <meta charset>, UTF-8, uchardet) and parsed with its own
 * encoding hint ignored. Then the tree is walked: <title> is the title;
 * h1..h6 are headings; p, div, li, tr and the other block elements end a
 * paragraph, a list item or a table row; <pre> keeps its line breaks.
 * Dropped with everything inside: script, style, noscript, template, svg,
 * iframe, object, nav, anything hidden (hidden, aria-hidden="true") or
 * with role navigation/banner/contentinfo, and header and footer unless
 * they belong to an article, main or section (a page's banner and footer
 * are boilerplate; an article's header holds its heading). Nesting deeper
 * than limits.max_depth fails the document. */
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "extract/extract.h"

#define TEXT_MAX (64u << 20)

typedef struct walk {
  extract_ctx_t *ctx;
  q_buf_t text;   /* the paragraph, list item, heading or cell being collected */
  int list_depth; /* open ul/ol */
  int in_li;
  int in_content;  /* inside article, main or section */
  int inline_only; /* collecting a heading or a cell: blocks add a space */
  int pre;
  int titled;
  q_err_t rc;
} walk_t;

static const char *const dropped[] = {"script", "style",  "noscript", "template", "svg",
                                      "iframe", "object", "embed",    "canvas",   "nav",
                                      "select", "head",   "math",     NULL};
static const char *const blocks[] = {
    "p",      "div",        "section", "article", "main",    "blockquote", "address",
    "figure", "figcaption", "dl",      "dt",      "dd",      "form",       "fieldset",
    "center", "details",    "summary", "aside",   "caption", "hr",         "body",
    "html",   "table",      "thead",   "tbody",   "tfoot",   "legend",     NULL};

static bool name_in(const char *name, const char *const *set) {
  for (; *set; set++)
    if (strcmp(name, *set) == 0)
      return true;
  return false;
}

static bool attr_is(xmlNode *n, const char *attr, const char *value) {
  xmlChar *v = xmlGetProp(n, (const xmlChar *)attr);
  bool r = v && (!value || strcasecmp((const char *)v, value) == 0);
  xmlFree(v);
  return r;
}

static bool dropped_element(walk_t *w, xmlNode *n, const char *name) {
  if (name_in(name, dropped))
    return true;
  if ((strcmp(name, "header") == 0 || strcmp(name, "footer") == 0) && !w->in_content)
    return true;
  return attr_is(n, "hidden", NULL) || attr_is(n, "aria-hidden", "true") ||
         attr_is(n, "role", "navigation") || attr_is(n, "role", "banner") ||
         attr_is(n, "role", "contentinfo");
}

static void fail(walk_t *w, q_err_t rc) {
  if (!w->rc)
    w->rc = rc;
}

static void add(walk_t *w, const char *s, size_t n) {
  if (w->rc)
    return;
  q_err_t rc = q_buf_append(&w->text, s, n);
  if (rc == Q_ETOOBIG)
    fail(w, extract_fail(w->ctx, rc, "a block of the page is larger than %u MiB",
                         TEXT_MAX >> 20));
  else if (rc)
    fail(w, extract_fail(w->ctx, rc, "out of memory"));
}

/* Emits the collected text as a list item (inside li) or a paragraph. */
static void flush(walk_t *w) {
  if (w->rc || w->text.len == 0)
    return;
  q_err_t rc =
      w->in_li ? extract_emit(w->ctx, EXTRACT_LIST_ITEM, w->list_depth, 0, w->text.data,
                              w->text.len)
               : extract_emit(w->ctx, EXTRACT_PARAGRAPH, 0, 0, w->text.data, w->text.len);
  q_buf_reset(&w->text);
  fail(w, rc);
}

/* A block boundary: the end of a paragraph, or a space inside a heading
 * or a cell. */
static void boundary(walk_t *w) {
  if (w->inline_only)
    add(w, " ", 1);
  else
    flush(w);
}

static void add_text(walk_t *w, const char *s) {
  size_t n = strlen(s);
  if (w->pre) {
    add(w, s, n);
    return;
  }
  /* Outside <pre>, line breaks in the source are spaces. */
  for (size_t i = 0; i < n && !w->rc;) {
    size_t k = strcspn(s + i, "\n\r\t");
    add(w, s + i, k);
    i += k;
    if (i < n) {
      add(w, " ", 1);
      i++;
    }
  }
}

static void walk(walk_t *w, xmlNode *n, int depth);

static void children(walk_t *w, xmlNode *n, int depth) {
  for (xmlNode *c = n->children; c && !w->rc; c = c->next)
    walk(w, c, depth + 1);
}

/* Collects n's text on its own (a heading or a cell) and returns it in
 * w->text, the text collected before it having been flushed. */
static void collect(walk_t *w, xmlNode *n, int depth) {
  flush(w);
  w->inline_only++;
  children(w, n, depth);
  w->inline_only--;
}

static void row(walk_t *w, xmlNode *tr, int depth) {
  flush(w);
  for (xmlNode *c = tr->children; c && !w->rc; c = c->next) {
    if (c->type != XML_ELEMENT_NODE)
      continue;
    const char *name = (const char *)c->name;
    if (strcmp(name, "td") != 0 && strcmp(name, "th") != 0)
      continue;
    w->inline_only++;
    children(w, c, depth + 1);
    w->inline_only--;
    if (!w->rc)
      fail(w, extract_cell(w->ctx, w->text.data ? w->text.data : "", w->text.len));
    q_buf_reset(&w->text);
  }
  if (!w->rc)
    fail(w, extract_row_end(w->ctx, 0));
}

static void element(walk_t *w, xmlNode *n, int depth) {
  const char *name = (const char *)n->name;
  if (dropped_element(w, n, name))
    return;
  if (strcmp(name, "br") == 0) {
    add(w, w->inline_only ? " " : "\n", 1);
    return;
  }
  if (w->inline_only) { /* inside a heading or a cell: text only */
    if (name_in(name, blocks) || strcmp(name, "li") == 0 || strcmp(name, "tr") == 0)
      add(w, " ", 1);
    children(w, n, depth);
    return;
  }
  if (name[0] == 'h' && name[1] >= '1' && name[1] <= '6' && !name[2]) {
    collect(w, n, depth);
    if (!w->rc)
      fail(w, extract_emit(w->ctx, EXTRACT_HEADING, name[1] - '0', 0,
                           w->text.data ? w->text.data : "", w->text.len));
    q_buf_reset(&w->text);
    return;
  }
  if (strcmp(name, "tr") == 0) {
    row(w, n, depth);
    return;
  }
  if (strcmp(name, "ul") == 0 || strcmp(name, "ol") == 0) {
    flush(w);
    w->list_depth++;
    children(w, n, depth);
    flush(w);
    w->list_depth--;
    return;
  }
  if (strcmp(name, "li") == 0) {
    flush(w);
    int outer = w->in_li;
    w->in_li = 1;
    if (!w->list_depth)
      w->list_depth = 1;
    children(w, n, depth);
    flush(w);
    w->in_li = outer;
    return;
  }
  if (strcmp(name, "pre") == 0) {
    flush(w);
    w->pre++;
    children(w, n, depth);
    w->pre--;
    flush(w);
    return;
  }
  bool content = strcmp(name, "article") == 0 || strcmp(name, "main") == 0 ||
                 strcmp(name, "section") == 0;
  bool block = name_in(name, blocks);
  w->in_content += content;
  if (block)
    boundary(w);
  children(w, n, depth);
  if (block)
    boundary(w);
  w->in_content -= content;
}

static void walk(walk_t *w, xmlNode *n, int depth) {
  if (w->rc)
    return;
  if (depth > w->ctx->limits.max_depth) {
    fail(w, extract_fail(w->ctx, Q_EINVAL, "elements are nested deeper than %d levels",
                         w->ctx->limits.max_depth));
    return;
  }
  switch (n->type) {
  case XML_ELEMENT_NODE: element(w, n, depth); break;
  case XML_TEXT_NODE:
  case XML_CDATA_SECTION_NODE:
    if (n->content)
      add_text(w, (const char *)n->content);
    break;
  default: break; /* comments, processing instructions, entity references */
  }
}

/* The first <title> anywhere in the tree, iteratively (the depth check
 * comes with the walk). */
static void find_title(walk_t *w, xmlNode *root) {
  for (xmlNode *n = root; n && !w->titled;) {
    if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, "title") == 0) {
      xmlChar *t = xmlNodeGetContent(n);
      if (t && *t) {
        w->titled = 1;
        fail(w, extract_emit(w->ctx, EXTRACT_TITLE, 0, 0, (const char *)t,
                             strlen((const char *)t)));
      }
      xmlFree(t);
      return;
    }
    if (n->type == XML_ELEMENT_NODE && n->children &&
        strcmp((const char *)n->name, "body") != 0) {
      n = n->children;
      continue;
    }
    while (n && !n->next)
      n = n->parent && n->parent->type == XML_ELEMENT_NODE ? n->parent : NULL;
    if (n)
      n = n->next;
  }
}

static void silent_cb(void *ctx, const char *msg, ...) {}

static q_err_t html_prepare(extract_ctx_t *ctx) {
  xmlInitParser();
  xmlSetGenericErrorFunc(NULL, silent_cb);
  return extract_decode_prepare(ctx, true);
}

static q_err_t html_run(extract_ctx_t *ctx) {
  char *t;
  size_t n;
  q_err_t rc = extract_decode(ctx, &t, &n);
  if (rc)
    return rc;
  if (n > (size_t)INT32_MAX) {
    free(t);
    return extract_fail(ctx, Q_ETOOBIG, "the page is too large for the HTML parser");
  }
  int opts = HTML_PARSE_RECOVER | HTML_PARSE_NONET | HTML_PARSE_NOERROR |
             HTML_PARSE_NOWARNING | HTML_PARSE_COMPACT | HTML_PARSE_IGNORE_ENC;
  htmlDocPtr doc = htmlReadMemory(t, (int)n, NULL, "UTF-8", opts);
  free(t);
  if (!doc)
    return extract_fail(ctx, Q_EINVAL, "the HTML parser could not read the page");
  walk_t w = {.ctx = ctx};
  q_buf_init(&w.text, TEXT_MAX);
  xmlNode *root = xmlDocGetRootElement(doc);
  if (root) {
    find_title(&w, root);
    /* <html lang="..."> declares the page's language. */
    xmlChar *lang = xmlGetProp(root, (const xmlChar *)"lang");
    if (lang && *lang)
      fail(&w, extract_emit(ctx, EXTRACT_LANGUAGE, 0, 0, (const char *)lang,
                            strlen((const char *)lang)));
    xmlFree(lang);
    walk(&w, root, 1);
    flush(&w);
  }
  rc = w.rc;
  q_buf_cleanup(&w.text);
  xmlFreeDoc(doc);
  return rc;
}

const extractor_t extract_html = {"html", html_prepare, html_run};
