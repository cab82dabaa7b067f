/* validate.c - identifier and text checks (see validate.h). Code points are
 * decoded by utf8proc, whose decoder already refuses overlong forms,
 * surrogates and values past U+10FFFF. */
#include "quarry/validate.h"

#include "quarry/error.h"

#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

static bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool q_valid_tenant_id(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > Q_LIMIT_TENANT_ID_BYTES)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_alnum(s[i]) && (i == 0 || (s[i] != '.' && s[i] != '_' && s[i] != '-')))
      return 0;
  return 1;
}

bool q_valid_idempotency_key(const char *s) {
  if (!s)
    return 0;
  size_t n = strnlen(s, Q_LIMIT_IDEMPOTENCY_KEY_BYTES + 1);
  if (n == 0 || n > Q_LIMIT_IDEMPOTENCY_KEY_BYTES)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
      return 0;
  return 1;
}

bool q_valid_uuid(const char *s) {
  if (!s || strlen(s) != 36)
    return 0;
  for (int i = 0; i < 36; i++) {
    int dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_hex(s[i]))
      return 0;
  }
  return 1;
}

/* The sequence at s[0..n): its length with *cp its code point, or 0. */
static size_t decode(const char *s, size_t n, utf8proc_int32_t *cp) {
  const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
  if (n == 0 || u[0] == 0)
    return 0;
  if (u[0] < 0x80) {
    *cp = u[0];
    return 1;
  }
  utf8proc_ssize_t k = utf8proc_iterate(u, (utf8proc_ssize_t)n, cp);
  return k > 0 ? (size_t)k : 0;
}

size_t q_valid_utf8_seq(const char *s, size_t n) {
  utf8proc_int32_t cp;
  return decode(s, n, &cp);
}

size_t q_valid_utf8_prefix(const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    /* ASCII first, without a call: documents are mostly ASCII. */
    if ((unsigned char)s[i] >= 0x01 && (unsigned char)s[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = q_valid_utf8_seq(s + i, n - i);
    if (!k)
      break;
    i += k;
  }
  return i;
}

bool q_valid_utf8(const char *s, size_t n) {
  return q_valid_utf8_prefix(s, n) == n;
}

bool q_valid_text(const char *s, size_t max) {
  size_t n = s ? strlen(s) : 0;
  if (n > max)
    return 0;
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    size_t k = decode(s + i, n - i, &cp);
    if (!k || cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
      return 0;
    i += k;
  }
  return 1;
}

q_err_t q_valid_field(const char *field, const char *s, int required, size_t max,
                      char *err, size_t errlen) {
  size_t n = s ? strlen(s) : 0;
  if (required && n == 0) {
    snprintf(err, errlen, "%s: required", field);
    return Q_EINVAL;
  }
  if (n > max) {
    snprintf(err, errlen, "%s: %zu bytes, at most %zu allowed", field, n, max);
    return Q_EINVAL;
  }
  if (!q_valid_utf8(s, n)) {
    snprintf(err, errlen, "%s: not valid UTF-8", field);
    return Q_EINVAL;
  }
  return 0;
}

bool q_is_blank(const char *s, size_t n) {
  for (size_t i = 0; s && i < n; i++)
    if (!strchr(" \t\n\r\f\v", s[i]) || s[i] == '\0')
      return false;
  return true;
}
