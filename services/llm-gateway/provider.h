/* provider.h - the two kinds of model backends the LLM gateway fronts.
 *
 * An embedder turns texts into fixed-size vectors; a generator turns a
 * question plus numbered passages into an answer that cites them with [n]
 * markers. Each is a table of function pointers chosen once at start from
 * the configuration (curl's TLS backends): a built-in implementation that
 * needs nothing outside the process, and an OpenAI-compatible HTTP one.
 *
 * Providers are shared by every worker thread: embed and generate must be
 * thread-safe, and hold no per-call state in the provider object. */
#ifndef QUARRY_LLM_PROVIDER_H
#define QUARRY_LLM_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include "quarry/error.h"
#include "quarry/resilience.h"

/* ---- embedders ----------------------------------------------------------- */

typedef struct embedder embedder_t;

struct embedder {
  const char *name;  /* provider name for metrics and logs: "builtin", "openai" */
  const char *model; /* model reported to callers */
  int dim;           /* length of every vector produced */

  /* Embeds texts[0..n) (texts[i] is lens[i] bytes of UTF-8, non-empty) into
   * out[i * dim .. (i + 1) * dim), each vector L2-normalised. Returns 0, or
   * a q_err_t with the reason in err: Q_EINVAL for a text that cannot be
   * embedded, Q_EUNAVAIL / Q_ETIMEDOUT when a remote provider fails. */
  int (*embed)(const embedder_t *e, const char *const *texts, const size_t *lens,
               size_t n, float *out, char *err, size_t errlen);

  /* Optional (NULL for the built-in embedder): embed, also filling *att
   * with the HTTP status and Retry-After the resilience layer decides
   * retries on. */
  int (*embed_ex)(const embedder_t *e, const char *const *texts, const size_t *lens,
                  size_t n, float *out, q_attempt_t *att, char *err, size_t errlen);

  /* Frees the provider and everything it owns. */
  void (*free)(embedder_t *e);
};

/* The built-in feature-hashing embedder (embed_hash.c): deterministic, no
 * model files, dim dimensions (16..Q_LIMIT_EMBED_DIM_MAX). NULL when out of
 * memory. */
embedder_t *embed_hash_new(int dim);

/* Settings of the OpenAI-compatible embeddings provider. Strings are
 * copied. */
typedef struct embed_openai_opts {
  const char *name;       /* provider name for logs and metrics; NULL: "openai" */
  const char *url;        /* full endpoint, e.g. https://api.openai.com/v1/embeddings */
  const char *model;      /* sent as "model" */
  const char *api_key;    /* sent as "Authorization: Bearer"; "" or NULL: none */
  int dim;                /* expected vector length; replies must match */
  int send_dim;           /* also send "dimensions": dim in the request */
  int timeout_ms;         /* per request */
  int connect_timeout_ms; /* 0: curl's default */
} embed_openai_opts_t;

/* The OpenAI-compatible /v1/embeddings provider (embed_openai.c). NULL when
 * out of memory. */
embedder_t *embed_openai_new(const embed_openai_opts_t *o);

/* Hugging Face text-embeddings-inference: POST {"inputs": [texts],
 * "normalize": true, "truncate": true} to url ({base}/embed) and read
 * [[floats], ...] (embed_tei.c). Takes the same settings (model and
 * send_dim are not sent: the server has one model). NULL when out of
 * memory. */
embedder_t *embed_tei_new(const embed_openai_opts_t *o);

/* ---- generators ---------------------------------------------------------- */

typedef struct generator generator_t;

/* A numbered source the answer may cite: passage i is cited as [i + 1]. */
typedef struct gen_passage {
  const char *title; /* may be "" */
  const char *text;
  size_t text_len;
} gen_passage_t;

typedef struct gen_usage {
  int prompt_tokens;
  int completion_tokens;
} gen_usage_t;

/* Receives the next piece of the answer (not NUL-terminated, len bytes).
 * Returns 0 to go on, non-zero to stop (the client has gone away). A call
 * with len 0 (piece may be NULL) carries no text: it asks whether the
 * client is still there, so a provider waiting on a silent server can give
 * up as soon as the client leaves. */
typedef int (*gen_emit_cb)(const char *piece, size_t len, void *ud);

/* What the resilience layer (llm.c, quarry/resilience.h) needs to know
 * about a remote call besides its q_err_t. */
typedef struct gen_outcome {
  long http_status;           /* 0: no HTTP status received */
  int retry_after_ms;         /* the reply's Retry-After; -1: none */
  size_t passages_used;       /* passages [1..passages_used] were in the prompt */
  const char *prompt_version; /* template used ("answer.v2"); "" for none */
} gen_outcome_t;

struct generator {
  const char *name;  /* "extractive", or the configured provider's name */
  const char *model; /* model reported to callers */

  /* Answers query from passages[0..n), streaming the answer through emit.
   * max_tokens > 0 caps the answer's length in tokens (whitespace-separated
   * words for the built-in generator). Fills *usage. Returns 0; Q_ECANCELLED
   * when emit asked to stop; Q_EUNAVAIL / Q_ETIMEDOUT / Q_ERESOURCE (429) /
   * Q_EINTERNAL when a remote provider fails, with the reason in err. A
   * streaming provider may fail after it has emitted pieces: the caller
   * tracks what went out (llm.c) and only retries or falls back before the
   * first piece. */
  int (*generate)(const generator_t *g, const char *query, const gen_passage_t *passages,
                  size_t n, int max_tokens, gen_emit_cb emit, void *ud,
                  gen_usage_t *usage, char *err, size_t errlen);

  /* Optional (NULL for the built-in generator): generate, also filling
   * *out, which the resilience layer reads to decide on a retry (HTTP
   * status, Retry-After) and the caller reports (prompt, passages used). */
  int (*generate_ex)(const generator_t *g, const char *query,
                     const gen_passage_t *passages, size_t n, int max_tokens,
                     gen_emit_cb emit, void *ud, gen_usage_t *usage, gen_outcome_t *out,
                     char *err, size_t errlen);

  void (*free)(generator_t *g);
};

/* The built-in extractive answerer (gen_extractive.c, docs/answers.md),
 * without a synonym table. NULL when out of memory. */
generator_t *gen_extractive_new(void);

/* The same with the synonym table read from synonyms_path (NULL or "":
 * none; the format is in services/llm-gateway/prompts/synonyms.txt). NULL
 * with the reason in err when the file cannot be read or parsed, or when
 * out of memory. */
generator_t *gen_extractive_new_with(const char *synonyms_path, char *err, size_t errlen);

/* Settings of the OpenAI-compatible chat completions provider. Strings are
 * copied. */
typedef struct gen_openai_opts {
  const char *name; /* provider name for logs and metrics; NULL: "openai" */
  const char *url;  /* full endpoint, e.g. https://api.openai.com/v1/chat/completions */
  const char *model;
  const char *api_key;        /* "" or NULL: none */
  const char *template;       /* prompt template text (gen_openai_load_template) */
  const char *prompt_version; /* reported with answers ("answer.v2"); NULL: "" */
  int timeout_ms;             /* whole call */
  int connect_timeout_ms;     /* 0: 2000 */
  int stall_timeout_ms;       /* longest silence while streaming; 0: timeout_ms */
  int max_tokens;             /* default when the request gives none (0: provider's) */
  int context_tokens;         /* budget of the passages in the prompt; 0: none */
  int stream_usage;           /* send stream_options.include_usage */
} gen_openai_opts_t;

/* The OpenAI-compatible /v1/chat/completions provider (gen_openai.c),
 * streaming ("stream": true, server-sent events parsed as they arrive).
 * NULL when out of memory. */
generator_t *gen_openai_new(const gen_openai_opts_t *o);

/* How the chat provider counts tokens where the server reports none (the
 * prompt's budget, usage without "usage"): ceil(bytes / 4) of UTF-8. */
int gen_estimate_tokens(size_t bytes);

/* How many of passages[0..n) fit a budget of budget_tokens (estimated as
 * gen_estimate_tokens of each passage's block in the prompt, title and
 * text as rendered). Passages are taken in order and the first that does
 * not fit ends the list, so the numbering [1..k] stays that of the
 * request. budget_tokens <= 0: all. */
size_t gen_pack_passages(const gen_passage_t *passages, size_t n, int budget_tokens);

/* The version of a template file: its base name without ".txt"
 * ("prompts/answer.v2.txt" -> "answer.v2"), into out. */
void gen_prompt_version(const char *path, char *out, size_t outlen);

/* Reads a prompt template (at most 64 KiB) and checks that it holds both
 * {{context}} and {{question}}. Returns 0 with *out malloc()ed (caller
 * frees), or a q_err_t with the reason in err. */
q_err_t gen_openai_load_template(const char *path, char **out, char *err, size_t errlen);

/* Fills the template: {{context}} becomes the numbered passages, {{question}}
 * the query. Placeholders inside the substituted text are left alone.
 * Returns a malloc()ed string (caller frees), NULL when out of memory or the
 * prompt would exceed max_bytes. */
char *gen_openai_render_prompt(const char *template, const char *query,
                               const gen_passage_t *passages, size_t n, size_t max_bytes);

/* Counts whitespace-separated words in s[0..n): the built-in providers'
 * token measure. */
int gen_count_words(const char *s, size_t n);

/* Streams s[0..n) through emit one word at a time (each piece is a word and
 * the white space after it, so the pieces add up to s). 0, or Q_ECANCELLED
 * when emit asked to stop. */
q_err_t gen_emit_words(const char *s, size_t n, gen_emit_cb emit, void *ud);

#endif
