/* buf.h - growable byte buffer with a hard maximum (curl's dynbuf).
 *
 * Every buffer is created with the most it may ever hold; appending beyond it
 * fails with Q_ETOOBIG instead of growing without bound. The content is kept
 * NUL-terminated so text can be used as a C string. Not thread-safe. */
#ifndef QUARRY_BUF_H
#define QUARRY_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include "quarry/error.h"

typedef struct q_buf {
  char *data; /* NUL-terminated; NULL until the first append */
  size_t len;
  size_t cap;
  size_t max; /* appends past this fail with Q_ETOOBIG */
} q_buf_t;

/* Prepares an empty buffer that may hold at most max bytes. */
void q_buf_init(q_buf_t *b, size_t max);

/* Appends n bytes. Q_ETOOBIG past the maximum, Q_ENOMEM on allocation
 * failure; the buffer is unchanged on error. */
q_err_t q_buf_append(q_buf_t *b, const void *p, size_t n);

/* Appends a NUL-terminated string. */
q_err_t q_buf_puts(q_buf_t *b, const char *s);

/* Appends printf-style formatted text. */
q_err_t q_buf_printf(q_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
q_err_t q_buf_vprintf(q_buf_t *b, const char *fmt, va_list ap);

/* Empties the buffer, keeping its memory. */
void q_buf_reset(q_buf_t *b);

/* Releases the memory; the buffer may be reused after q_buf_init. */
void q_buf_cleanup(q_buf_t *b);

/* Hands the content to the caller (free() it; never NULL unless out of
 * memory) and leaves the buffer empty. */
char *q_buf_steal(q_buf_t *b);

#endif
