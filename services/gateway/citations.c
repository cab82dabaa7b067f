/* citations.c - [n] marker parsing and validation (see citations.h). */
#include "citations.h"

#include <string.h>

/* If a marker starts at s[i], returns its length and sets *n; else 0. */
static size_t marker_at(const char *s, size_t len, size_t i, unsigned *n) {
  if (s[i] != '[')
    return 0;
  size_t j = i + 1;
  unsigned v = 0;
  while (j < len && j - i - 1 < 5 && s[j] >= '0' && s[j] <= '9') {
    v = v * 10 + (unsigned)(s[j] - '0');
    j++;
  }
  size_t digits = j - i - 1;
  if (digits == 0 || digits > 4 || j >= len || s[j] != ']')
    return 0;
  *n = v;
  return digits + 2;
}

size_t citations_extract(const char *answer, size_t len, size_t npassages, citations_t *c,
                         char *out, size_t outcap) {
  unsigned char seen[Q_LIMIT_GENERATE_PASSAGES + 1];
  memset(seen, 0, sizeof seen);
  memset(c, 0, sizeof *c);
  if (npassages > Q_LIMIT_GENERATE_PASSAGES)
    npassages = Q_LIMIT_GENERATE_PASSAGES;
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    unsigned n;
    size_t ml = marker_at(answer, len, i, &n);
    if (ml) {
      c->nmarkers++;
      if (n >= 1 && n <= npassages) {
        seen[n] = 1;
        if (o + ml < outcap) {
          memcpy(out + o, answer + i, ml);
          o += ml;
        }
      } else {
        c->ninvalid++;
        /* "word [9]." would become "word ."; drop the space before the
         * marker when what follows is the end, a space or punctuation. */
        if (o > 0 && out[o - 1] == ' ' &&
            (i + ml == len || (answer[i + ml] && strchr(" .,;:!?)\n", answer[i + ml]))))
          o--;
      }
      i += ml;
      continue;
    }
    if (o + 1 < outcap)
      out[o++] = answer[i];
    i++;
  }
  if (outcap)
    out[o < outcap ? o : outcap - 1] = '\0';
  for (unsigned n = 1; n <= npassages; n++)
    if (seen[n])
      c->cited[c->ncited++] = n;
  return o;
}
