/* test_commands.c - the whole client (commands_main) against a small
 * libmicrohttpd server on a loopback port that plays the REST API in the
 * shapes the real gateway has or will have: a streaming /v1/query (SSE),
 * one that refuses the "stream" field as today's gateway does, 429s with
 * Retry-After, 401s. Checks exit codes, output, and what was sent
 * (Accept, Idempotency-Key, multipart fields). The real gateway is the
 * integration tests' (tests/integration/test_cli.py). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "httpfake.h"
#include "loopback.h"
#include "quarry/util.h"

enum { QUERY_STREAMS, QUERY_REFUSES_STREAM, QUERY_JSON_ONLY, QUERY_STREAM_ERROR };

/* POST /v1/documents/batch: absent (404, as before the route), answering,
 * or storing the first try and then failing it with 503 (a lost answer). */
enum { BATCH_ABSENT, BATCH_ANSWERS, BATCH_503_AFTER_STORING, BATCH_500_AFTER_STORING };

/* What the server does and saw; guarded by mu (MHD answers on its thread). */
static struct {
  pthread_mutex_t mu;
  int query_mode;
  int fail_uploads_with_429; /* this many uploads get 429 first */
  int unauthorized;
  int uploads, queries, job_polls;
  char last_accept[256];
  char last_query_body[2048];
  char idem_keys[8][160];
  char upload_bodies[8][2048];
  int forbidden;       /* management routes answer 403 */
  char last_args[512]; /* query string of the last list request, "k=v&..." */
  char last_method[16], last_path[256];
  char last_body[1024];
  int batch_mode;
  int batches;        /* batch requests seen */
  int batch_lines[8]; /* documents in each */
  char batch_keys[8][160];
  char batch_types[8][128];
  char batch_first_line[2048];
  int batch_docs;             /* documents stored through batches (not replays) */
  char stored_keys[256][170]; /* "<key>#<i>" stored, for replays */
  int nstored;
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static httpfake_t *daemon_;
static char url[64];
static char tmp[] = "/tmp/quarry-cli-cmd-XXXXXX";

typedef httpfake_req_t conn_t;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, const char *retry_after) {
  return httpfake_reply(c, status, type, body, strlen(body), retry_after);
}

static const char SSE_ANSWER[] =
    "event: retrieval\ndata: {\"passages\":2}\n\n"
    "event: token\ndata: {\"text\":\"The bulb is \"}\n\n"
    "event: token\ndata: {\"text\":\"QX-4471 [1].\"}\n\n"
    "event: citation\ndata: {\"n\":1,\"document_id\":\"d1\",\"title\":\"Lighthouse "
    "Handbook\",\"chunk_id\":\"d1:1:0\",\"snippet\":\"The lamp uses a QX-4471 bulb\","
    "\"score\":0.9,\"page\":3}\n\n"
    "event: done\ndata: {\"query_id\":\"q-sse\",\"degraded\":[],\"cache_hit\":false}\n\n";

static const char JSON_ANSWER[] =
    "{\"query_id\":\"q-json\",\"answer\":\"The bulb is QX-4471 [1].\",\"citations\":"
    "[{\"n\":1,\"document_id\":\"d1\",\"title\":\"Lighthouse Handbook\",\"chunk_id\":"
    "\"d1:1:0\",\"snippet\":\"The lamp uses a QX-4471 bulb\",\"score\":0.9,\"page\":0}],"
    "\"timings_ms\":{\"total\":1.5},\"cache_hit\":false,\"degraded\":[\"embed\"]}";

static enum MHD_Result query(struct MHD_Connection *c, const conn_t *u) {
  pthread_mutex_lock(&srv.mu);
  srv.queries++;
  int mode = srv.query_mode;
  const char *acc = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
  snprintf(srv.last_accept, sizeof srv.last_accept, "%s", acc ? acc : "");
  snprintf(srv.last_query_body, sizeof srv.last_query_body, "%.*s", (int)u->len, u->body);
  pthread_mutex_unlock(&srv.mu);
  json_t *body = json_loadb(u->body, u->len, 0, NULL);
  bool stream = json_is_true(json_object_get(body, "stream"));
  /* The gateway's 400 for a filter it refuses (its message names the
   * problem; here one operator stands for every such filter). */
  bool bad_filter = json_object_get(json_object_get(body, "filter"), "like") != NULL;
  json_decref(body);
  if (bad_filter)
    return reply(c, 400, "application/json",
                 "{\"error\":{\"code\":\"invalid_argument\",\"message\":\"filter: "
                 "unknown operator \\\"like\\\"\"}}",
                 NULL);
  if (stream && mode == QUERY_REFUSES_STREAM)
    return reply(c, 400, "application/json",
                 "{\"error\":{\"code\":\"invalid_argument\",\"message\":\"unknown field "
                 "\\\"stream\\\"\"}}",
                 NULL);
  if (stream && mode == QUERY_STREAMS)
    return reply(c, 200, "text/event-stream", SSE_ANSWER, NULL);
  if (stream && mode == QUERY_STREAM_ERROR)
    return reply(c, 200, "text/event-stream",
                 "event: token\ndata: {\"text\":\"The\"}\n\n"
                 "event: error\ndata: {\"error\":{\"code\":\"unavailable\",\"message\":"
                 "\"llm-gateway unavailable: connection refused\"}}\n\n",
                 NULL);
  return reply(c, 200, "application/json", JSON_ANSWER, NULL);
}

static enum MHD_Result upload(struct MHD_Connection *c, const conn_t *u) {
  pthread_mutex_lock(&srv.mu);
  int n = srv.uploads++;
  bool throttle = srv.fail_uploads_with_429 > 0;
  if (throttle)
    srv.fail_uploads_with_429--;
  const char *k = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
  if (n < 8) {
    snprintf(srv.idem_keys[n], sizeof srv.idem_keys[n], "%s", k ? k : "");
    snprintf(srv.upload_bodies[n], sizeof srv.upload_bodies[n], "%.*s", (int)u->len,
             u->body);
  }
  pthread_mutex_unlock(&srv.mu);
  if (throttle)
    return reply(
        c, 429, "application/json",
        "{\"error\":{\"code\":\"resource_exhausted\",\"message\":\"slow down\"}}", "0");
  char body[256];
  snprintf(body, sizeof body,
           "{\"document_id\":\"doc-%d\",\"job_id\":\"job-%d\",\"version\":1,"
           "\"unchanged\":false,\"status\":\"queued\"}",
           n, n);
  return reply(c, 202, "application/json", body, NULL);
}

/* One NDJSON line per document; a text containing "FAIL" is refused alone
 * and one containing "BIG" as too large. */
static enum MHD_Result batch(struct MHD_Connection *c, const conn_t *u) {
  const char *k = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
  const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
  pthread_mutex_lock(&srv.mu);
  int b = srv.batches++, mode = srv.batch_mode;
  if (b < 8) {
    snprintf(srv.batch_keys[b], sizeof srv.batch_keys[b], "%s", k ? k : "");
    snprintf(srv.batch_types[b], sizeof srv.batch_types[b], "%s", ct ? ct : "");
  }
  pthread_mutex_unlock(&srv.mu);
  if (mode == BATCH_ABSENT)
    return reply(c, 404, "application/json",
                 "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}", NULL);
  json_t *docs = json_array();
  int accepted = 0, n = 0;
  const char *p = u->body, *end = u->body + u->len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    json_t *line = json_loadb(p, len, 0, NULL);
    const char *text = json_string_value(json_object_get(line, "text"));
    pthread_mutex_lock(&srv.mu);
    if (n == 0 && b == 0)
      snprintf(srv.batch_first_line, sizeof srv.batch_first_line, "%.*s", (int)len, p);
    char ik[170];
    snprintf(ik, sizeof ik, "%s#%d", k ? k : "", n);
    bool replay = false;
    for (int i = 0; i < srv.nstored && k; i++)
      replay |= strcmp(srv.stored_keys[i], ik) == 0;
    json_t *e = json_pack("{s:i,s:i}", "index", n, "line", n + 1);
    if (!text || strstr(text, "FAIL")) {
      json_object_set_new(e, "error",
                          json_pack("{s:s,s:s}", "code", "invalid_argument", "message",
                                    "line 9: document is empty"));
    } else if (strstr(text, "BIG")) {
      json_object_set_new(e, "error",
                          json_pack("{s:s,s:s}", "code", "too_large", "message",
                                    "line 9: \"text\" is larger than 5 bytes"));
    } else {
      if (!replay) {
        int d = srv.batch_docs++;
        if (k && srv.nstored < 256)
          snprintf(srv.stored_keys[srv.nstored++], sizeof srv.stored_keys[0], "%s", ik);
        (void)d;
      }
      char id[32];
      snprintf(id, sizeof id, "bdoc-%d-%d", b, n);
      json_object_set_new(e, "document_id", json_string(id));
      json_object_set_new(e, "job_id", json_string(id));
      json_object_set_new(e, "version", json_integer(1));
      json_object_set_new(e, "status", json_string("queued"));
      json_object_set_new(e, "replayed", json_boolean(replay));
      accepted++;
    }
    pthread_mutex_unlock(&srv.mu);
    json_decref(line);
    json_array_append_new(docs, e);
    n++;
    p += len + 1;
  }
  pthread_mutex_lock(&srv.mu);
  if (b < 8)
    srv.batch_lines[b] = n;
  bool lose = mode == BATCH_503_AFTER_STORING && b == 0;
  bool broken = mode == BATCH_500_AFTER_STORING && b == 0;
  pthread_mutex_unlock(&srv.mu);
  json_t *body = json_pack("{s:i,s:i,s:o}", "accepted", accepted, "failed", n - accepted,
                           "documents", docs);
  char *txt = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  enum MHD_Result ret =
      broken ? reply(c, 500, "application/json",
                     "{\"error\":{\"code\":\"internal\",\"message\":\"oops\"}}", NULL)
      : lose ? reply(c, 503, "application/json",
                     "{\"error\":{\"code\":\"unavailable\",\"message\":\"lost\"}}", "0")
             : reply(c, accepted ? 202 : 400, "application/json", txt, NULL);
  free(txt);
  return ret;
}

static enum MHD_Result arg_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                              const char *value) {
  size_t n = strlen(srv.last_args);
  snprintf(srv.last_args + n, sizeof srv.last_args - n, "%s%s=%s", n ? "&" : "", key,
           value ? value : "");
  return MHD_YES;
}

/* The list and management routes: documents d1..d3 in pages of two (the
 * cursor "p2" is the second page), keys, jobs. */
static enum MHD_Result manage(struct MHD_Connection *c, const char *path,
                              const char *method, const conn_t *u) {
  pthread_mutex_lock(&srv.mu);
  srv.last_args[0] = '\0';
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, arg_cb, NULL);
  snprintf(srv.last_method, sizeof srv.last_method, "%s", method);
  snprintf(srv.last_path, sizeof srv.last_path, "%s", path);
  snprintf(srv.last_body, sizeof srv.last_body, "%.*s", (int)u->len, u->body);
  int forbidden = srv.forbidden;
  pthread_mutex_unlock(&srv.mu);
  const char *cursor = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");
  bool get = strcmp(method, "GET") == 0, del = strcmp(method, "DELETE") == 0;
  if (forbidden && (del || strncmp(path, "/v1/keys", 8) == 0))
    return reply(c, 403, "application/json",
                 "{\"error\":{\"code\":\"permission_denied\",\"message\":\"needs the "
                 "admin role\"}}",
                 NULL);
  if (get && strcmp(path, "/v1/documents") == 0) {
    if (cursor && strcmp(cursor, "p2") == 0)
      return reply(c, 200, "application/json",
                   "{\"documents\":[{\"id\":\"d1\",\"title\":\"First\",\"status\":"
                   "\"done\",\"version\":1,\"chunk_count\":3}],\"next_cursor\":null}",
                   NULL);
    return reply(c, 200, "application/json",
                 "{\"documents\":[{\"id\":\"d3\",\"title\":\"Third\",\"status\":"
                 "\"running\",\"version\":2,\"chunk_count\":0},{\"id\":\"d2\",\"title\":"
                 "\"Second\",\"status\":\"done\",\"version\":1,\"chunk_count\":5}],"
                 "\"next_cursor\":\"p2\"}",
                 NULL);
  }
  if (get && strcmp(path, "/v1/jobs") == 0)
    return reply(c, 200, "application/json",
                 "{\"jobs\":[{\"id\":\"j1\",\"document_id\":\"d1\",\"status\":"
                 "\"failed\",\"error\":\"document is empty\"}],\"next_cursor\":null}",
                 NULL);
  if (get && strcmp(path, "/v1/keys") == 0)
    return reply(c, 200, "application/json",
                 "{\"keys\":[{\"id\":\"0123456789abcdef\",\"name\":\"ci\",\"roles\":"
                 "[\"reader\",\"writer\"],\"revoked\":false}],\"next_cursor\":null}",
                 NULL);
  if (strcmp(method, "POST") == 0 && strcmp(path, "/v1/keys") == 0)
    return reply(c, 201, "application/json",
                 "{\"id\":\"fedcba9876543210\",\"name\":\"ci\",\"roles\":[\"reader\"],"
                 "\"api_key\":\"qk_fedcba9876543210_secret\"}",
                 NULL);
  if (del && (strcmp(path, "/v1/documents/d1") == 0 ||
              strcmp(path, "/v1/keys/0123456789abcdef") == 0))
    return reply(c, 204, "application/json", "", NULL);
  return reply(c, 404, "application/json",
               "{\"error\":{\"code\":\"not_found\",\"message\":\"not found\"}}", NULL);
}

static enum MHD_Result serve_cb(void *ud, const httpfake_req_t *u) {
  struct MHD_Connection *c = u->conn;
  const char *path = u->url, *method = u->method;
  pthread_mutex_lock(&srv.mu);
  int unauthorized = srv.unauthorized;
  pthread_mutex_unlock(&srv.mu);
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (unauthorized || !auth || strncmp(auth, "Bearer qk_", 10) != 0)
    return reply(
        c, 401, "application/json",
        "{\"error\":{\"code\":\"unauthenticated\",\"message\":\"invalid API key\"}}",
        NULL);
  if (strcmp(path, "/v1/query") == 0 && strcmp(method, "POST") == 0)
    return query(c, u);
  if (strcmp(path, "/v1/documents") == 0 && strcmp(method, "POST") == 0)
    return upload(c, u);
  if (strcmp(path, "/v1/documents/batch") == 0 && strcmp(method, "POST") == 0)
    return batch(c, u);
  if (strcmp(method, "DELETE") == 0 || strcmp(path, "/v1/documents") == 0 ||
      strcmp(path, "/v1/jobs") == 0 || strncmp(path, "/v1/keys", 8) == 0)
    return manage(c, path, method, u);
  if (strncmp(path, "/v1/jobs/", 9) == 0) {
    pthread_mutex_lock(&srv.mu);
    srv.job_polls++;
    pthread_mutex_unlock(&srv.mu);
    char body[256];
    snprintf(body, sizeof body,
             "{\"id\":\"%s\",\"document_id\":\"d\",\"status\":\"done\",\"error\":\"\","
             "\"chunk_count\":2,\"attempts\":1}",
             path + 9);
    return reply(c, 200, "application/json", body, NULL);
  }
  if (strncmp(path, "/v1/documents/", 14) == 0)
    return reply(
        c, 404, "application/json",
        "{\"error\":{\"code\":\"not_found\",\"message\":\"document not found\"}}", NULL);
  return reply(c, 404, "application/json",
               "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}", NULL);
}

static void setup(void) {
  cr_assert_not_null(mkdtemp(tmp));
  /* Nothing of the developer's may leak in. */
  setenv("HOME", tmp, 1);
  setenv("XDG_STATE_HOME", tmp, 1);
  unsetenv("XDG_CONFIG_HOME");
  unsetenv("QUARRY_URL");
  unsetenv("QUARRY_API_KEY");
  unsetenv("QUARRY_API_KEY_FILE");
  unsetenv("QUARRY_CONFIG");
  unsetenv("QUARRY_STATE");
  daemon_ = httpfake_start(serve_cb, NULL, HTTPFAKE_ONE_THREAD);
  if (daemon_)
    httpfake_url(daemon_, url, sizeof url, "");
  cr_assert_not_null(daemon_);
}

static void teardown(void) {
  httpfake_stop(daemon_);
  daemon_ = NULL;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(cli, .init = setup, .fini = teardown);

#define KEY "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

typedef struct run {
  int rc;
  char *out, *err;
} run_t;

/* Runs `quarry <args...>` (NULL-terminated) in this process. */
static run_t run(const char *first, ...) {
  char *argv[64] = {"quarry"};
  int argc = 1;
  va_list ap;
  va_start(ap, first);
  for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *))
    argv[argc++] = (char *)a;
  va_end(ap);
  run_t r;
  size_t ol, el;
  FILE *out = open_memstream(&r.out, &ol), *err = open_memstream(&r.err, &el);
  r.rc = commands_main(argc, argv, out, err);
  fclose(out);
  fclose(err);
  return r;
}

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
}

Test(cli, ask_streams_when_the_server_can) {
  srv.query_mode = QUERY_STREAMS;
  run_t r = run("ask", "--server", url, "--key", KEY, "Which", "bulb?", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.out, "The bulb is QX-4471 [1].\n"
                          "\nSources:\n"
                          "[1] Lighthouse Handbook, page 3\n"
                          "    The lamp uses a QX-4471 bulb\n");
  cr_assert(strstr(srv.last_accept, "text/event-stream"), "%s", srv.last_accept);
  json_t *b = json_loads(srv.last_query_body, 0, NULL);
  cr_assert_str_eq(json_string_value(json_object_get(b, "query")), "Which bulb?");
  cr_assert(json_is_true(json_object_get(b, "stream")));
  json_decref(b);
  run_free(&r);
}

Test(cli, ask_falls_back_when_the_server_refuses_the_stream_field) {
  srv.query_mode = QUERY_REFUSES_STREAM;
  run_t r = run("ask", "--server", url, "--key", KEY, "-k", "3", "Which bulb?", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(srv.queries, 2, "asked again without \"stream\"");
  cr_assert(strncmp(r.out,
                    "The bulb is QX-4471 [1].\n\nSources:\n[1] Lighthouse Handbook\n",
                    58) == 0,
            "%s", r.out);
  cr_assert(strstr(r.err, "degraded (embed)"), "degraded stages go to stderr: %s", r.err);
  json_t *b = json_loads(srv.last_query_body, 0, NULL);
  cr_assert_null(json_object_get(b, "stream"));
  cr_assert_eq(json_integer_value(json_object_get(b, "top_k")), 3);
  json_decref(b);
  run_free(&r);
}

Test(cli, ask_takes_a_json_reply_to_a_stream_request) {
  srv.query_mode = QUERY_JSON_ONLY;
  run_t r = run("ask", "--server", url, "--key", KEY, "Which bulb?", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(srv.queries, 1);
  cr_assert(strstr(r.out, "QX-4471 [1].\n"), "%s", r.out);
  run_free(&r);
}

Test(cli, ask_json_is_one_document_and_never_streams) {
  srv.query_mode = QUERY_STREAMS;
  run_t r = run("--json", "ask", "--server", url, "--key", KEY, "Which bulb?", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  json_error_t je;
  json_t *doc = json_loads(r.out, 0, &je);
  cr_assert_not_null(doc, "%s: %s", je.text, r.out);
  cr_assert_str_eq(json_string_value(json_object_get(doc, "query_id")), "q-json");
  cr_assert_eq(json_array_size(json_object_get(doc, "citations")), 1);
  cr_assert_str_eq(r.err, "");
  json_decref(doc);
  run_free(&r);
}

Test(cli, ask_sends_the_filter_options_as_filter) {
  srv.query_mode = QUERY_STREAMS;
  run_t r = run("ask", "--server", url, "--key", KEY, "--where", "meta.team=finance",
                "--type", "text/plain", "--after", "2024-01-01", "Which bulb?", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "QX-4471 [1]."), "%s", r.out);
  json_t *b = json_loads(srv.last_query_body, 0, NULL);
  char *f = json_dumps(json_object_get(b, "filter"), JSON_COMPACT | JSON_SORT_KEYS);
  cr_assert_str_eq(f, "{\"and\":[{\"eq\":\"finance\",\"field\":\"meta.team\"},"
                      "{\"eq\":\"text/plain\",\"field\":\"content_type\"},"
                      "{\"field\":\"created_at\",\"gte\":\"2024-01-01\"}]}");
  free(f);
  cr_assert_str_eq(json_string_value(json_object_get(b, "query")), "Which bulb?");
  json_decref(b);
  run_free(&r);

  /* without a filter option the body has no "filter" */
  r = run("ask", "--server", url, "--key", KEY, "Which bulb?", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  b = json_loads(srv.last_query_body, 0, NULL);
  cr_assert_null(json_object_get(b, "filter"));
  json_decref(b);
  run_free(&r);
}

Test(cli, ask_shows_the_servers_400_for_a_filter_it_refuses) {
  srv.query_mode = QUERY_STREAMS;
  run_t r = run("ask", "--server", url, "--key", KEY, "--filter",
                "{\"field\":\"meta.team\",\"like\":\"fin\"}", "Which bulb?", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_FAILED, "%s", r.err);
  cr_assert_eq(srv.queries, 1, "not asked again: the 400 is not about \"stream\"");
  cr_assert(strstr(r.err, "HTTP 400 invalid_argument: filter: unknown operator \"like\""),
            "%s", r.err);
  cr_assert_str_eq(r.out, "");
  run_free(&r);

  r = run("--json", "ask", "--server", url, "--key", KEY, "--filter",
          "{\"field\":\"meta.team\",\"like\":\"fin\"}", "Which bulb?", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_FAILED);
  json_t *doc = json_loads(r.out, 0, NULL);
  json_t *e = json_object_get(doc, "error");
  cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "invalid_argument");
  cr_assert_eq(json_integer_value(json_object_get(e, "exit_code")), CLI_EXIT_FAILED);
  cr_assert(strstr(json_string_value(json_object_get(e, "message")), "unknown operator"));
  json_decref(doc);
  run_free(&r);
}

Test(cli, ask_filter_that_is_not_json_is_usage_without_a_request) {
  run_t r = run("ask", "--server", url, "--key", KEY, "--filter",
                "{\"field\":", "Which bulb?", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_USAGE, "%s", r.err);
  cr_assert(strstr(r.err, "--filter is not JSON"), "%s", r.err);
  cr_assert_eq(srv.queries, 0);
  run_free(&r);
  r = run("ask", "--server", url, "--key", KEY, "--where", "finance", "q", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_USAGE, "%s", r.err);
  cr_assert(strstr(r.err, "--where wants KEY=VALUE"), "%s", r.err);
  cr_assert_eq(srv.queries, 0);
  run_free(&r);
}

Test(cli, ask_reports_a_stream_error_event) {
  srv.query_mode = QUERY_STREAM_ERROR;
  run_t r = run("ask", "--server", url, "--key", KEY, "Which bulb?", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_SERVER);
  cr_assert(strstr(r.err, "llm-gateway unavailable"), "%s", r.err);
  run_free(&r);
}

Test(cli, bad_key_is_exit_3_and_never_printed) {
  srv.unauthorized = 1;
  run_t r = run("ask", "--server", url, "--key", KEY, "q", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_AUTH);
  cr_assert(strstr(r.err, "refused the API key from --key"), "%s", r.err);
  cr_assert_null(strstr(r.err, "AAAAAAAA"), "the key's secret is not in the message");
  cr_assert_null(strstr(r.out, "AAAAAAAA"));
  run_free(&r);

  run_t j = run("ask", "--json", "--server", url, "--key", KEY, "q", NULL);
  json_t *doc = json_loads(j.out, 0, NULL);
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(doc, "error"), "code")),
      "unauthenticated");
  json_decref(doc);
  run_free(&j);
}

Test(cli, missing_key_is_exit_3_without_a_request) {
  run_t r = run("ask", "--server", url, "q", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_AUTH);
  cr_assert(strstr(r.err, "no API key"), "%s", r.err);
  cr_assert_eq(srv.queries, 0);
  run_free(&r);
}

Test(cli, unreachable_server_is_exit_4) {
  char dead[64];
  snprintf(dead, sizeof dead, "http://127.0.0.1:%d", loopback_free_port());
  run_t r = run("ask", "--server", dead, "--key", KEY, "q", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_SERVER);
  cr_assert(strstr(r.err, "cannot reach the Quarry server at http://127.0.0.1:"), "%s",
            r.err);
  run_free(&r);
}

Test(cli, settings_come_from_env_and_config_file) {
  char cfg[512];
  snprintf(cfg, sizeof cfg, "%s/.config/quarry", tmp);
  char mk[600];
  snprintf(mk, sizeof mk, "mkdir -p '%s'", cfg);
  cr_assert_eq(system(mk), 0);
  strncat(cfg, "/config", sizeof cfg - strlen(cfg) - 1);
  FILE *f = fopen(cfg, "w");
  fprintf(f, "server = %s\nkey = %s\n", url, KEY);
  fclose(f);
  chmod(cfg, 0600);
  srv.query_mode = QUERY_JSON_ONLY;
  run_t r = run("ask", "q", NULL);
  cr_assert_eq(r.rc, 0, "from ~/.config/quarry/config: %s", r.err);
  run_free(&r);

  setenv("QUARRY_URL", "http://127.0.0.1:1", 1); /* the environment beats the file */
  r = run("ask", "q", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_SERVER, "%s", r.err);
  run_free(&r);
  r = run("ask", "--server", url, "q", NULL); /* flags beat the environment */
  cr_assert_eq(r.rc, 0, "%s", r.err);
  run_free(&r);
}

Test(cli, docs_list_one_page_and_all) {
  run_t r = run("--key", KEY, "--server", url, "docs", "list", "--limit", "2", "-q",
                "boiler room", "--state", "done", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "Third") && strstr(r.out, "Second"), "%s", r.out);
  cr_assert(!strstr(r.out, "First"), "one page only: %s", r.out);
  cr_assert(strstr(r.err, "--cursor p2"), "the next page is named: %s", r.err);
  cr_assert(strstr(srv.last_args, "limit=2"), "%s", srv.last_args);
  cr_assert(strstr(srv.last_args, "q=boiler room"), "%s", srv.last_args);
  cr_assert(strstr(srv.last_args, "state=done"), "%s", srv.last_args);
  run_free(&r);

  r = run("--key", KEY, "--server", url, "--json", "docs", "list", "--all", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  json_t *doc = json_loads(r.out, 0, NULL);
  json_t *docs = json_object_get(doc, "documents");
  cr_assert_eq(json_array_size(docs), 3, "%s", r.out);
  cr_assert_str_eq(json_string_value(json_object_get(json_array_get(docs, 2), "id")),
                   "d1");
  cr_assert(json_is_null(json_object_get(doc, "next_cursor")));
  json_decref(doc);
  run_free(&r);

  r = run("--key", KEY, "--server", url, "docs", "list", "--cursor", "p2", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "First") && !strstr(r.out, "Third"), "%s", r.out);
  run_free(&r);
}

Test(cli, docs_rm_exit_codes) {
  run_t r = run("--key", KEY, "--server", url, "docs", "rm", "d1", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "deleted document d1"), "%s", r.out);
  cr_assert_str_eq(srv.last_method, "DELETE");
  run_free(&r);
  r = run("--key", KEY, "--server", url, "docs", "rm", "nope", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_FAILED, "an unknown id is exit 1: %s", r.err);
  run_free(&r);
  srv.forbidden = 1;
  r = run("--key", KEY, "--server", url, "--json", "docs", "rm", "d1", NULL);
  srv.forbidden = 0;
  cr_assert_eq(r.rc, CLI_EXIT_AUTH, "a 403 is exit 3: %s", r.out);
  json_t *doc = json_loads(r.out, 0, NULL);
  cr_assert_not_null(json_object_get(doc, "error"), "%s", r.out);
  json_decref(doc);
  run_free(&r);
}

Test(cli, jobs_and_keys) {
  run_t r = run("--key", KEY, "--server", url, "jobs", "--state", "failed", "--document",
                "d1", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "document is empty"), "%s", r.out);
  cr_assert(strstr(srv.last_args, "state=failed"), "%s", srv.last_args);
  cr_assert(strstr(srv.last_args, "document_id=d1"), "%s", srv.last_args);
  run_free(&r);

  r = run("--key", KEY, "--server", url, "keys", "create", "ci", "--role", "reader",
          "--role", "writer", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "qk_fedcba9876543210_secret"), "%s", r.out);
  json_t *sent = json_loads(srv.last_body, 0, NULL);
  cr_assert_str_eq(json_string_value(json_object_get(sent, "name")), "ci");
  cr_assert_eq(json_array_size(json_object_get(sent, "roles")), 2, "%s", srv.last_body);
  json_decref(sent);
  run_free(&r);

  r = run("--key", KEY, "--server", url, "keys", "list", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "0123456789abcdef") && strstr(r.out, "reader,writer"), "%s",
            r.out);
  run_free(&r);
  r = run("--key", KEY, "--server", url, "keys", "revoke", "0123456789abcdef", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "revoked key 0123456789abcdef"), "%s", r.out);
  run_free(&r);
  srv.forbidden = 1;
  r = run("--key", KEY, "--server", url, "keys", "list", NULL);
  srv.forbidden = 0;
  cr_assert_eq(r.rc, CLI_EXIT_AUTH, "%s", r.err);
  run_free(&r);
  r = run("--key", KEY, "--server", url, "docs", "list", "--limit", "0", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_USAGE, "%s", r.err);
  run_free(&r);
}

Test(cli, usage_errors_are_exit_2) {
  const char *cases[][4] = {
      {"ask", NULL},                              /* no question */
      {"bogus", NULL},                            /* no such command */
      {"docs", NULL},                             /* a group without its verb */
      {"ask", "--top-k", "99", "q"},              /* out of range */
      {"ask", "--nope", "q", NULL},               /* unknown option */
      {"docs", "show", "a", "b"},                 /* one id only */
      {"ingest", "--json=1", "x", NULL},          /* a flag takes no value */
      {"ask", "--server", "127.0.0.1:8080", "q"}, /* not a URL */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_t r = run("--key", KEY, cases[i][0], cases[i][1], cases[i][2], cases[i][3], NULL);
    cr_assert_eq(r.rc, CLI_EXIT_USAGE, "case %zu (%s): %s", i, cases[i][0], r.err);
    run_free(&r);
  }
  run_t r = run(NULL);
  cr_assert_eq(r.rc, CLI_EXIT_USAGE);
  cr_assert(strstr(r.err, "Commands:"), "%s", r.err);
  run_free(&r);
}

Test(cli, help_for_every_command) {
  for (const command_t *c = commands; c->name; c++) {
    char name[64];
    snprintf(name, sizeof name, "%s", c->name);
    char *sp = strchr(name, ' ');
    if (sp)
      *sp = '\0';
    run_t r = run(name, sp ? sp + 1 : "--help", sp ? "--help" : NULL, NULL);
    cr_assert_eq(r.rc, 0, "%s --help", c->name);
    cr_assert(strstr(r.out, "usage: quarry "), "%s: %s", c->name, r.out);
    cr_assert(strstr(r.out, "--server URL"), "global options listed: %s", r.out);
    run_free(&r);
  }
  run_t r = run("help", "ingest", NULL);
  cr_assert(strstr(r.out, "--include GLOB"), "%s", r.out);
  run_free(&r);
}

Test(cli, show_reports_404_as_a_failed_item) {
  run_t r = run("docs", "show", "--server", url, "--key", KEY, "nope", NULL);
  cr_assert_eq(r.rc, CLI_EXIT_FAILED);
  cr_assert(strstr(r.err, "no document nope"), "%s", r.err);
  run_free(&r);
  r = run("jobs", "show", "--server", url, "--key", KEY, "job-1", NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(r.out, "status       done\n"), "%s", r.out);
  cr_assert_null(strstr(r.out, "reason"), "no reason unless it failed: %s", r.out);
  run_free(&r);
}

static void write_doc(const char *rel, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", tmp, rel);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
}

Test(cli, ingest_retries_429_with_one_idempotency_key_then_skips_on_rerun) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  write_doc("docs/a.md", "# A\n\nalpha\n");
  srv.fail_uploads_with_429 = 1;
  run_t r = run("ingest", "--server", url, "--key", KEY, "-j", "1", "--json", docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  json_t *doc = json_loads(r.out, 0, NULL);
  cr_assert_not_null(doc, "%s", r.out);
  cr_assert_eq(json_integer_value(json_object_get(doc, "uploaded")), 1);
  cr_assert_eq(json_integer_value(json_object_get(json_object_get(doc, "jobs"), "done")),
               1);
  json_decref(doc);
  run_free(&r);

  cr_assert_eq(srv.uploads, 2, "429, then accepted");
  cr_assert_str_eq(srv.idem_keys[0], srv.idem_keys[1], "the retry has the same key");
  /* sha256 of (content sha256 ":" external id) */
  const char *content = "# A\n\nalpha\n";
  char sha[65], seed[256], want[65];
  q_sha256_hex(content, strlen(content), sha);
  snprintf(seed, sizeof seed, "%s:docs/a.md", sha);
  q_sha256_hex(seed, strlen(seed), want);
  cr_assert_str_eq(srv.idem_keys[0], want);
  cr_assert(strstr(srv.upload_bodies[1], "name=\"external_id\"\r\n\r\ndocs/a.md\r\n"),
            "%s", srv.upload_bodies[1]);
  cr_assert(strstr(srv.upload_bodies[1], "filename=\"a.md\""), "%s",
            srv.upload_bodies[1]);
  cr_assert(strstr(srv.upload_bodies[1], "alpha"));

  r = run("ingest", "--server", url, "--key", KEY, docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  cr_assert(strstr(r.out, "skipped    "), "not a TTY: plain lines: %s", r.out);
  cr_assert(strstr(r.out, "docs/a.md (loaded before)"), "%s", r.out);
  cr_assert_eq(srv.uploads, 2, "nothing uploaded again");
  run_free(&r);

  r = run("ingest", "--server", url, "--key", KEY, "--force", docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  cr_assert_eq(srv.uploads, 3, "--force uploads regardless of the state file");
  run_free(&r);
}

Test(cli, ingest_title_and_external_id_name_one_file) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  write_doc("docs/a.md", "a\n");
  write_doc("docs/b.md", "b\n");
  run_t r = run("ingest", "--server", url, "--key", KEY, "--title", "T", docs, NULL);
  cr_assert_eq(r.rc, CLI_EXIT_USAGE, "%s", r.err);
  cr_assert(strstr(r.err, "2 files were found"), "%s", r.err);
  run_free(&r);
  char one[600];
  snprintf(one, sizeof one, "%s/a.md", docs);
  r = run("ingest", "--server", url, "--key", KEY, "--title", "The A", "--external-id",
          "wiki/a", one, NULL);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert(strstr(srv.upload_bodies[0], "name=\"title\"\r\n\r\nThe A\r\n"), "%s",
            srv.upload_bodies[0]);
  cr_assert(strstr(srv.upload_bodies[0], "name=\"external_id\"\r\n\r\nwiki/a\r\n"), "%s",
            srv.upload_bodies[0]);
  run_free(&r);
}

Test(cli, ingest_with_a_bad_key_stops_at_once) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  for (int i = 0; i < 6; i++) {
    char rel[64];
    snprintf(rel, sizeof rel, "docs/%d.md", i);
    write_doc(rel, rel);
  }
  srv.unauthorized = 1;
  run_t r = run("ingest", "--server", url, "--key", KEY, "-j", "1", docs, NULL);
  cr_assert_eq(r.rc, CLI_EXIT_AUTH, "%s%s", r.out, r.err);
  cr_assert_eq(srv.uploads, 0, "the 401 came before any upload was counted");
  cr_assert(strstr(r.out, "5 not started"), "%s", r.out);
  run_free(&r);
}

/* ---- batches ---------------------------------------------------------------- */

static json_t *item_of(json_t *doc, const char *external_id) {
  size_t i;
  json_t *it;
  json_array_foreach(json_object_get(doc, "items"), i, it) {
    if (strcmp(json_string_value(json_object_get(it, "external_id")), external_id) == 0)
      return it;
  }
  return NULL;
}

static const char *result_of(json_t *doc, const char *external_id) {
  return json_string_value(json_object_get(item_of(doc, external_id), "result"));
}

/* The key the client must send for these files, in order. */
static void expected_key(const char *const *ids, const char *const *texts, size_t n,
                         char out[80]) {
  char seed[4096] = "";
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    char sha[65];
    q_sha256_hex(texts[i], strlen(texts[i]), sha);
    len += (size_t)snprintf(seed + len, sizeof seed - len, "%s:%s\n", sha, ids[i]);
  }
  char hex[65];
  q_sha256_hex(seed, len, hex);
  snprintf(out, 80, "qb1-%s", hex);
}

Test(cli, ingest_sends_small_text_files_in_one_batch_and_maps_results_per_file) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  write_doc("docs/a.txt", "alpha\n");
  write_doc("docs/b.txt", "FAIL me\n");
  write_doc("docs/c.md", "# C\n");      /* not plain text: alone */
  write_doc("docs/d.txt", "BIG one\n"); /* refused by size in the batch: alone */
  write_doc("docs/e.txt", "epsilon \"quoted\"\n");
  srv.batch_mode = BATCH_ANSWERS;
  run_t r = run("ingest", "--server", url, "--key", KEY, "-j", "1", "--json", docs, NULL);
  cr_assert_eq(r.rc, CLI_EXIT_FAILED, "b.txt fails: %s%s", r.out, r.err);
  json_t *doc = json_loads(r.out, 0, NULL);
  cr_assert_not_null(doc, "%s", r.out);
  cr_assert_eq(srv.batches, 1, "one batch for the four .txt files");
  cr_assert_eq(srv.batch_lines[0], 4);
  cr_assert(strstr(srv.batch_types[0], "application/x-ndjson"), "%s", srv.batch_types[0]);
  const char *ids[] = {"docs/a.txt", "docs/b.txt", "docs/d.txt", "docs/e.txt"};
  const char *texts[] = {"alpha\n", "FAIL me\n", "BIG one\n", "epsilon \"quoted\"\n"};
  char key[80];
  expected_key(ids, texts, 4, key);
  cr_assert_str_eq(srv.batch_keys[0], key);
  json_t *first = json_loads(srv.batch_first_line, 0, NULL);
  cr_assert_str_eq(json_string_value(json_object_get(first, "external_id")),
                   "docs/a.txt");
  cr_assert_str_eq(json_string_value(json_object_get(first, "title")), "a.txt");
  cr_assert_str_eq(json_string_value(json_object_get(first, "text")), "alpha\n");
  json_decref(first);
  cr_assert_eq(srv.uploads, 2, "c.md and d.txt went alone");
  cr_assert_str_eq(result_of(doc, "docs/a.txt"), "uploaded");
  cr_assert(json_is_true(json_object_get(item_of(doc, "docs/a.txt"), "batch")));
  cr_assert_str_eq(
      json_string_value(json_object_get(item_of(doc, "docs/a.txt"), "job_id")),
      "bdoc-0-0");
  cr_assert_str_eq(result_of(doc, "docs/e.txt"), "uploaded");
  cr_assert_str_eq(
      json_string_value(json_object_get(item_of(doc, "docs/e.txt"), "job_id")),
      "bdoc-0-3", "entries map to files by position");
  cr_assert_str_eq(result_of(doc, "docs/b.txt"), "failed");
  cr_assert_str_eq(
      json_string_value(json_object_get(item_of(doc, "docs/b.txt"), "error")),
      "invalid_argument: document is empty");
  cr_assert_str_eq(result_of(doc, "docs/d.txt"), "uploaded");
  cr_assert_null(json_object_get(item_of(doc, "docs/d.txt"), "batch"));
  cr_assert_str_eq(result_of(doc, "docs/c.md"), "uploaded");
  cr_assert_eq(json_integer_value(json_object_get(doc, "uploaded")), 4);
  cr_assert_eq(json_integer_value(json_object_get(doc, "failed")), 1);
  cr_assert_eq(json_integer_value(json_object_get(doc, "batches")), 1);
  json_decref(doc);
  run_free(&r);

  /* Again: what was loaded is skipped, the failed file is sent again. */
  r = run("ingest", "--server", url, "--key", KEY, docs, NULL);
  cr_assert_eq(r.rc, CLI_EXIT_FAILED, "%s%s", r.out, r.err);
  cr_assert(strstr(r.out, "/docs/a.txt (loaded before)"), "%s", r.out);
  cr_assert(strstr(r.out, "/docs/b.txt: invalid_argument: document is empty"), "%s",
            r.out);
  cr_assert_eq(srv.batches, 2);
  cr_assert_eq(srv.batch_lines[1], 1, "only b.txt");
  cr_assert_eq(srv.uploads, 2, "nothing alone this time");
  run_free(&r);
}

Test(cli, ingest_closes_a_batch_at_its_file_budget) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  for (int i = 0; i < 130; i++) {
    char rel[64], text[64];
    snprintf(rel, sizeof rel, "docs/%03d.txt", i);
    snprintf(text, sizeof text, "file %d\n", i);
    write_doc(rel, text);
  }
  srv.batch_mode = BATCH_ANSWERS;
  run_t r =
      run("ingest", "--server", url, "--key", KEY, "-j", "2", "--no-wait", docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  cr_assert_eq(srv.batches, 2);
  cr_assert_eq(srv.batch_lines[0] + srv.batch_lines[1], 130);
  cr_assert(srv.batch_lines[0] == 100 || srv.batch_lines[1] == 100, "%d %d",
            srv.batch_lines[0], srv.batch_lines[1]);
  cr_assert_eq(srv.uploads, 0);
  cr_assert(strstr(r.out, "130 files: 130 uploaded"), "%s", r.out);
  run_free(&r);
}

Test(cli, ingest_falls_back_to_single_uploads_when_the_server_has_no_batch_route) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  write_doc("docs/a.txt", "alpha\n");
  write_doc("docs/b.txt", "beta\n");
  write_doc("docs/c.txt", "gamma\n");
  srv.batch_mode = BATCH_ABSENT;
  run_t r = run("ingest", "--server", url, "--key", KEY, "-j", "1", docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  cr_assert_eq(srv.batches, 1, "asked once, then remembered for the run");
  cr_assert_eq(srv.uploads, 3);
  cr_assert(strstr(r.err, "no batch route (HTTP 404"), "%s", r.err);
  cr_assert(strstr(r.out, "3 files: 3 uploaded"), "%s", r.out);
  run_free(&r);

  write_doc("docs/d.txt", "delta\n");
  r = run("ingest", "--server", url, "--key", KEY, "--json", docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  cr_assert_eq(srv.batches, 2, "a new run asks again");
  cr_assert_eq(srv.uploads, 4, "only the new file");
  json_t *doc = json_loads(r.out, 0, NULL);
  cr_assert_eq(json_integer_value(json_object_get(doc, "batches")), 0, "%s", r.out);
  cr_assert_str_eq(result_of(doc, "docs/d.txt"), "uploaded");
  cr_assert_null(json_object_get(item_of(doc, "docs/d.txt"), "batch"));
  json_decref(doc);
  run_free(&r);
}

Test(cli, ingest_no_batch_uploads_one_file_per_request) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  write_doc("docs/a.txt", "alpha\n");
  write_doc("docs/b.txt", "beta\n");
  srv.batch_mode = BATCH_ANSWERS;
  run_t r = run("ingest", "--server", url, "--key", KEY, "--no-batch", docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  cr_assert_eq(srv.batches, 0);
  cr_assert_eq(srv.uploads, 2);
  run_free(&r);
}

Test(cli, ingest_retries_a_lost_batch_with_its_key_and_takes_the_replay) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  write_doc("docs/a.txt", "alpha\n");
  write_doc("docs/b.txt", "beta\n");
  srv.batch_mode = BATCH_503_AFTER_STORING;
  run_t r = run("ingest", "--server", url, "--key", KEY, "--json", docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  cr_assert_eq(srv.batches, 2, "503, then the same batch again");
  cr_assert_str_eq(srv.batch_keys[0], srv.batch_keys[1]);
  cr_assert_eq(srv.batch_docs, 2, "stored once, replayed the second time");
  json_t *doc = json_loads(r.out, 0, NULL);
  cr_assert_str_eq(result_of(doc, "docs/a.txt"), "unchanged", "%s", r.out);
  cr_assert_str_eq(
      json_string_value(json_object_get(item_of(doc, "docs/b.txt"), "job_status")),
      "done", "its job is still waited for");
  json_decref(doc);
  run_free(&r);
}

Test(cli, ingest_run_again_after_a_lost_batch_forms_the_same_batch_and_is_replayed) {
  char docs[512];
  snprintf(docs, sizeof docs, "%s/docs", tmp);
  mkdir(docs, 0755);
  write_doc("docs/a.txt", "alpha\n");
  write_doc("docs/b.txt", "beta\n");
  write_doc("docs/c.md", "# C\n");
  srv.batch_mode = BATCH_500_AFTER_STORING; /* stored, but the answer is lost */
  run_t r = run("ingest", "--server", url, "--key", KEY, docs, NULL);
  cr_assert_eq(r.rc, CLI_EXIT_SERVER, "%s%s", r.out, r.err);
  cr_assert(strstr(r.out, "docs/a.txt: server error (HTTP 500"), "reported per file: %s",
            r.out);
  cr_assert_eq(srv.batches, 1, "500 is not retried");
  run_free(&r);
  r = run("ingest", "--server", url, "--key", KEY, "--json", docs, NULL);
  cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
  cr_assert_eq(srv.batches, 2);
  cr_assert_str_eq(srv.batch_keys[0], srv.batch_keys[1], "the same files: the same key");
  cr_assert_eq(srv.batch_docs, 2, "replayed, not stored again");
  json_t *doc = json_loads(r.out, 0, NULL);
  cr_assert_str_eq(result_of(doc, "docs/a.txt"), "unchanged", "%s", r.out);
  cr_assert_str_eq(result_of(doc, "docs/c.md"), "skipped", "%s", r.out);
  json_decref(doc);
  run_free(&r);
}
