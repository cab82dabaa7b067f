/* chunker.c - word-window chunking: the strategies of chunker.h,
 * "structure" (sentence/paragraph preferences within the sections the
 * extractor found, tables kept whole or split between rows with their
 * header repeated) and "fixed" (exact windows over the whole text).
 *
 * Each strategy is a row of the table at the end of this file: how the
 * text is cut into spans (sections, or the whole text), whether tables are
 * kept, where a window's chunk ends and where the next one starts. Per
 * span, a window of at most target+1 words per chunk (fewer when
 * CHUNKER_MAX_BYTES is reached first), in which break candidates are
 * marked (gaps between words, sentence ends from q_text_sentences) and the
 * best one is picked. The next window starts inside the previous one by
 * the overlap, so words are scanned about 1 + overlap/target times. */
#include "chunker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"
#include "quarry/chunking.h"
#include "quarry/error.h"
#include "quarry/text.h"

/* What separates a word from the one before it, and its text in a chunk. */
enum { GAP_NONE = 0, GAP_SPACE, GAP_LINE, GAP_PARA };
static const char *const gap_text[] = {"", " ", "\n", "\n\n"};
enum {
  W_SENT_END = 1,
  W_TABLE = 2,      /* inside a table, not its first word */
  W_TABLE_START = 4 /* the first word of a table */
};

struct chunker_strategy {
  const char *name;
  bool sections; /* a chunk never spans two sections */
  bool tables;   /* tables kept whole, or split between rows with the header */
  /* Number of words of the window that go into this chunk. */
  size_t (*choose_end)(const chunker_t *c);
  /* Index of the word the next chunk starts with, this one ending before
   * word end. */
  size_t (*next_start)(const chunker_t *c, size_t end);
};

_Static_assert(CHUNKER_MAX_WORD + 2 <= CHUNKER_MAX_BYTES, "a chunk holds one word");

typedef struct word {
  size_t start, end;
  unsigned char gap;
  unsigned char flags;
} word_t;

struct chunker {
  const char *s; /* in.text */
  chunker_input_t in;
  chunker_opts_t o;
  size_t sec;     /* index of the next section */
  size_t cur;     /* where the next chunk starts, inside the section */
  size_t sec_end; /* end of the current section (cur == sec_end: none) */
  const char *heading;
  word_t *w; /* target + 1 entries */
  size_t nw;
  size_t fit; /* words of the window that fit in a chunk: target, or fewer when
                 CHUNKER_MAX_BYTES ended the window (w[fit] did not fit) */
  q_buf_t text;
  int ordinal;
  const chunker_strategy_t *st;
  size_t hard;    /* the window stopped before a table that starts here
                     (0: it did not) */
  size_t row_end; /* splitting one table row longer than a chunk: its end */
  size_t cbyte;   /* character count cache: cchar characters before cbyte */
  size_t cchar;
};

static bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The page of text at offset off: that of the last page mark at or
 * before it, 0 when there is none. */
static int page_at(const chunker_t *c, size_t off) {
  const chunker_page_t *p = c->in.pages;
  size_t lo = 0, hi = c->in.npages;
  while (lo < hi) { /* first mark past off */
    size_t mid = (lo + hi) / 2;
    if (p[mid].start <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo ? p[lo - 1].page : 0;
}

/* The heading path of the section holding offset off. */
static const char *heading_at(const chunker_t *c, size_t off) {
  const chunker_section_t *sc = c->in.sections;
  size_t lo = 0, hi = c->in.nsections;
  if (!sc || !c->in.headings)
    return "";
  while (lo < hi) { /* first section starting past off */
    size_t mid = (lo + hi) / 2;
    if (sc[mid].start <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo ? c->in.headings + sc[lo - 1].heading : "";
}

/* Index of the first table that ends past off (ntables when none). */
static size_t table_from(const chunker_t *c, size_t off) {
  const chunker_table_t *t = c->in.tables;
  size_t lo = 0, hi = c->in.ntables;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (t[mid].end <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The table holding offset off, NULL when off is in none. */
static const chunker_table_t *table_at(const chunker_t *c, size_t off) {
  size_t k = table_from(c, off);
  return k < c->in.ntables && c->in.tables[k].start <= off ? &c->in.tables[k] : NULL;
}

/* Characters (code points) in text[0..off). Moves a cache, so the short
 * steps back and forth of consecutive chunks cost what they cover. */
static size_t chars_at(chunker_t *c, size_t off) {
  const unsigned char *s = (const unsigned char *)c->s;
  if (off > c->in.len)
    off = c->in.len;
  for (; c->cbyte < off; c->cbyte++)
    c->cchar += (s[c->cbyte] & 0xC0) != 0x80;
  for (; c->cbyte > off; c->cbyte--)
    c->cchar -= (s[c->cbyte - 1] & 0xC0) != 0x80;
  return c->cchar;
}

/* Moves to the next span a window may cover: sets cur, sec_end and the
 * heading path. 0 when there is none left. Without sections (or for a
 * strategy that ignores them) the text is one span. */
static int next_section(chunker_t *c) {
  const chunker_input_t *in = &c->in;
  bool sections = c->st->sections && in->nsections;
  size_t n = sections ? in->nsections : 1;
  if (c->sec >= n)
    return 0;
  size_t i = c->sec++;
  size_t start = sections ? in->sections[i].start : 0;
  size_t end = sections && i + 1 < in->nsections ? in->sections[i + 1].start : in->len;
  c->cur = start < in->len ? start : in->len;
  c->sec_end = end < in->len ? end : in->len;
  if (c->sec_end < c->cur)
    c->sec_end = c->cur;
  c->heading = sections && in->headings ? in->headings + in->sections[i].heading : "";
  return 1;
}

/* Finds the next word from *i before end, cut at CHUNKER_MAX_WORD bytes:
 * sets [*start, *i) and the white space before it (*nl line breaks, *space
 * any). false when none is left. */
static bool next_word(const char *s, size_t *i, size_t end, size_t *start, int *nl,
                      int *space) {
  size_t k = *i;
  *nl = 0;
  *space = 0;
  while (k < end && is_ws(s[k])) {
    *nl += s[k] == '\n';
    *space = 1;
    k++;
  }
  if (k >= end) {
    *i = k;
    return false;
  }
  *start = k;
  while (k < end && !is_ws(s[k]) && k - *start < CHUNKER_MAX_WORD)
    k++;
  if (k < end && !is_ws(s[k])) /* cut a long word at a character boundary */
    k = *start + q_text_cut(s + *start, k - *start + 1, k - *start);
  if (k == *start) /* a character longer than the limit: cannot happen in UTF-8 */
    k = *start + 1;
  *i = k;
  return true;
}

/* Words in s[from..to) as a window counts them, stopping past max. */
static size_t count_words(const char *s, size_t from, size_t to, size_t max) {
  size_t n = 0, start;
  int nl, space;
  while (n <= max && next_word(s, &from, to, &start, &nl, &space))
    n++;
  return n;
}

/* Whether table t fits whole in a chunk that has words and bytes left. */
static bool table_fits(const chunker_t *c, const chunker_table_t *t, size_t words,
                       size_t bytes) {
  return t->end - t->start <= bytes &&
         count_words(c->s, t->start, t->end, words) <= words;
}

/* Collects up to target+1 words from cur: the words a chunk may hold plus
 * the one after them, which tells how the chunk's last word is followed.
 * Stops early at the first word that would take the chunk's text past
 * CHUNKER_MAX_BYTES; that word is then the one after. With tables kept,
 * it also stops before a table that the rest of the chunk cannot hold
 * whole (c->hard is then where it starts). */
static void fill_window(chunker_t *c) {
  const char *s = c->s;
  size_t i = c->cur, end = c->sec_end, max = (size_t)c->o.target_words + 1;
  size_t bytes = 0; /* of the text made of words w[0..nw) */
  size_t tk = c->st->tables ? table_from(c, i) : c->in.ntables;
  c->nw = 0;
  c->hard = 0;
  c->fit = (size_t)c->o.target_words;
  size_t start;
  int nl, space;
  while (c->nw < max && next_word(s, &i, end, &start, &nl, &space)) {
    unsigned char flags = 0;
    while (tk < c->in.ntables && c->in.tables[tk].end <= start)
      tk++;
    if (tk < c->in.ntables && c->in.tables[tk].start <= start) {
      const chunker_table_t *t = &c->in.tables[tk];
      flags = start == t->start ? W_TABLE_START : W_TABLE;
      if (start == t->start && c->nw > 0 && c->nw < (size_t)c->o.target_words &&
          !table_fits(c, t, (size_t)c->o.target_words - c->nw,
                      bytes + 2 < CHUNKER_MAX_BYTES ? CHUNKER_MAX_BYTES - bytes - 2
                                                    : 0)) {
        c->fit = c->nw;
        c->hard = start;
        break;
      }
    }
    word_t *w = &c->w[c->nw++];
    w->start = start;
    w->end = i;
    w->flags = flags;
    w->gap = c->nw == 1 ? GAP_NONE
             : nl >= 2  ? GAP_PARA
             : nl == 1  ? GAP_LINE
             : space    ? GAP_SPACE
                        : GAP_NONE;
    bytes += strlen(gap_text[w->gap]) + (w->end - w->start);
    if (bytes > CHUNKER_MAX_BYTES) {
      c->fit = c->nw - 1;
      break;
    }
  }
}

typedef struct mark_ctx {
  chunker_t *c;
} mark_ctx_t;

/* q_text_sentences callback: flags the word holding the sentence's last
 * byte as a sentence end. */
static int mark_sentence_cb(const char *start, size_t len, void *ud) {
  chunker_t *c = ((mark_ctx_t *)ud)->c;
  if (len == 0)
    return 0;
  size_t last = (size_t)(start - c->s) + len - 1;
  size_t lo = 0, hi = c->nw;
  while (lo < hi) { /* first word whose end is past last */
    size_t mid = (lo + hi) / 2;
    if (c->w[mid].end <= last)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < c->nw && c->w[lo].start <= last)
    c->w[lo].flags |= W_SENT_END;
  return 0;
}

static bool breaks_sentence(const chunker_t *c, size_t e) {
  return (c->w[e - 1].flags & W_SENT_END) || c->w[e].gap == GAP_PARA;
}

/* Whether a chunk ending before word e would cut a table. */
static bool splits_table(const chunker_t *c, size_t e) {
  return e < c->nw && (c->w[e].flags & W_TABLE);
}

/* structure: the best break of the window (chunker.h), never inside a
 * table. */
static size_t structure_end(const chunker_t *c) {
  size_t t = c->fit;
  if (c->nw <= t)
    return c->nw;
  size_t lo;
  lo = (2 * t + 2) / 3;
  for (size_t e = t; e >= (lo ? lo : 1); e--)
    if (c->w[e].gap == GAP_PARA && !splits_table(c, e))
      return e;
  for (size_t e = t; e >= 1; e--)
    if (breaks_sentence(c, e) && !splits_table(c, e))
      return e;
  lo = (3 * t + 3) / 4;
  for (size_t e = t; e >= (lo ? lo : 1); e--)
    if (c->w[e].gap >= GAP_LINE && !splits_table(c, e))
      return e;
  size_t e = t;
  while (e > 0 && splits_table(c, e)) /* back to the table's first word */
    e--;
  return e > 0 ? e : t;
}

/* structure: back by the overlap, moved forward to a sentence start if
 * one lies inside the overlap; no overlap into a table, nor before one
 * that starts the next chunk (the table would not fit after the overlap,
 * and the overlap would be a chunk of its own). */
static size_t structure_next(const chunker_t *c, size_t end) {
  size_t ov = (size_t)c->o.overlap_words;
  if (ov > end / 2)
    ov = end / 2;
  if (ov == 0 || (end < c->nw && (c->w[end].flags & W_TABLE_START)))
    return end;
  for (size_t b = end - ov; b < end; b++)
    if (c->w[b].flags & (W_TABLE | W_TABLE_START))
      return end;
  for (size_t b = end - ov; b < end; b++)
    if (b > 0 && breaks_sentence(c, b))
      return b;
  return end - ov;
}

/* fixed: exactly the window. */
static size_t fixed_end(const chunker_t *c) {
  return c->nw <= c->fit ? c->nw : c->fit;
}

/* fixed: exactly overlap words back (at most half the chunk). */
static size_t fixed_next(const chunker_t *c, size_t end) {
  size_t ov = (size_t)c->o.overlap_words;
  if (ov > end / 2)
    ov = end / 2;
  return end - ov;
}

static const chunker_strategy_t strategies[] = {
    {"structure", true, true, structure_end, structure_next},
    {"fixed", false, false, fixed_end, fixed_next},
};

const chunker_strategy_t *chunker_strategy(const char *name) {
  for (size_t i = 0; name && i < sizeof strategies / sizeof *strategies; i++)
    if (strcmp(strategies[i].name, name) == 0)
      return &strategies[i];
  return NULL;
}

const char *chunker_strategy_name(const chunker_strategy_t *s) {
  return s ? s->name : CHUNKER_DEFAULT_STRATEGY;
}

static q_err_t compose(chunker_t *c, size_t end) {
  q_buf_reset(&c->text);
  for (size_t i = 0; i < end; i++) {
    const word_t *w = &c->w[i];
    if (i > 0 && q_buf_puts(&c->text, gap_text[w->gap]))
      return Q_ENOMEM;
    if (q_buf_append(&c->text, c->s + w->start, w->end - w->start))
      return Q_ENOMEM;
  }
  return Q_OK;
}

/* One piece of table t from cur (a row's start): as many whole rows as
 * fit, after the header row repeated unless the piece starts the table.
 * 0 when not even one row fits (it is then split like a paragraph);
 * 1 with *out set; Q_ENOMEM. */
static int table_piece(chunker_t *c, const chunker_table_t *t, chunk_t *out) {
  const char *s = c->s;
  size_t target = (size_t)c->o.target_words;
  size_t hw = 0, hb = 0; /* the repeated header: words, bytes with its line break */
  if (c->cur > t->start) {
    hw = count_words(s, t->start, t->header_end, target);
    hb = t->header_end - t->start + 1;
    if (hw >= target || hb >= CHUNKER_MAX_BYTES)
      hw = hb = 0; /* a header that fills a chunk is not repeated */
  }
  size_t words = 0, p = c->cur, rows_end = c->cur;
  while (p < t->end) {
    const char *nl = memchr(s + p, '\n', t->end - p);
    size_t re = nl ? (size_t)(nl - s) : t->end;
    size_t rw = count_words(s, p, re, target);
    if (hw + words + rw > target || hb + (re - c->cur) > CHUNKER_MAX_BYTES)
      break;
    words += rw;
    rows_end = re;
    p = re + 1;
  }
  if (rows_end == c->cur)
    return 0;
  q_buf_reset(&c->text);
  if (hb && (q_buf_append(&c->text, s + t->start, t->header_end - t->start) ||
             q_buf_puts(&c->text, "\n")))
    return Q_ENOMEM;
  if (q_buf_append(&c->text, s + c->cur, rows_end - c->cur))
    return Q_ENOMEM;
  out->text = c->text.data;
  out->len = c->text.len;
  out->heading = c->heading;
  out->page = page_at(c, c->cur);
  out->ordinal = c->ordinal++;
  out->words = (int)(hw + words);
  out->lead = hb;
  out->start = chars_at(c, c->cur);
  out->end = chars_at(c, rows_end);
  c->cur = rows_end < t->end ? rows_end + 1 : t->end;
  return 1;
}

int chunker_next(chunker_t *c, chunk_t *out) {
  for (;;) {
    if (c->cur >= c->sec_end) {
      if (!next_section(c))
        return 0;
      continue;
    }
    size_t span_end = c->sec_end;
    if (c->row_end && c->cur >= c->row_end)
      c->row_end = 0;
    if (c->st->tables && !c->row_end) {
      /* Skip white space so cur is where the next word starts. */
      while (c->cur < c->sec_end && is_ws(c->s[c->cur]))
        c->cur++;
      const chunker_table_t *t = c->cur < c->sec_end ? table_at(c, c->cur) : NULL;
      if (t && (c->cur > t->start ||
                !table_fits(c, t, (size_t)c->o.target_words, CHUNKER_MAX_BYTES))) {
        int rc = table_piece(c, t, out);
        if (rc)
          return rc;
        /* One row longer than a chunk: split it like a paragraph. */
        const char *nl = memchr(c->s + c->cur, '\n', t->end - c->cur);
        c->row_end = nl ? (size_t)(nl - c->s) : t->end;
      }
    }
    if (c->row_end)
      c->sec_end = c->row_end; /* the window stays inside the row */
    fill_window(c);
    c->sec_end = span_end;
    if (c->nw == 0) {
      c->cur = c->row_end ? c->row_end : c->sec_end;
      continue;
    }
    mark_ctx_t mc = {c};
    q_text_sentences(c->s + c->w[0].start, c->w[c->nw - 1].end - c->w[0].start,
                     mark_sentence_cb, &mc);
    size_t end = c->st->choose_end(c);
    if (compose(c, end))
      return Q_ENOMEM;
    if (c->hard && end == c->nw)
      c->cur = c->hard; /* the table starts the next chunk */
    else if (end == c->nw && c->nw <= (size_t)c->o.target_words)
      c->cur = c->row_end ? c->row_end : c->sec_end; /* the rest fitted */
    else
      c->cur = c->w[c->st->next_start(c, end)].start;

    out->text = c->text.data ? c->text.data : "";
    out->len = c->text.len;
    out->heading = c->st->sections ? c->heading : heading_at(c, c->w[0].start);
    out->page = page_at(c, c->w[0].start);
    out->ordinal = c->ordinal++;
    out->words = (int)end;
    out->lead = 0;
    out->start = chars_at(c, c->w[0].start);
    out->end = chars_at(c, c->w[end - 1].end);
    return 1;
  }
}

q_err_t chunker_new(const chunker_input_t *in, const chunker_opts_t *opts,
                    chunker_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (opts->target_words < 1 || opts->target_words > CHUNKER_MAX_TARGET) {
    snprintf(err, errlen, "chunk size must be 1..%d words", CHUNKER_MAX_TARGET);
    return Q_EINVAL;
  }
  if (opts->overlap_words < 0 || opts->overlap_words > opts->target_words / 2) {
    snprintf(err, errlen, "chunk overlap must be 0..%d words (half the chunk size)",
             opts->target_words / 2);
    return Q_EINVAL;
  }
  chunker_t *c = calloc(1, sizeof *c);
  if (!c || !(c->w = calloc((size_t)opts->target_words + 1, sizeof *c->w))) {
    free(c);
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  c->in = *in;
  if (!c->in.text) {
    c->in.text = "";
    c->in.len = 0;
  }
  if (!c->in.tables)
    c->in.ntables = 0;
  c->s = c->in.text;
  c->heading = "";
  c->o = *opts;
  c->st = opts->strategy ? opts->strategy : chunker_strategy(CHUNKER_DEFAULT_STRATEGY);
  q_buf_init(&c->text, CHUNKER_MAX_BYTES);
  *out = c;
  return Q_OK;
}

void chunker_free(chunker_t *c) {
  if (!c)
    return;
  q_buf_cleanup(&c->text);
  free(c->w);
  free(c);
}

size_t chunker_chunk_id(char *out, size_t outlen, const char *doc_id, int version,
                        int ordinal) {
  int k = snprintf(out, outlen, "%s:%d:%d", doc_id, version, ordinal);
  if (k < 0 || (size_t)k >= outlen) {
    if (outlen)
      out[0] = '\0';
    return 0;
  }
  return (size_t)k;
}

q_err_t chunker_opts_parse(const char *spec, const chunker_opts_t *def,
                           chunker_opts_t *out, char *err, size_t errlen) {
  q_chunking_t c;
  q_err_t rc = q_chunking_parse(spec, &c, err, errlen);
  if (rc)
    return rc;
  *out = *def;
  if (c.strategy[0] && !(out->strategy = chunker_strategy(c.strategy))) {
    snprintf(err, errlen, "chunking: unknown strategy \"%s\"", c.strategy);
    return Q_EINVAL;
  }
  if (c.tokens > 0) {
    out->target_words = c.tokens;
    if (out->overlap_words > c.tokens / 2)
      out->overlap_words = c.tokens / 2;
  }
  if (c.overlap >= 0)
    out->overlap_words = c.overlap;
  return Q_OK;
}

size_t chunker_opts_format(const chunker_opts_t *o, char *out, size_t outlen) {
  q_chunking_t c = {"", o->target_words, o->overlap_words};
  snprintf(c.strategy, sizeof c.strategy, "%s", chunker_strategy_name(o->strategy));
  return q_chunking_format(&c, out, outlen);
}
