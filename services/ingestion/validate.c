/* validate.c - request checks for the ingestion service (see validate.h). */
#include "validate.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "quarry/error.h"
#include "quarry/validate.h"

static const char *trim(const char *s, const char *end, const char **tend) {
  while (s < end && (*s == ' ' || *s == '\t'))
    s++;
  while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  *tend = end;
  return s;
}

static bool span_is(const char *s, const char *e, const char *word) {
  size_t n = strlen(word);
  return (size_t)(e - s) == n && strncasecmp(s, word, n) == 0;
}

/* Copies s[0..e) lowercased into out; false when it does not fit. */
static bool lower_copy(const char *s, const char *e, char *out, size_t outlen) {
  size_t n = (size_t)(e - s);
  if (n >= outlen)
    return false;
  for (size_t i = 0; i < n; i++)
    out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
  out[n] = '\0';
  return true;
}

static bool is_token(const char *s, const char *e) {
  for (; s < e; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || strchr("!#$&-^_.+", *s)))
      return false;
  return true;
}

q_err_t parse_content_type(const char *s, char *media, size_t medialen, char *charset,
                           size_t charsetlen, char *err, size_t errlen) {
  media[0] = '\0';
  charset[0] = '\0';
  size_t n = s ? strlen(s) : 0;
  if (n == 0)
    return Q_OK;
  if (n > Q_LIMIT_MEDIA_TYPE_BYTES || !q_valid_text(s, Q_LIMIT_MEDIA_TYPE_BYTES)) {
    snprintf(err, errlen, "content_type: at most %d printable bytes",
             Q_LIMIT_MEDIA_TYPE_BYTES);
    return Q_EINVAL;
  }
  const char *end = s + n, *semi = strchr(s, ';'), *te;
  const char *t = trim(s, semi ? semi : end, &te);
  const char *slash = NULL;
  for (const char *p = t; p < te && !slash; p++)
    slash = *p == '/' ? p : NULL;
  if (t == te && !semi)
    return Q_OK; /* only blanks */
  if (!slash || slash == t || slash + 1 == te || !is_token(t, slash) ||
      !is_token(slash + 1, te) || !lower_copy(t, te, media, medialen)) {
    media[0] = '\0';
    snprintf(err, errlen,
             "content_type \"%.*s\": not a media type of the form type/subtype",
             (int)(te - t > 64 ? 64 : te - t), t);
    return Q_EINVAL;
  }
  /* Parameters: only charset matters; anything else is ignored. */
  for (const char *p = semi; p && p < end;) {
    const char *next = strchr(p + 1, ';');
    const char *pe = next ? next : end, *eq = memchr(p + 1, '=', (size_t)(pe - p - 1));
    if (eq) {
      const char *ne, *ve;
      const char *name = trim(p + 1, eq, &ne);
      const char *val = trim(eq + 1, pe, &ve);
      if (ve - val >= 2 && *val == '"' && ve[-1] == '"') {
        val++;
        ve--;
      }
      if (span_is(name, ne, "charset") && (val == ve || !is_token(val, ve) ||
                                           !lower_copy(val, ve, charset, charsetlen))) {
        charset[0] = '\0';
        snprintf(err, errlen, "content_type: charset \"%.*s\" is not a charset name",
                 (int)(ve - val > 32 ? 32 : ve - val), val);
        return Q_EINVAL;
      }
    }
    p = next;
  }
  return Q_OK;
}
