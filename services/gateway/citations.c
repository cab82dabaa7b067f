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

/* ---- streaming ------------------------------------------------------------- */

void citations_stream_init(citations_stream_t *cs, size_t npassages) {
  memset(cs, 0, sizeof *cs);
  cs->npassages =
      npassages > Q_LIMIT_GENERATE_PASSAGES ? Q_LIMIT_GENERATE_PASSAGES : npassages;
}

/* How many bytes at the end of s[0..n) start a UTF-8 character that the
 * end of s cuts short (0..3). */
static size_t cut_char(const char *s, size_t n) {
  for (size_t k = 1; k <= 3 && k <= n; k++) {
    unsigned char c = (unsigned char)s[n - k];
    if ((c & 0xC0) == 0x80)
      continue; /* a continuation byte: its lead is further back */
    size_t need = c >= 0xF0 && c <= 0xF7   ? 4
                  : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xC0              ? 2
                                           : 1;
    return need > k ? k : 0;
  }
  return 0;
}

/* The same decisions as citations_extract, made as soon as the bytes seen
 * allow: a '[' waits until its digits and the byte after them are known,
 * an invalid marker until the byte after it is (it decides whether the
 * space before the marker goes), and a space until the next byte shows no
 * invalid marker removes it. */
size_t citations_stream_feed(citations_stream_t *cs, const char *piece, size_t len,
                             bool last, char *out) {
  char pend[sizeof cs->pend];
  size_t np = cs->npend;
  memcpy(pend, cs->pend, np);
  cs->npend = 0;
  size_t total = np + len;
#define AT(k) ((k) < np ? pend[(k)] : piece[(k)-np])

  size_t o = cs->nutf8;
  memcpy(out, cs->utf8, cs->nutf8);
  cs->nutf8 = 0;

  size_t i = 0;
  while (i < total) {
    char ch = AT(i);
    if (ch == '[') {
      size_t j = i + 1;
      unsigned v = 0;
      while (j < total && j - i - 1 < 5 && AT(j) >= '0' && AT(j) <= '9') {
        v = v * 10 + (unsigned)(AT(j) - '0');
        j++;
      }
      size_t digits = j - i - 1;
      if (j == total && digits < 5 && !last)
        break; /* the next bytes decide */
      if (digits >= 1 && digits <= 4 && j < total && AT(j) == ']') {
        size_t ml = digits + 2;
        if (v >= 1 && v <= cs->npassages) {
          if (cs->space)
            out[o++] = ' ';
          cs->space = false;
          for (size_t k = 0; k < ml; k++)
            out[o++] = AT(i + k);
          i += ml;
          continue;
        }
        if (i + ml == total && !last)
          break; /* the byte after it decides about the space */
        if (i + ml == total || (AT(i + ml) && strchr(" .,;:!?)\n", AT(i + ml))))
          cs->space = false;
        i += ml;
        continue;
      }
    }
    if (cs->space)
      out[o++] = ' ';
    cs->space = ch == ' ';
    if (!cs->space)
      out[o++] = ch;
    i++;
  }
  for (; i < total; i++)
    cs->pend[cs->npend++] = AT(i);
#undef AT

  if (last) {
    if (cs->space)
      out[o++] = ' ';
    cs->space = false;
  } else {
    size_t cut = cut_char(out, o);
    memcpy(cs->utf8, out + o - cut, cut);
    cs->nutf8 = cut;
    o -= cut;
  }
  return o;
}
