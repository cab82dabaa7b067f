/* text.h - the one tokenizer shared by indexing, querying, embedding and
 * reranking, so every stage agrees on what a term is.
 *
 * Terms are maximal runs of Unicode letters and digits, case-folded with
 * utf8proc, English stopwords removed, and stemmed with the Snowball English
 * stemmer (libstemmer). Terms longer than Q_TEXT_MAX_TERM bytes are cut. */
#ifndef QUARRY_TEXT_H
#define QUARRY_TEXT_H

#include <stddef.h>
#include <stdbool.h>

#define Q_TEXT_MAX_TERM 64

/* Called once per term: term is NUL-terminated (len bytes), pos is the
 * term's position counting only kept terms, from 0. Return non-zero to
 * stop early. term is only valid during the call. */
typedef int (*q_text_term_cb)(const char *term, size_t len, size_t pos, void *ud);

/* Tokenizes s[0..n). Invalid UTF-8 bytes are treated as separators.
 * Returns the number of terms delivered. Thread-safe (each thread gets its
 * own stemmer). */
size_t q_text_terms(const char *s, size_t n, q_text_term_cb cb, void *ud);

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
