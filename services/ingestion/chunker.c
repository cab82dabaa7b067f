/* chunker.c - word-window chunking with sentence/paragraph preferences,
 * within the sections the extractor found (see chunker.h).
 *
 * Per section, a window of at most target+1 words per chunk (fewer when
 * CHUNKER_MAX_BYTES is reached first), in which break candidates are
 * marked (gaps between words, sentence ends from q_text_sentences) and the
 * best one is picked. The next window starts inside the previous one by
 * the overlap, so words are scanned about 1 + overlap/target times. */
#include "chunker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/text.h"

/* What separates a word from the one before it, and its text in a chunk. */
enum { GAP_NONE = 0, GAP_SPACE, GAP_LINE, GAP_PARA };
static const char *const gap_text[] = {"", " ", "\n", "\n\n"};
enum { W_SENT_END = 1 };

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

/* Moves to the next section: sets cur, sec_end and the heading path. 0
 * when there is none left. Without sections the text is one section
 * without a heading. */
static int next_section(chunker_t *c) {
  const chunker_input_t *in = &c->in;
  size_t n = in->nsections ? in->nsections : 1;
  if (c->sec >= n)
    return 0;
  size_t i = c->sec++;
  size_t start = in->nsections ? in->sections[i].start : 0;
  size_t end = i + 1 < in->nsections ? in->sections[i + 1].start : in->len;
  c->cur = start < in->len ? start : in->len;
  c->sec_end = end < in->len ? end : in->len;
  if (c->sec_end < c->cur)
    c->sec_end = c->cur;
  c->heading =
      in->nsections && in->headings ? in->headings + in->sections[i].heading : "";
  return 1;
}

/* Collects up to target+1 words from cur: the words a chunk may hold plus
 * the one after them, which tells how the chunk's last word is followed.
 * Stops early at the first word that would take the chunk's text past
 * CHUNKER_MAX_BYTES; that word is then the one after. */
static void fill_window(chunker_t *c) {
  const char *s = c->s;
  size_t i = c->cur, end = c->sec_end, max = (size_t)c->o.target_words + 1;
  size_t bytes = 0; /* of the text made of words w[0..nw) */
  c->nw = 0;
  c->fit = (size_t)c->o.target_words;
  while (c->nw < max) {
    int nl = 0, space = 0;
    while (i < end && is_ws(s[i])) {
      nl += s[i] == '\n';
      space = 1;
      i++;
    }
    if (i >= end)
      break;
    size_t start = i;
    while (i < end && !is_ws(s[i]) && i - start < CHUNKER_MAX_WORD)
      i++;
    if (i < end && !is_ws(s[i])) /* cut a long word at a character boundary */
      i = start + q_text_cut(s + start, i - start + 1, i - start);
    if (i == start) /* a character longer than the limit: cannot happen in UTF-8 */
      i = start + 1;
    word_t *w = &c->w[c->nw++];
    w->start = start;
    w->end = i;
    w->flags = 0;
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

/* Number of words of the window that go into this chunk. */
static size_t choose_end(const chunker_t *c) {
  size_t t = c->fit;
  if (c->nw <= t)
    return c->nw;
  size_t lo;
  lo = (2 * t + 2) / 3;
  for (size_t e = t; e >= (lo ? lo : 1); e--)
    if (c->w[e].gap == GAP_PARA)
      return e;
  lo = (t + 1) / 2;
  for (size_t e = t; e >= (lo ? lo : 1); e--)
    if (breaks_sentence(c, e))
      return e;
  lo = (3 * t + 3) / 4;
  for (size_t e = t; e >= (lo ? lo : 1); e--)
    if (c->w[e].gap >= GAP_LINE)
      return e;
  return t;
}

/* Index of the word the next chunk starts with, given this one ends before
 * word end: back by the overlap, moved forward to a sentence start if one
 * lies inside the overlap. */
static size_t overlap_start(const chunker_t *c, size_t end) {
  size_t ov = (size_t)c->o.overlap_words;
  if (ov > end / 2)
    ov = end / 2;
  if (ov == 0)
    return end;
  for (size_t b = end - ov; b < end; b++)
    if (b > 0 && breaks_sentence(c, b))
      return b;
  return end - ov;
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

int chunker_next(chunker_t *c, chunk_t *out) {
  for (;;) {
    if (c->cur >= c->sec_end) {
      if (!next_section(c))
        return 0;
      continue;
    }
    fill_window(c);
    if (c->nw == 0) {
      c->cur = c->sec_end;
      continue;
    }
    mark_ctx_t mc = {c};
    q_text_sentences(c->s + c->w[0].start, c->w[c->nw - 1].end - c->w[0].start,
                     mark_sentence_cb, &mc);
    size_t end = choose_end(c);
    if (compose(c, end))
      return Q_ENOMEM;
    if (end == c->nw && c->nw <= (size_t)c->o.target_words)
      c->cur = c->sec_end; /* the rest of the section fitted */
    else
      c->cur = c->w[overlap_start(c, end)].start;

    out->text = c->text.data ? c->text.data : "";
    out->len = c->text.len;
    out->heading = c->heading;
    out->page = page_at(c, c->w[0].start);
    out->ordinal = c->ordinal++;
    out->words = (int)end;
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
  c->s = c->in.text;
  c->heading = "";
  c->o = *opts;
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
