/* synonyms.h - the answerer's table of words and phrases that stand for
 * one another (services/llm-gateway/prompts/synonyms.txt, docs/answers.md).
 *
 * Loaded once at start. Every entry is tokenized and stemmed with the
 * shared tokenizer (quarry/text.h), so lookups take the stemmed terms the
 * question and the passages are made of. Read-only after loading: shared
 * by every thread without a lock. */
#ifndef QUARRY_LLM_SYNONYMS_H
#define QUARRY_LLM_SYNONYMS_H

#include <stddef.h>

#include "quarry/error.h"

#define SYN_MAX_PHRASE 4         /* terms in one entry */
#define SYN_MAX_BYTES (1u << 20) /* largest file read */

typedef struct synonyms synonyms_t;

/* One entry: a term or a phrase of up to SYN_MAX_PHRASE stemmed terms. */
typedef struct syn_entry {
  const char *term[SYN_MAX_PHRASE]; /* NUL-terminated stems */
  size_t nterms;
  size_t group;
} syn_entry_t;

/* Parses text[0..len) (the file format: one group per line, entries
 * separated by commas, '#' comments). Returns 0 with *out set (free with
 * synonyms_free), or Q_EINVAL with the line at fault in err, Q_ENOMEM. */
q_err_t synonyms_parse(const char *text, size_t len, synonyms_t **out, char *err,
                       size_t errlen);

/* Reads and parses the file at path (at most SYN_MAX_BYTES). */
q_err_t synonyms_load(const char *path, synonyms_t **out, char *err, size_t errlen);

void synonyms_free(synonyms_t *s);

/* Calls cb for every entry that shares a group with the one-term entry
 * `term` (a stem), the entry itself left out; a word listed in two
 * groups meets the entries of both (an entry may come twice). cb returns
 * non-zero to stop. Returns the number of calls. NULL s: none. */
typedef int (*syn_alt_cb)(const syn_entry_t *alt, void *ud);
size_t synonyms_each(const synonyms_t *s, const char *term, syn_alt_cb cb, void *ud);

/* Entry i (0 <= i < synonyms_entries(s)), for callers that match phrases
 * of the question against the table. */
const syn_entry_t *synonyms_entry(const synonyms_t *s, size_t i);

/* Entries and groups loaded (for the start-up log). */
size_t synonyms_entries(const synonyms_t *s);
size_t synonyms_groups(const synonyms_t *s);

#endif
