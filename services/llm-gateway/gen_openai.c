/* gen_openai.c - answers from an OpenAI-compatible chat completions API.
 *
 * The prompt comes from a template file (QUARRY_PROMPT_TEMPLATE) so it can be
 * tuned without a rebuild; {{context}} is replaced by the numbered passages
 * ("[1] Title\ntext") and {{question}} by the query, in one pass, so
 * placeholder-like text inside a passage is never expanded.
 *
 * The request is NOT streamed ("stream": false): the whole completion is read
 * and then handed on word by word. That costs time-to-first-token but keeps
 * the contract of generator_t simple: a generator that fails has emitted
 * nothing, so the service can fall back to the extractive answerer cleanly.
 * Switching to "stream": true (server-sent events) is a change local to this
 * file. */
#include "openai_http.h"
#include "provider.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/text.h"

#include <errno.h>
#include <stdint.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEMPLATE_BYTES (64u << 10)
#define MAX_PASSAGE_PROMPT_BYTES (8u << 10) /* each passage's share of the prompt */
#define MAX_PROMPT_BYTES (1u << 20)

typedef struct openai_generator {
  generator_t base;
  openai_endpoint_t ep;
  char *template;
  int max_tokens;
} openai_generator_t;

q_err_t gen_openai_load_template(const char *path, char **out, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  q_buf_t b;
  char chunk[4096];
  size_t n;
  int rc = 0;

  *out = NULL;
  if (!f) {
    snprintf(err, errlen, "cannot open prompt template %s: %s", path, strerror(errno));
    return Q_EINVAL;
  }
  q_buf_init(&b, MAX_TEMPLATE_BYTES);
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    rc = q_buf_append(&b, chunk, n);
    if (rc) {
      snprintf(err, errlen, "prompt template %s is larger than %u bytes", path,
               MAX_TEMPLATE_BYTES);
      goto fail;
    }
  }
  if (ferror(f)) {
    snprintf(err, errlen, "cannot read prompt template %s", path);
    rc = Q_EIO;
    goto fail;
  }
  if (!b.data || !strstr(b.data, "{{context}}") || !strstr(b.data, "{{question}}")) {
    snprintf(err, errlen, "prompt template %s must contain {{context}} and {{question}}",
             path);
    rc = Q_EINVAL;
    goto fail;
  }
  if (strlen(b.data) != b.len) {
    snprintf(err, errlen, "prompt template %s contains NUL bytes", path);
    rc = Q_EINVAL;
    goto fail;
  }
  fclose(f);
  *out = q_buf_steal(&b);
  return *out ? 0 : Q_ENOMEM;
fail:
  fclose(f);
  q_buf_cleanup(&b);
  return rc;
}

/* Appends at most max bytes of s, cut at a UTF-8 code point boundary. */
static int append_capped(q_buf_t *b, const char *s, size_t len, size_t max) {
  return q_buf_append(b, s, q_text_cut(s, len, max));
}

static int append_context(q_buf_t *b, const gen_passage_t *passages, size_t n) {
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    rc = q_buf_printf(b, "%s[%zu] ", i ? "\n\n" : "", i + 1);
    if (!rc && passages[i].title && passages[i].title[0]) {
      rc = append_capped(b, passages[i].title, strlen(passages[i].title), 512);
      if (!rc)
        rc = q_buf_puts(b, "\n");
    }
    if (!rc)
      rc = append_capped(b, passages[i].text, passages[i].text_len,
                         MAX_PASSAGE_PROMPT_BYTES);
  }
  return rc;
}

char *gen_openai_render_prompt(const char *template, const char *query,
                               const gen_passage_t *passages, size_t n,
                               size_t max_bytes) {
  static const char CTX[] = "{{context}}", QUE[] = "{{question}}";
  q_buf_t b;
  const char *p = template;
  int rc = 0;

  q_buf_init(&b, max_bytes);
  while (*p && !rc) {
    const char *c = strstr(p, CTX), *q = strstr(p, QUE);
    const char *next = c && (!q || c < q) ? c : q;
    if (!next) {
      rc = q_buf_puts(&b, p);
      break;
    }
    rc = q_buf_append(&b, p, (size_t)(next - p));
    if (rc)
      break;
    if (next == c) {
      rc = append_context(&b, passages, n);
      p = next + sizeof CTX - 1;
    } else {
      rc = q_buf_puts(&b, query);
      p = next + sizeof QUE - 1;
    }
  }
  if (rc || !b.data) {
    q_buf_cleanup(&b);
    return NULL;
  }
  return q_buf_steal(&b);
}

static int openai_generate(const generator_t *g, const char *query,
                           const gen_passage_t *passages, size_t n, int max_tokens,
                           gen_emit_cb emit, void *ud, gen_usage_t *usage, char *err,
                           size_t errlen) {
  const openai_generator_t *o = (const openai_generator_t *)g;
  json_t *body = NULL, *reply = NULL, *content = NULL;
  char *prompt = NULL;
  int rc;

  memset(usage, 0, sizeof *usage);
  prompt = gen_openai_render_prompt(o->template, query, passages, n, MAX_PROMPT_BYTES);
  if (!prompt) {
    snprintf(err, errlen, "the prompt would exceed %u bytes", MAX_PROMPT_BYTES);
    rc = Q_ETOOBIG;
    goto done;
  }
  content = json_string(prompt);
  if (!content) {
    snprintf(err, errlen, "the prompt is not valid UTF-8");
    rc = Q_EINVAL;
    goto done;
  }
  if (max_tokens <= 0)
    max_tokens = o->max_tokens;
  body = json_pack("{s:s,s:[{s:s,s:o}],s:i,s:b}", "model", g->model, "messages", "role",
                   "user", "content", content, "temperature", 0, "stream", 0);
  content = NULL; /* "o" stole the reference, even on failure */
  if (!body) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  if (max_tokens > 0)
    json_object_set_new(body, "max_tokens", json_integer(max_tokens));
  openai_post_t post = {
      .who = "generation provider",
      .body = body,
      .max_reply_bytes = 4u << 20,
  };
  rc = openai_post_json(&o->ep, &post, &reply, err, errlen);
  if (rc)
    goto done;
  const json_t *choice = json_array_get(json_object_get(reply, "choices"), 0);
  const json_t *msg = json_object_get(choice, "message");
  const char *text = json_string_value(json_object_get(msg, "content"));
  if (!text || !text[0]) {
    snprintf(err, errlen, "generation provider: reply has no choices[0].message.content");
    rc = Q_EUNAVAIL;
    goto done;
  }
  size_t text_len = json_string_length(json_object_get(msg, "content"));

  const json_t *u = json_object_get(reply, "usage");
  const json_t *pt = json_object_get(u, "prompt_tokens");
  const json_t *ct = json_object_get(u, "completion_tokens");
  /* Providers that do not report usage get the built-in word count. */
  usage->prompt_tokens = json_is_integer(pt) && json_integer_value(pt) >= 0 &&
                                 json_integer_value(pt) <= INT32_MAX
                             ? (int)json_integer_value(pt)
                             : gen_count_words(prompt, strlen(prompt));
  usage->completion_tokens = json_is_integer(ct) && json_integer_value(ct) >= 0 &&
                                     json_integer_value(ct) <= INT32_MAX
                                 ? (int)json_integer_value(ct)
                                 : gen_count_words(text, text_len);

  rc = gen_emit_words(text, text_len, emit, ud);
  if (rc)
    snprintf(err, errlen, "the client went away");
done:
  json_decref(content);
  json_decref(body);
  json_decref(reply);
  free(prompt);
  return rc;
}

static void openai_free(generator_t *g) {
  openai_generator_t *o = (openai_generator_t *)g;
  if (!o)
    return;
  free((char *)o->base.model);
  openai_endpoint_cleanup(&o->ep);
  free(o->template);
  free(o);
}

generator_t *gen_openai_new(const gen_openai_opts_t *opts) {
  openai_generator_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->base.name = "openai";
  o->base.generate = openai_generate;
  o->base.free = openai_free;
  o->base.model = strdup(opts->model ? opts->model : "");
  o->template = strdup(opts->template ? opts->template : "{{context}}\n\n{{question}}");
  o->max_tokens = opts->max_tokens;
  if (openai_endpoint_init(&o->ep, opts->url, opts->api_key,
                           opts->timeout_ms > 0 ? opts->timeout_ms : 30000) ||
      !o->base.model || !o->template)
    goto oom;
  return &o->base;
oom:
  openai_free(&o->base);
  return NULL;
}
