/* validate.c - request checks for the ingestion service (see validate.h). */
#include "validate.h"

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

q_err_t parse_content_type(const char *s, const char **out, char *err, size_t errlen) {
  *out = NULL;
  size_t n = s ? strlen(s) : 0;
  if (n == 0) {
    snprintf(err, errlen, "content_type: required (text/plain or text/markdown)");
    return Q_EINVAL;
  }
  if (n > Q_LIMIT_MEDIA_TYPE_BYTES || !q_valid_text(s, Q_LIMIT_MEDIA_TYPE_BYTES)) {
    snprintf(err, errlen, "content_type: at most %d printable bytes",
             Q_LIMIT_MEDIA_TYPE_BYTES);
    return Q_EINVAL;
  }
  const char *end = s + n, *semi = strchr(s, ';'), *te;
  const char *t = trim(s, semi ? semi : end, &te);
  if (span_is(t, te, "text/plain")) {
    *out = CT_PLAIN;
  } else if (span_is(t, te, "text/markdown") || span_is(t, te, "text/x-markdown")) {
    *out = CT_MARKDOWN;
  } else {
    snprintf(err, errlen,
             "content type \"%.*s\" is not supported: use text/plain or "
             "text/markdown",
             (int)(te - t > 64 ? 64 : te - t), t);
    return Q_EUNSUPPORTED;
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
      if (span_is(name, ne, "charset") && !span_is(val, ve, "utf-8") &&
          !span_is(val, ve, "utf8") && !span_is(val, ve, "us-ascii")) {
        *out = NULL;
        snprintf(err, errlen, "charset \"%.*s\" is not supported: send UTF-8 text",
                 (int)(ve - val > 32 ? 32 : ve - val), val);
        return Q_EUNSUPPORTED;
      }
    }
    p = next;
  }
  return Q_OK;
}
