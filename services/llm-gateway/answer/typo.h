/* typo.h - is one stem a misspelling of another?
 *
 * The answerer (gen_extractive.c) matches a question word that no passage
 * uses to a passage word it is a likely misspelling of: "adress" for
 * "address", "lenght" for "length", "recieve" for "receive". Stems are
 * compared, as the tokenizer makes them. Two stems are near when they
 * start with the same letter, are both at least TYPO_MIN_LEN bytes of
 * letters, and are one edit apart (an insertion, deletion, substitution
 * or swap of neighbours), or two when the shorter is TYPO_MIN_LEN2 bytes or
 * longer. Short words are left alone: "till" and "tell" are both words. */
#ifndef QUARRY_LLM_TYPO_H
#define QUARRY_LLM_TYPO_H

#include <stdbool.h>

#define TYPO_MIN_LEN 5
#define TYPO_MIN_LEN2 8
#define TYPO_MAX_SUFFIX 3

/* True when a and b (NUL-terminated stems) are different and near. */
bool typo_near(const char *a, const char *b);

/* True when one stem is the other with a short ending the stemmer leaves
 * on (at most TYPO_MAX_SUFFIX letters, the shorter TYPO_MIN_LEN or
 * longer, so "plan" is not "planet"): comparatives ("short", "shorter"),
 * "depart" and "departur".
 * Also a form of the word, not a misspelling, but found the same way. */
bool typo_derived(const char *a, const char *b);

#endif
