/* text.c - the shared tokenizer and sentence splitter (see text.h).
 *
 * A term is a maximal run of Unicode letters (L*) and decimal digits (Nd);
 * combining marks (M*) continue a run that has started, so a decomposed
 * "e" + U+0301 stays one word. Each run is normalised with utf8proc to
 * NFKC with case folding (what utf8proc_NFKC_Casefold does, but into a
 * stack buffer instead of malloc'd memory; pure-ASCII runs, the common case,
 * take a byte-wise fast path with the same result), checked against the
 * stopword list, stemmed with the Snowball English stemmer and finally cut
 * to Q_TEXT_MAX_TERM bytes on a UTF-8 boundary.
 *
 * libstemmer stemmers are not thread-safe, so each thread lazily creates its
 * own, kept under a pthread key whose destructor frees it at thread exit. */
#include "quarry/text.h"

#include "quarry/log.h"

#include <errno.h>
#include <libstemmer.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Bytes of a run looked at; the rest of a longer run is skipped. Terms are
 * cut to Q_TEXT_MAX_TERM bytes anyway, this only bounds the work and the
 * normalisation buffer below. */
#define RAW_MAX 128
/* NFKC can expand one code point to at most 18 (U+FDFA); each raw byte is at
 * most one code point. One extra entry because utf8proc_reencode needs it. */
#define NORM_MAX (RAW_MAX * 18 + 1)

/* English stopwords: the Snowball list without its contractions, plus "s" and
 * "t" (left over when "it's" or "don't" split at the apostrophe) and "can",
 * "will", "just". Kept sorted by byte value so the list is easy to review;
 * lookups go through the hash table built from it below. */
static const char *const stopwords[] = {
    "a",         "about",      "above",  "after",   "again",      "against", "all",
    "am",        "an",         "and",    "any",     "are",        "as",      "at",
    "be",        "because",    "been",   "before",  "being",      "below",   "between",
    "both",      "but",        "by",     "can",     "could",      "did",     "do",
    "does",      "doing",      "down",   "during",  "each",       "few",     "for",
    "from",      "further",    "had",    "has",     "have",       "having",  "he",
    "her",       "here",       "hers",   "herself", "him",        "himself", "his",
    "how",       "i",          "if",     "in",      "into",       "is",      "it",
    "its",       "itself",     "just",   "me",      "more",       "most",    "my",
    "myself",    "no",         "nor",    "not",     "of",         "off",     "on",
    "once",      "only",       "or",     "other",   "ought",      "our",     "ours",
    "ourselves", "out",        "over",   "own",     "s",          "same",    "she",
    "should",    "so",         "some",   "such",    "t",          "than",    "that",
    "the",       "their",      "theirs", "them",    "themselves", "then",    "there",
    "these",     "they",       "this",   "those",   "through",    "to",      "too",
    "under",     "until",      "up",     "very",    "was",        "we",      "were",
    "what",      "when",       "where",  "which",   "while",      "who",     "whom",
    "why",       "will",       "with",   "would",   "you",        "your",    "yours",
    "yourself",  "yourselves",
};

static uint32_t fnv1a(const char *w, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)w[i]) * 16777619u;
  return h;
}

/* Every word is checked against the stopwords, so they live in a small
 * open-addressing table (built once from the list above) that answers with
 * one hash and usually one comparison. */
#define STOP_SLOTS 512 /* a power of two, over 3x the number of stopwords */
static const char *stop_slot[STOP_SLOTS];
static unsigned char stop_len[STOP_SLOTS];
static pthread_once_t stop_once = PTHREAD_ONCE_INIT;

static void stop_table_init(void) {
  for (size_t i = 0; i < sizeof stopwords / sizeof stopwords[0]; i++) {
    size_t n = strlen(stopwords[i]);
    uint32_t h = fnv1a(stopwords[i], n) & (STOP_SLOTS - 1);
    while (stop_slot[h])
      h = (h + 1) & (STOP_SLOTS - 1);
    stop_slot[h] = stopwords[i];
    stop_len[h] = (unsigned char)n;
  }
}

bool q_text_is_stopword(const char *w, size_t len) {
  if (!w || len == 0 || len > 10) /* the longest stopword has 10 bytes */
    return 0;
  pthread_once(&stop_once, stop_table_init);
  for (uint32_t h = fnv1a(w, len) & (STOP_SLOTS - 1); stop_slot[h];
       h = (h + 1) & (STOP_SLOTS - 1))
    if (stop_len[h] == len && memcmp(stop_slot[h], w, len) == 0)
      return 1;
  return 0;
}

/* ---- per-thread stemmer ------------------------------------------------- */

static pthread_key_t stemmer_key;
static pthread_once_t stemmer_once = PTHREAD_ONCE_INIT;
static int stemmer_key_ok;

/* Stemming is most of the tokenizer's time, and natural text repeats its
 * words (Zipf), so each thread keeps a direct-mapped cache of recent
 * word -> stem results. A collision simply replaces the entry; words
 * longer than a cache slot bypass it. */
#define STEM_CACHE_SLOTS 2048 /* a power of two; ~100 KiB per thread */
#define STEM_CACHE_WORD 24

typedef struct stem_entry {
  unsigned char wlen, slen; /* wlen 0: empty slot */
  char w[STEM_CACHE_WORD];
  char s[STEM_CACHE_WORD];
} stem_entry_t;

typedef struct stemmer_ctx {
  struct sb_stemmer *sb;
  stem_entry_t cache[STEM_CACHE_SLOTS];
} stemmer_ctx_t;

static void stemmer_free_cb(void *p) {
  stemmer_ctx_t *c = p;
  sb_stemmer_delete(c->sb);
  free(c);
}

static void stemmer_key_init(void) {
  stemmer_key_ok = pthread_key_create(&stemmer_key, stemmer_free_cb) == 0;
}

/* The calling thread's English stemmer, or NULL when it cannot be created
 * (out of memory): terms are then left unstemmed, which is logged once. */
static stemmer_ctx_t *thread_stemmer(void) {
  static int warned;
  pthread_once(&stemmer_once, stemmer_key_init);
  if (!stemmer_key_ok)
    goto fail;
  stemmer_ctx_t *st = pthread_getspecific(stemmer_key);
  if (st)
    return st;
  st = calloc(1, sizeof *st);
  if (!st)
    goto fail;
  st->sb = sb_stemmer_new("english", NULL);
  if (!st->sb || pthread_setspecific(stemmer_key, st) != 0) {
    sb_stemmer_delete(st->sb);
    free(st);
    goto fail;
  }
  return st;
fail:
  if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
    q_log_error("text: cannot create the English stemmer; terms stay unstemmed", NULL);
  return NULL;
}

/* Stems w[0..wlen) with the thread's stemmer through its cache; returns
 * the stem (valid until the next call on this thread) and its length, or w
 * itself when the stemmer fails. */
static const char *stem(stemmer_ctx_t *c, const char *w, size_t wlen, size_t *outlen) {
  stem_entry_t *e = NULL;
  if (wlen < STEM_CACHE_WORD) {
    e = &c->cache[fnv1a(w, wlen) & (STEM_CACHE_SLOTS - 1)];
    if (e->wlen == wlen && memcmp(e->w, w, wlen) == 0) {
      *outlen = e->slen;
      return e->s;
    }
  }
  const sb_symbol *s = sb_stemmer_stem(c->sb, (const sb_symbol *)w, (int)wlen);
  if (!s) {
    *outlen = wlen;
    return w;
  }
  size_t slen = (size_t)sb_stemmer_length(c->sb);
  if (e && slen < STEM_CACHE_WORD) {
    e->wlen = (unsigned char)wlen;
    memcpy(e->w, w, wlen);
    e->slen = (unsigned char)slen;
    memcpy(e->s, s, slen);
  }
  *outlen = slen;
  return (const char *)s;
}

/* ---- tokenizer ---------------------------------------------------------- */

static bool is_letter_or_digit(utf8proc_category_t c) {
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
         c == UTF8PROC_CATEGORY_ND;
}

static bool is_mark(utf8proc_category_t c) {
  return c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME;
}

/* Invisible characters that occur inside words (soft hyphen, zero-width
 * non-joiner and joiner): they continue a run and normalisation drops them. */
static bool is_joiner(utf8proc_int32_t cp) {
  return cp == 0x00AD || cp == 0x200C || cp == 0x200D;
}

size_t q_text_cut(const char *s, size_t n, size_t max) {
  if (n <= max)
    return n;
  size_t k = max;
  /* Back up over continuation bytes (10xxxxxx) to the start of the
   * sequence that straddles the cut, and cut before it. */
  while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
    k--;
  return k;
}

size_t q_text_chars(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

/* ---- stopword lists other than the built-in one ------------------------ */

struct q_text_stopwords {
  bool builtin; /* "english": q_text_is_stopword */
  char **words;
  size_t n;
  uint32_t *table; /* word number + 1, 0 empty; tcap a power of two */
  size_t tcap;
  uint64_t fp;
};

static uint64_t fnv1a64(const char *w, size_t n) {
  uint64_t h = 14695981039346656037u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)w[i]) * 1099511628211u;
  return h;
}

/* Mixes one word into an order-independent fingerprint (a sum of mixed
 * hashes; duplicates are removed before). */
static uint64_t fp_word(const char *w, size_t n) {
  uint64_t x = fnv1a64(w, n);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static uint64_t builtin_fp(void) {
  uint64_t fp = 0;
  for (size_t i = 0; i < sizeof stopwords / sizeof stopwords[0]; i++)
    fp += fp_word(stopwords[i], strlen(stopwords[i]));
  return fp;
}

static bool sw_has(const q_text_stopwords_t *sw, const char *w, size_t len) {
  if (sw->builtin)
    return q_text_is_stopword(w, len);
  if (!sw->n)
    return false;
  size_t mask = sw->tcap - 1;
  for (size_t h = fnv1a(w, len) & mask; sw->table[h]; h = (h + 1) & mask) {
    const char *x = sw->words[sw->table[h] - 1];
    if (strlen(x) == len && memcmp(x, w, len) == 0)
      return true;
  }
  return false;
}

/* Case-folds one word of a stopword file as the tokenizer folds text;
 * NULL when it is not one word (a separator inside) or out of memory. The
 * caller frees the result. */
static char *fold_word(const char *w, size_t n) {
  const unsigned char *p = (const unsigned char *)w;
  bool ascii = true;
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t len = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
    if (len <= 0)
      return NULL;
    if (cp >= 0x80)
      ascii = false;
    utf8proc_category_t cat = utf8proc_category(cp);
    if (!(is_letter_or_digit(cat) || (i > 0 && (is_mark(cat) || is_joiner(cp)))))
      return NULL;
    i += (size_t)len;
  }
  if (ascii) {
    char *o = malloc(n + 1);
    if (!o)
      return NULL;
    for (size_t i = 0; i < n; i++)
      o[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + ('a' - 'A') : w[i]);
    o[n] = '\0';
    return o;
  }
  char *z = malloc(n + 1);
  if (!z)
    return NULL;
  memcpy(z, w, n);
  z[n] = '\0';
  utf8proc_uint8_t *o = utf8proc_NFKC_Casefold((const utf8proc_uint8_t *)z);
  free(z);
  return (char *)o;
}

void q_text_stopwords_free(q_text_stopwords_t *sw) {
  if (!sw)
    return;
  for (size_t i = 0; !sw->builtin && i < sw->n; i++)
    free(sw->words[i]);
  free(sw->words);
  free(sw->table);
  free(sw);
}

/* Adds word (taken) unless it is there already. */
static void sw_add(q_text_stopwords_t *sw, char *word) {
  size_t len = strlen(word);
  if (sw_has(sw, word, len)) {
    free(word);
    return;
  }
  size_t mask = sw->tcap - 1, h = fnv1a(word, len) & mask;
  while (sw->table[h])
    h = (h + 1) & mask;
  sw->words[sw->n] = word;
  sw->table[h] = (uint32_t)++sw->n;
  sw->fp += fp_word(word, len);
}

q_err_t q_text_stopwords_new(const char *spec, q_text_stopwords_t **out, char *err,
                             size_t errlen) {
  *out = NULL;
  q_text_stopwords_t *sw = calloc(1, sizeof *sw);
  if (!sw) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  if (!spec || strcmp(spec, "english") == 0) {
    sw->builtin = true;
    sw->n = sizeof stopwords / sizeof stopwords[0];
    sw->fp = builtin_fp();
    *out = sw;
    return 0;
  }
  if (strcmp(spec, "none") == 0) {
    *out = sw;
    return 0;
  }
  FILE *f = fopen(spec, "rb");
  if (!f) {
    snprintf(err, errlen, "stopword file %s: %s (use english, none or a file)", spec,
             strerror(errno));
    free(sw);
    return Q_EINVAL;
  }
  char *buf = malloc(Q_TEXT_STOPWORDS_MAX_FILE + 1);
  size_t got = buf ? fread(buf, 1, Q_TEXT_STOPWORDS_MAX_FILE + 1, f) : 0;
  fclose(f);
  q_err_t rc = 0;
  if (!buf) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  if (got > Q_TEXT_STOPWORDS_MAX_FILE) {
    snprintf(err, errlen, "stopword file %s is larger than %u bytes", spec,
             Q_TEXT_STOPWORDS_MAX_FILE);
    rc = Q_EINVAL;
    goto done;
  }
  sw->tcap = 2;
  while (sw->tcap < 2 * Q_TEXT_STOPWORDS_MAX_WORDS)
    sw->tcap *= 2;
  sw->table = calloc(sw->tcap, sizeof *sw->table);
  sw->words = calloc(Q_TEXT_STOPWORDS_MAX_WORDS, sizeof *sw->words);
  if (!sw->table || !sw->words) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  size_t line = 0;
  for (size_t at = 0; at < got && !rc;) {
    size_t end = at;
    while (end < got && buf[end] != '\n')
      end++;
    line++;
    size_t a = at, b = end;
    while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r'))
      a++;
    while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r'))
      b--;
    at = end + 1;
    if (a == b || buf[a] == '#')
      continue;
    char *w = b - a <= Q_TEXT_MAX_TERM ? fold_word(buf + a, b - a) : NULL;
    if (!w || strlen(w) > Q_TEXT_MAX_TERM) {
      snprintf(err, errlen,
               "stopword file %s, line %zu: not one word of at most %d bytes "
               "(letters and digits)",
               spec, line, Q_TEXT_MAX_TERM);
      free(w);
      rc = Q_EINVAL;
    } else if (sw->n == Q_TEXT_STOPWORDS_MAX_WORDS) {
      snprintf(err, errlen, "stopword file %s has more than %d words", spec,
               Q_TEXT_STOPWORDS_MAX_WORDS);
      free(w);
      rc = Q_EINVAL;
    } else {
      sw_add(sw, w);
    }
  }
done:
  free(buf);
  if (rc) {
    q_text_stopwords_free(sw);
    return rc;
  }
  *out = sw;
  return 0;
}

uint64_t q_text_stopwords_fingerprint(const q_text_stopwords_t *sw) {
  return sw ? sw->fp : builtin_fp();
}

size_t q_text_stopwords_count(const q_text_stopwords_t *sw) {
  return sw ? sw->n : sizeof stopwords / sizeof stopwords[0];
}

typedef struct term_state {
  const q_text_stopwords_t *sw; /* NULL: the built-in list */
  q_text_term_cb cb;
  void *ud;
  size_t pos; /* terms delivered so far */
  int stop;   /* the callback asked to stop */
  stemmer_ctx_t *stemmer;
  utf8proc_int32_t norm[NORM_MAX];
} term_state_t;

/* Normalises, filters, stems and delivers one raw run raw[0..n). */
static void emit_word(term_state_t *st, const unsigned char *raw, size_t n, int ascii) {
  char folded[RAW_MAX + 1];
  const char *w;
  size_t wlen;

  if (ascii) {
    for (size_t i = 0; i < n; i++) {
      unsigned char c = raw[i];
      folded[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    folded[n] = '\0';
    w = folded;
    wlen = n;
  } else {
    utf8proc_option_t opt =
        UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD | UTF8PROC_IGNORE;
    utf8proc_ssize_t k =
        utf8proc_decompose(raw, (utf8proc_ssize_t)n, st->norm, NORM_MAX - 1, opt);
    if (k <= 0 || k > NORM_MAX - 1)
      return;
    k = utf8proc_reencode(st->norm, k, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (k <= 0)
      return;
    w = (const char *)st->norm;
    wlen = (size_t)k;
  }

  if (st->sw ? sw_has(st->sw, w, wlen) : q_text_is_stopword(w, wlen))
    return;

  if (st->stemmer)
    w = stem(st->stemmer, w, wlen, &wlen);
  if (wlen == 0)
    return;

  char term[Q_TEXT_MAX_TERM + 1];
  size_t tlen = q_text_cut(w, wlen, Q_TEXT_MAX_TERM);
  memcpy(term, w, tlen);
  term[tlen] = '\0';
  if (st->cb && st->cb(term, tlen, st->pos, st->ud))
    st->stop = 1;
  st->pos++;
}

size_t q_text_terms(const char *s, size_t n, q_text_term_cb cb, void *ud) {
  return q_text_terms_stop(s, n, NULL, cb, ud);
}

size_t q_text_terms_stop(const char *s, size_t n, const q_text_stopwords_t *sw,
                         q_text_term_cb cb, void *ud) {
  if (!s || n == 0)
    return 0;
  term_state_t st; /* about 9 KiB, mostly the normalisation buffer */
  st.sw = sw;
  st.cb = cb;
  st.ud = ud;
  st.pos = 0;
  st.stop = 0;
  st.stemmer = thread_stemmer();

  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  size_t start = 0, rawlen = 0; /* the run being collected: p[start..+rawlen) */
  int in_word = 0, ascii = 1, full = 0;

  while (i < n && !st.stop) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t len;
    if (p[i] < 0x80) {
      cp = p[i];
      len = 1;
    } else {
      len = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
      if (len <= 0) { /* invalid byte: a separator */
        cp = -1;
        len = 1;
      }
    }
    int word_char;
    if (cp < 0)
      word_char = 0;
    else if (cp < 0x80)
      word_char = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
                  (cp >= '0' && cp <= '9');
    else {
      utf8proc_category_t cat = utf8proc_category(cp);
      word_char = is_letter_or_digit(cat) || (in_word && (is_mark(cat) || is_joiner(cp)));
    }

    if (word_char) {
      if (!in_word) {
        in_word = 1;
        start = i;
        rawlen = 0;
        ascii = 1;
        full = 0;
      }
      if (!full && rawlen + (size_t)len <= RAW_MAX) {
        rawlen += (size_t)len;
        if (cp >= 0x80)
          ascii = 0;
      } else {
        full = 1; /* the run goes on past RAW_MAX: ignore the rest */
      }
    } else if (in_word) {
      emit_word(&st, p + start, rawlen, ascii);
      in_word = 0;
    }
    i += (size_t)len;
  }
  if (in_word && !st.stop)
    emit_word(&st, p + start, rawlen, ascii);
  return st.pos;
}

/* ---- sentences ---------------------------------------------------------- */

typedef struct span_state {
  const char *s;
  q_text_span_cb cb;
  void *ud;
  size_t count;
  int stop;
} span_state_t;

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Delivers s[a..b) trimmed, unless it is empty. */
static void emit_span(span_state_t *st, size_t a, size_t b) {
  while (a < b && is_space(st->s[a]))
    a++;
  while (b > a && is_space(st->s[b - 1]))
    b--;
  if (a == b || st->stop)
    return;
  st->count++;
  if (st->cb && st->cb(st->s + a, b - a, st->ud))
    st->stop = 1;
}

/* Length of a closing quote or bracket at s[i..n), 0 if none. Accepts the
 * ASCII ones and the UTF-8 right single/double quotes and guillemet. */
static size_t closer_len(const char *s, size_t i, size_t n) {
  char c = s[i];
  if (c == '"' || c == '\'' || c == ')' || c == ']' || c == '*' || c == '_')
    return 1;
  if (i + 3 <= n && (unsigned char)c == 0xE2 && (unsigned char)s[i + 1] == 0x80 &&
      ((unsigned char)s[i + 2] == 0x99 || (unsigned char)s[i + 2] == 0x9D))
    return 3; /* ’ ” */
  if (i + 2 <= n && (unsigned char)c == 0xC2 && (unsigned char)s[i + 1] == 0xBB)
    return 2; /* » */
  return 0;
}

/* 1 when the line starting at s[i] is a Markdown ATX heading: up to three
 * spaces, 1-6 '#', then white space or the end of the line. */
static bool is_heading(const char *s, size_t i, size_t n) {
  size_t j = i, sp = 0;
  while (j < n && s[j] == ' ' && sp < 4) {
    j++;
    sp++;
  }
  if (sp > 3 || j >= n || s[j] != '#')
    return 0;
  size_t h = 0;
  while (j < n && s[j] == '#') {
    j++;
    h++;
  }
  return h <= 6 &&
         (j == n || s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r');
}

size_t q_text_sentences(const char *s, size_t n, q_text_span_cb cb, void *ud) {
  if (!s || n == 0)
    return 0;
  span_state_t st = {s, cb, ud, 0, 0};
  size_t i = 0, start = 0;
  int line_start = 1;

  while (i < n && !st.stop) {
    if (line_start) {
      line_start = 0;
      size_t j = i;
      while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r'))
        j++;
      if (j < n && s[j] == '\n') { /* a blank line ends a sentence */
        emit_span(&st, start, i);
        start = j + 1;
        i = j + 1;
        line_start = 1;
        continue;
      }
      if (is_heading(s, i, n)) { /* a heading is a sentence of its own */
        emit_span(&st, start, i);
        size_t e = i;
        while (e < n && s[e] != '\n')
          e++;
        emit_span(&st, i, e);
        start = e;
        i = e < n ? e + 1 : e;
        line_start = 1;
        continue;
      }
    }
    char c = s[i];
    if (c == '\n') {
      line_start = 1;
      i++;
      continue;
    }
    if (c == '.' || c == '!' || c == '?') {
      size_t k = i + 1;
      while (k < n && (s[k] == '.' || s[k] == '!' || s[k] == '?'))
        k++;
      size_t cl;
      while (k < n && (cl = closer_len(s, k, n)) > 0)
        k += cl;
      if (k == n || is_space(s[k])) {
        emit_span(&st, start, k);
        start = k;
      }
      i = k;
      continue;
    }
    i++;
  }
  if (!st.stop)
    emit_span(&st, start, n);
  return st.count;
}
