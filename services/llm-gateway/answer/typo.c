/* typo.c - near stems (see typo.h): optimal string alignment distance,
 * stopped once it exceeds what the lengths allow. */
#include "answer/typo.h"

#include <string.h>

#define MAX_LEN 32

static bool letters(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!(s[i] >= 'a' && s[i] <= 'z'))
      return false;
  return true;
}

bool typo_near(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  size_t shorter = na < nb ? na : nb;
  if (shorter < TYPO_MIN_LEN || na > MAX_LEN || nb > MAX_LEN || a[0] != b[0])
    return false;
  if (!letters(a, na) || !letters(b, nb) || strcmp(a, b) == 0)
    return false;
  size_t max = shorter >= TYPO_MIN_LEN2 ? 2 : 1;
  if ((na > nb ? na - nb : nb - na) > max)
    return false;
  /* d[i][j]: edits from a[0..i) to b[0..j); three rows suffice. */
  size_t d[3][MAX_LEN + 1];
  for (size_t j = 0; j <= nb; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= na; i++) {
    size_t *cur = d[i % 3], *prev = d[(i - 1) % 3], *prev2 = d[(i + 1) % 3];
    cur[0] = i;
    size_t row_min = cur[0];
    for (size_t j = 1; j <= nb; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t v = prev[j - 1] + cost;
      if (prev[j] + 1 < v)
        v = prev[j] + 1;
      if (cur[j - 1] + 1 < v)
        v = cur[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          prev2[j - 2] + 1 < v)
        v = prev2[j - 2] + 1;
      cur[j] = v;
      if (v < row_min)
        row_min = v;
    }
    if (row_min > max)
      return false;
  }
  return d[na % 3][nb] <= max;
}

bool typo_derived(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  if (na > nb) {
    const char *t = a;
    a = b;
    b = t;
    size_t tn = na;
    na = nb;
    nb = tn;
  }
  if (na < TYPO_MIN_LEN || nb == na || nb - na > TYPO_MAX_SUFFIX)
    return false;
  return letters(a, na) && letters(b, nb) && strncmp(a, b, na) == 0;
}
