/* fuzz_json.c - JSON request bodies: POST /v1/query, POST /v1/feedback and
 * POST /v1/chat/completions run through their real handlers (found in the
 * gateway's route table, so a renamed handler needs no change here), and
 * http_json_text, which turns any bytes into a JSON string.
 *
 * The query pipeline is asynchronous (query.c): /v1/query and
 * /v1/chat/completions suspend their libmicrohttpd connection, submit the
 * pipeline to admission control (pool.h) and reply when the sink wakes the
 * connection. So each request travels through a real libmicrohttpd daemon
 * in this process (no listening socket, suspend/resume allowed, driven with
 * MHD_run from this thread), written into a socketpair handed over with
 * MHD_add_connection, and query.c's module runs as the gateway runs it
 * (query_start with the default pool). The access handler below plays
 * server.c's part for a JSON route (body into r->body, the handler at the
 * end of the body, async resume and close).
 *
 * Every request's deadline has passed, so the pipeline of a body the
 * handler accepts is admitted at once (an empty pool), runs its first
 * stages on this thread and ends before its first downstream call: embed
 * is skipped and retrieve fails on the deadline (pipeline.c), which the
 * sink turns into a 504; feedback's unary call is refused before it
 * starts, 504 too. No call is ever made and nothing waits on a network.
 *
 * Input: the body, given to each handler. When its length is odd, the
 * /v1/query request also says "Accept: text/event-stream" (the SSE sink,
 * unless the body's "stream" decides). Checked: the client reads exactly
 * one HTTP reply, whose status is the one the handler queued and is 400,
 * 413 or 504 - never a 500 ("no reply" or a failed serialisation), a 503
 * (admission refused) or a 200 - with a JSON body holding "error"; and a
 * handler accepts (504) exactly the bodies that the contract of
 * docs/api/openapi.yaml, restated below from the document, allows: a body
 * the handler refuses though the contract allows it, or accepts though
 * the contract forbids it, is a crash. As in the handlers, a field that
 * is null counts as absent. */
#include <jansson.h>

#include "fuzz.h"
#include "fuzz_mhd.h"
#include "gateway.h"
#include "handlers.h"
#include "http_util.h"
#include "query.h"
#include "router.h"
#include "routes.h"

#include "quarry/arena.h"
#include "quarry/buf.h"
#include "quarry/filter.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/util.h"
#include "quarry/validate.h"

#define MAX_JSON 65536

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gw_cfg_t cfg = {
    .auth_addr = "unix:/nonexistent/fuzz",
    .ingestion_addr = "unix:/nonexistent/fuzz",
    .retriever_addr = "unix:/nonexistent/fuzz",
    .reranker_addr = "unix:/nonexistent/fuzz",
    .llm_addr = "unix:/nonexistent/fuzz",
    .feedback_addr = "unix:/nonexistent/fuzz",
    .max_upload_bytes = 1 << 20,
    .max_json_bytes = MAX_JSON,
    .query_timeout_ms = 1000,
    .upload_timeout_ms = 1000,
};

/* ---- the contract, as docs/api/openapi.yaml states it ---------------------- */

static bool only_keys(json_t *o, const char *const *allowed) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    bool known = false;
    for (const char *const *a = allowed; *a; a++)
      known |= strcmp(*a, k) == 0;
    if (!known)
      return false;
  }
  return true;
}

static bool string_ok(json_t *o, const char *k, bool required, size_t lo, size_t hi) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v))
    return !required;
  return json_is_string(v) && json_string_length(v) >= lo && json_string_length(v) <= hi;
}

static bool int_ok(json_t *o, const char *k, bool required, json_int_t lo,
                   json_int_t hi) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v))
    return !required;
  return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

static bool bool_ok(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return !v || json_is_null(v) || json_is_boolean(v);
}

/* A query's "filter": absent or null, or a filter of the filter language
 * (docs/retrieval.md, Filters) of at most Q_LIMIT_FILTER_BYTES as compact
 * JSON. The language itself is q_filter_compile's, whose own contract the
 * filter target checks; here only that the handler follows it. */
static bool filter_ok(json_t *o) {
  json_t *v = json_object_get(o, "filter");
  if (!v || json_is_null(v))
    return true;
  char err[384];
  q_filter_t *f = NULL;
  q_err_t rc = q_filter_compile(v, &f, err, sizeof err);
  q_filter_free(f);
  if (rc)
    return false;
  char *compact = json_dumps(v, JSON_COMPACT);
  bool ok = compact && strlen(compact) <= Q_LIMIT_FILTER_BYTES;
  free(compact);
  return ok;
}

/* QueryRequest: query 1..Q_LIMIT_QUERY_BYTES bytes, not only white space;
 * top_k 1..Q_LIMIT_TOP_K_MAX; stream a boolean; mode one of lexical,
 * dense, hybrid; filter as filter_ok says; nothing else
 * (additionalProperties: false). */
static bool query_ok(json_t *o) {
  static const char *const keys[] = {"query", "top_k", "stream", "mode", "filter", NULL};
  if (!filter_ok(o))
    return false;
  if (!only_keys(o, keys) || !string_ok(o, "query", true, 1, Q_LIMIT_QUERY_BYTES) ||
      !int_ok(o, "top_k", false, 1, Q_LIMIT_TOP_K_MAX) || !bool_ok(o, "stream") ||
      !string_ok(o, "mode", false, 0, SIZE_MAX))
    return false;
  json_t *m = json_object_get(o, "mode");
  if (json_is_string(m)) {
    static const char *const modes[] = {"lexical", "dense", "hybrid", NULL};
    bool known = false;
    for (const char *const *a = modes; *a; a++)
      known |=
          strlen(*a) == json_string_length(m) && strcmp(*a, json_string_value(m)) == 0;
    if (!known)
      return false;
  }
  json_t *q = json_object_get(o, "query");
  return !q_is_blank(json_string_value(q), json_string_length(q));
}

/* FeedbackRequest: query_id 1..Q_LIMIT_QUERY_ID_BYTES; rating 1 or -1;
 * comment at most Q_LIMIT_COMMENT_BYTES; chunk_ids at most
 * Q_LIMIT_FEEDBACK_CHUNK_IDS strings of 1..Q_LIMIT_CHUNK_ID_BYTES. */
static bool feedback_ok(json_t *o) {
  static const char *const keys[] = {"query_id", "rating", "comment", "chunk_ids", NULL};
  if (!only_keys(o, keys) || !string_ok(o, "query_id", true, 1, Q_LIMIT_QUERY_ID_BYTES) ||
      !int_ok(o, "rating", true, -1, 1) ||
      json_integer_value(json_object_get(o, "rating")) == 0 ||
      !string_ok(o, "comment", false, 0, Q_LIMIT_COMMENT_BYTES))
    return false;
  json_t *ids = json_object_get(o, "chunk_ids");
  if (!ids || json_is_null(ids))
    return true;
  if (!json_is_array(ids) || json_array_size(ids) > Q_LIMIT_FEEDBACK_CHUNK_IDS)
    return false;
  size_t i;
  json_t *v;
  json_array_foreach(ids, i, v) {
    if (!json_is_string(v) || json_string_length(v) < 1 ||
        json_string_length(v) > Q_LIMIT_CHUNK_ID_BYTES)
      return false;
  }
  return true;
}

/* ChatCompletionRequest (OpenAI's; fields not listed are ignored): model a
 * string of at most Q_LIMIT_MODEL_BYTES, user of at most
 * Q_LIMIT_USER_ID_BYTES; stream a boolean; n only 1; max_tokens and
 * max_completion_tokens integers 1..Q_LIMIT_MAX_TOKENS; temperature a
 * number 0..2, top_p 0..1; messages 1..Q_LIMIT_CHAT_MESSAGES
 * ChatMessages: an object whose role is exactly one of system, developer,
 * user, assistant, tool, function, whose content is absent or null (not
 * for a user message), a string, or an array of {"type": "text", "text":
 * string} parts (joined with newlines); the text of all messages at most
 * Q_LIMIT_CHAT_BYTES; at least one user message, and the last one (the
 * question) 1..Q_LIMIT_QUERY_BYTES bytes, not only white space; the
 * extension quarry absent, null, or an object holding at most filter,
 * which filter_ok allows. */
static bool number_ok(json_t *o, const char *k, double lo, double hi) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v))
    return true;
  return json_is_number(v) && json_number_value(v) >= lo && json_number_value(v) <= hi;
}

static bool chat_ok(json_t *o) {
  json_t *n = json_object_get(o, "n");
  if (!string_ok(o, "model", false, 0, Q_LIMIT_MODEL_BYTES) ||
      !string_ok(o, "user", false, 0, Q_LIMIT_USER_ID_BYTES) || !bool_ok(o, "stream") ||
      (n && !json_is_null(n) && !(json_is_integer(n) && json_integer_value(n) == 1)) ||
      !int_ok(o, "max_tokens", false, 1, Q_LIMIT_MAX_TOKENS) ||
      !int_ok(o, "max_completion_tokens", false, 1, Q_LIMIT_MAX_TOKENS) ||
      !number_ok(o, "temperature", 0, 2) || !number_ok(o, "top_p", 0, 1))
    return false;
  json_t *ext = json_object_get(o, "quarry");
  if (ext && !json_is_null(ext)) {
    static const char *const ext_keys[] = {"filter", NULL};
    if (!json_is_object(ext) || !only_keys(ext, ext_keys) || !filter_ok(ext))
      return false;
  }
  json_t *msgs = json_object_get(o, "messages");
  if (!json_is_array(msgs) || json_array_size(msgs) < 1 ||
      json_array_size(msgs) > Q_LIMIT_CHAT_MESSAGES)
    return false;
  static const char *const roles[] = {"system", "developer", "user", "assistant",
                                      "tool",   "function",  NULL};
  size_t total = 0, i;
  json_t *m;
  json_t *question = NULL; /* the last user message's content */
  json_array_foreach(msgs, i, m) {
    json_t *role = json_object_get(m, "role");
    if (!json_is_object(m) || !json_is_string(role))
      return false;
    bool known = false;
    for (const char *const *a = roles; *a; a++)
      known |= strlen(*a) == json_string_length(role) &&
               strcmp(*a, json_string_value(role)) == 0;
    if (!known)
      return false;
    bool user = strcmp(json_string_value(role), "user") == 0;
    json_t *c = json_object_get(m, "content");
    size_t len = 0;
    if (!c || json_is_null(c)) {
      if (user)
        return false;
    } else if (json_is_string(c)) {
      len = json_string_length(c);
    } else if (json_is_array(c)) {
      size_t k;
      json_t *part;
      json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") != 0 ||
            json_string_length(type) != 4 || !json_is_string(text))
          return false;
        len += (k ? 1 : 0) + json_string_length(text);
      }
    } else {
      return false;
    }
    total += len;
    if (total > Q_LIMIT_CHAT_BYTES)
      return false;
    if (user)
      question = c;
  }
  if (!question)
    return false;
  /* The question's text, joined as the contract says. */
  q_buf_t qb;
  q_buf_init(&qb, (size_t)Q_LIMIT_CHAT_BYTES + Q_LIMIT_CHAT_MESSAGES);
  if (json_is_string(question)) {
    FUZZ_CHECK(
        q_buf_append(&qb, json_string_value(question), json_string_length(question)) == 0,
        "out of memory");
  } else {
    size_t k;
    json_t *part;
    json_array_foreach(question, k, part) {
      json_t *text = json_object_get(part, "text");
      FUZZ_CHECK(
          (!k || q_buf_append(&qb, "\n", 1) == 0) &&
              q_buf_append(&qb, json_string_value(text), json_string_length(text)) == 0,
          "out of memory");
    }
  }
  bool ok = qb.len >= 1 && qb.len <= Q_LIMIT_QUERY_BYTES &&
            !q_is_blank(qb.data ? qb.data : "", qb.len);
  q_buf_cleanup(&qb);
  return ok;
}

enum { R_QUERY, R_FEEDBACK, R_CHAT, NROUTES };

/* Whether the contract of route i allows body. */
static bool contract_allows(int i, const uint8_t *data, size_t size) {
  json_t *o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  bool ok = o && json_is_object(o) &&
            (i == R_QUERY      ? query_ok(o)
             : i == R_FEEDBACK ? feedback_ok(o)
                               : chat_ok(o));
  json_decref(o);
  return ok;
}

/* ---- the handlers, behind libmicrohttpd ------------------------------------- */

static const char *const paths[NROUTES] = {"/v1/query", "/v1/feedback",
                                           "/v1/chat/completions"};
static struct MHD_Daemon *daemon_;

/* One request's life, as the harness observes it. */
static struct {
  int accessed;  /* the access handler ran: a completion will follow */
  int completed; /* the completion callback ran */
  unsigned status;
  int responded;
} req;

static void note_reply(const gw_req_t *r) {
  if (r->responded && !req.responded) {
    req.responded = 1;
    req.status = r->status;
  }
}

/* server.c's access_cb for a JSON route, without the admission (the
 * principal is given) and with a deadline that has passed. */
static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
  gw_req_t *r = *con_cls;
  if (!r) {
    q_arena_t *arena = q_arena_new(8 << 20);
    FUZZ_CHECK(arena, "out of memory");
    r = q_arena_alloc(arena, sizeof *r);
    r->arena = arena;
    r->conn = conn;
    r->cfg = &cfg;
    r->t0 = q_now_s();
    r->start_ms = q_now_ms();
    http_init_ids(r);
    route_match_t m;
    FUZZ_CHECK(router_match(gw_routes, gw_nroutes, method, url, &m) == ROUTE_OK,
               "no route for %s", url);
    r->route = m.route;
    r->route_label = m.tmpl;
    r->method_label = "POST";
    r->deadline_ms = 1; /* long past: no downstream call is made */
    r->authenticated = 1;
    snprintf(r->principal.tenant_id, sizeof r->principal.tenant_id, "t1");
    snprintf(r->principal.user_id, sizeof r->principal.user_id, "key:k1");
    q_buf_init(&r->body, MAX_JSON);
    *con_cls = r;
    req.accessed = 1;
    return MHD_YES;
  }
  enum MHD_Result ret = MHD_YES;
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (!r->pending && q_buf_append(&r->body, upload_data, n) != 0)
      http_reject_err(r, Q_ETOOBIG, "JSON body too large"); /* as server.c does */
  } else if (r->async) {
    ret = r->async->resume(r); /* called again after MHD_resume_connection */
  } else {
    if (r->pending)
      http_reply_pending(r);
    else
      r->route->handle(r);
    if (!r->responded && !r->async)
      http_reply_error(r, Q_EINTERNAL, "the handler produced no reply");
    ret = r->queue_ok || (r->async && !r->responded) ? MHD_YES : MHD_NO;
  }
  note_reply(r);
  return ret;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  gw_req_t *r = *con_cls;
  req.completed = 1;
  if (!r)
    return;
  *con_cls = NULL;
  if (r->async)
    r->async->close(r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
  q_buf_cleanup(&r->body);
  q_arena_free(r->arena);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  q_log_init("fuzz", Q_LOG_ERROR);
  gw_metrics_init();
  for (int i = 0; i < NROUTES; i++) {
    route_match_t m;
    if (router_match(gw_routes, gw_nroutes, "POST", paths[i], &m) != ROUTE_OK ||
        m.route->body != BODY_JSON || !m.route->handle) {
      fprintf(stderr, "fuzz_json: POST %s is no longer a JSON route: update %s\n",
              paths[i], __FILE__);
      exit(1);
    }
  }
  /* The pipeline's admission control as the server starts it (default
   * pool): one request at a time here, so admission always answers "now". */
  daemon_ =
      query_start(&cfg) == 0
          ? MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME, 0, NULL,
                             NULL, access_cb, NULL, MHD_OPTION_NOTIFY_COMPLETED,
                             completed_cb, NULL, MHD_OPTION_END)
          : NULL;
  if (!daemon_) {
    fprintf(stderr, "fuzz_json: cannot start the query module or libmicrohttpd\n");
    exit(1);
  }
  return 0;
}

/* Sends body to path through the daemon; checks the one reply and returns
 * its status. */
static unsigned run_request(const char *path, bool sse, const uint8_t *data,
                            size_t size) {
  char head[512];
  int hn = snprintf(head, sizeof head,
                    "POST %s HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
                    "%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                    path, sse ? "Accept: text/event-stream\r\n" : "", size);
  size_t len = (size_t)hn + size;
  char *http = malloc(len);
  FUZZ_CHECK(http, "out of memory");
  memcpy(http, head, (size_t)hn);
  if (size)
    memcpy(http + hn, data, size);
  memset(&req, 0, sizeof req);

  /* The reply is read until the daemon closes the connection
   * (Connection: close) and the request has finished. */
  q_buf_t out;
  q_buf_init(&out, 4 * MAX_JSON);
  int spins =
      fuzz_mhd_exchange(daemon_, http, len, &out, &req.accessed, &req.completed, false);
  FUZZ_CHECK(spins < FUZZ_MHD_ROUNDS, "%s: the request never completed (%s)", path,
             req.responded ? "replied" : "no reply");
  free(http);

  /* Exactly one reply, the one the handler queued, with a JSON error. */
  FUZZ_CHECK(req.accessed && req.responded, "%s gave no reply", path);
  unsigned code = 0;
  char *text = out.data ? out.data : "";
  FUZZ_CHECK(sscanf(text, "HTTP/1.1 %u ", &code) == 1 && code == req.status,
             "%s queued %u, the client read %.40s", path, req.status, text);
  char *body = strstr(text, "\r\n\r\n");
  FUZZ_CHECK(body, "%s: the reply's head does not end", path);
  body += 4;
  size_t blen = out.len - (size_t)(body - text);
  json_error_t jerr;
  json_t *j = json_loadb(body, blen, 0, &jerr);
  FUZZ_CHECK(j && json_is_object(json_object_get(j, "error")),
             "%s: %u reply's body is not one JSON error (%s): %.200s", path, code,
             jerr.text, body);
  json_decref(j);
  q_buf_cleanup(&out);
  return code;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int i = 0; i < NROUTES; i++) {
    unsigned status = run_request(paths[i], i == R_QUERY && size % 2, data, size);
    FUZZ_CHECK(status == 400 || status == 413 || status == 504, "%s replied %u", paths[i],
               status);
    bool allowed = contract_allows(i, data, size);
    FUZZ_CHECK((status == 504) == allowed, "%s answered %u to a body the contract %s",
               paths[i], status, allowed ? "allows" : "forbids");
  }

  json_t *s = http_json_text((const char *)data, size);
  FUZZ_CHECK(s && json_is_string(s), "http_json_text gave no string");
  const char *v = json_string_value(s);
  size_t n = json_string_length(s);
  FUZZ_CHECK(q_valid_utf8(v, n), "http_json_text gave invalid UTF-8");
  FUZZ_CHECK(n >= size && n <= 3 * size, "%zu bytes became %zu", size, n);
  if (q_valid_utf8((const char *)data, size))
    FUZZ_CHECK(n == size && memcmp(v, data, size) == 0, "valid text was changed");
  char *dumped = json_dumps(s, JSON_ENCODE_ANY);
  FUZZ_CHECK(dumped, "the string does not serialise");
  free(dumped);
  json_decref(s);
  return 0;
}
