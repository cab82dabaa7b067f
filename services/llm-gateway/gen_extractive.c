/* gen_extractive.c - the built-in answerer: quotes the passages' best
 * sentences and cites them.
 *
 * No language model is involved, so nothing is made up: every sentence of
 * the answer is copied from a passage and followed by the marker [n] of the
 * passage it came from. How sentences are chosen:
 *   1. Every passage is split into sentences (q_text_sentences) and every
 *      sentence is tokenized with the shared tokenizer, like the query.
 *   2. A query term's weight is its idf over all the passages' sentences
 *      (BM25's form), so rare, specific words count more than common ones.
 *   3. A sentence's coverage is the share of the query's total weight whose
 *      terms it contains (0..1); terms found only in the sentence just
 *      before it count a quarter. Its score adds a small prior for
 *      sentences early in their passage and for passages ranked higher,
 *      and discounts very short fragments. Headings and questions are
 *      context only: they name a topic but answer nothing.
 *   4. The best sentence is taken when its coverage reaches MIN_COVERAGE;
 *      up to two more follow if they cover at least FOLLOW_SHARE of the
 *      best one's coverage, preferring passages not yet cited.
 * When nothing reaches the threshold the answer says so plainly, with no
 * markers. The answer is streamed one word at a time. */
#include "provider.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/text.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUERY_TERMS 64           /* one bit each in a sentence's mask */
#define MAX_SENTENCES 8192           /* over all passages */
#define MAX_PASSAGE_SCAN (32u << 10) /* bytes of each passage looked at */
#define MAX_SENTENCE_OUT 400         /* bytes of a quoted sentence */
#define MAX_PICKS 3
#define MIN_COVERAGE 0.5
#define FOLLOW_SHARE 0.6
#define SEEN_PASSAGE_FACTOR 0.75 /* a second sentence from a cited passage */
#define CONTEXT_WEIGHT 0.25      /* a query term only in the sentence before */

static const char NO_ANSWER[] =
    "The provided documents do not contain an answer to this question.";

typedef struct sentence {
  const char *s;
  size_t len;
  size_t passage;
  size_t pos;   /* index of the sentence inside its passage */
  int heading;  /* a Markdown heading: context, never quoted */
  int question; /* ends with '?': asks rather than answers, never quoted */
  int words;
  uint64_t mask; /* which query terms occur */
  double coverage;
  double score;
} sentence_t;

typedef struct query_terms {
  char term[MAX_QUERY_TERMS][Q_TEXT_MAX_TERM + 1];
  size_t n;
} query_terms_t;

typedef struct split_state {
  sentence_t *v;
  size_t n;
  size_t passage;
  size_t pos;
} split_state_t;

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int gen_count_words(const char *s, size_t n) {
  int words = 0;
  for (size_t i = 0; i < n; i++)
    if (!is_space(s[i]) && (i == 0 || is_space(s[i - 1])))
      words++;
  return words;
}

static int query_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  query_terms_t *q = ud;
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->term[i], term) == 0)
      return 0;
  if (q->n == MAX_QUERY_TERMS)
    return 1;
  if (len > Q_TEXT_MAX_TERM)
    len = Q_TEXT_MAX_TERM;
  memcpy(q->term[q->n], term, len);
  q->term[q->n][len] = '\0';
  q->n++;
  return 0;
}

static int sentence_cb(const char *start, size_t len, void *ud) {
  split_state_t *st = ud;
  if (st->n == MAX_SENTENCES)
    return 1;
  sentence_t *s = &st->v[st->n++];
  memset(s, 0, sizeof *s);
  /* Markdown headings: keep the words, drop the #s, remember what it was. */
  while (len > 0 && (*start == '#' || is_space(*start))) {
    if (*start == '#')
      s->heading = 1;
    start++;
    len--;
  }
  s->s = start;
  s->len = len;
  s->passage = st->passage;
  s->pos = st->pos++;
  s->words = gen_count_words(start, len);
  s->question = len > 0 && start[len - 1] == '?';
  if (len == 0)
    st->n--; /* a bare "#" line */
  return 0;
}

typedef struct mask_state {
  const query_terms_t *q;
  uint64_t mask;
} mask_state_t;

static int mask_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  mask_state_t *m = ud;
  for (size_t i = 0; i < m->q->n; i++)
    if (strcmp(m->q->term[i], term) == 0)
      m->mask |= 1ull << i;
  return 0;
}

/* Appends one word of a quoted sentence. Bracketed numbers in the source
 * text ("as shown in [12]") become "(12)": in the answer, [n] must only
 * ever be this answer's own citation markers. */
static void append_word(q_buf_t *out, const char *w, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t j = i + 1;
    if (w[i] == '[') {
      while (j < n && w[j] >= '0' && w[j] <= '9')
        j++;
      if (j > i + 1 && j < n && w[j] == ']') {
        q_buf_puts(out, "(");
        q_buf_append(out, w + i + 1, j - i - 1);
        q_buf_puts(out, ")");
        i = j + 1;
        continue;
      }
      j = i + 1;
    }
    q_buf_append(out, w + i, j - i);
    i = j;
  }
}

/* Appends a sentence with its white space collapsed, cut to at most
 * max_words words and MAX_SENTENCE_OUT bytes (at a word boundary, so UTF-8
 * stays whole). Returns the words written. */
static int append_sentence(q_buf_t *out, const sentence_t *s, int max_words) {
  int words = 0;
  size_t written = 0;
  size_t i = 0;

  while (i < s->len) {
    while (i < s->len && is_space(s->s[i]))
      i++;
    size_t start = i;
    while (i < s->len && !is_space(s->s[i]))
      i++;
    size_t wl = i - start;
    if (wl == 0)
      break;
    if (words == max_words || (words > 0 && written + 1 + wl > MAX_SENTENCE_OUT)) {
      q_buf_puts(out, "..."); /* glued on: the word count stays the same */
      break;
    }
    if (words > 0)
      q_buf_puts(out, " ");
    if (wl > MAX_SENTENCE_OUT) {
      /* One enormous "word" (a URL, base64): cut it at a code point. */
      wl = q_text_cut(s->s + start, wl, MAX_SENTENCE_OUT);
    }
    append_word(out, s->s + start, wl);
    written += wl + (words > 0);
    words++;
  }
  return words;
}

q_err_t gen_emit_words(const char *answer, size_t len, gen_emit_cb emit, void *ud) {
  size_t i = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && !is_space(answer[i]))
      i++;
    while (i < len && is_space(answer[i]))
      i++;
    if (emit(answer + start, i - start, ud))
      return Q_ECANCELLED;
  }
  return 0;
}

static int extractive_generate(const generator_t *g, const char *query,
                               const gen_passage_t *passages, size_t n, int max_tokens,
                               gen_emit_cb emit, void *ud, gen_usage_t *usage, char *err,
                               size_t errlen) {
  query_terms_t *q = NULL;
  split_state_t st = {0};
  q_buf_t answer;
  size_t picks[MAX_PICKS];
  size_t npicks = 0;
  int rc = 0;

  q_buf_init(&answer, 16u << 10);
  memset(usage, 0, sizeof *usage);
  usage->prompt_tokens = gen_count_words(query, strlen(query));
  for (size_t p = 0; p < n; p++)
    usage->prompt_tokens += gen_count_words(passages[p].text, passages[p].text_len);

  q = calloc(1, sizeof *q);
  st.v = calloc(MAX_SENTENCES, sizeof *st.v);
  if (!q || !st.v) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  q_text_terms(query, strlen(query), query_term_cb, q);

  if (q->n > 0) {
    for (size_t p = 0; p < n && st.n < MAX_SENTENCES; p++) {
      size_t len = passages[p].text_len;
      if (len > MAX_PASSAGE_SCAN)
        len = MAX_PASSAGE_SCAN;
      st.passage = p;
      st.pos = 0;
      q_text_sentences(passages[p].text, len, sentence_cb, &st);
    }
  }

  /* Document frequency of each query term over sentences, then weights. */
  double df[MAX_QUERY_TERMS] = {0}, idf[MAX_QUERY_TERMS], total = 0;
  for (size_t i = 0; i < st.n; i++) {
    mask_state_t m = {.q = q};
    q_text_terms(st.v[i].s, st.v[i].len, mask_term_cb, &m);
    st.v[i].mask = m.mask;
    for (size_t t = 0; t < q->n; t++)
      if (m.mask & (1ull << t))
        df[t] += 1;
  }
  for (size_t t = 0; t < q->n; t++) {
    idf[t] = log(1.0 + (st.n - df[t] + 0.5) / (df[t] + 0.5));
    total += idf[t];
  }
  for (size_t i = 0; i < st.n && total > 0; i++) {
    sentence_t *s = &st.v[i];
    /* Terms found only in the sentence just before, in the same passage
     * (a heading, the sentence naming the subject) count a little: an
     * answer often spans "**SEV1**: ..." and "Acknowledge within ...". */
    uint64_t ctx = 0;
    if (i > 0 && st.v[i - 1].passage == s->passage)
      ctx = st.v[i - 1].mask & ~s->mask;
    double w = 0;
    for (size_t t = 0; t < q->n; t++) {
      if (s->mask & (1ull << t))
        w += idf[t];
      else if (ctx & (1ull << t))
        w += CONTEXT_WEIGHT * idf[t];
    }
    if (s->mask == 0 || s->heading || s->question)
      continue; /* coverage stays 0: never picked */
    s->coverage = w / total;
    s->score = s->coverage + 0.05 / (1.0 + s->pos) + 0.03 / (1.0 + s->passage);
    if (s->words < 4)
      s->score *= 0.7;
  }

  /* Greedy picks: the best sentence, then up to two followers. */
  double best_cov = 0;
  while (npicks < MAX_PICKS) {
    double best = -1;
    size_t bi = 0;
    for (size_t i = 0; i < st.n; i++) {
      sentence_t *s = &st.v[i];
      double need =
          npicks == 0 ? MIN_COVERAGE : fmax(MIN_COVERAGE, FOLLOW_SHARE * best_cov);
      if (s->coverage < need)
        continue;
      double score = s->score;
      int dup = 0;
      for (size_t k = 0; k < npicks; k++) {
        const sentence_t *p = &st.v[picks[k]];
        if (p == s || (p->len == s->len && memcmp(p->s, s->s, s->len) == 0))
          dup = 1;
        else if (p->passage == s->passage)
          score *= SEEN_PASSAGE_FACTOR;
      }
      if (dup || score <= best)
        continue;
      best = score;
      bi = i;
    }
    if (best < 0)
      break;
    if (npicks == 0)
      best_cov = st.v[bi].coverage;
    picks[npicks++] = bi;
  }

  if (npicks == 0) {
    q_buf_puts(&answer, NO_ANSWER);
  } else {
    int budget = max_tokens > 0 ? max_tokens : INT32_MAX;
    int used = 0;
    for (size_t k = 0; k < npicks; k++) {
      const sentence_t *s = &st.v[picks[k]];
      /* The marker counts as a word; the first sentence always gets at
       * least one word so the answer is never a bare marker. */
      int room = budget - used - 1;
      if (room < 1) {
        if (k > 0)
          break;
        room = 1;
      }
      if (k > 0)
        q_buf_puts(&answer, " ");
      used += append_sentence(&answer, s, room);
      q_buf_printf(&answer, " [%zu]", s->passage + 1);
      used++;
    }
  }

  usage->completion_tokens = gen_count_words(answer.data, answer.len);
  rc = gen_emit_words(answer.data, answer.len, emit, ud);
  if (rc)
    snprintf(err, errlen, "the client went away");
done:
  q_buf_cleanup(&answer);
  free(st.v);
  free(q);
  return rc;
}

static void extractive_free(generator_t *g) {
  free(g);
}

generator_t *gen_extractive_new(void) {
  generator_t *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  g->name = "extractive";
  g->model = "quarry-extractive";
  g->generate = extractive_generate;
  g->free = extractive_free;
  return g;
}
