/* providers.h - the configuration of outside model providers: ordered lists
 * per capability (chat, embed, rerank), each entry a kind of API, a base
 * URL, a model, timeouts, where its API key comes from and what it costs,
 * plus the retry and circuit-breaker settings every entry shares.
 *
 * Read from a JSON file (QUARRY_PROVIDERS_FILE; the format is
 * docs/providers.md) by the llm-gateway (chat, embed) and the reranker
 * (rerank). Validation is strict and every message names the entry and the
 * field, because it stops the service at start.
 *
 * API keys are read from an environment variable (key_env) or a file
 * (key_file), never from the JSON itself, and are never logged: key_source
 * says where a key came from for logs. */
#ifndef QUARRY_PROVIDERS_H
#define QUARRY_PROVIDERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "quarry/error.h"
#include "quarry/resilience.h"

typedef enum {
  Q_PROVIDER_OPENAI_CHAT,   /* POST {base}/v1/chat/completions, SSE stream */
  Q_PROVIDER_OPENAI_EMBED,  /* POST {base}/v1/embeddings */
  Q_PROVIDER_TEI_EMBED,     /* POST {base}/embed (Hugging Face TEI) */
  Q_PROVIDER_TEI_RERANK,    /* POST {base}/rerank (TEI) */
  Q_PROVIDER_COHERE_RERANK, /* POST {base}/v1/rerank (Cohere, Jina) */
} q_provider_kind_t;

typedef enum { Q_CAP_CHAT, Q_CAP_EMBED, Q_CAP_RERANK } q_capability_t;

/* One configured provider. Every string is owned by the q_providers_t. */
typedef struct q_provider_cfg {
  q_provider_kind_t kind;
  const char *kind_name;         /* "openai-chat", ... */
  char *name;                    /* unique in the file; default "<kind>-<i>" */
  char *base_url;                /* http(s)://host[:port][/prefix], no trailing '/' */
  char *url;                     /* base_url + the kind's path */
  char *model;                   /* "" allowed for TEI (the server has one model) */
  int connect_timeout_ms;        /* TCP + TLS connect */
  int timeout_ms;                /* whole call */
  int stall_timeout_ms;          /* chat: longest silence mid-stream */
  char *api_key;                 /* NULL: none; wiped when freed */
  char *key_source;              /* "env:NAME", "file:PATH" or "none": loggable */
  double cost_prompt_per_1k;     /* currency units per 1000 prompt tokens */
  double cost_completion_per_1k; /* per 1000 completion tokens */
  int dim;                       /* embed: vector length the replies must have */
  bool send_dim;                 /* openai-embed: send "dimensions" */
  int max_tokens;                /* chat: default answer cap (0: provider's) */
  int context_tokens;            /* chat: token budget of the passages in the prompt */
  bool stream_usage;             /* chat: send stream_options.include_usage */
} q_provider_cfg_t;

typedef struct q_providers {
  q_provider_cfg_t *list[3]; /* by q_capability_t, in order of preference */
  size_t n[3];
  q_retry_policy_t retry;
  int breaker_failures;    /* consecutive failures that open a breaker */
  int breaker_cooldown_ms; /* how long it stays open before a probe */
} q_providers_t;

/* Empty configuration with the default policy. */
void q_providers_init(q_providers_t *p);

/* Validates root (the file's JSON) and appends its entries to p. default_dim
 * is the vector length embed entries get when they name none. Returns 0, or
 * Q_EINVAL with err naming the entry and field ("chat[1].timeout_ms: must be
 * 100..600000"). On failure p keeps what it had before. */
q_err_t q_providers_parse(q_providers_t *p, const json_t *root, int default_dim,
                          char *err, size_t errlen);

/* Reads and parses a file (at most 1 MiB) as q_providers_parse. */
q_err_t q_providers_load(q_providers_t *p, const char *path, int default_dim, char *err,
                         size_t errlen);

/* Frees what p owns, wiping API keys. */
void q_providers_cleanup(q_providers_t *p);

/* "chat", "embed", "rerank". */
const char *q_capability_name(q_capability_t c);

#endif
