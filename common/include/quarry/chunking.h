/* chunking.h - an upload's choice of how its text is cut into chunks, as it
 * travels from the REST API (the chunking, chunk_tokens and chunk_overlap
 * parameters) through UploadHeader.chunking to ingestion's chunker
 * (services/ingestion/chunker.h implements the strategies named here).
 *
 * On the wire and in the database a choice is one string, its spec:
 * "<strategy>:<tokens>:<overlap>", each part empty for "the service's
 * default" ("fixed::", ":300:", "structure:200:40"; "" is all defaults).
 * Tokens are words (chunker.h). Ingestion resolves the defaults when it
 * stores an upload, so the version keeps the full spec and a later run of
 * its job chunks it the same way.
 *
 * Rules (q_chunking_check), the same at the gateway and at ingestion so
 * that a choice the gateway accepts is never refused after a document
 * was streamed: the strategy is one of Q_CHUNKING_STRATEGY_NAMES; tokens
 * are 1..Q_LIMIT_CHUNK_TOKENS_MAX; an overlap needs tokens and is
 * 0..tokens/2. Pure functions, thread-safe. */
#ifndef QUARRY_CHUNKING_H
#define QUARRY_CHUNKING_H

#include <stdbool.h>
#include <stddef.h>

#include "quarry/error.h"
#include "quarry/limits.h"

/* The strategies, the default first (ingestion's QUARRY_CHUNKING). */
#define Q_CHUNKING_STRATEGY_NAMES "structure, fixed"
#define Q_CHUNKING_STRATEGY_BYTES 16 /* the longest name, NUL included */

typedef struct q_chunking {
  char strategy[Q_CHUNKING_STRATEGY_BYTES]; /* "": the default */
  int tokens;                               /* 0: the default */
  int overlap;                              /* -1: the default */
} q_chunking_t;

/* The choice that leaves everything to the service. */
#define Q_CHUNKING_DEFAULT ((q_chunking_t){"", 0, -1})

/* Whether name is one of Q_CHUNKING_STRATEGY_NAMES. */
bool q_chunking_known(const char *name);

/* Checks c against the rules above; Q_EINVAL with err naming the
 * parameter (chunking, chunk_tokens, chunk_overlap) and the rule. */
q_err_t q_chunking_check(const q_chunking_t *c, char *err, size_t errlen);

/* Parses a spec (NULL or "" is all defaults) and checks it; Q_EINVAL with
 * err when it is malformed or breaks a rule. */
q_err_t q_chunking_parse(const char *spec, q_chunking_t *out, char *err, size_t errlen);

/* Writes c's spec into out (Q_LIMIT_CHUNKING_BYTES + 1 bytes suffice);
 * returns its length. */
size_t q_chunking_format(const q_chunking_t *c, char *out, size_t outlen);

#endif
