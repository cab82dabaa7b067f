/* llm.h - the LlmGateway service: request validation, provider dispatch
 * with fallback, and metrics. Transport-independent parts (llm_embed,
 * llm_generate) are separate from the gRPC handlers so they can be tested
 * without a server. */
#ifndef QUARRY_LLM_H
#define QUARRY_LLM_H

#include "provider.h"

#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/metrics.h"
#include "quarry/error.h"

/* The service state shared by every handler. The providers are owned by
 * the caller (main.c) and must outlive the server. */
typedef struct llm {
  embedder_t *embedder;
  generator_t *generator;
  generator_t *fallback; /* used when generator fails; NULL: none */
  q_metric_t *tokens;    /* quarry_llm_tokens_total{kind} */
  q_metric_t *requests;  /* quarry_llm_requests_total{op,provider,outcome} */
} llm_t;

/* Sets up the state and registers the metric families. */
void llm_init(llm_t *l, embedder_t *embedder, generator_t *generator,
              generator_t *fallback);

/* Embeds texts with the configured embedder, counting the outcome. 0 or a
 * q_err_t with err set. out holds n * embedder->dim floats. */
q_err_t llm_embed(llm_t *l, const char *const *texts, const size_t *lens, size_t n,
                  float *out, char *err, size_t errlen);

/* Generates with the configured generator; when it fails without having
 * emitted anything and a fallback exists, logs the failure and answers with
 * the fallback. *model_used (optional) receives the model that answered.
 * Counts outcomes and tokens. 0 or a q_err_t with err set. */
q_err_t llm_generate(llm_t *l, const char *query, const gen_passage_t *passages, size_t n,
                     int max_tokens, gen_emit_cb emit, void *ud, gen_usage_t *usage,
                     const char **model_used, char *err, size_t errlen);

/* gRPC handlers for quarry.v1.LlmGateway; ud is the llm_t. */
q_err_t llm_embed_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                     ProtobufCMessage **out, void *ud);
q_err_t llm_generate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud);

#endif
