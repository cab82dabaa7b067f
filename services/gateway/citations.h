/* citations.h - the [n] markers of a generated answer.
 *
 * The generator numbers the passages it was given [1]..[n] and cites them
 * with markers in its answer. A marker is '[', one to four ASCII digits,
 * ']' ("[1]", "[12]"; "[1][2]" is two markers; "[x]", "[1,2]" and "[]" are
 * not markers and stay as text). A marker is valid when its number lies in
 * 1..npassages. The gateway removes invalid markers from the answer, so
 * every marker a client sees refers to a citation it is given, and lists
 * exactly the passages that valid markers cite. citations_locate finds
 * the part of a cited passage the answer relies on, for the citation's
 * snippet and offsets. Pure functions, but citations_count_invalid, which
 * feeds a metric. */
#ifndef QUARRY_GW_CITATIONS_H
#define QUARRY_GW_CITATIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "quarry/limits.h"

typedef struct citations {
  size_t nmarkers;                           /* markers found, valid or not */
  size_t ninvalid;                           /* markers outside 1..npassages (removed) */
  size_t ncited;                             /* distinct valid numbers */
  unsigned cited[Q_LIMIT_GENERATE_PASSAGES]; /* ascending, cited[0..ncited) */
} citations_t;

/* Scans answer[0..len) for markers with npassages passages sent
 * (npassages <= Q_LIMIT_GENERATE_PASSAGES, what one Generate call carries).
 * Writes the answer without invalid markers, NUL-terminated, to out
 * (outcap >= len + 1; it never grows).
 * Returns the length written. */
size_t citations_extract(const char *answer, size_t len, size_t npassages, citations_t *c,
                         char *out, size_t outcap);

/* The same check on an answer that arrives in pieces, for streaming it:
 * what citations_stream_feed writes, piece after piece, adds up to exactly
 * what citations_extract writes for the whole answer. It holds back only
 * what the next bytes decide: a '[' that may open a marker, a space an
 * invalid marker may remove, and the start of a UTF-8 character cut by
 * the end of a piece (so every piece written is whole characters). */
typedef struct citations_stream {
  size_t npassages;
  char pend[8]; /* undecided input: '[' and up to 5 digits, or more of a
                   marker waiting for the byte after it */
  size_t npend;
  bool space;   /* a space waits: an invalid marker next would drop it */
  char utf8[4]; /* output bytes that end with a cut UTF-8 character */
  size_t nutf8;
} citations_stream_t;

/* Starts a stream for an answer generated from npassages passages. */
void citations_stream_init(citations_stream_t *cs, size_t npassages);

/* Feeds piece[0..len); with last set, the answer ends there (len may be
 * 0) and everything held back is written. Writes to out, which must hold
 * len + CITATIONS_STREAM_SLACK bytes; returns how many were written (0 is
 * common: all of it may be held back). */
#define CITATIONS_STREAM_SLACK 16
size_t citations_stream_feed(citations_stream_t *cs, const char *piece, size_t len,
                             bool last, char *out);

/* The part of passage text[0..tlen) that the answer cites with marker n:
 * the claim is the answer's text before the first [n] (back to the
 * previous marker or the start), and the span is the run of the passage's
 * sentences that share the most terms with it (shared tokenizer, so
 * stems and stopwords agree with retrieval), at most max bytes and never
 * ending inside a UTF-8 character. With no marker [n] or no shared term,
 * the start of the passage. Sets [*start, *end) as byte offsets into
 * text; returns true when the span was found from the answer. */
bool citations_locate(const char *answer, size_t alen, unsigned n, const char *text,
                      size_t tlen, size_t max, size_t *start, size_t *end);

/* Adds n invalid markers removed from an answer to the metric
 * quarry_citations_invalid_total. Thread-safe. */
void citations_count_invalid(size_t n);

#endif
