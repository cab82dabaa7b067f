/* fuzz_text.c - the shared checks and the tokenizer of libquarry that
 * client text reaches: q_valid_* (validate.c) and q_text_* (text.c).
 *
 * Input: any bytes, as a counted string and as a C string. Checked: the
 * UTF-8 functions agree with each other; terms are NUL-terminated, at most
 * Q_TEXT_MAX_TERM bytes, numbered from 0; a cut never exceeds its limit nor
 * splits a character of valid text; sentences lie inside the input. */
#include "fuzz.h"

#include "quarry/limits.h"
#include "quarry/text.h"
#include "quarry/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct terms {
  size_t count;
} terms_t;

static int term_cb(const char *term, size_t len, size_t pos, void *ud) {
  terms_t *t = ud;
  FUZZ_CHECK(len >= 1 && len <= Q_TEXT_MAX_TERM, "term of %zu bytes", len);
  FUZZ_CHECK(term[len] == '\0' && strlen(term) == len, "term not terminated");
  FUZZ_CHECK(pos == t->count, "term %zu numbered %zu", t->count, pos);
  t->count++;
  return 0;
}

typedef struct span {
  const char *s;
  size_t n, count;
} span_t;

static int sentence_cb(const char *start, size_t len, void *ud) {
  span_t *sp = ud;
  FUZZ_CHECK(start >= sp->s && start + len <= sp->s + sp->n, "sentence outside input");
  FUZZ_CHECK(len > 0, "empty sentence");
  sp->count++;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *block;
  char *f[1];
  block = fuzz_split(data, size, f, 1, NULL);
  const char *s = block; /* the whole input, NUL-terminated after it */

  /* UTF-8: the predicates agree. */
  bool valid = q_valid_utf8(s, size);
  size_t prefix = q_valid_utf8_prefix(s, size);
  FUZZ_CHECK(prefix <= size && valid == (prefix == size), "prefix %zu of %zu, valid %d",
             prefix, size, valid);
  FUZZ_CHECK(q_valid_utf8(s, prefix), "the valid prefix is not valid");
  size_t walked = 0;
  while (walked < size) {
    size_t l = q_valid_utf8_seq(s + walked, size - walked);
    if (!l)
      break;
    FUZZ_CHECK(l <= 4 && walked + l <= size, "sequence of %zu bytes", l);
    walked += l;
  }
  FUZZ_CHECK(walked == prefix, "sequences cover %zu bytes, prefix is %zu", walked,
             prefix);

  /* C-string checks: whatever they accept is within their limits. */
  size_t clen = strlen(s);
  if (q_valid_tenant_id(s))
    FUZZ_CHECK(clen >= 1 && clen <= Q_LIMIT_TENANT_ID_BYTES, "tenant id of %zu", clen);
  if (q_valid_uuid(s))
    FUZZ_CHECK(clen == 36, "uuid of %zu bytes", clen);
  if (q_valid_idempotency_key(s))
    FUZZ_CHECK(clen >= 1 && clen <= Q_LIMIT_IDEMPOTENCY_KEY_BYTES, "key of %zu", clen);
  if (q_valid_text(s, 64))
    FUZZ_CHECK(clen <= 64 && q_valid_utf8(s, clen), "text of %zu", clen);
  char err[128];
  q_err_t rc = q_valid_field("field", s, 1, 64, err, sizeof err);
  FUZZ_CHECK(rc == 0 || (rc == Q_EINVAL && strncmp(err, "field", 5) == 0),
             "q_valid_field rc %d", rc);
  if (q_is_blank(s, size))
    for (size_t i = 0; i < size; i++)
      FUZZ_CHECK(strchr(" \t\n\r\f\v", s[i]) && s[i], "blank with byte 0x%02x",
                 (unsigned char)s[i]);

  /* Tokenizer. */
  terms_t t = {0};
  size_t nterms = q_text_terms(s, size, term_cb, &t);
  FUZZ_CHECK(nterms == t.count, "%zu terms reported, %zu delivered", nterms, t.count);
  for (size_t max = 0; max <= size && max < 40; max += 7) {
    size_t cut = q_text_cut(s, size, max);
    FUZZ_CHECK(cut <= max && cut <= size, "cut %zu for max %zu", cut, max);
    if (valid)
      FUZZ_CHECK(q_valid_utf8(s, cut), "cut %zu splits a character", cut);
  }
  span_t sp = {s, size, 0};
  size_t nsent = q_text_sentences(s, size, sentence_cb, &sp);
  FUZZ_CHECK(nsent == sp.count, "%zu sentences reported, %zu delivered", nsent, sp.count);
  free(block);
  return 0;
}
