/* llm.h - the LlmGateway service: request validation, dispatch down the
 * ordered provider lists with retries, circuit breakers and failover
 * (quarry/resilience.h), the built-in answerer as the last resort, and
 * accounting (tokens, time to first token, latency, cost) per provider and
 * model. Transport-independent parts (llm_embed, llm_generate) are
 * separate from the gRPC handlers so they can be tested without a server. */
#ifndef QUARRY_LLM_H
#define QUARRY_LLM_H

#include "provider.h"

#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/metrics.h"
#include "quarry/resilience.h"

#define LLM_MAX_PROVIDERS 16

/* One generator of the chat list with its breaker and prices. */
typedef struct llm_gen {
  generator_t *g;
  double cost_prompt_per_1k, cost_completion_per_1k;
  q_breaker_t breaker;
} llm_gen_t;

/* One embedder of the embed list with its breaker. */
typedef struct llm_emb {
  embedder_t *e;
  q_breaker_t breaker;
} llm_emb_t;

/* The service state shared by every handler. The providers are owned by
 * the caller (main.c) and must outlive the server. */
typedef struct llm {
  llm_emb_t emb[LLM_MAX_PROVIDERS];
  size_t nemb;
  llm_gen_t gen[LLM_MAX_PROVIDERS];
  size_t ngen;
  generator_t *fallback; /* the built-in answerer, last resort; NULL: none */
  q_retry_policy_t retry;
  const char *gen_model; /* the model requests may name (first of the list) */
  q_metric_t *tokens;    /* quarry_llm_tokens_total{kind} */
  q_metric_t *requests;  /* quarry_llm_requests_total{op,provider,outcome} */
  q_metric_t *ptokens;   /* quarry_llm_provider_tokens_total{provider,model,kind} */
  q_metric_t *ttft;      /* quarry_llm_ttft_seconds{provider,model} */
  q_metric_t *latency;   /* quarry_llm_duration_seconds{op,provider,model} */
  q_metric_t *cost;      /* quarry_llm_cost_total{provider,model} */
  q_metric_t *retries;   /* quarry_llm_retries_total{op,provider} */
  q_metric_t *fallbacks; /* quarry_llm_fallbacks_total */
  q_metric_t *breakers;  /* quarry_llm_breaker_state{provider} */
} llm_t;

/* Sets up the state with no providers and registers the metric families.
 * retry NULL: Q_RETRY_POLICY_DEFAULT. fallback may be NULL. */
void llm_init(llm_t *l, const q_retry_policy_t *retry, generator_t *fallback);

/* Appends a provider to the embed or chat list (tried in the order added),
 * each with a breaker opening after breaker_failures failures in a row for
 * cooldown_ms. Q_ERESOURCE when LLM_MAX_PROVIDERS are there already. */
q_err_t llm_add_embedder(llm_t *l, embedder_t *e, int breaker_failures, int cooldown_ms);
q_err_t llm_add_generator(llm_t *l, generator_t *g, double cost_prompt_per_1k,
                          double cost_completion_per_1k, int breaker_failures,
                          int cooldown_ms);

/* Frees the breakers (not the providers). */
void llm_cleanup(llm_t *l);

/* Embeds texts with the first embedder of the list that answers (retries
 * and breakers as for generation). 0 or a q_err_t with err set. out holds
 * n * dim floats (every embedder of the list has the same dim). */
q_err_t llm_embed(llm_t *l, const char *const *texts, const size_t *lens, size_t n,
                  float *out, char *err, size_t errlen);

/* What answered a Generate call. Strings are the provider's (static). */
typedef struct llm_answer {
  const char *provider; /* name of the provider that answered */
  const char *model;
  const char *prompt_version; /* "" when no template was used */
  bool fallback;              /* the built-in answerer answered: degraded */
  size_t passages_used;       /* [1..passages_used] were seen */
  gen_usage_t usage;
  double cost;    /* estimate from the configured prices */
  double ttft_ms; /* provider's first piece, from the start of the call */
  int attempts;   /* calls made, all providers */
} llm_answer_t;

/* Generates down the chat list: each provider whose breaker allows it is
 * tried up to retry.max_attempts times while its failures are worth a
 * retry (quarry/resilience.h), waiting the backoff or Retry-After; then the
 * next. Once a piece has gone out no other attempt is made: a failure
 * then is returned as it is (the gateway turns it into an error event).
 * When every provider failed before answering, the fallback answers and
 * ans->fallback is set. emit with len 0 is polled while waiting, to stop
 * waiting for a client that has gone. Before each piece reaches emit,
 * ans->passages_used holds the passages the answering attempt's prompt
 * holds, so a caller can tell what markers the model may cite while it
 * streams. 0 or a q_err_t with err set. */
q_err_t llm_generate(llm_t *l, const char *query, const gen_passage_t *passages, size_t n,
                     int max_tokens, gen_emit_cb emit, void *ud, llm_answer_t *ans,
                     char *err, size_t errlen);

/* gRPC handlers for quarry.v1.LlmGateway; ud is the llm_t. */
q_err_t llm_embed_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                     ProtobufCMessage **out, void *ud);
q_err_t llm_generate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud);

#endif
