/* fuzz.h - what the libFuzzer targets of tests/fuzz/ share: splitting an
 * input into fields and checking an invariant.
 *
 * A target's input is raw bytes; targets that take several values (a method
 * and a path, two header values) read them as lines: the first n-1 newlines
 * end the first n-1 fields, the rest is the last field. C strings end at a
 * NUL byte, as the values do when libmicrohttpd hands them over. */
#ifndef QUARRY_FUZZ_H
#define QUARRY_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits data[0..size) into n NUL-terminated fields (see above), stored in
 * one malloc'd block that the caller frees; missing fields are "". The last
 * field's length up to the end of the input goes to *last_len (it may hold
 * NUL bytes: a body). */
static inline char *fuzz_split(const uint8_t *data, size_t size, char **f, int n,
                               size_t *last_len) {
  char *block = malloc(size + (size_t)n + 1);
  if (!block)
    abort();
  memcpy(block, data, size);
  memset(block + size, 0, (size_t)n + 1);
  char *p = block, *end = block + size;
  for (int i = 0; i < n - 1; i++) {
    f[i] = p;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) {
      p = end;
      for (int k = i + 1; k < n; k++)
        f[k] = end; /* "": the terminating NULs */
      if (last_len)
        *last_len = 0;
      return block;
    }
    *nl = '\0';
    p = nl + 1;
  }
  f[n - 1] = p;
  if (last_len)
    *last_len = (size_t)(end - p);
  return block;
}

/* An invariant of the code under test: a violation is a crash libFuzzer
 * reports (with the input that caused it). */
#define FUZZ_CHECK(cond, ...)                                                            \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond);       \
      fprintf(stderr, __VA_ARGS__);                                                      \
      fputc('\n', stderr);                                                               \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

#endif
