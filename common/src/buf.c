/* buf.c - growable byte buffer with a hard maximum (see buf.h).
 *
 * max bounds the content length; the allocation is max + 1 at most so the
 * content can always be NUL-terminated. Growth doubles, clamped to that. */
#include "quarry/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/error.h"

#define BUF_MIN_CAP 64

void q_buf_init(q_buf_t *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

/* Makes room for `extra` more bytes plus the terminating NUL. */
static q_err_t reserve(q_buf_t *b, size_t extra) {
  if (extra > b->max - b->len) /* len <= max always holds */
    return Q_ETOOBIG;
  size_t need = b->len + extra + 1;
  if (b->data && need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (b->max < SIZE_MAX && cap > b->max + 1)
    cap = b->max + 1;
  char *p = realloc(b->data, cap);
  if (!p)
    return Q_ENOMEM;
  if (!b->data)
    p[0] = '\0';
  b->data = p;
  b->cap = cap;
  return 0;
}

q_err_t q_buf_append(q_buf_t *b, const void *p, size_t n) {
  int rc = reserve(b, n);
  if (rc)
    return rc;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

q_err_t q_buf_puts(q_buf_t *b, const char *s) {
  return q_buf_append(b, s, strlen(s));
}

q_err_t q_buf_vprintf(q_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return Q_EINVAL;
  if ((size_t)n < sizeof small)
    return q_buf_append(b, small, (size_t)n);
  int rc = reserve(b, (size_t)n);
  if (rc)
    return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

q_err_t q_buf_printf(q_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = q_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

void q_buf_reset(q_buf_t *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

void q_buf_cleanup(q_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

char *q_buf_steal(q_buf_t *b) {
  char *p = b->data ? b->data : strdup("");
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  return p;
}
