/* embed_hash.c - the built-in embedder: feature hashing of terms and their
 * character trigrams.
 *
 * Each text is tokenized with the shared tokenizer (quarry/text.h), so the
 * embedder agrees with BM25 on what a term is (case-folded, stopwords
 * removed, stemmed). Every term contributes two kinds of features:
 *   - the term itself, and
 *   - the character trigrams of "^term$" (counted in code points), which
 *     make related spellings ("index" / "indexes" / "indexing") land close
 *     even where the stemmer disagrees.
 * Each feature is hashed (64-bit FNV-1a) into one of dim buckets with a sign
 * taken from another bit of the hash (the "hashing trick" with signed
 * buckets, which keeps collisions unbiased). Counts get sublinear weighting
 * (1 + ln tf), the word and trigram blocks are L2-normalised separately and
 * mixed 0.8 : 0.6 so whole-word matches dominate, and the result is
 * L2-normalised, so a dot product is a cosine similarity.
 *
 * It is no neural model, but it is deterministic, free, needs no files and
 * puts texts that share vocabulary close together: enough for hybrid
 * retrieval to work end to end without an external provider. */
#include "provider.h"

#include "quarry/error.h"
#include "quarry/limits.h"
#include "quarry/text.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORD_WEIGHT 0.8f
#define GRAM_WEIGHT 0.6f
#define SEED_WORD 0x77u /* first hashed byte: keeps word and trigram features apart */
#define SEED_GRAM 0x67u

/* Per-call accumulators: one block of signed counts per feature kind. */
typedef struct accum {
  int dim;
  float *words;
  float *grams;
  size_t nterms;
} accum_t;

static uint64_t fnv1a(uint8_t seed, const char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  h ^= seed;
  h *= 0x100000001b3ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)s[i];
    h *= 0x100000001b3ull;
  }
  /* FNV's low bits mix poorly for short inputs; finish with a murmur3-style
   * avalanche so both the bucket and the sign bit are well spread. */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static void add_feature(float *block, int dim, uint8_t seed, const char *s, size_t n) {
  uint64_t h = fnv1a(seed, s, n);
  block[h % (uint64_t)dim] += (h >> 63) ? -1.0f : 1.0f;
}

/* Length in bytes of the UTF-8 sequence starting with byte c (1 for stray
 * continuation bytes so the walk always advances). */
static size_t utf8_len(unsigned char c) {
  if (c >= 0xf0)
    return 4;
  if (c >= 0xe0)
    return 3;
  if (c >= 0xc0)
    return 2;
  return 1;
}

static void add_term(accum_t *a, const char *term, size_t len) {
  char padded[Q_TEXT_MAX_TERM + 3];
  size_t off[Q_TEXT_MAX_TERM + 3]; /* start of each code point in padded */
  size_t ncp = 0;

  if (len == 0)
    return;
  if (len > Q_TEXT_MAX_TERM)
    len = Q_TEXT_MAX_TERM;
  add_feature(a->words, a->dim, SEED_WORD, term, len);
  a->nterms++;

  padded[0] = '^';
  memcpy(padded + 1, term, len);
  padded[len + 1] = '$';
  size_t plen = len + 2;
  for (size_t i = 0; i < plen; i += utf8_len((unsigned char)padded[i]))
    off[ncp++] = i;
  off[ncp] = plen;
  for (size_t i = 0; i + 3 <= ncp; i++)
    add_feature(a->grams, a->dim, SEED_GRAM, padded + off[i], off[i + 3] - off[i]);
}

static int term_cb(const char *term, size_t len, size_t pos, void *ud) {
  add_term(ud, term, len);
  return 0;
}

/* For texts the tokenizer keeps nothing of (only stopwords or symbols):
 * whitespace-separated words, ASCII-lowercased, so such a text still gets a
 * deterministic non-zero vector instead of an unusable zero one. */
static void add_raw_words(accum_t *a, const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    char w[Q_TEXT_MAX_TERM];
    size_t wl = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' ||
                     s[i] == '\f' || s[i] == '\v'))
      i++;
    while (i < n && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' ||
                      s[i] == '\f' || s[i] == '\v')) {
      if (wl < sizeof w) {
        char c = s[i];
        w[wl++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
      }
      i++;
    }
    /* Cutting at Q_TEXT_MAX_TERM may split a code point; drop the partial
     * one so trigrams stay well formed. */
    if (wl == sizeof w) {
      size_t p = wl - 1;
      while (p > 0 && ((unsigned char)w[p] & 0xc0) == 0x80)
        p--;
      if (p + utf8_len((unsigned char)w[p]) > wl)
        wl = p;
    }
    add_term(a, w, wl);
  }
}

/* Sublinear tf on a block, then its L2 norm. */
static double sublinear(float *v, int dim) {
  double norm = 0;
  for (int i = 0; i < dim; i++) {
    float x = v[i];
    if (x == 0.0f)
      continue;
    float m = 1.0f + logf(fabsf(x));
    v[i] = x < 0 ? -m : m;
    norm += (double)v[i] * v[i];
  }
  return sqrt(norm);
}

static q_err_t embed_one(accum_t *a, const char *text, size_t len, float *out) {
  memset(a->words, 0, sizeof(float) * (size_t)a->dim);
  memset(a->grams, 0, sizeof(float) * (size_t)a->dim);
  a->nterms = 0;
  q_text_terms(text, len, term_cb, a);
  if (a->nterms == 0)
    add_raw_words(a, text, len);
  if (a->nterms == 0)
    return Q_EINVAL; /* nothing but white space */

  double nw = sublinear(a->words, a->dim);
  double ng = sublinear(a->grams, a->dim);
  double norm = 0;
  for (int i = 0; i < a->dim; i++) {
    double x = 0;
    if (nw > 0)
      x += WORD_WEIGHT * a->words[i] / nw;
    if (ng > 0)
      x += GRAM_WEIGHT * a->grams[i] / ng;
    out[i] = (float)x;
    norm += x * x;
  }
  norm = sqrt(norm);
  if (norm == 0)
    return Q_EINVAL;
  for (int i = 0; i < a->dim; i++)
    out[i] = (float)(out[i] / norm);
  return 0;
}

static int hash_embed(const embedder_t *e, const char *const *texts, const size_t *lens,
                      size_t n, float *out, char *err, size_t errlen) {
  accum_t a = {.dim = e->dim};
  int rc = 0;

  a.words = calloc((size_t)e->dim, sizeof(float));
  a.grams = calloc((size_t)e->dim, sizeof(float));
  if (!a.words || !a.grams) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    rc = embed_one(&a, texts[i], lens[i], out + i * (size_t)e->dim);
    if (rc) {
      snprintf(err, errlen, "texts[%zu]: no text to embed (only white space)", i);
      goto done;
    }
  }
done:
  free(a.words);
  free(a.grams);
  return rc;
}

static void hash_free(embedder_t *e) {
  if (!e)
    return;
  free((char *)e->model);
  free(e);
}

embedder_t *embed_hash_new(int dim) {
  char model[64];
  embedder_t *e;

  if (dim < 16 || dim > Q_LIMIT_EMBED_DIM_MAX)
    return NULL;
  e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  snprintf(model, sizeof model, "quarry-hash-%d", dim);
  e->name = "builtin";
  e->model = strdup(model);
  e->dim = dim;
  e->embed = hash_embed;
  e->free = hash_free;
  if (!e->model) {
    free(e);
    return NULL;
  }
  return e;
}
