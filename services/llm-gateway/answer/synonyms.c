/* synonyms.c - loading and looking up the answerer's synonym groups (see
 * synonyms.h). The table is small (hundreds of entries), so lookups scan
 * it: no index to get wrong, and far below a millisecond per answer. */
#include "answer/synonyms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/text.h"

#define MAX_ENTRIES 8192

struct synonyms {
  syn_entry_t *e;
  size_t n;
  size_t groups;
  char *pool; /* every stem, NUL-terminated, one after another */
  size_t pool_len, pool_cap;
};

typedef struct entry_build {
  synonyms_t *s;
  syn_entry_t *e;
  size_t offs[SYN_MAX_PHRASE];
  int overflow;
} entry_build_t;

static int entry_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  entry_build_t *b = ud;
  if (b->e->nterms == SYN_MAX_PHRASE) {
    b->overflow = 1;
    return 1;
  }
  synonyms_t *s = b->s;
  if (s->pool_len + len + 1 > s->pool_cap) {
    size_t cap = s->pool_cap ? s->pool_cap * 2 : 4096;
    while (cap < s->pool_len + len + 1)
      cap *= 2;
    char *p = realloc(s->pool, cap);
    if (!p) {
      b->overflow = 2;
      return 1;
    }
    s->pool = p;
    s->pool_cap = cap;
  }
  memcpy(s->pool + s->pool_len, term, len + 1);
  b->offs[b->e->nterms++] = s->pool_len;
  s->pool_len += len + 1;
  return 0;
}

q_err_t synonyms_parse(const char *text, size_t len, synonyms_t **out, char *err,
                       size_t errlen) {
  synonyms_t *s = calloc(1, sizeof *s);
  size_t(*offs)[SYN_MAX_PHRASE] = calloc(MAX_ENTRIES, sizeof *offs);
  q_err_t rc = 0;
  if (!s || !offs || !(s->e = calloc(MAX_ENTRIES, sizeof *s->e))) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto fail;
  }
  size_t line = 0;
  for (size_t i = 0; i < len;) {
    size_t end = i;
    while (end < len && text[end] != '\n')
      end++;
    line++;
    size_t stop = i;
    while (stop < end && text[stop] != '#')
      stop++;
    size_t in_group = 0;
    for (size_t a = i; a < stop;) {
      size_t b = a;
      while (b < stop && text[b] != ',')
        b++;
      if (s->n == MAX_ENTRIES) {
        snprintf(err, errlen, "line %zu: more than %d entries", line, MAX_ENTRIES);
        rc = Q_EINVAL;
        goto fail;
      }
      entry_build_t eb = {.s = s, .e = &s->e[s->n]};
      eb.e->group = s->groups;
      q_text_terms(text + a, b - a, entry_term_cb, &eb);
      if (eb.overflow == 2) {
        snprintf(err, errlen, "out of memory");
        rc = Q_ENOMEM;
        goto fail;
      }
      if (eb.overflow) {
        snprintf(err, errlen, "line %zu: \"%.*s\" has more than %d words", line,
                 (int)(b - a > 60 ? 60 : b - a), text + a, SYN_MAX_PHRASE);
        rc = Q_EINVAL;
        goto fail;
      }
      if (eb.e->nterms > 0) {
        /* Stems are offsets until the pool stops moving. */
        memcpy(offs[s->n], eb.offs, sizeof eb.offs);
        s->n++;
        in_group++;
      }
      a = b + 1;
    }
    if (in_group == 1) {
      snprintf(err, errlen, "line %zu: a group needs at least two entries", line);
      rc = Q_EINVAL;
      goto fail;
    }
    if (in_group > 1)
      s->groups++;
    i = end + 1;
  }
  for (size_t k = 0; k < s->n; k++)
    for (size_t t = 0; t < s->e[k].nterms; t++)
      s->e[k].term[t] = s->pool + offs[k][t];
  free(offs);
  *out = s;
  return 0;
fail:
  free(offs);
  synonyms_free(s);
  return rc;
}

q_err_t synonyms_load(const char *path, synonyms_t **out, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open %s", path);
    return Q_EINVAL;
  }
  char *buf = malloc(SYN_MAX_BYTES + 1);
  if (!buf) {
    fclose(f);
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  size_t n = fread(buf, 1, SYN_MAX_BYTES + 1, f);
  int bad = ferror(f);
  fclose(f);
  q_err_t rc;
  if (bad) {
    snprintf(err, errlen, "cannot read %s", path);
    rc = Q_EINVAL;
  } else if (n > SYN_MAX_BYTES) {
    snprintf(err, errlen, "%s is larger than %u bytes", path, SYN_MAX_BYTES);
    rc = Q_EINVAL;
  } else {
    char inner[384];
    rc = synonyms_parse(buf, n, out, inner, sizeof inner);
    if (rc)
      snprintf(err, errlen, "%s: %s", path, inner);
  }
  free(buf);
  return rc;
}

void synonyms_free(synonyms_t *s) {
  if (!s)
    return;
  free(s->e);
  free(s->pool);
  free(s);
}

size_t synonyms_each(const synonyms_t *s, const char *term, syn_alt_cb cb, void *ud) {
  if (!s)
    return 0;
  size_t calls = 0;
  for (size_t k = 0; k < s->n; k++) {
    if (s->e[k].nterms != 1 || strcmp(s->e[k].term[0], term) != 0)
      continue;
    for (size_t j = 0; j < s->n; j++) {
      if (j == k || s->e[j].group != s->e[k].group)
        continue;
      calls++;
      if (cb(&s->e[j], ud))
        return calls;
    }
  }
  return calls;
}

const syn_entry_t *synonyms_entry(const synonyms_t *s, size_t i) {
  return &s->e[i];
}

size_t synonyms_entries(const synonyms_t *s) {
  return s ? s->n : 0;
}

size_t synonyms_groups(const synonyms_t *s) {
  return s ? s->groups : 0;
}
