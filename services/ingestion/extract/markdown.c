/* extract/markdown.c - Markdown with md4c (CommonMark plus GitHub tables
 * and strikethrough): ATX and Setext headings become EXTRACT_HEADING (the
 * first level-1 heading is also the title), list items keep their nesting,
 * table rows their cells, code blocks their lines. What is markup and not
 * text goes: emphasis markers, link targets, image URLs (the alt text
 * stays), raw HTML. */
#include <md4c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extract/extract.h"

#define TEXT_MAX (64u << 20)

typedef struct md {
  extract_ctx_t *ctx;
  q_buf_t text;   /* the block being collected */
  int list_depth; /* open UL/OL */
  int li_depth;   /* open LI */
  int html;       /* inside a raw HTML block: skipped */
  int titled;     /* the title was emitted */
  q_err_t rc;
} md_t;

static int stop(md_t *m, q_err_t rc) {
  m->rc = rc;
  return 1;
}

/* Emits what was collected: a list item inside a list item, else a
 * paragraph. */
static int flush(md_t *m) {
  if (m->text.len == 0)
    return 0;
  q_err_t rc = m->li_depth > 0 ? extract_emit(m->ctx, EXTRACT_LIST_ITEM, m->list_depth, 0,
                                              m->text.data, m->text.len)
                               : extract_emit(m->ctx, EXTRACT_PARAGRAPH, 0, 0,
                                              m->text.data, m->text.len);
  q_buf_reset(&m->text);
  return rc ? stop(m, rc) : 0;
}

static int enter_block_cb(MD_BLOCKTYPE type, void *detail, void *ud) {
  md_t *m = ud;
  switch (type) {
  case MD_BLOCK_UL:
  case MD_BLOCK_OL: {
    int r = flush(m); /* the text of the item that holds this list */
    m->list_depth++;
    return r;
  }
  case MD_BLOCK_LI: m->li_depth++; return flush(m);
  case MD_BLOCK_HTML: m->html++; return flush(m);
  case MD_BLOCK_TR:
  case MD_BLOCK_TH:
  case MD_BLOCK_TD: return 0;
  default: return flush(m);
  }
}

static int leave_block_cb(MD_BLOCKTYPE type, void *detail, void *ud) {
  md_t *m = ud;
  q_err_t rc = Q_OK;
  switch (type) {
  case MD_BLOCK_H: {
    int level = (int)((MD_BLOCK_H_DETAIL *)detail)->level;
    if (level == 1 && !m->titled && m->text.len) {
      m->titled = 1;
      rc = extract_emit(m->ctx, EXTRACT_TITLE, 0, 0, m->text.data, m->text.len);
    }
    if (!rc)
      rc = extract_emit(m->ctx, EXTRACT_HEADING, level, 0, m->text.data, m->text.len);
    q_buf_reset(&m->text);
    return rc ? stop(m, rc) : 0;
  }
  case MD_BLOCK_TH:
  case MD_BLOCK_TD:
    rc = extract_cell(m->ctx, m->text.data ? m->text.data : "", m->text.len);
    q_buf_reset(&m->text);
    return rc ? stop(m, rc) : 0;
  case MD_BLOCK_TR: rc = extract_row_end(m->ctx, 0); return rc ? stop(m, rc) : 0;
  case MD_BLOCK_HTML:
    m->html--;
    q_buf_reset(&m->text);
    return 0;
  case MD_BLOCK_LI: {
    int r = flush(m);
    m->li_depth--;
    return r;
  }
  case MD_BLOCK_UL:
  case MD_BLOCK_OL: m->list_depth--; return flush(m);
  default: return flush(m);
  }
}

static int span_cb(MD_SPANTYPE type, void *detail, void *ud) {
  return 0;
}

/* The character an entity stands for, as UTF-8 into out (at least 5
 * bytes). 0 when it is not one Quarry knows: the entity stays as written. */
static size_t entity(const char *s, size_t n, char *out) {
  static const struct {
    const char *name, *utf8;
  } named[] = {{"&amp;", "&"},
               {"&lt;", "<"},
               {"&gt;", ">"},
               {"&quot;", "\""},
               {"&apos;", "'"},
               {"&nbsp;", " "},
               {"&copy;", "\xc2\xa9"},
               {"&reg;", "\xc2\xae"},
               {"&mdash;", "\xe2\x80\x94"},
               {"&ndash;", "\xe2\x80\x93"},
               {"&hellip;", "\xe2\x80\xa6"},
               {"&euro;", "\xe2\x82\xac"}};
  for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
    if (strlen(named[i].name) == n && memcmp(s, named[i].name, n) == 0) {
      size_t k = strlen(named[i].utf8);
      memcpy(out, named[i].utf8, k);
      return k;
    }
  if (n < 4 || s[1] != '#')
    return 0;
  unsigned long cp = 0;
  bool hex = s[2] == 'x' || s[2] == 'X';
  for (size_t i = hex ? 3 : 2; i + 1 < n; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9'          ? c - '0'
            : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
            : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
    if (d < 0 || cp > 0x10ffff)
      return 0;
    cp = cp * (hex ? 16 : 10) + (unsigned long)d;
  }
  if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    cp = 0xfffd;
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

static int text_cb(MD_TEXTTYPE type, const MD_CHAR *text, MD_SIZE size, void *ud) {
  md_t *m = ud;
  if (m->html || type == MD_TEXT_HTML)
    return 0;
  q_err_t rc;
  char buf[8];
  size_t k;
  switch (type) {
  case MD_TEXT_BR: rc = q_buf_append(&m->text, "\n", 1); break;
  case MD_TEXT_SOFTBR: rc = q_buf_append(&m->text, " ", 1); break;
  case MD_TEXT_NULLCHAR: rc = q_buf_append(&m->text, "\xef\xbf\xbd", 3); break;
  case MD_TEXT_ENTITY:
    k = entity(text, size, buf);
    rc = k ? q_buf_append(&m->text, buf, k) : q_buf_append(&m->text, text, size);
    break;
  default: rc = q_buf_append(&m->text, text, size); break;
  }
  if (rc == Q_ETOOBIG)
    return stop(m, extract_fail(m->ctx, rc, "a Markdown block is larger than %u MiB",
                                TEXT_MAX >> 20));
  return rc ? stop(m, extract_fail(m->ctx, rc, "out of memory")) : 0;
}

static q_err_t md_prepare(extract_ctx_t *ctx) {
  return extract_decode_prepare(ctx, false);
}

static q_err_t md_run(extract_ctx_t *ctx) {
  char *t;
  size_t n;
  q_err_t rc = extract_decode(ctx, &t, &n);
  if (rc)
    return rc;
  if (n > (MD_SIZE)-1) {
    free(t);
    return extract_fail(ctx, Q_ETOOBIG,
                        "the document is too large for the Markdown parser");
  }
  md_t m = {.ctx = ctx};
  q_buf_init(&m.text, TEXT_MAX);
  MD_PARSER p = {0};
  p.flags = MD_FLAG_TABLES | MD_FLAG_STRIKETHROUGH | MD_FLAG_PERMISSIVEAUTOLINKS;
  p.enter_block = enter_block_cb;
  p.leave_block = leave_block_cb;
  p.enter_span = span_cb;
  p.leave_span = span_cb;
  p.text = text_cb;
  int r = md_parse(t, (MD_SIZE)n, &p, &m);
  if (!m.rc && r == 0)
    flush(&m);
  rc = m.rc;
  if (!rc && r != 0)
    rc = extract_fail(ctx, r == -1 ? Q_ENOMEM : Q_EINVAL, "the Markdown parser failed");
  q_buf_cleanup(&m.text);
  free(t);
  return rc;
}

const extractor_t extract_markdown = {"markdown", md_prepare, md_run};
