/* gen_openai.c - answers from an OpenAI-compatible chat completions API,
 * streamed.
 *
 * The prompt comes from a versioned template file under the prompt
 * directory (QUARRY_PROMPT_TEMPLATE, e.g. prompts/answer.v2.txt) so it can
 * be tuned without a rebuild. A line "--- user ---" splits it into the
 * system message (before) and the user message (after); without it the
 * whole template is one user message. {{context}} is replaced by the
 * numbered passages ("[1] Title\ntext") and {{question}} by the query, in
 * one pass, so placeholder-like text inside a passage is never expanded.
 * Passages are packed to the provider's token budget (context_tokens):
 * those that do not fit are left out whole, from the end, and the reply
 * says how many were used (gen_outcome_t.passages_used) so the gateway
 * never accepts a citation of a passage the model did not see.
 *
 * The request asks for "stream": true. curl runs on a multi handle polled
 * every POLL_MS: each piece received goes through the SSE parser (sse.h)
 * in the write callback, and each "choices[0].delta.content" is handed to
 * emit at once; between polls the caller is asked (emit with len 0)
 * whether its client is still there, and the transfer is dropped when it
 * is not or the server has been silent for stall_timeout_ms. A reply
 * that ends without "data: [DONE]" (and without a finish_reason) was cut
 * short: that is an error, never a silently truncated answer. */
#include "openai_http.h"
#include "provider.h"
#include "sse.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/resilience.h"
#include "quarry/text.h"
#include "quarry/trace.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_TEMPLATE_BYTES (64u << 10)
#define MAX_PASSAGE_PROMPT_BYTES (8u << 10) /* each passage's share of the prompt */
#define MAX_TITLE_PROMPT_BYTES 512
#define MAX_PROMPT_BYTES (1u << 20)
#define MAX_EVENT_BYTES (256u << 10) /* one SSE line or event */
#define MAX_ERROR_BODY 4096          /* kept of a non-2xx reply */
#define POLL_MS 20
#define USER_MARK "--- user ---\n"

typedef struct openai_generator {
  generator_t base;
  openai_endpoint_t ep;
  char *system;   /* system message template, NULL: none */
  char *template; /* user message template */
  char *prompt_version;
  int max_tokens;
  int connect_timeout_ms;
  int stall_timeout_ms;
  int context_tokens;
  int stream_usage;
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

int gen_estimate_tokens(size_t bytes) {
  size_t t = (bytes + 3) / 4;
  return t > INT32_MAX ? INT32_MAX : (int)t;
}

/* The bytes passage p takes in the prompt (as append_context writes it). */
static size_t passage_bytes(const gen_passage_t *p) {
  size_t t = p->title ? strlen(p->title) : 0;
  size_t n = 8 + (t ? (t > MAX_TITLE_PROMPT_BYTES ? MAX_TITLE_PROMPT_BYTES : t) + 1 : 0);
  return n + (p->text_len > MAX_PASSAGE_PROMPT_BYTES ? MAX_PASSAGE_PROMPT_BYTES
                                                     : p->text_len);
}

size_t gen_pack_passages(const gen_passage_t *passages, size_t n, int budget_tokens) {
  if (budget_tokens <= 0)
    return n;
  int64_t used = 0;
  for (size_t i = 0; i < n; i++) {
    used += gen_estimate_tokens(passage_bytes(&passages[i]));
    if (used > budget_tokens)
      return i;
  }
  return n;
}

void gen_prompt_version(const char *path, char *out, size_t outlen) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 4 && strcmp(base + n - 4, ".txt") == 0)
    n -= 4;
  snprintf(out, outlen, "%.*s", (int)n, base);
}

/* ---- one streamed call ---------------------------------------------------- */

typedef struct stream {
  gen_emit_cb emit;
  void *ud;
  sse_parser_t sse;
  CURL *h;
  long status;                          /* once known */
  q_buf_t errbody;                      /* a non-2xx reply's body */
  bool done;                            /* data: [DONE] seen */
  bool finished;                        /* a finish_reason seen */
  bool emitted;                         /* a piece went out */
  bool client_gone;                     /* emit asked to stop */
  int prompt_tokens, completion_tokens; /* from "usage"; -1: not given */
  size_t answer_bytes;
  int64_t last_data_ms;
  int retry_after_ms;
  q_err_t fail; /* set by the callbacks */
  char why[256];
} stream_t;

static const char *provider_message(const json_t *reply) {
  const json_t *e = json_object_get(reply, "error");
  const char *m = json_string_value(json_object_get(e, "message"));
  if (!m)
    m = json_string_value(e);
  return m ? m : "no error message";
}

#define NO_USAGE (-1) /* a usage field the server did not give */

static int usage_field(const json_t *u, const char *key) {
  const json_t *v = json_object_get(u, key);
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      json_integer_value(v) > INT32_MAX)
    return NO_USAGE;
  return (int)json_integer_value(v);
}

/* One SSE event: a chat.completion.chunk, "[DONE]" or an error object. */
static q_err_t event_cb(const char *data, size_t len, void *ud) {
  stream_t *s = ud;
  if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
    s->done = true;
    return 0;
  }
  json_error_t je;
  json_t *chunk = json_loadb(data, len, 0, &je);
  if (!json_is_object(chunk)) {
    json_decref(chunk);
    snprintf(s->why, sizeof s->why, "malformed event in the stream: %.80s", data);
    return s->fail = Q_EUNAVAIL;
  }
  q_err_t rc = 0;
  if (json_object_get(chunk, "error")) {
    snprintf(s->why, sizeof s->why, "error in the stream: %.200s",
             provider_message(chunk));
    rc = s->fail = Q_EUNAVAIL;
    goto done;
  }
  const json_t *u = json_object_get(chunk, "usage");
  if (json_is_object(u)) {
    int p = usage_field(u, "prompt_tokens"), c = usage_field(u, "completion_tokens");
    if (p >= 0)
      s->prompt_tokens = p;
    if (c >= 0)
      s->completion_tokens = c;
  }
  const json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
  if (json_is_string(json_object_get(choice, "finish_reason")))
    s->finished = true;
  const json_t *content = json_object_get(json_object_get(choice, "delta"), "content");
  if (json_is_string(content) && json_string_length(content) > 0) {
    size_t n = json_string_length(content);
    s->emitted = true;
    s->answer_bytes += n;
    if (s->emit(json_string_value(content), n, s->ud)) {
      s->client_gone = true;
      rc = s->fail = Q_ECANCELLED;
    }
  }
done:
  json_decref(chunk);
  return rc;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *ud) {
  stream_t *s = ud;
  size_t n = size * nmemb;
  static const char name[] = "retry-after:";
  if (n > sizeof name - 1 && n < 256 && strncasecmp(data, name, sizeof name - 1) == 0) {
    char v[256];
    memcpy(v, data + sizeof name - 1, n - (sizeof name - 1));
    v[n - (sizeof name - 1)] = '\0';
    s->retry_after_ms = q_retry_after_parse(v, (int64_t)time(NULL));
  }
  return n;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud) {
  stream_t *s = ud;
  size_t n = size * nmemb;
  s->last_data_ms = q_now_ms();
  if (!s->status)
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->status < 200 || s->status > 299) {
    /* An error reply: keep its start for the message, drop the rest. */
    size_t room = s->errbody.max > s->errbody.len ? s->errbody.max - s->errbody.len : 0;
    q_buf_append(&s->errbody, data, n < room ? n : room);
    return n;
  }
  return sse_feed(&s->sse, data, n) ? 0 : n; /* 0 aborts the transfer */
}

/* Builds the JSON request body. NULL when out of memory. */
static json_t *request_body(const openai_generator_t *o, const char *system,
                            const char *user, int max_tokens) {
  json_t *msgs = json_array();
  json_t *body = json_object();
  if (!msgs || !body)
    goto fail;
  if (system && json_array_append_new(
                    msgs, json_pack("{s:s,s:s}", "role", "system", "content", system)))
    goto fail;
  if (json_array_append_new(msgs,
                            json_pack("{s:s,s:s}", "role", "user", "content", user)))
    goto fail;
  json_object_set_new(body, "model", json_string(o->base.model));
  json_object_set_new(body, "messages", msgs);
  msgs = NULL;
  json_object_set_new(body, "temperature", json_integer(0));
  json_object_set_new(body, "stream", json_true());
  if (o->stream_usage)
    json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
  if (max_tokens > 0)
    json_object_set_new(body, "max_tokens", json_integer(max_tokens));
  return body;
fail:
  json_decref(msgs);
  json_decref(body);
  return NULL;
}

/* Runs the transfer on a multi handle, asking between polls whether the
 * client is still there and whether the server has gone silent. Returns
 * the transfer's CURLcode (CURLE_ABORTED_BY_CALLBACK when we dropped it:
 * s->fail and s->why say why). */
static CURLcode run(stream_t *s, int stall_ms) {
  CURLM *m = curl_multi_init();
  CURLcode cc = CURLE_OUT_OF_MEMORY;
  if (!m)
    return cc;
  curl_multi_add_handle(m, s->h);
  int running = 1;
  s->last_data_ms = q_now_ms();
  while (running) {
    if (curl_multi_perform(m, &running) != CURLM_OK)
      break;
    if (!running)
      break;
    if (s->done) {
      /* "data: [DONE]" is the end, whether or not the server closes the
       * connection or ends the chunked body right away. */
      cc = CURLE_OK;
      goto out;
    }
    if (s->emit(NULL, 0, s->ud)) {
      s->client_gone = true;
      s->fail = Q_ECANCELLED;
      snprintf(s->why, sizeof s->why, "the client went away");
      cc = CURLE_ABORTED_BY_CALLBACK;
      goto out;
    }
    if (q_now_ms() - s->last_data_ms > stall_ms) {
      s->fail = Q_ETIMEDOUT;
      snprintf(s->why, sizeof s->why, "no data for %d ms (stalled)", stall_ms);
      cc = CURLE_ABORTED_BY_CALLBACK;
      goto out;
    }
    curl_multi_poll(m, NULL, 0, POLL_MS, NULL);
  }
  CURLMsg *msg;
  int left;
  cc = CURLE_RECV_ERROR;
  while ((msg = curl_multi_info_read(m, &left)))
    if (msg->msg == CURLMSG_DONE)
      cc = msg->data.result;
out:
  curl_multi_remove_handle(m, s->h);
  curl_multi_cleanup(m);
  return cc;
}

static int openai_generate_ex(const generator_t *g, const char *query,
                              const gen_passage_t *passages, size_t n, int max_tokens,
                              gen_emit_cb emit, void *ud, gen_usage_t *usage,
                              gen_outcome_t *out, char *err, size_t errlen) {
  const openai_generator_t *o = (const openai_generator_t *)g;
  json_t *body = NULL;
  char *system = NULL, *user = NULL, *body_text = NULL;
  struct curl_slist *hdrs = NULL;
  stream_t s = {.emit = emit,
                .ud = ud,
                .prompt_tokens = -1,
                .completion_tokens = -1,
                .retry_after_ms = -1};
  int rc;

  memset(usage, 0, sizeof *usage);
  out->http_status = 0;
  out->retry_after_ms = -1;
  out->prompt_version = o->prompt_version;
  size_t used = gen_pack_passages(passages, n, o->context_tokens);
  out->passages_used = used;
  sse_init(&s.sse, MAX_EVENT_BYTES, event_cb, &s);
  q_buf_init(&s.errbody, MAX_ERROR_BODY);

  int64_t timeout = o->ep.timeout_ms, deadline = q_trace_deadline();
  if (deadline > 0 && deadline - q_now_ms() < timeout)
    timeout = deadline - q_now_ms();
  if (timeout <= 0) {
    snprintf(err, errlen, "%s: deadline exceeded before the call", g->name);
    rc = Q_ETIMEDOUT;
    goto done;
  }
  user = gen_openai_render_prompt(o->template, query, passages, used, MAX_PROMPT_BYTES);
  system = o->system ? gen_openai_render_prompt(o->system, query, passages, used,
                                                MAX_PROMPT_BYTES)
                     : NULL;
  if (!user || (o->system && !system)) {
    snprintf(err, errlen, "%s: the prompt would exceed %u bytes", g->name,
             MAX_PROMPT_BYTES);
    rc = Q_ETOOBIG;
    goto done;
  }
  body = request_body(o, system, user, max_tokens > 0 ? max_tokens : o->max_tokens);
  body_text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  if (!body_text) {
    snprintf(err, errlen, "%s: cannot build the request (invalid UTF-8 or no memory)",
             g->name);
    rc = Q_EINVAL;
    goto done;
  }
  hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  hdrs = hdrs ? curl_slist_append(hdrs, "Accept: text/event-stream") : NULL;
  hdrs = hdrs ? curl_slist_append(hdrs, "Expect:") : NULL;
  if (hdrs && o->ep.auth_header)
    hdrs = curl_slist_append(hdrs, o->ep.auth_header);
  s.h = curl_easy_init();
  if (!hdrs || !s.h) {
    snprintf(err, errlen, "%s: out of memory", g->name);
    rc = Q_ENOMEM;
    goto done;
  }
  char cerr[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(s.h, CURLOPT_URL, o->ep.url);
  curl_easy_setopt(s.h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(s.h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(s.h, CURLOPT_TIMEOUT_MS, (long)timeout);
  curl_easy_setopt(s.h, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
  curl_easy_setopt(s.h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(s.h, CURLOPT_USERAGENT, "quarry/1");
  curl_easy_setopt(s.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body_text));
  curl_easy_setopt(s.h, CURLOPT_POSTFIELDS, body_text);
  curl_easy_setopt(s.h, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(s.h, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(s.h, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(s.h, CURLOPT_HEADERDATA, &s);
  curl_easy_setopt(s.h, CURLOPT_ERRORBUFFER, cerr);
  curl_easy_setopt(s.h, CURLOPT_TCP_NODELAY, 1L);

  CURLcode cc = run(&s, o->stall_timeout_ms);
  if (!s.status)
    curl_easy_getinfo(s.h, CURLINFO_RESPONSE_CODE, &s.status);
  out->http_status = s.status;
  out->retry_after_ms = s.retry_after_ms;

  if (s.status && (s.status < 200 || s.status > 299) && !s.client_gone) {
    json_t *e = s.errbody.len ? json_loadb(s.errbody.data, s.errbody.len, 0, NULL) : NULL;
    snprintf(err, errlen, "%s answered HTTP %ld: %.200s", g->name, s.status,
             e ? provider_message(e) : "no error message");
    json_decref(e);
    rc = s.status == 429                      ? Q_ERESOURCE
         : s.status == 401 || s.status == 403 ? Q_EUNAUTH
                                              : Q_EUNAVAIL;
    goto done;
  }
  if (s.fail) {
    snprintf(err, errlen, "%s: %s", g->name, s.why);
    rc = s.fail;
    goto done;
  }
  if (cc != CURLE_OK) {
    snprintf(err, errlen, "%s: %s%s", g->name, cerr[0] ? cerr : curl_easy_strerror(cc),
             s.emitted ? " (the stream broke off mid-answer)" : "");
    rc = cc == CURLE_OPERATION_TIMEDOUT ? Q_ETIMEDOUT : Q_EUNAVAIL;
    goto done;
  }
  if (!s.done && !s.finished) {
    snprintf(err, errlen, "%s: the stream ended before \"data: [DONE]\"%s", g->name,
             s.emitted ? " (the answer is incomplete)" : "");
    rc = Q_EUNAVAIL;
    goto done;
  }
  if (!s.emitted) {
    snprintf(err, errlen, "%s: the stream carried no answer text", g->name);
    rc = Q_EUNAVAIL;
    goto done;
  }
  /* Servers that do not report usage get the estimate. */
  usage->prompt_tokens =
      s.prompt_tokens >= 0
          ? s.prompt_tokens
          : gen_estimate_tokens(strlen(user) + (system ? strlen(system) : 0));
  usage->completion_tokens = s.completion_tokens >= 0
                                 ? s.completion_tokens
                                 : gen_estimate_tokens(s.answer_bytes);
  rc = 0;
done:
  if (s.h)
    curl_easy_cleanup(s.h);
  curl_slist_free_all(hdrs); /* holds a copy of the Authorization header */
  sse_cleanup(&s.sse);
  q_buf_cleanup(&s.errbody);
  json_decref(body);
  if (body_text) {
    free(body_text);
  }
  free(system);
  free(user);
  return rc;
}

static int openai_generate(const generator_t *g, const char *query,
                           const gen_passage_t *passages, size_t n, int max_tokens,
                           gen_emit_cb emit, void *ud, gen_usage_t *usage, char *err,
                           size_t errlen) {
  gen_outcome_t out;
  return openai_generate_ex(g, query, passages, n, max_tokens, emit, ud, usage, &out, err,
                            errlen);
}

static void openai_free(generator_t *g) {
  openai_generator_t *o = (openai_generator_t *)g;
  if (!o)
    return;
  free((char *)o->base.model);
  free((char *)o->base.name);
  openai_endpoint_cleanup(&o->ep);
  free(o->template);
  free(o->system);
  free(o->prompt_version);
  free(o);
}

generator_t *gen_openai_new(const gen_openai_opts_t *opts) {
  openai_generator_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  const char *t = opts->template ? opts->template : "{{context}}\n\n{{question}}";
  const char *mark = strstr(t, USER_MARK);
  o->base.generate = openai_generate;
  o->base.generate_ex = openai_generate_ex;
  o->base.free = openai_free;
  o->base.name = strdup(opts->name ? opts->name : "openai");
  o->base.model = strdup(opts->model ? opts->model : "");
  if (mark && (mark == t || mark[-1] == '\n')) {
    o->system = strndup(t, (size_t)(mark - t));
    o->template = strdup(mark + strlen(USER_MARK));
  } else {
    o->template = strdup(t);
  }
  o->prompt_version = strdup(opts->prompt_version ? opts->prompt_version : "");
  o->max_tokens = opts->max_tokens;
  o->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 2000;
  int timeout = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
  o->stall_timeout_ms = opts->stall_timeout_ms > 0 ? opts->stall_timeout_ms : timeout;
  o->context_tokens = opts->context_tokens;
  o->stream_usage = opts->stream_usage;
  if (openai_endpoint_init(&o->ep, opts->url, opts->api_key, timeout) || !o->base.model ||
      !o->base.name || !o->template || !o->prompt_version || (mark && !o->system))
    goto oom;
  return &o->base;
oom:
  openai_free(&o->base);
  return NULL;
}
