/* remote.h - reranking by outside rerank APIs: Hugging Face TEI
 * (POST {base}/rerank) and Cohere / Jina (POST {base}/v1/rerank), tried in
 * the order of the providers file's "rerank" list with the retries and
 * circuit breakers of quarry/resilience.h.
 *
 * It is the reranker's remote method (method.h); when every provider fails
 * the request is served in the retrieval order (the none method), so a
 * rerank API that is down costs ranking quality, never the answer. */
#ifndef QUARRY_RERANKER_REMOTE_H
#define QUARRY_RERANKER_REMOTE_H

#include <stddef.h>
#include "quarry/error.h"
#include "quarry/providers.h"
#include "method.h"

typedef struct remote remote_t;

/* A reranker over p's rerank list (the strings are copied; p may be freed
 * after). NULL when the list is empty or memory runs out. */
remote_t *remote_new(const q_providers_t *p);

void remote_free(remote_t *r);

/* Scores passages[0..n) for query[0..qlen) with the first provider that
 * answers and writes n results into out, best first (index and score). 0, or a q_err_t
 * with the reason in err when every provider failed. Thread-safe. */
q_err_t remote_rank(remote_t *r, const char *query, size_t qlen,
                    const features_passage_t *passages, size_t n, method_result_t *out,
                    char *err, size_t errlen);

/* The number of providers in the list. */
size_t remote_count(const remote_t *r);

#endif
