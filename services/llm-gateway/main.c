/* quarry-llm-gateway: one front for embedding and generation providers.
 * Builds the ordered provider lists once from the configuration (the
 * providers file, or the single-provider QUARRY_EMBED_* / QUARRY_GEN_*
 * variables as a one-element list), then serves quarry.v1.LlmGateway
 * (llm.c). */
#include "llm.h"

#include "quarry/providers.h"

#include "quarry/log.h"
#include "quarry/service.h"
#include "quarry/v1/llm.pb-c.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "quarry/error.h"

static q_common_cfg_t common;
static const char *embed_provider, *embed_url, *embed_model, *embed_key;
static const char *gen_provider, *gen_url, *gen_model, *gen_key, *prompt_path;
static const char *synonyms_path;
static const char *providers_file;
static int64_t embed_dim, embed_timeout, gen_timeout, gen_max_tokens, context_tokens;
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
     "openai (an OpenAI-compatible /v1/chat/completions API, streamed; "
     "falls back to extractive when it fails). Ignored when QUARRY_PROVIDERS_FILE "
     "has a chat list.",
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
    {"QUARRY_PROMPT_TEMPLATE", Q_CFG_STRING, "services/llm-gateway/prompts/answer.v2.txt",
     0, 0, NULL,
     "Prompt template file of the chat providers (docs/providers.md): must contain "
     "{{context}} and {{question}}; a line \"--- user ---\" splits the system message "
     "from the user message. Its base name is the version reported with answers.",
     0, &prompt_path},
    {"QUARRY_ANSWER_SYNONYMS", Q_CFG_STRING, "services/llm-gateway/prompts/synonyms.txt",
     0, 0, NULL,
     "Synonym groups the extractive answerer matches questions with (docs/answers.md); "
     "empty: none. A file that cannot be read or parsed stops the service.",
     0, &synonyms_path},
    {"QUARRY_CONTEXT_TOKENS", Q_CFG_INT, "3000", 16, 1048576, NULL,
     "Token budget of the passages in the prompt of the QUARRY_GEN_* provider "
     "(tokens estimated as UTF-8 bytes / 4; passages that do not fit are left out "
     "whole). Providers from QUARRY_PROVIDERS_FILE set context_tokens each.",
     0, &context_tokens},
    {"QUARRY_PROVIDERS_FILE", Q_CFG_STRING, "", 0, 0, NULL,
     "JSON file with ordered provider lists per capability (chat, embed, rerank), "
     "retry and circuit-breaker settings (docs/providers.md). A non-empty chat or "
     "embed list replaces the QUARRY_GEN_* or QUARRY_EMBED_* provider. Empty: none.",
     0, &providers_file},
};

/* The single-provider variables as one-element lists (the legacy
 * configuration goes through the same validation as the file). */
static q_err_t env_providers(q_providers_t *p, char *err, size_t errlen) {
  json_t *root = json_object();
  q_err_t rc = Q_ENOMEM;
  if (!root)
    goto done;
  if (strcmp(embed_provider, "openai") == 0) {
    json_t *e = json_pack("{s:s,s:s,s:s,s:I,s:I,s:b}", "kind", "openai-embed", "name",
                          "openai", "base_url", "http://replaced", "model", embed_model,
                          "timeout_ms", (json_int_t)embed_timeout, "dim",
                          (json_int_t)embed_dim, "send_dim", embed_send_dim);
    if (e && embed_key[0])
      json_object_set_new(e, "key_env", json_string("QUARRY_EMBED_API_KEY"));
    if (!e || json_object_set_new(root, "embed", json_pack("[o]", e)))
      goto done;
  }
  if (strcmp(gen_provider, "openai") == 0) {
    json_t *g = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "kind", "openai-chat", "name",
                          "openai", "base_url", "http://replaced", "model", gen_model,
                          "timeout_ms", (json_int_t)gen_timeout, "max_tokens",
                          (json_int_t)gen_max_tokens, "context_tokens",
                          (json_int_t)context_tokens);
    if (g && gen_key[0])
      json_object_set_new(g, "key_env", json_string("QUARRY_GEN_API_KEY"));
    if (!g || json_object_set_new(root, "chat", json_pack("[o]", g)))
      goto done;
  }
  rc = q_providers_parse(p, root, (int)embed_dim, err, errlen);
  if (rc)
    goto done;
  /* These variables name the whole endpoint, not a base URL. */
  const char *urls[2] = {gen_url, embed_url};
  for (int c = 0; c < 2; c++) {
    q_capability_t cap = c == 0 ? Q_CAP_CHAT : Q_CAP_EMBED;
    if (p->n[cap]) {
      char *u = strdup(urls[c]);
      if (!u) {
        rc = Q_ENOMEM;
        goto done;
      }
      free(p->list[cap][0].url);
      p->list[cap][0].url = u;
    }
  }
done:
  if (rc == Q_ENOMEM)
    snprintf(err, errlen, "out of memory");
  json_decref(root);
  return rc;
}

static embedder_t *new_embedder(const q_provider_cfg_t *c) {
  embed_openai_opts_t o = {.name = c->name,
                           .url = c->url,
                           .model = c->model,
                           .api_key = c->api_key,
                           .dim = c->dim,
                           .send_dim = c->send_dim,
                           .timeout_ms = c->timeout_ms,
                           .connect_timeout_ms = c->connect_timeout_ms};
  return c->kind == Q_PROVIDER_TEI_EMBED ? embed_tei_new(&o) : embed_openai_new(&o);
}

static generator_t *new_generator(const q_provider_cfg_t *c, const char *template,
                                  const char *version) {
  gen_openai_opts_t o = {.name = c->name,
                         .url = c->url,
                         .model = c->model,
                         .api_key = c->api_key,
                         .template = template,
                         .prompt_version = version,
                         .timeout_ms = c->timeout_ms,
                         .connect_timeout_ms = c->connect_timeout_ms,
                         .stall_timeout_ms = c->stall_timeout_ms,
                         .max_tokens = c->max_tokens,
                         .context_tokens = c->context_tokens,
                         .stream_usage = c->stream_usage};
  return gen_openai_new(&o);
}

int main(int argc, char **argv) {
  q_service_t svc;
  q_providers_t file, env;
  embedder_t *embedders[LLM_MAX_PROVIDERS] = {NULL}, *hash = NULL;
  generator_t *generators[LLM_MAX_PROVIDERS] = {NULL}, *extractive = NULL;
  size_t nemb = 0, ngen = 0;
  char *template = NULL;
  char err[1024], version[128] = "";
  llm_t llm;
  bool llm_ready = false;
  q_providers_init(&file);
  q_providers_init(&env);
  int rc = q_service_init(&svc, "quarry-llm-gateway",
                          "Embedding and answer generation behind one gRPC API.", cfg,
                          Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;

  if (providers_file[0] &&
      q_providers_load(&file, providers_file, (int)embed_dim, err, sizeof err)) {
    fprintf(stderr, "quarry-llm-gateway: QUARRY_PROVIDERS_FILE: %s\n", err);
    rc = 2;
    goto done;
  }
  if (env_providers(&env, err, sizeof err)) {
    fprintf(stderr, "quarry-llm-gateway: %s\n", err);
    rc = 2;
    goto done;
  }
  const q_providers_t *chat = file.n[Q_CAP_CHAT] ? &file : &env;
  const q_providers_t *emb = file.n[Q_CAP_EMBED] ? &file : &env;
  /* The file's policy applies whenever there is a file. */
  const q_providers_t *policy = providers_file[0] ? &file : &env;

  for (size_t i = 0; i < emb->n[Q_CAP_EMBED]; i++) {
    const q_provider_cfg_t *c = &emb->list[Q_CAP_EMBED][i];
    if (c->dim != (int)embed_dim) {
      fprintf(stderr,
              "quarry-llm-gateway: embed provider %s has dim %d but QUARRY_EMBED_DIM is "
              "%d (every embedder of the list must give vectors of the index's size)\n",
              c->name, c->dim, (int)embed_dim);
      rc = 2;
      goto done;
    }
    if (!(embedders[nemb++] = new_embedder(c)))
      goto oom;
  }
  if (nemb == 0 && !(embedders[nemb++] = hash = embed_hash_new((int)embed_dim)))
    goto oom;
  extractive = gen_extractive_new_with(synonyms_path, err, sizeof err);
  if (!extractive) {
    fprintf(stderr, "quarry-llm-gateway: QUARRY_ANSWER_SYNONYMS: %s\n", err);
    rc = 2;
    goto done;
  }
  if (chat->n[Q_CAP_CHAT]) {
    if (gen_openai_load_template(prompt_path, &template, err, sizeof err)) {
      fprintf(stderr, "quarry-llm-gateway: QUARRY_PROMPT_TEMPLATE: %s\n", err);
      rc = 2;
      goto done;
    }
    gen_prompt_version(prompt_path, version, sizeof version);
    for (size_t i = 0; i < chat->n[Q_CAP_CHAT]; i++)
      if (!(generators[ngen++] =
                new_generator(&chat->list[Q_CAP_CHAT][i], template, version)))
        goto oom;
  }

  llm_init(&llm, &policy->retry, extractive);
  llm_ready = true;
  for (size_t i = 0; i < nemb; i++)
    llm_add_embedder(&llm, embedders[i], policy->breaker_failures,
                     policy->breaker_cooldown_ms);
  for (size_t i = 0; i < ngen; i++) {
    const q_provider_cfg_t *c = &chat->list[Q_CAP_CHAT][i];
    llm_add_generator(&llm, generators[i], c->cost_prompt_per_1k,
                      c->cost_completion_per_1k, policy->breaker_failures,
                      policy->breaker_cooldown_ms);
  }
  for (size_t i = 0; i < emb->n[Q_CAP_EMBED]; i++) {
    const q_provider_cfg_t *c = &emb->list[Q_CAP_EMBED][i];
    q_log_info("embed provider", "{s:i,s:s,s:s,s:s,s:s,s:i,s:s}", "position", (int)i + 1,
               "name", c->name, "kind", c->kind_name, "url", c->base_url, "model",
               c->model, "dim", c->dim, "key", c->key_source);
  }
  for (size_t i = 0; i < chat->n[Q_CAP_CHAT]; i++) {
    const q_provider_cfg_t *c = &chat->list[Q_CAP_CHAT][i];
    q_log_info("chat provider", "{s:i,s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:s}", "position",
               (int)i + 1, "name", c->name, "kind", c->kind_name, "url", c->base_url,
               "model", c->model, "timeout_ms", c->timeout_ms, "context_tokens",
               c->context_tokens, "key", c->key_source, "prompt_version", version);
  }
  q_log_info("providers chosen", "{s:i,s:i,s:s,s:i,s:i}", "embedders", (int)nemb,
             "generators", (int)ngen, "last_resort", extractive->name, "retry_attempts",
             policy->retry.max_attempts, "breaker_failures", policy->breaker_failures);

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
  if (llm_ready)
    llm_cleanup(&llm);
  for (size_t i = 0; i < ngen; i++)
    if (generators[i])
      generators[i]->free(generators[i]);
  if (extractive)
    extractive->free(extractive);
  for (size_t i = 0; i < nemb; i++)
    if (embedders[i])
      embedders[i]->free(embedders[i]);
  (void)hash;
  free(template);
  q_providers_cleanup(&file);
  q_providers_cleanup(&env);
  q_service_cleanup(&svc);
  return rc;
}
