/* chunker.c - word-window chunking with sentence/paragraph preferences and
 * Markdown sections (see chunker.h).
 *
 * Two passes over the text, both linear: a section scan (line by line, to
 * find where the next heading starts and to track code fences), then a
 * window of at most target+1 words per chunk (fewer when CHUNKER_MAX_BYTES
 * is reached first), in which break candidates are marked (gaps between
 * words, sentence ends from q_text_sentences) and the best one is picked.
 * The next window starts inside the previous one by the overlap, so words
 * are scanned about 1 + overlap/target times. */
#include "chunker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/text.h"

#define HEADING_TEXT_MAX 200 /* bytes kept of one heading's text */

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
  const char *s;
  size_t n;
  chunker_opts_t o;
  size_t pos;     /* next line the section scan looks at */
  size_t cur;     /* where the next chunk starts, inside the section */
  size_t sec_end; /* end of the current section (cur == sec_end: none) */
  int in_fence;
  char fence_ch;
  size_t fence_len;
  char levels[6][HEADING_TEXT_MAX + 1];
  char heading[CHUNKER_HEADING_MAX];
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

static size_t line_end(const char *s, size_t n, size_t i) {
  const char *nl = memchr(s + i, '\n', n - i);
  return nl ? (size_t)(nl - s) : n;
}

/* Up to three spaces of indentation, as CommonMark allows. */
static size_t skip_indent(const char *s, size_t i, size_t e) {
  size_t k = 0;
  while (i < e && s[i] == ' ' && k < 3) {
    i++;
    k++;
  }
  return i;
}

/* An ATX heading on line [i, e): 1 with level and trimmed text range. */
static bool heading_line(const char *s, size_t i, size_t e, int *level, size_t *ts,
                         size_t *te) {
  i = skip_indent(s, i, e);
  size_t h = i;
  while (i < e && s[i] == '#' && i - h < 7)
    i++;
  int lv = (int)(i - h);
  if (lv < 1 || lv > 6)
    return 0;
  if (i < e && s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
    return 0;
  while (i < e && is_ws(s[i]))
    i++;
  size_t end = e;
  while (end > i && is_ws(s[end - 1]))
    end--;
  /* A closing run of #s goes when it stands alone or after a space. */
  size_t k = end;
  while (k > i && s[k - 1] == '#')
    k--;
  if (k < end && (k == i || s[k - 1] == ' ' || s[k - 1] == '\t')) {
    end = k;
    while (end > i && is_ws(s[end - 1]))
      end--;
  }
  *level = lv;
  *ts = i;
  *te = end;
  return 1;
}

/* A code fence line (``` or ~~~, three or more): 1 with its char/length. */
static bool fence_line(const char *s, size_t i, size_t e, char *ch, size_t *len) {
  i = skip_indent(s, i, e);
  if (i >= e || (s[i] != '`' && s[i] != '~'))
    return 0;
  size_t k = i;
  while (k < e && s[k] == s[i])
    k++;
  if (k - i < 3)
    return 0;
  *ch = s[i];
  *len = k - i;
  return 1;
}

/* Tracks fences line by line; returns 1 when the line is inside (or opens
 * or closes) a fenced block, where headings do not count. */
static int fence_step(int *in_fence, char *fch, size_t *flen, const char *s, size_t i,
                      size_t e) {
  char ch;
  size_t len;
  if (fence_line(s, i, e, &ch, &len)) {
    if (!*in_fence) {
      *in_fence = 1;
      *fch = ch;
      *flen = len;
    } else if (ch == *fch && len >= *flen) {
      *in_fence = 0;
    }
    return 1;
  }
  return *in_fence;
}

static void copy_cut(char *dst, size_t dstlen, const char *src, size_t len) {
  len = q_text_cut(src, len, dstlen - 1);
  memcpy(dst, src, len);
  dst[len] = '\0';
}

static void build_heading_path(chunker_t *c) {
  size_t used = 0;
  c->heading[0] = '\0';
  for (int l = 0; l < 6; l++) {
    if (!c->levels[l][0])
      continue;
    const char *sep = used ? " > " : "";
    size_t need = strlen(sep) + strlen(c->levels[l]);
    if (used + need >= sizeof c->heading) {
      /* Keep what fits, cut at a character boundary. */
      char tmp[CHUNKER_HEADING_MAX];
      snprintf(tmp, sizeof tmp, "%s%s", sep, c->levels[l]);
      copy_cut(c->heading + used, sizeof c->heading - used, tmp, strlen(tmp));
      return;
    }
    memcpy(c->heading + used, sep, strlen(sep));
    memcpy(c->heading + used + strlen(sep), c->levels[l], strlen(c->levels[l]) + 1);
    used += need;
  }
}

/* Finds the next section with text: sets cur, sec_end and the heading path.
 * 0 when the text is exhausted. */
static int next_section(chunker_t *c) {
  const char *s = c->s;
  size_t n = c->n, i = c->pos, body = (size_t)-1;
  int has_text = 0;
  while (i < n) {
    size_t e = line_end(s, n, i);
    if (c->o.markdown) {
      int level;
      size_t ts, te;
      int fenced = fence_step(&c->in_fence, &c->fence_ch, &c->fence_len, s, i, e);
      if (!fenced && heading_line(s, i, e, &level, &ts, &te)) {
        if (has_text) {
          c->pos = i; /* the heading opens the next section */
          c->cur = body;
          c->sec_end = i;
          build_heading_path(c);
          return 1;
        }
        copy_cut(c->levels[level - 1], sizeof c->levels[level - 1], s + ts, te - ts);
        for (int l = level; l < 6; l++)
          c->levels[l][0] = '\0';
        body = (size_t)-1;
        i = e < n ? e + 1 : n;
        continue;
      }
    }
    if (body == (size_t)-1)
      body = i;
    for (size_t k = i; k < e && !has_text; k++)
      has_text = !is_ws(s[k]);
    i = e < n ? e + 1 : n;
  }
  c->pos = n;
  if (!has_text)
    return 0;
  c->cur = body;
  c->sec_end = n;
  build_heading_path(c);
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
    out->ordinal = c->ordinal++;
    out->words = (int)end;
    return 1;
  }
}

q_err_t chunker_new(const char *text, size_t n, const chunker_opts_t *opts,
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
  c->s = text ? text : "";
  c->n = text ? n : 0;
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

size_t chunker_markdown_title(const char *s, size_t n, char *out, size_t outlen) {
  int in_fence = 0;
  char fch = 0;
  size_t flen = 0;
  if (outlen)
    out[0] = '\0';
  for (size_t i = 0; i < n;) {
    size_t e = line_end(s, n, i);
    int level;
    size_t ts, te;
    if (!fence_step(&in_fence, &fch, &flen, s, i, e) &&
        heading_line(s, i, e, &level, &ts, &te) && level == 1 && te > ts && outlen) {
      copy_cut(out, outlen, s + ts, te - ts);
      return strlen(out);
    }
    i = e < n ? e + 1 : n;
  }
  return 0;
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
