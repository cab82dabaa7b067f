/* chunking.c - parsing and checking an upload's chunking choice (see
 * quarry/chunking.h). */
#include "quarry/chunking.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"structure", "fixed"};

bool q_chunking_known(const char *name) {
  for (size_t i = 0; name && i < sizeof names / sizeof *names; i++)
    if (strcmp(names[i], name) == 0)
      return true;
  return false;
}

q_err_t q_chunking_check(const q_chunking_t *c, char *err, size_t errlen) {
  if (c->strategy[0] && !q_chunking_known(c->strategy)) {
    snprintf(err, errlen, "chunking: unknown strategy \"%.15s\"; expected one of %s",
             c->strategy, Q_CHUNKING_STRATEGY_NAMES);
    return Q_EINVAL;
  }
  if (c->tokens != 0 && (c->tokens < 1 || c->tokens > Q_LIMIT_CHUNK_TOKENS_MAX)) {
    snprintf(err, errlen, "chunk_tokens: must be 1..%d (words)",
             Q_LIMIT_CHUNK_TOKENS_MAX);
    return Q_EINVAL;
  }
  if (c->overlap != -1) {
    if (c->tokens == 0) {
      snprintf(err, errlen, "chunk_overlap: needs chunk_tokens");
      return Q_EINVAL;
    }
    if (c->overlap < 0 || c->overlap > c->tokens / 2) {
      snprintf(err, errlen, "chunk_overlap: must be 0..%d (half of chunk_tokens)",
               c->tokens / 2);
      return Q_EINVAL;
    }
  }
  return Q_OK;
}

#define NOT_A_NUMBER (-1)

/* A number of 1..5 digits, s[0..n); NOT_A_NUMBER when it is not one. */
static int number(const char *s, size_t n) {
  if (n == 0 || n > 5)
    return NOT_A_NUMBER;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return NOT_A_NUMBER;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

q_err_t q_chunking_parse(const char *spec, q_chunking_t *out, char *err, size_t errlen) {
  *out = Q_CHUNKING_DEFAULT;
  if (!spec || !spec[0])
    return Q_OK;
  size_t len = strlen(spec);
  const char *c1 = memchr(spec, ':', len);
  const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - spec)) : NULL;
  if (len > Q_LIMIT_CHUNKING_BYTES || !c1 || !c2 ||
      memchr(c2 + 1, ':', len - (size_t)(c2 + 1 - spec))) {
    snprintf(err, errlen,
             "chunking: expected \"<strategy>:<tokens>:<overlap>\" of at most %d bytes",
             Q_LIMIT_CHUNKING_BYTES);
    return Q_EINVAL;
  }
  size_t sl = (size_t)(c1 - spec), tl = (size_t)(c2 - c1 - 1),
         ol = len - (size_t)(c2 + 1 - spec);
  if (sl >= sizeof out->strategy) {
    snprintf(err, errlen, "chunking: unknown strategy; expected one of %s",
             Q_CHUNKING_STRATEGY_NAMES);
    return Q_EINVAL;
  }
  memcpy(out->strategy, spec, sl);
  out->strategy[sl] = '\0';
  if (tl) {
    out->tokens = number(c1 + 1, tl);
    if (out->tokens <= 0) {
      snprintf(err, errlen, "chunk_tokens: must be 1..%d (words)",
               Q_LIMIT_CHUNK_TOKENS_MAX);
      return Q_EINVAL;
    }
  }
  if (ol) {
    out->overlap = number(c2 + 1, ol);
    if (out->overlap == NOT_A_NUMBER) {
      snprintf(err, errlen, "chunk_overlap: must be a number of words");
      return Q_EINVAL;
    }
  }
  return q_chunking_check(out, err, errlen);
}

size_t q_chunking_format(const q_chunking_t *c, char *out, size_t outlen) {
  char t[16] = "", o[16] = "";
  if (c->tokens > 0)
    snprintf(t, sizeof t, "%d", c->tokens);
  if (c->overlap >= 0)
    snprintf(o, sizeof o, "%d", c->overlap);
  int k = snprintf(out, outlen, "%s:%s:%s", c->strategy, t, o);
  if (k < 0 || outlen == 0)
    return 0;
  return (size_t)k < outlen ? (size_t)k : outlen - 1;
}
