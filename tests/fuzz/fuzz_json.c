/* fuzz_json.c - JSON request bodies: POST /v1/query and POST /v1/feedback
 * run through their real handlers (found in the gateway's route table, so
 * a renamed handler needs no change here), and http_json_text, which turns
 * any bytes into a JSON string.
 *
 * A handler is given a request whose deadline has passed, so a body it
 * accepts ends at the first downstream call (504) and no call is made; a
 * body it refuses ends in 400. The request has no libmicrohttpd connection:
 * libmicrohttpd refuses to queue a reply on a NULL connection (MHD_NO),
 * which the reply functions record as an unsent reply.
 *
 * Input: the body, given to each handler. Checked: every handler replies
 * exactly once, with 400, 413 or 504 - never a 500 ("no reply" or a failed
 * serialisation) - and accepts (504) exactly the bodies that the contract
 * of docs/api/openapi.yaml, restated below from the document, allows: a
 * body the handler refuses though the contract allows it, or accepts
 * though the contract forbids it, is a crash. */
#include <jansson.h>

#include "fuzz.h"
#include "gateway.h"
#include "http_util.h"
#include "router.h"
#include "routes.h"

#include "quarry/arena.h"
#include "quarry/buf.h"
#include "quarry/limits.h"
#include "quarry/log.h"
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

/* QueryRequest: query 1..Q_LIMIT_QUERY_BYTES bytes, not only white space;
 * top_k 1..Q_LIMIT_TOP_K_MAX; nothing else. */
static bool query_ok(json_t *o) {
  static const char *const keys[] = {"query", "top_k", NULL};
  if (!only_keys(o, keys) || !string_ok(o, "query", true, 1, Q_LIMIT_QUERY_BYTES) ||
      !int_ok(o, "top_k", false, 1, Q_LIMIT_TOP_K_MAX))
    return false;
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

/* Whether the contract of route i (0: query, 1: feedback) allows body. */
static bool contract_allows(int i, const uint8_t *data, size_t size) {
  json_t *o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  bool ok = o && json_is_object(o) && (i == 0 ? query_ok(o) : feedback_ok(o));
  json_decref(o);
  return ok;
}

/* ---- the handlers ----------------------------------------------------------- */

static const char *const paths[] = {"/v1/query", "/v1/feedback"};
static const route_t *routes[2];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  q_log_init("fuzz", Q_LOG_ERROR);
  gw_metrics_init();
  for (int i = 0; i < 2; i++) {
    route_match_t m;
    if (router_match(gw_routes, gw_nroutes, "POST", paths[i], &m) != ROUTE_OK ||
        m.route->body != BODY_JSON || !m.route->handle) {
      fprintf(stderr, "fuzz_json: POST %s is no longer a JSON route: update %s\n",
              paths[i], __FILE__);
      exit(1);
    }
    routes[i] = m.route;
  }
  return 0;
}

/* Runs route's handler on the body; returns the reply's status. */
static unsigned run_handler(const route_t *route, const uint8_t *data, size_t size) {
  q_arena_t *arena = q_arena_new(8 << 20);
  FUZZ_CHECK(arena, "out of memory");
  gw_req_t *r = q_arena_alloc(arena, sizeof *r);
  r->arena = arena;
  r->cfg = &cfg;
  r->route = route;
  r->route_label = route->tmpl;
  r->method_label = "POST";
  r->deadline_ms = 1; /* long past: no downstream call is made */
  r->authenticated = 1;
  snprintf(r->principal.tenant_id, sizeof r->principal.tenant_id, "t1");
  snprintf(r->principal.user_id, sizeof r->principal.user_id, "key:k1");
  q_buf_init(&r->body, MAX_JSON);
  if (q_buf_append(&r->body, data, size) != 0)
    http_reply_error(r, Q_ETOOBIG, "JSON body too large"); /* as server.c does */
  else
    route->handle(r);
  FUZZ_CHECK(r->responded, "%s gave no reply", route->tmpl);
  FUZZ_CHECK(r->status == 400 || r->status == 413 || r->status == 504, "%s replied %u",
             route->tmpl, r->status);
  unsigned status = r->status;
  q_buf_cleanup(&r->body);
  q_arena_free(arena);
  return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int i = 0; i < 2; i++) {
    unsigned status = run_handler(routes[i], data, size);
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
