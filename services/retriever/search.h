/* search.h - a Search above the engine seam: mode, fusion policy,
 * document-level aggregation.
 *
 * Whatever engine made the candidate lists, the retriever decides here which
 * lists to ask for (the request's mode), how to fuse them (fusion.h, with the
 * weights the fusion policy gives the embedder that made the query vector)
 * and how many passages of one document to keep. The gRPC handler
 * (handlers.c) validates sizes and maps messages; this module holds the
 * rules.
 *
 * Fusion policy. QUARRY_RETRIEVER_FUSION_WEIGHTS is a comma-separated list
 * of PREFIX=METHOD:PCT rules: the first rule whose PREFIX begins the
 * request's embed_model ("*" matches any, also an empty one) gives the
 * fusion method (rrf or weighted) and the dense list's weight in percent of
 * the lexical list's. PCT 0 declares the embedder too weak to fuse: hybrid
 * then keeps the lexical ranking and only appends dense-only candidates
 * after it (the lexical fallback), so it never ranks worse than lexical.
 * No matching rule: rrf:100 (plain RRF). docs/retrieval.md has the measured
 * default. */
#ifndef QUARRY_RETRIEVER_SEARCH_H
#define QUARRY_RETRIEVER_SEARCH_H

#include "engine/engine.h"
#include "fusion.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/limits.h"

#include <stdbool.h>
#include <stddef.h>

#define SEARCH_MAX_RULES 16

/* One rule of the fusion policy. */
typedef struct search_rule {
  char prefix[Q_LIMIT_MODEL_BYTES + 1]; /* "*" matches every model */
  fusion_method_t method;
  unsigned w_dense_pct; /* dense weight, percent of the lexical weight */
} search_rule_t;

typedef struct search_policy {
  search_rule_t rules[SEARCH_MAX_RULES];
  size_t nrules;
  unsigned rrf_k; /* RRF constant (0: Q_FUSION_RRF_K) */
} search_policy_t;

/* Parses a QUARRY_RETRIEVER_FUSION_WEIGHTS value into p (rules only; rrf_k
 * is the caller's). 0 or Q_EINVAL with err naming the bad rule. */
q_err_t search_policy_parse(const char *spec, search_policy_t *p, char *err,
                            size_t errlen);

/* The config table's validator for that variable. */
q_err_t search_policy_validate(const char *value, char *err, size_t errlen);

/* The rule for embed_model (NULL or "" is the empty name); NULL when none
 * matches. */
const search_rule_t *search_policy_rule(const search_policy_t *p,
                                        const char *embed_model);

/* A search, validated for sizes by the caller. */
typedef struct search_req {
  const char *tenant;
  const char *mode; /* "", "lexical", "dense" or "hybrid" */
  const char *text; /* NULL or blank: none */
  size_t text_len;
  const float *embedding; /* dim 0: none */
  size_t dim;
  size_t top_k;             /* > 0 */
  const char *embed_model;  /* may be NULL */
  size_t max_per_doc;       /* 0: no limit */
  const q_filter_t *filter; /* NULL: none; applied inside the engine */
} search_req_t;

/* What ran and what came out. */
typedef struct search_out {
  fusion_hit_t *hits; /* best first, in the arena */
  size_t n;
  const char *mode; /* "lexical", "dense" or "hybrid": what ran */
  bool dense_used;  /* the query vector took part */
  char fusion[320]; /* how the lists were combined, for the reply */
} search_out_t;

/* Runs rq on engine e under policy p. 0; Q_EINVAL (a bad mode, a mode
 * without what it needs, a bad vector; err says which) or what the engine
 * returns. */
q_err_t search_run(const engine_t *e, const search_policy_t *p, const search_req_t *rq,
                   q_arena_t *arena, search_out_t *out, char *err, size_t errlen);

#endif
