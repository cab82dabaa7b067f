/* text.h - the one tokenizer shared by indexing, querying, embedding and
 * reranking, so every stage agrees on what a term is.
 *
 * Terms are maximal runs of Unicode letters and digits, case-folded with
 * utf8proc, English stopwords removed, and stemmed with the Snowball English
 * stemmer (libstemmer). Terms longer than Q_TEXT_MAX_TERM bytes are cut. */
#ifndef QUARRY_TEXT_H
#define QUARRY_TEXT_H

#include "quarry/error.h"

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#define Q_TEXT_MAX_TERM 64

/* Called once per term: term is NUL-terminated (len bytes), pos is the
 * term's position counting only kept terms, from 0. Return non-zero to
 * stop early. term is only valid during the call. */
typedef int (*q_text_term_cb)(const char *term, size_t len, size_t pos, void *ud);

/* Tokenizes s[0..n). Invalid UTF-8 bytes are treated as separators.
 * Returns the number of terms delivered. Thread-safe (each thread gets its
 * own stemmer). */
size_t q_text_terms(const char *s, size_t n, q_text_term_cb cb, void *ud);

/* A stopword list other than the built-in English one (the retriever's
 * QUARRY_RETRIEVER_STOPWORDS). Immutable once made, so any thread may use it. */
typedef struct q_text_stopwords q_text_stopwords_t;

/* Longest stopword file read, words in it, and bytes of one word. */
#define Q_TEXT_STOPWORDS_MAX_FILE (1u << 20)
#define Q_TEXT_STOPWORDS_MAX_WORDS 10000

/* Makes a stopword list from spec: "english" (the built-in list that
 * q_text_terms uses), "none" (no stopwords) or the path of a UTF-8 file with
 * one word per line (blank lines and lines starting with # ignored; words
 * are case-folded as the tokenizer folds text, before stemming). *out is
 * the caller's (q_text_stopwords_free). 0; Q_EINVAL with err naming the
 * problem (unreadable file, too big, too many words, a word of more than
 * Q_TEXT_MAX_TERM bytes or with a separator in it); Q_ENOMEM. */
q_err_t q_text_stopwords_new(const char *spec, q_text_stopwords_t **out, char *err,
                             size_t errlen);

/* Frees a list from q_text_stopwords_new. NULL is fine. */
void q_text_stopwords_free(q_text_stopwords_t *sw);

/* A fingerprint of the list's words (order and duplicates ignored): equal
 * lists give equal values, so an index built with one list can tell that
 * it is asked to load under another. NULL means the built-in list. */
uint64_t q_text_stopwords_fingerprint(const q_text_stopwords_t *sw);

/* Words in the list (NULL: the built-in list). */
size_t q_text_stopwords_count(const q_text_stopwords_t *sw);

/* q_text_terms with sw as the stopword list instead of the built-in one
 * (NULL: the built-in one, exactly q_text_terms). */
size_t q_text_terms_stop(const char *s, size_t n, const q_text_stopwords_t *sw,
                         q_text_term_cb cb, void *ud);

/* 1 when the (already case-folded) word is an English stopword. */
bool q_text_is_stopword(const char *w, size_t len);

/* The length of the longest prefix of s[0..n) that is at most max bytes
 * and does not end inside a UTF-8 sequence: where to cut text that must fit
 * a limit without leaving half a character behind. */
size_t q_text_cut(const char *s, size_t n, size_t max);

/* Characters (Unicode code points: UTF-8 lead bytes) in s[0..n), the unit
 * of the offsets the API gives (chunk and snippet offsets). */
size_t q_text_chars(const char *s, size_t n);

/* Splits s[0..n) into sentences. Calls cb(start, len, ud) for each sentence
 * (trimmed of surrounding white space); returns the count. A sentence ends
 * at . ! ? followed by white space, or at a blank line / Markdown heading. */
typedef int (*q_text_span_cb)(const char *start, size_t len, void *ud);
size_t q_text_sentences(const char *s, size_t n, q_text_span_cb cb, void *ud);

#endif
