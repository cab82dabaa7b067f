/* quarry-llm-gateway: one front for embedding and generation providers.
 * Chooses the providers once from the configuration, then serves
 * quarry.v1.LlmGateway (llm.c). */
#include "llm.h"

#include "quarry/log.h"
#include "quarry/service.h"
#include "quarry/v1/llm.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "quarry/error.h"

static q_common_cfg_t common;
static const char *embed_provider, *embed_url, *embed_model, *embed_key;
static const char *gen_provider, *gen_url, *gen_model, *gen_key, *prompt_path;
static const char *synonyms_path;
static int64_t embed_dim, embed_timeout, gen_timeout, gen_max_tokens;
static int embed_send_dim;

static q_err_t validate_embed_provider(const char *v, char *err, size_t errlen) {
  if (strcmp(v, "builtin") == 0 || strcmp(v, "openai") == 0)
    return 0;
  snprintf(err, errlen, "must be builtin or openai");
  return Q_EINVAL;
}

static q_err_t validate_gen_provider(const char *v, char *err, size_t errlen) {
  if (strcmp(v, "extractive") == 0 || strcmp(v, "openai") == 0)
    return 0;
  snprintf(err, errlen, "must be extractive or openai");
  return Q_EINVAL;
}

static q_err_t validate_url(const char *v, char *err, size_t errlen) {
  if ((strncmp(v, "http://", 7) == 0 && v[7]) || (strncmp(v, "https://", 8) == 0 && v[8]))
    return 0;
  snprintf(err, errlen, "must be an http:// or https:// URL");
  return Q_EINVAL;
}

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7005", "127.0.0.1:9105"),
    {"QUARRY_EMBED_PROVIDER", Q_CFG_STRING, "builtin", 0, 0, validate_embed_provider,
     "Embedding provider: builtin (feature hashing, no external calls) or openai "
     "(an OpenAI-compatible /v1/embeddings API).",
     0, &embed_provider},
    {"QUARRY_EMBED_DIM", Q_CFG_INT, "384", 16, Q_LIMIT_EMBED_DIM_MAX, NULL,
     "Embedding dimensions; must match the retriever's QUARRY_EMBED_DIM.", 0, &embed_dim},
    {"QUARRY_EMBED_URL", Q_CFG_STRING, "https://api.openai.com/v1/embeddings", 0, 0,
     validate_url, "Embeddings endpoint for the openai provider.", 0, &embed_url},
    {"QUARRY_EMBED_MODEL", Q_CFG_STRING, "text-embedding-3-small", 0, 0, NULL,
     "Model name sent to the openai embeddings provider.", 0, &embed_model},
    {"QUARRY_EMBED_API_KEY", Q_CFG_STRING, "", 0, 0, NULL,
     "Bearer token for the openai embeddings provider (empty: none).", 1, &embed_key},
    {"QUARRY_EMBED_SEND_DIM", Q_CFG_BOOL, "true", 0, 0, NULL,
     "Send \"dimensions\": QUARRY_EMBED_DIM to the openai embeddings provider "
     "(OpenAI text-embedding-3 supports it; turn off for servers that reject it).",
     0, &embed_send_dim},
    {"QUARRY_EMBED_TIMEOUT_MS", Q_CFG_INT, "10000", 100, 600000, NULL,
     "Timeout of one call to the openai embeddings provider.", 0, &embed_timeout},
    {"QUARRY_GEN_PROVIDER", Q_CFG_STRING, "extractive", 0, 0, validate_gen_provider,
     "Generation provider: extractive (built-in, quotes and cites passages) or "
     "openai (an OpenAI-compatible /v1/chat/completions API, non-streaming; "
     "falls back to extractive when it fails).",
     0, &gen_provider},
    {"QUARRY_GEN_URL", Q_CFG_STRING, "https://api.openai.com/v1/chat/completions", 0, 0,
     validate_url, "Chat completions endpoint for the openai provider.", 0, &gen_url},
    {"QUARRY_GEN_MODEL", Q_CFG_STRING, "gpt-4o-mini", 0, 0, NULL,
     "Model name sent to the openai generation provider.", 0, &gen_model},
    {"QUARRY_GEN_API_KEY", Q_CFG_STRING, "", 0, 0, NULL,
     "Bearer token for the openai generation provider (empty: none).", 1, &gen_key},
    {"QUARRY_GEN_TIMEOUT_MS", Q_CFG_INT, "30000", 100, 600000, NULL,
     "Timeout of one call to the openai generation provider.", 0, &gen_timeout},
    {"QUARRY_GEN_MAX_TOKENS", Q_CFG_INT, "512", 0, Q_LIMIT_MAX_TOKENS, NULL,
     "Answer length cap sent to the openai provider when a request sets none "
     "(0: the provider's default).",
     0, &gen_max_tokens},
    {"QUARRY_PROMPT_TEMPLATE", Q_CFG_STRING, "services/llm-gateway/prompts/answer.txt", 0,
     0, NULL,
     "Prompt template file for the openai generation provider; must contain "
     "{{context}} and {{question}}.",
     0, &prompt_path},
    {"QUARRY_ANSWER_SYNONYMS", Q_CFG_STRING, "services/llm-gateway/prompts/synonyms.txt",
     0, 0, NULL,
     "Synonym groups the extractive answerer matches questions with (docs/answers.md); "
     "empty: none. A file that cannot be read or parsed stops the service.",
     0, &synonyms_path},
};

int main(int argc, char **argv) {
  q_service_t svc;
  embedder_t *embedder = NULL;
  generator_t *generator = NULL, *extractive = NULL;
  char *template = NULL;
  char err[512];
  llm_t llm;
  int rc = q_service_init(&svc, "quarry-llm-gateway",
                          "Embedding and answer generation behind one gRPC API.", cfg,
                          Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;

  if (strcmp(embed_provider, "openai") == 0) {
    embed_openai_opts_t o = {.url = embed_url,
                             .model = embed_model,
                             .api_key = embed_key,
                             .dim = (int)embed_dim,
                             .send_dim = embed_send_dim,
                             .timeout_ms = (int)embed_timeout};
    embedder = embed_openai_new(&o);
  } else {
    embedder = embed_hash_new((int)embed_dim);
  }
  if (!embedder)
    goto oom;
  extractive = gen_extractive_new_with(synonyms_path, err, sizeof err);
  if (!extractive) {
    fprintf(stderr, "quarry-llm-gateway: QUARRY_ANSWER_SYNONYMS: %s\n", err);
    rc = 2;
    goto done;
  }
  generator = extractive;
  if (strcmp(gen_provider, "openai") == 0) {
    if (gen_openai_load_template(prompt_path, &template, err, sizeof err)) {
      fprintf(stderr, "quarry-llm-gateway: QUARRY_PROMPT_TEMPLATE: %s\n", err);
      rc = 2;
      goto done;
    }
    gen_openai_opts_t o = {.url = gen_url,
                           .model = gen_model,
                           .api_key = gen_key,
                           .template = template,
                           .timeout_ms = (int)gen_timeout,
                           .max_tokens = (int)gen_max_tokens};
    generator = gen_openai_new(&o);
    if (!generator)
      goto oom;
  }
  q_log_info("providers chosen", "{s:s,s:s,s:i,s:s,s:s}", "embedder", embedder->name,
             "embed_model", embedder->model, "dim", embedder->dim, "generator",
             generator->name, "gen_model", generator->model);

  llm_init(&llm, embedder, generator, generator != extractive ? extractive : NULL);
  static const q_grpc_method_t methods[] = {
      {"Embed", Q_GRPC_UNARY, llm_embed_cb},
      {"Generate", Q_GRPC_SERVER_STREAM, llm_generate_cb},
  };
  if (q_service_start(&svc, &quarry__v1__llm_gateway__descriptor, methods,
                      Q_NELEM(methods), &llm, NULL, NULL)) {
    rc = 1;
    goto done;
  }
  q_service_wait(&svc);
  rc = 0;
  goto done;

oom:
  q_log_error("out of memory while starting", NULL);
  rc = 1;
done:
  if (generator && generator != extractive)
    generator->free(generator);
  if (extractive)
    extractive->free(extractive);
  if (embedder)
    embedder->free(embedder);
  free(template);
  q_service_cleanup(&svc);
  return rc;
}
