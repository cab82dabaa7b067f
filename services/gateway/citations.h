/* citations.h - the [n] markers of a generated answer.
 *
 * The generator numbers the passages it was given [1]..[n] and cites them
 * with markers in its answer. A marker is '[', one to four ASCII digits,
 * ']' ("[1]", "[12]"; "[1][2]" is two markers; "[x]", "[1,2]" and "[]" are
 * not markers and stay as text). A marker is valid when its number lies in
 * 1..npassages. The gateway removes invalid markers from the answer, so
 * every marker a client sees refers to a citation it is given, and lists
 * exactly the passages that valid markers cite. Pure functions. */
#ifndef QUARRY_GW_CITATIONS_H
#define QUARRY_GW_CITATIONS_H

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

#endif
