/* ask.c - `quarry ask QUESTION`: POST /v1/query, streamed when the server
 * can, printed as answer + numbered sources.
 *
 * Streaming is asked for with "stream": true and an Accept header naming
 * text/event-stream first. Three kinds of server are handled:
 *   - one that streams: the reply is text/event-stream; tokens are printed
 *     as they arrive, the sources after the done event;
 *   - one that ignores the field: the reply is JSON, printed when complete;
 *   - one that refuses unknown fields (400 `unknown field "stream"`, what
 *     the gateway did before streaming): asked again without the field.
 * --json and --no-stream never ask for a stream: --json prints the JSON
 * reply, one document.
 *
 * The filter options (ask_filter.h) become the body's "filter"; a filter
 * the gateway refuses is its 400, exit 1 with its message. */
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "api.h"
#include "ask_filter.h"
#include "commands.h"
#include "quarry/limits.h"
#include "quarry/validate.h"

#define MAX_EVENT_BYTES (1u << 20)

typedef struct printer {
  FILE *out;
  bool any;
  bool last_newline;
} printer_t;

static void print_token(void *ud, const char *s, size_t n) {
  printer_t *p = ud;
  fwrite(s, 1, n, p->out);
  fflush(p->out);
  p->any = true;
  p->last_newline = s[n - 1] == '\n';
}

/* Joins the operands with spaces, so `quarry ask what is x` works
 * unquoted. Caller frees; NULL when out of memory or absurdly long. */
static char *join_question(const args_t *args) {
  q_buf_t b;
  q_buf_init(&b, (size_t)Q_LIMIT_QUERY_BYTES * 16);
  for (size_t i = 0; i < args->noperands; i++)
    if (q_buf_printf(&b, "%s%s", i ? " " : "", args->operands[i])) {
      q_buf_cleanup(&b);
      return NULL;
    }
  return b.data ? q_buf_steal(&b) : strdup("");
}

/* A 400 that names the stream field: the server predates streaming. */
static bool refuses_stream_field(const api_reply_t *r) {
  return r->status == 400 && strstr(api_server_message(r), "\"stream\"") != NULL;
}

static int exit_for_error_code(const char *code) {
  if (strcmp(code, "unauthenticated") == 0 || strcmp(code, "permission_denied") == 0)
    return CLI_EXIT_AUTH;
  if (strcmp(code, "unavailable") == 0 || strcmp(code, "deadline_exceeded") == 0 ||
      strcmp(code, "internal") == 0 || strcmp(code, "resource_exhausted") == 0)
    return CLI_EXIT_SERVER;
  return CLI_EXIT_FAILED;
}

int cmd_ask(cmd_ctx_t *ctx) {
  const cli_out_t *o = ctx->out;
  char err[512];
  long top_k = 0;
  if (args_int(ctx->args, "top-k", 0, 1, Q_LIMIT_TOP_K_MAX, &top_k, err, sizeof err))
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "%s", err);
  json_t *filter = NULL;
  q_err_t frc = ask_filter_build(ctx->args, &filter, err, sizeof err);
  if (frc)
    return cli_fail(o, frc == Q_ENOMEM ? CLI_EXIT_FAILED : CLI_EXIT_USAGE,
                    frc == Q_ENOMEM ? "internal" : "usage", "%s", err);
  char *q = join_question(ctx->args);
  if (!q) {
    json_decref(filter);
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "the question is far too long");
  }
  if (q_is_blank(q, strlen(q))) {
    free(q);
    json_decref(filter);
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "the question is empty");
  }
  if (strlen(q) > Q_LIMIT_QUERY_BYTES || !q_valid_utf8(q, strlen(q))) {
    size_t n = strlen(q);
    free(q);
    json_decref(filter);
    return cli_fail(o, CLI_EXIT_USAGE, "usage",
                    "the question must be at most %d bytes of UTF-8 (it is %zu bytes)",
                    Q_LIMIT_QUERY_BYTES, n);
  }

  bool stream = !o->json && !args_has(ctx->args, "no-stream");
  json_t *body = json_pack("{s:s}", "query", q);
  free(q);
  if (top_k)
    json_object_set_new(body, "top_k", json_integer(top_k));
  if (filter)
    json_object_set_new(body, "filter", filter);

  api_t api;
  if (!body || api_init(&api, ctx->cfg, ctx->timeout_ms)) {
    json_decref(body);
    return cli_fail(o, CLI_EXIT_FAILED, "internal", "out of memory");
  }
  printer_t pr = {.out = o->out};
  answer_t ans;
  answer_init(&ans, o->json ? NULL : print_token, &pr);
  sse_parser_t sse;
  sse_parser_init(&sse, MAX_EVENT_BYTES, answer_on_event, &ans);
  api_reply_t r;
  api_reply_init(&r);

  static const char *const accept_sse[] = {
      "Accept: text/event-stream, application/json;q=0.9", NULL};
  if (stream) {
    json_object_set_new(body, "stream", json_true());
    r.sse = &sse;
    api_call(&api, "POST", "/v1/query", body, accept_sse, false, &r);
    if (refuses_stream_field(&r)) {
      json_object_del(body, "stream");
      stream = false;
    }
  }
  if (!stream) {
    r.sse = NULL;
    api_call(&api, "POST", "/v1/query", body, NULL, false, &r);
  }

  const char *slug;
  char msg[2048];
  int rc = api_outcome(&api, &r, &slug, msg, sizeof msg);
  if (rc) {
    if (pr.any && !pr.last_newline)
      fputc('\n', o->out);
    rc = cli_fail(o, rc, slug, "%s", msg);
  } else if (r.streamed) {
    bool cut = sse_finish(&sse);
    if (r.sse_rc == Q_ETOOBIG)
      rc = cli_fail(o, CLI_EXIT_SERVER, "bad_reply",
                    "an event of the answer stream is larger "
                    "than %u bytes",
                    MAX_EVENT_BYTES);
    else if (ans.got_error)
      rc = cli_fail(o, exit_for_error_code(ans.error_code), ans.error_code, "%s%s",
                    pr.any ? "\n" : "", ans.error_message);
    else if (!ans.got_done)
      rc = cli_fail(o, CLI_EXIT_SERVER, "bad_reply",
                    "%sthe answer stream ended before its done event%s",
                    pr.any ? "\n" : "", cut ? " (cut off mid-event)" : "");
  } else if (answer_from_json(&ans, r.json)) {
    rc = cli_fail(o, CLI_EXIT_SERVER, "bad_reply",
                  "the server's reply is neither an answer nor an event stream "
                  "(Content-Type %s)",
                  r.content_type[0] ? r.content_type : "none");
  }

  if (rc == CLI_EXIT_OK) {
    if (o->json) {
      json_t *doc = answer_to_json(&ans);
      cli_print_json(o, doc ? doc : r.json);
      json_decref(doc);
    } else {
      if (!r.streamed)
        fwrite(ans.text.data ? ans.text.data : "", 1, ans.text.len, o->out);
      if (ans.text.len && ans.text.data[ans.text.len - 1] != '\n')
        fputc('\n', o->out);
      answer_print_sources(o->out, ans.citations);
      fflush(o->out);
      answer_print_degraded(o->err, ans.done);
    }
  }
  api_reply_cleanup(&r);
  sse_parser_cleanup(&sse);
  answer_cleanup(&ans);
  api_cleanup(&api);
  json_decref(body);
  return rc;
}
