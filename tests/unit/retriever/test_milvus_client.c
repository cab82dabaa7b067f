/* test_milvus_client.c - the Milvus REST v2 client against
 * tests/fakes/milvus_fake.py, started on a free loopback port for each test:
 * the collection's schema and load, upsert, delete by filter, dense, BM25 and
 * hybrid search, tenant isolation (also with hostile ids and a server that
 * ignores the filter), error replies (HTTP 5xx/429/401, code != 0 on HTTP 200,
 * malformed and truncated bodies, slow replies) and the retries. */
#include "engine/milvus_client.h"
#include "engine/milvus_expr.h"

#include "loopback.h"
#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/http_client.h"
#include "quarry/trace.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define TOKEN "root:Milvus"
#define DIM 4
#define FAKE "tests/fakes/milvus_fake.py"

static pid_t fake_pid = -1;
static char dir[64];
static char base[128];
static milvus_client_t *cli;
static q_arena_t *arena;
static char err[512];

/* ---- the fake ---------------------------------------------------------------- */

static void fake_start(void) {
  q_http_global_init();
  snprintf(dir, sizeof dir, "/tmp/milvus-fake-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  char portfile[128];
  snprintf(portfile, sizeof portfile, "%s/port", dir);
  char *argv[] = {"/usr/bin/python3", FAKE,  "--port-file", portfile,
                  "--token",          TOKEN, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  int rc = posix_spawn(&fake_pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  cr_assert_eq(rc, 0, "cannot start %s", FAKE);
  int port = 0;
  for (int i = 0; i < 400 && port <= 0; i++) { /* up to 20 s on a loaded machine */
    FILE *f = fopen(portfile, "r");
    if (f) {
      if (fscanf(f, "%d", &port) != 1)
        port = 0;
      fclose(f);
    }
    if (port <= 0)
      usleep(50000);
  }
  cr_assert(port > 0, "the fake did not start");
  snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
}

static void fake_stop(void) {
  if (fake_pid > 0) {
    kill(fake_pid, SIGTERM);
    waitpid(fake_pid, NULL, 0);
    fake_pid = -1;
  }
  char path[128];
  snprintf(path, sizeof path, "%s/port", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/token", dir);
  unlink(path);
  rmdir(dir);
}

/* POSTs body (a JSON text) to the fake's path and returns the reply. */
static json_t *post(const char *path, const char *body, const char *auth) {
  char url[256];
  snprintf(url, sizeof url, "%s%s", base, path);
  json_t *b = json_loads(body, 0, NULL);
  cr_assert_not_null(b, "bad JSON in the test: %s", body);
  const char *headers[] = {auth, NULL};
  q_http_req_t req = {.url = url, .body = b, .headers = auth ? headers : NULL};
  long status = 0;
  json_t *reply = NULL;
  char e[256];
  cr_assert_eq(q_http_json(&req, &status, &reply, e, sizeof e), 0, "%s", e);
  json_decref(b);
  return reply;
}

static void fault(const char *json) {
  json_decref(post("/_fake/fault", json, NULL));
}

static json_t *stats(void) {
  char url[256];
  snprintf(url, sizeof url, "%s/_fake/stats", base);
  q_http_req_t req = {.method = "GET", .url = url};
  long status = 0;
  json_t *reply = NULL;
  char e[256];
  cr_assert_eq(q_http_json(&req, &status, &reply, e, sizeof e), 0, "%s", e);
  return reply;
}

/* Requests the fake has seen on path ("entities/search"). */
static int seen(const char *path) {
  json_t *s = stats();
  int n = (int)json_integer_value(json_object_get(json_object_get(s, "requests"), path));
  json_decref(s);
  return n;
}

/* The last body the fake received on path; the caller json_decref()s it. */
static json_t *last_body(const char *path) {
  json_t *s = stats();
  json_t *b = json_incref(json_object_get(json_object_get(s, "last"), path));
  json_decref(s);
  return b;
}

static void reset_counters(void) {
  json_decref(post("/_fake/reset", "{}", NULL));
}

static milvus_cfg_t cfg_default(void) {
  return (milvus_cfg_t){.url = base,
                        .token = TOKEN,
                        .dim = DIM,
                        .timeout_ms = 2000,
                        .max_attempts = 3,
                        .backoff_ms = 10,
                        .max_backoff_ms = 40};
}

static void setup(void) {
  fake_start();
  milvus_cfg_t cfg = cfg_default();
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0, "%s", err);
  arena = q_arena_new(1 << 20);
}

static void teardown(void) {
  milvus_client_free(cli);
  cli = NULL;
  q_arena_free(arena);
  fake_stop();
}

TestSuite(milvus, .init = setup, .fini = teardown, .timeout = 60);

/* ---- data --------------------------------------------------------------------- */

static const float V_X[DIM] = {1, 0, 0, 0};
static const float V_Y[DIM] = {0, 1, 0, 0};
static const float V_Z[DIM] = {0, 0, 1, 0};
static const float V_XY[DIM] = {0.9f, 0.1f, 0, 0};

static milvus_chunk_t chunk(const char *tenant, const char *doc, const char *id,
                            int64_t version, const char *text, const float *v) {
  return (milvus_chunk_t){.chunk_id = id,
                          .doc_id = doc,
                          .tenant_id = tenant,
                          .title = "Title",
                          .text = text,
                          .page = 1,
                          .ordinal = 0,
                          .version = version,
                          .created_ms = 1700000000000,
                          .content_type = "text/plain",
                          .metadata_json = "{\"lang\":\"en\"}",
                          .dense = v};
}

static void ensure(void) {
  cr_assert_eq(milvus_ensure_collection(cli, err, sizeof err), 0, "%s", err);
}

/* Tenant a: doc d1 (two chunks), doc d2; tenant b: doc d1 with the same ids'
 * shape, its own words. */
static void load_two_tenants(void) {
  ensure();
  milvus_chunk_t cs[] = {
      chunk("a", "d1", "a:d1:1:0", 1, "the capital of france is paris", V_X),
      chunk("a", "d1", "a:d1:1:1", 1, "paris has the eiffel tower", V_XY),
      chunk("a", "d2", "a:d2:1:0", 1, "berlin is the capital of germany", V_Y),
      chunk("b", "d1", "b:d1:1:0", 1, "secret paris plans of tenant b", V_X),
      chunk("b", "d3", "b:d3:1:0", 1, "rome is the capital of italy", V_Z),
  };
  cr_assert_eq(milvus_upsert(cli, cs, 5, err, sizeof err), 0, "%s", err);
}

static bool has_chunk(const milvus_hit_t *h, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(h[i].chunk_id, id) == 0)
      return true;
  return false;
}

/* ---- the collection --------------------------------------------------------------- */

Test(milvus, creates_the_collection_with_the_schema_and_indexes) {
  cr_assert(!milvus_ready(cli));
  ensure();
  cr_assert(milvus_ready(cli));
  json_t *b = last_body("collections/create");
  cr_assert_not_null(b);
  cr_assert_str_eq(json_string_value(json_object_get(b, "collectionName")),
                   "quarry_chunks");
  json_t *schema = json_object_get(b, "schema");
  cr_assert(json_is_false(json_object_get(schema, "enableDynamicField")));
  json_t *fields = json_object_get(schema, "fields"), *f;
  size_t i;
  int seen_fields = 0;
  json_array_foreach(fields, i, f) {
    const char *name = json_string_value(json_object_get(f, "fieldName"));
    const char *type = json_string_value(json_object_get(f, "dataType"));
    json_t *p = json_object_get(f, "elementTypeParams");
    if (strcmp(name, "chunk_id") == 0) {
      cr_assert(json_is_true(json_object_get(f, "isPrimary")));
      cr_assert_str_eq(type, "VarChar");
    } else if (strcmp(name, "tenant_id") == 0) {
      cr_assert(json_is_true(json_object_get(f, "isPartitionKey")));
    } else if (strcmp(name, "text") == 0) {
      cr_assert(json_is_true(json_object_get(p, "enable_analyzer")));
    } else if (strcmp(name, "access_groups") == 0) {
      cr_assert_str_eq(type, "Array");
      cr_assert_str_eq(json_string_value(json_object_get(f, "elementDataType")),
                       "VarChar");
      cr_assert_eq(json_integer_value(json_object_get(p, "max_capacity")),
                   MILVUS_ACCESS_GROUPS_MAX);
    } else if (strcmp(name, "dense") == 0) {
      cr_assert_str_eq(type, "FloatVector");
      cr_assert_eq(json_integer_value(json_object_get(p, "dim")), DIM);
    } else if (strcmp(name, "metadata") == 0) {
      cr_assert_str_eq(type, "JSON");
    }
    seen_fields++;
  }
  cr_assert_eq(seen_fields, 14);
  json_t *fn = json_array_get(json_object_get(schema, "functions"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(fn, "type")), "BM25");
  json_t *idx = json_object_get(b, "indexParams");
  cr_assert_str_eq(
      json_string_value(json_object_get(json_array_get(idx, 0), "indexType")), "HNSW");
  cr_assert_str_eq(
      json_string_value(json_object_get(json_array_get(idx, 0), "metricType")), "COSINE");
  cr_assert_str_eq(
      json_string_value(json_object_get(json_array_get(idx, 1), "indexType")),
      "SPARSE_INVERTED_INDEX");
  cr_assert_str_eq(
      json_string_value(json_object_get(json_array_get(idx, 1), "metricType")), "BM25");
  json_decref(b);

  /* A second ensure finds it and creates nothing. */
  ensure();
  cr_assert_eq(seen("collections/create"), 1);
  cr_assert_eq(seen("collections/describe"), 2);
}

Test(milvus, loads_a_released_collection_and_waits_for_it) {
  ensure();
  json_decref(post("/v2/vectordb/collections/release",
                   "{\"collectionName\":\"quarry_chunks\"}",
                   "Authorization: Bearer " TOKEN));
  cr_assert(!milvus_ready(cli));
  reset_counters();
  ensure();
  cr_assert_eq(seen("collections/load"), 1);
  cr_assert_geq(seen("collections/get_load_state"), 2); /* loading, then loaded */
  cr_assert(milvus_ready(cli));
}

Test(milvus, refuses_a_collection_with_another_schema_or_dim) {
  json_t *r = post("/v2/vectordb/collections/create",
                   "{\"collectionName\":\"quarry_chunks\",\"schema\":{\"fields\":["
                   "{\"fieldName\":\"id\",\"dataType\":\"Int64\",\"isPrimary\":true},"
                   "{\"fieldName\":\"v\",\"dataType\":\"FloatVector\","
                   "\"elementTypeParams\":{\"dim\":4}}]}}",
                   "Authorization: Bearer " TOKEN);
  cr_assert_eq(json_integer_value(json_object_get(r, "code")), 0);
  json_decref(r);
  cr_assert_eq(milvus_ensure_collection(cli, err, sizeof err), Q_ECONFLICT);
  cr_assert(strstr(err, "chunk_id"), "%s", err);

  /* Ours, but made for another embedder. */
  milvus_cfg_t cfg = cfg_default();
  cfg.collection = "other";
  cfg.dim = 8;
  milvus_client_t *c8;
  cr_assert_eq(milvus_client_new(&cfg, &c8, err, sizeof err), 0);
  cr_assert_eq(milvus_ensure_collection(c8, err, sizeof err), 0, "%s", err);
  milvus_client_free(c8);
  cfg.dim = DIM;
  cr_assert_eq(milvus_client_new(&cfg, &c8, err, sizeof err), 0);
  cr_assert_eq(milvus_ensure_collection(c8, err, sizeof err), Q_ECONFLICT);
  cr_assert(strstr(err, "dim 8"), "%s", err);
  milvus_client_free(c8);
}

Test(milvus, sends_the_database_name) {
  milvus_client_free(cli);
  milvus_cfg_t cfg = cfg_default();
  cfg.db = "quarry";
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0);
  ensure();
  json_t *b = last_body("collections/describe");
  cr_assert_str_eq(json_string_value(json_object_get(b, "dbName")), "quarry");
  json_decref(b);
}

/* ---- writes -------------------------------------------------------------------- */

Test(milvus, upsert_sends_every_field_and_replaces_by_chunk_id) {
  ensure();
  const char *groups[] = {"eng", "legal"};
  milvus_chunk_t c = chunk("a", "d1", "a:d1:1:0", 1, "hello world", V_X);
  c.access_groups = groups;
  c.n_access_groups = 2;
  c.page = 7;
  c.ordinal = 3;
  cr_assert_eq(milvus_upsert(cli, &c, 1, err, sizeof err), 0, "%s", err);
  json_t *b = last_body("entities/upsert");
  json_t *row = json_array_get(json_object_get(b, "data"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(row, "tenant_id")), "a");
  cr_assert_str_eq(json_string_value(json_object_get(row, "content_type")), "text/plain");
  cr_assert_eq(json_integer_value(json_object_get(row, "page")), 7);
  cr_assert_eq(json_integer_value(json_object_get(row, "ordinal")), 3);
  cr_assert_eq(json_integer_value(json_object_get(row, "created_ms")), 1700000000000);
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(row, "metadata"), "lang")), "en");
  cr_assert_eq(json_array_size(json_object_get(row, "access_groups")), 2);
  cr_assert_eq(json_array_size(json_object_get(row, "dense")), DIM);
  cr_assert_null(json_object_get(row, "sparse")); /* the BM25 function makes it */
  json_decref(b);

  c.text = "goodbye world";
  cr_assert_eq(milvus_upsert(cli, &c, 1, err, sizeof err), 0, "%s", err);
  cr_assert_eq(milvus_count(cli, "a", err, sizeof err), 1);
  milvus_query_t q = {.tenant = "a", .text = "goodbye", .top_k = 5};
  milvus_hit_t *h;
  size_t n;
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 1);
  q.text = "hello";
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 0);
}

Test(milvus, upsert_checks_every_chunk_before_sending) {
  ensure();
  reset_counters();
  float nan_v[DIM] = {NAN, 0, 0, 0};
  const char *groups[MILVUS_ACCESS_GROUPS_MAX + 1];
  for (int i = 0; i <= MILVUS_ACCESS_GROUPS_MAX; i++)
    groups[i] = "g";
  milvus_chunk_t good = chunk("a", "d1", "a:d1:1:0", 1, "ok", V_X);
  milvus_chunk_t bad[6];
  for (int i = 0; i < 6; i++)
    bad[i] = good;
  bad[0].dense = nan_v;
  bad[1].tenant_id = "";
  bad[2].access_groups = groups;
  bad[2].n_access_groups = MILVUS_ACCESS_GROUPS_MAX + 1;
  bad[3].metadata_json = "[1,2]";
  bad[4].doc_id = "\xff\xfe";
  bad[5].dense = NULL;
  for (int i = 0; i < 6; i++) {
    milvus_chunk_t two[2] = {good, bad[i]};
    cr_assert_eq(milvus_upsert(cli, two, 2, err, sizeof err), Q_EINVAL, "case %d", i);
    cr_assert(strstr(err, "chunk 1"), "case %d: %s", i, err);
  }
  cr_assert_eq(seen("entities/upsert"), 0);
}

Test(milvus, delete_doc_removes_one_document_of_one_tenant) {
  load_two_tenants();
  /* Version 2 of a/d1 upserted, then the old version deleted: the atomic
   * replace the engine does. */
  milvus_chunk_t v2 = chunk("a", "d1", "a:d1:2:0", 2, "paris revised", V_X);
  cr_assert_eq(milvus_upsert(cli, &v2, 1, err, sizeof err), 0, "%s", err);
  cr_assert_eq(milvus_count(cli, "a", err, sizeof err), 4);
  cr_assert_eq(milvus_delete_doc(cli, "a", "d1", 2, err, sizeof err), 0, "%s", err);
  cr_assert_eq(milvus_count(cli, "a", err, sizeof err), 2);
  json_t *b = last_body("entities/delete");
  cr_assert_str_eq(json_string_value(json_object_get(b, "filter")),
                   "tenant_id == \"a\" && doc_id == \"d1\" && version != 2");
  json_decref(b);

  cr_assert_eq(milvus_delete_doc(cli, "a", "d1", -1, err, sizeof err), 0, "%s", err);
  cr_assert_eq(milvus_count(cli, "a", err, sizeof err), 1);
  /* b's document d1 is untouched. */
  cr_assert_eq(milvus_count(cli, "b", err, sizeof err), 2);
}

/* ---- searches ------------------------------------------------------------------- */

Test(milvus, dense_search_ranks_by_cosine) {
  load_two_tenants();
  milvus_query_t q = {.tenant = "a", .dense = V_X, .top_k = 10};
  milvus_hit_t *h;
  size_t n;
  cr_assert_eq(milvus_search_dense(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(n, 3);
  cr_assert_str_eq(h[0].chunk_id, "a:d1:1:0");
  cr_assert_str_eq(h[0].doc_id, "d1");
  cr_assert_float_eq(h[0].score, 1.0, 1e-6);
  cr_assert_str_eq(h[1].chunk_id, "a:d1:1:1");
  cr_assert_float_eq(h[2].score, 0.0, 1e-6);
  json_t *b = last_body("entities/search");
  cr_assert_str_eq(json_string_value(json_object_get(b, "annsField")), "dense");
  cr_assert_str_eq(json_string_value(json_object_get(b, "filter")), "tenant_id == \"a\"");
  cr_assert_str_eq(json_string_value(
                       json_object_get(json_object_get(b, "searchParams"), "metricType")),
                   "COSINE");
  json_decref(b);

  q.top_k = 1;
  cr_assert_eq(milvus_search_dense(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(n, 1);
}

Test(milvus, text_search_is_bm25_over_the_tenants_text) {
  load_two_tenants();
  milvus_query_t q = {.tenant = "a", .text = "eiffel tower paris", .top_k = 10};
  milvus_hit_t *h;
  size_t n;
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 2);
  cr_assert_str_eq(h[0].chunk_id, "a:d1:1:1");
  cr_assert_str_eq(h[1].chunk_id, "a:d1:1:0");
  cr_assert(h[0].score > h[1].score && h[1].score > 0);
  json_t *b = last_body("entities/search");
  cr_assert_str_eq(json_string_value(json_object_get(b, "annsField")), "sparse");
  cr_assert_str_eq(json_string_value(json_array_get(json_object_get(b, "data"), 0)),
                   "eiffel tower paris");
  json_decref(b);
}

Test(milvus, hybrid_search_with_rrf_and_weights) {
  load_two_tenants();
  milvus_query_t q = {.tenant = "a", .text = "germany", .dense = V_X, .top_k = 10};
  milvus_rank_t rrf = {.kind = MILVUS_RANK_RRF, .rrf_k = 60};
  milvus_hit_t *h;
  size_t n;
  cr_assert_eq(milvus_hybrid_search(cli, &q, &rrf, arena, &h, &n, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(n, 3);
  /* a:d1:1:0 is first of the dense list; a:d2:1:0 first of the BM25 list
   * and third of the dense one, so it leads: 1/61 + 1/63. */
  cr_assert_str_eq(h[0].chunk_id, "a:d2:1:0");
  cr_assert_float_eq(h[0].score, 1.0 / 61 + 1.0 / 63, 1e-9);
  cr_assert_str_eq(h[1].chunk_id, "a:d1:1:0");
  cr_assert_float_eq(h[1].score, 1.0 / 61, 1e-9);
  json_t *b = last_body("entities/hybrid_search");
  json_t *rr = json_object_get(b, "rerank");
  cr_assert_str_eq(json_string_value(json_object_get(rr, "strategy")), "rrf");
  cr_assert_eq(json_integer_value(json_object_get(json_object_get(rr, "params"), "k")),
               60);
  json_t *s;
  size_t i;
  json_array_foreach(json_object_get(b, "search"), i, s) cr_assert_str_eq(
      json_string_value(json_object_get(s, "filter")), "tenant_id == \"a\"");
  json_decref(b);

  /* All weight on the dense list: its order. */
  milvus_rank_t w = {.kind = MILVUS_RANK_WEIGHTED, .dense_w = 1, .lexical_w = 0};
  cr_assert_eq(milvus_hybrid_search(cli, &q, &w, arena, &h, &n, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(h[0].chunk_id, "a:d1:1:0");
  cr_assert_float_eq(h[0].score, 1.0, 1e-6); /* (1 + cos) / 2 */
  w = (milvus_rank_t){.kind = MILVUS_RANK_WEIGHTED, .dense_w = 0, .lexical_w = 1};
  cr_assert_eq(milvus_hybrid_search(cli, &q, &w, arena, &h, &n, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(h[0].chunk_id, "a:d2:1:0");

  milvus_rank_t badk = {.kind = MILVUS_RANK_RRF, .rrf_k = 0};
  cr_assert_eq(milvus_hybrid_search(cli, &q, &badk, arena, &h, &n, err, sizeof err),
               Q_EINVAL);
  milvus_rank_t badw = {.kind = MILVUS_RANK_WEIGHTED, .dense_w = 1.5};
  cr_assert_eq(milvus_hybrid_search(cli, &q, &badw, arena, &h, &n, err, sizeof err),
               Q_EINVAL);
}

Test(milvus, filters_by_documents_and_access_groups) {
  ensure();
  const char *eng[] = {"eng"}, *legal[] = {"legal", "hr"};
  milvus_chunk_t cs[] = {chunk("a", "d1", "c1", 1, "alpha", V_X),
                         chunk("a", "d2", "c2", 1, "alpha", V_X),
                         chunk("a", "d3", "c3", 1, "alpha", V_X)};
  cs[0].access_groups = eng;
  cs[0].n_access_groups = 1;
  cs[1].access_groups = legal;
  cs[1].n_access_groups = 2;
  cr_assert_eq(milvus_upsert(cli, cs, 3, err, sizeof err), 0, "%s", err);
  const char *docs[] = {"d2", "d3"};
  milvus_filter_t f = {.doc_ids = docs, .n_doc_ids = 2};
  milvus_query_t q = {.tenant = "a", .filter = &f, .text = "alpha", .top_k = 10};
  milvus_hit_t *h;
  size_t n;
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 2);
  cr_assert(!has_chunk(h, n, "c1"));
  const char *want[] = {"hr", "ops"};
  f = (milvus_filter_t){.access_groups = want, .n_access_groups = 2};
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(h[0].chunk_id, "c2");
  json_t *b = last_body("entities/search");
  cr_assert_str_eq(
      json_string_value(json_object_get(b, "filter")),
      "tenant_id == \"a\" && ARRAY_CONTAINS_ANY(access_groups, [\"hr\", \"ops\"])");
  json_decref(b);
}

/* ---- tenant isolation -------------------------------------------------------------- */

Test(milvus, a_tenant_never_gets_another_tenants_chunks) {
  load_two_tenants();
  milvus_query_t q = {
      .tenant = "b", .text = "eiffel france paris", .dense = V_X, .top_k = 50};
  milvus_rank_t rrf = {.kind = MILVUS_RANK_RRF, .rrf_k = 60};
  milvus_hit_t *h;
  size_t n;
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(h[0].chunk_id, "b:d1:1:0");
  cr_assert_eq(milvus_search_dense(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(n, 2);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(strncmp(h[i].chunk_id, "b:", 2), 0, "%s", h[i].chunk_id);
  cr_assert_eq(milvus_hybrid_search(cli, &q, &rrf, arena, &h, &n, err, sizeof err), 0,
               "%s", err);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(strncmp(h[i].chunk_id, "b:", 2), 0, "%s", h[i].chunk_id);
  /* A tenant with no chunks gets nothing. */
  q.tenant = "c";
  cr_assert_eq(milvus_search_dense(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(n, 0);
}

Test(milvus, hostile_tenant_ids_stay_one_string) {
  load_two_tenants();
  const char *hostile[] = {
      "b\" || tenant_id != \"b",
      "b\\\" || tenant_id == \"a",
      "a\" || \"1\" == \"1",
      "x\\",
      "a\n|| tenant_id == \"a\"",
      "' || tenant_id == 'a",
      "a\\\\",
  };
  milvus_rank_t rrf = {.kind = MILVUS_RANK_RRF, .rrf_k = 60};
  for (size_t t = 0; t < sizeof hostile / sizeof hostile[0]; t++) {
    milvus_query_t q = {
        .tenant = hostile[t], .text = "paris capital", .dense = V_X, .top_k = 50};
    milvus_hit_t *h;
    size_t n;
    cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0,
                 "%zu: %s", t, err);
    cr_assert_eq(n, 0, "tenant %zu saw %zu chunks", t, n);
    cr_assert_eq(milvus_search_dense(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(n, 0, "tenant %zu saw %zu chunks", t, n);
    cr_assert_eq(milvus_hybrid_search(cli, &q, &rrf, arena, &h, &n, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(n, 0, "tenant %zu saw %zu chunks", t, n);
    cr_assert_eq(milvus_count(cli, hostile[t], err, sizeof err), 0, "%zu", t);
    cr_assert_eq(milvus_delete_doc(cli, hostile[t], "d1", -1, err, sizeof err), 0, "%s",
                 err);
  }
  cr_assert_eq(milvus_count(cli, "a", err, sizeof err), 3);
  cr_assert_eq(milvus_count(cli, "b", err, sizeof err), 2);
}

Test(milvus, hostile_ids_are_stored_and_deleted_exactly) {
  ensure();
  const char *ids[] = {"q\"uote", "back\\slash", "both\\\"\"\\", "new\nline\ttab",
                       "uni\xc3\xa9\\x41"};
  size_t nid = sizeof ids / sizeof ids[0];
  for (size_t i = 0; i < nid; i++) {
    milvus_chunk_t cs[] = {chunk("a", ids[i], ids[i], 1, "zeta", V_X),
                           chunk("b", ids[i], ids[i], 1, "zeta", V_X)};
    char bid[64];
    snprintf(bid, sizeof bid, "b-%zu", i);
    cs[1].chunk_id = bid;
    cr_assert_eq(milvus_upsert(cli, cs, 2, err, sizeof err), 0, "%s", err);
  }
  cr_assert_eq(milvus_count(cli, "a", err, sizeof err), (int64_t)nid);
  /* Restricting to one hostile doc id finds that chunk only. */
  for (size_t i = 0; i < nid; i++) {
    milvus_filter_t f = {.doc_ids = &ids[i], .n_doc_ids = 1};
    milvus_query_t q = {.tenant = "a", .filter = &f, .text = "zeta", .top_k = 10};
    milvus_hit_t *h;
    size_t n;
    cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(n, 1, "id %zu", i);
    cr_assert_str_eq(h[0].doc_id, ids[i]);
  }
  /* Deleting each in tenant b leaves a's intact. */
  for (size_t i = 0; i < nid; i++)
    cr_assert_eq(milvus_delete_doc(cli, "b", ids[i], -1, err, sizeof err), 0, "%s", err);
  cr_assert_eq(milvus_count(cli, "b", err, sizeof err), 0);
  cr_assert_eq(milvus_count(cli, "a", err, sizeof err), (int64_t)nid);
}

/* What the engine's replace, stats and ownership check use: counts and
 * deletes that keep named chunks out, document ids, and the lookup of chunk
 * ids stored under another tenant, with hostile values kept whole. */
Test(milvus, keep_lists_counts_doc_ids_and_foreign_chunks) {
  load_two_tenants();
  const char *keep[] = {"a:d1:1:1", "x\" || chunk_id != \"y"};
  milvus_keep_t k = {.chunk_ids = keep, .n_chunk_ids = 2};
  cr_assert_eq(milvus_count_where(cli, "a", "d1", &k, err, sizeof err), 1, "%s", err);
  cr_assert_eq(milvus_count_where(cli, "a", "d1", NULL, err, sizeof err), 2);
  milvus_keep_t first = {.first_chunks = true};
  cr_assert_eq(milvus_count_where(cli, "a", NULL, &first, err, sizeof err), 3);
  cr_assert_eq(milvus_count_where(cli, NULL, NULL, NULL, err, sizeof err), 5, "%s", err);
  cr_assert_eq(milvus_delete_where(cli, "a", "d1", &k, err, sizeof err), 0, "%s", err);
  cr_assert_eq(milvus_count_where(cli, "a", "d1", NULL, err, sizeof err), 1);
  cr_assert_eq(milvus_count(cli, "b", err, sizeof err), 2, "tenant b untouched");
  json_t *b = last_body("entities/delete");
  cr_assert(strstr(json_string_value(json_object_get(b, "filter")),
                   "chunk_id not in [\"a:d1:1:1\", \"x\\\" || chunk_id != \\\"y\"]"),
            "%s", json_string_value(json_object_get(b, "filter")));
  json_decref(b);
  const char **ids;
  size_t n;
  cr_assert_eq(milvus_doc_ids(cli, "a", 100, arena, &ids, &n, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(n, 2); /* a:d1:1:1 and a:d2:1:0 */
  const char *foreign;
  const char *probe[] = {"a:d2:1:0", "b:d3:1:0", "new"};
  cr_assert_eq(milvus_foreign_chunk(cli, "a", probe, 3, arena, &foreign, err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(foreign, "b:d3:1:0");
  cr_assert_eq(
      milvus_foreign_chunk(cli, "b", probe + 1, 2, arena, &foreign, err, sizeof err), 0,
      "%s", err);
  cr_assert_null(foreign);
  const char *hostile = "b\" || tenant_id != \"b";
  cr_assert_eq(
      milvus_foreign_chunk(cli, hostile, probe, 3, arena, &foreign, err, sizeof err), 0);
  cr_assert_str_eq(foreign, "a:d2:1:0"); /* every stored one is another's */
}

Test(milvus, quote_escapes_what_the_grammar_reads) {
  char out[64];
  cr_assert_eq(milvus_quote(out, sizeof out, "plain"), 0);
  cr_assert_str_eq(out, "\"plain\"");
  cr_assert_eq(milvus_quote(out, sizeof out, "a\"b\\c"), 0);
  cr_assert_str_eq(out, "\"a\\\"b\\\\c\"");
  cr_assert_eq(milvus_quote(out, sizeof out, "l1\nl2\t\x01"), 0);
  cr_assert_str_eq(out, "\"l1\\nl2\\t\\x01\"");
  cr_assert_eq(milvus_quote(out, sizeof out, "caf\xc3\xa9"), 0);
  cr_assert_str_eq(out, "\"caf\xc3\xa9\"");
  cr_assert_eq(milvus_quote(out, sizeof out, "bad\xff"), Q_EINVAL);
  cr_assert_eq(milvus_quote(out, 6, "toolong"), Q_ETOOBIG);
}

/* The expression of a filter, exactly: strings stay one literal whatever
 * they hold, dates become whole-second bounds in ms, meta keys are quoted,
 * and each condition keeps q_filter_match's meaning (milvus_expr.h). */
/* milvus_filter_expr of the filter json (which must parse): its code, the
 * expression in b (the caller cleans b up), the reason in err. */
static q_err_t expr_of(const char *json, q_buf_t *b) {
  q_filter_t *f = NULL;
  cr_assert_eq(q_filter_parse(json, strlen(json), &f, err, sizeof err), 0, "%s", err);
  q_buf_init(b, 1 << 16);
  q_err_t rc = milvus_filter_expr(f, b, err, sizeof err);
  q_filter_free(f);
  return rc;
}

static void expr_is(const char *json, const char *want) {
  q_buf_t b;
  cr_assert_eq(expr_of(json, &b), 0, "%s", err);
  cr_assert_str_eq(b.data, want, "%s\n  gave %s\n  want %s", json, b.data, want);
  q_buf_cleanup(&b);
}

Test(milvus, filters_become_milvus_expressions) {
  expr_is("{\"field\":\"title\",\"eq\":\"x\\\" || tenant_id != \\\"t2\\\\\"}",
          "title == \"x\\\" || tenant_id != \\\"t2\\\\\"");
  expr_is("{\"field\":\"doc_id\",\"in\":[\"a\",\"b\"]}", "doc_id in [\"a\", \"b\"]");
  expr_is("{\"field\":\"content_type\",\"eq\":\"text/plain\"}",
          "(content_type != \"\" and content_type == \"text/plain\")");
  expr_is("{\"field\":\"created_at\",\"gte\":\"2024-01-01\",\"lt\":1704153600.5}",
          "(created_ms != 0 and created_ms >= 1704067200000 and created_ms <= "
          "1704153600000)");
  expr_is("{\"field\":\"created_at\",\"in\":[1.5,2]}",
          "(created_ms != 0 and created_ms in [2000])");
  expr_is("{\"field\":\"created_at\",\"gt\":5,\"lt\":6}",
          "(created_ms != 0 and (created_ms == 0 and created_ms != 0))");
  expr_is("{\"field\":\"meta.team\",\"in\":[\"a\",3]}",
          "(metadata[\"team\"] in [\"a\", 3] or json_contains(metadata[\"team\"], "
          "\"a\"))");
  expr_is(
      "{\"field\":\"meta.team\",\"in\":[\"a\",\"b\"]}",
      "(metadata[\"team\"] in [\"a\", \"b\"] or json_contains_any(metadata[\"team\"], "
      "[\"a\", \"b\"]))");
  expr_is("{\"not\":{\"field\":\"meta.k.v-1\",\"eq\":true}}",
          "not ((metadata[\"k.v-1\"] == true))");
  expr_is(
      "{\"and\":[{\"field\":\"meta.n\",\"gt\":0.25},{\"or\":[{\"field\":\"meta.s\","
      "\"eq\":\"q\"},{\"field\":\"doc_id\",\"eq\":\"d\"}]}]}",
      "(((metadata[\"n\"] > 0.25) or (metadata[\"#dates\"][\"n\"] > 0.25)) and "
      "((metadata[\"s\"] == \"q\" or json_contains(metadata[\"s\"], \"q\")) or doc_id "
      "== \"d\"))");
}

/* Author and language are not in the collection: refused, never ignored. */
Test(milvus, filters_on_unstored_fields_are_refused) {
  const char *const filters[] = {
      "{\"field\":\"author\",\"eq\":\"Ada\"}",
      "{\"or\":[{\"field\":\"doc_id\",\"eq\":\"d\"},{\"field\":\"language\","
      "\"in\":[\"en\"]}]}"};
  for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
    q_buf_t b;
    cr_assert_eq(expr_of(filters[i], &b), Q_EUNIMPL, "%s", filters[i]);
    cr_assert(strstr(err, "does not store them"), "%s", err);
    q_buf_cleanup(&b);
  }
}

Test(milvus, stored_metadata_carries_dates_as_numbers) {
  char *out = NULL;
  cr_assert_eq(
      milvus_meta_stored("{\"d\":\"2024-01-01\",\"n\":3.0,\"f\":1.5,\"s\":\"x\"}", &out),
      0);
  cr_assert_str_eq(out, "{\"d\":\"2024-01-01\",\"n\":3,\"f\":1.5,\"s\":\"x\",\"#dates\":{"
                        "\"d\":1704067200}}");
  free(out);
  cr_assert_eq(milvus_meta_stored(NULL, &out), 0);
  cr_assert_str_eq(out, "{}");
  free(out);
  cr_assert_eq(milvus_meta_stored("[1]", &out), Q_EINVAL);
  cr_assert_eq(milvus_created_ms(0), 0);
  cr_assert_eq(milvus_created_ms(1700000000), INT64_C(1700000000000));
}

Test(milvus, hits_of_another_tenant_are_dropped_when_the_server_ignores_the_filter) {
  load_two_tenants();
  fault("{\"mode\":\"leak\",\"times\":3}");
  milvus_query_t q = {.tenant = "b", .text = "paris capital", .dense = V_X, .top_k = 50};
  milvus_rank_t rrf = {.kind = MILVUS_RANK_RRF, .rrf_k = 60};
  milvus_hit_t *h;
  size_t n;
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 2); /* of five matching rows, a's three are dropped */
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(strncmp(h[i].chunk_id, "b:", 2), 0, "%s", h[i].chunk_id);
  cr_assert_eq(milvus_search_dense(cli, &q, arena, &h, &n, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(n, 2);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(strncmp(h[i].chunk_id, "b:", 2), 0, "%s", h[i].chunk_id);
  cr_assert_eq(milvus_hybrid_search(cli, &q, &rrf, arena, &h, &n, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(n, 2);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(strncmp(h[i].chunk_id, "b:", 2), 0, "%s", h[i].chunk_id);
}

/* ---- errors and retries -------------------------------------------------------------
 */

static q_err_t one_search(void) {
  milvus_query_t q = {.tenant = "a", .dense = V_X, .top_k = 5};
  milvus_hit_t *h;
  size_t n;
  return milvus_search_dense(cli, &q, arena, &h, &n, err, sizeof err);
}

Test(milvus, retries_http_5xx_and_429_then_succeeds) {
  load_two_tenants();
  reset_counters();
  fault("{\"mode\":\"http500\",\"path\":\"entities/search\"}");
  fault("{\"mode\":\"http429\",\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), 0, "%s", err);
  cr_assert_eq(seen("entities/search"), 3);
}

Test(milvus, gives_up_after_max_attempts) {
  load_two_tenants();
  reset_counters();
  fault("{\"mode\":\"http503\",\"times\":10,\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), Q_EUNAVAIL);
  cr_assert(strstr(err, "HTTP 503"), "%s", err);
  cr_assert_eq(seen("entities/search"), 3);
}

Test(milvus, reads_the_code_on_http_200_and_retries_rate_limits_only) {
  load_two_tenants();
  reset_counters();
  fault("{\"mode\":\"code\",\"code\":8,\"times\":2,\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), 0, "%s", err);
  cr_assert_eq(seen("entities/search"), 3);

  reset_counters();
  fault("{\"mode\":\"code\",\"code\":8,\"times\":5,\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), Q_ERESOURCE);
  cr_assert(strstr(err, "code 8"), "%s", err);

  reset_counters();
  fault("{\"mode\":\"code\",\"code\":1100,\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), Q_EINVAL);
  cr_assert(strstr(err, "code 1100"), "%s", err);
  cr_assert_eq(seen("entities/search"), 1);

  reset_counters();
  fault("{\"mode\":\"code\",\"code\":100,\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), Q_ENOTFOUND);
  cr_assert_eq(seen("entities/search"), 1);

  /* A real error of the fake: the collection is not loaded (101). */
  json_decref(post("/v2/vectordb/collections/release",
                   "{\"collectionName\":\"quarry_chunks\"}",
                   "Authorization: Bearer " TOKEN));
  reset_counters();
  cr_assert_eq(one_search(), Q_EUNAVAIL);
  cr_assert(strstr(err, "code 101"), "%s", err);
  cr_assert_eq(seen("entities/search"), 1);
}

Test(milvus, malformed_replies_fail_without_retry) {
  load_two_tenants();
  reset_counters();
  fault("{\"mode\":\"malformed\",\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), Q_EUNAVAIL);
  cr_assert(strstr(err, "malformed"), "%s", err);
  fault("{\"mode\":\"nocode\",\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), Q_EUNAVAIL);
  cr_assert(strstr(err, "malformed"), "%s", err);
  cr_assert_eq(seen("entities/search"), 2);
}

Test(milvus, a_truncated_reply_is_retried) {
  load_two_tenants();
  reset_counters();
  fault("{\"mode\":\"truncated\",\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), 0, "%s", err);
  cr_assert_eq(seen("entities/search"), 2);
  fault("{\"mode\":\"truncated\",\"times\":5,\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), Q_EUNAVAIL);
}

Test(milvus, a_slow_reply_times_out_and_is_not_retried) {
  load_two_tenants();
  milvus_client_free(cli);
  milvus_cfg_t cfg = cfg_default();
  cfg.timeout_ms = 300;
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0);
  reset_counters();
  fault("{\"mode\":\"slow\",\"delay_ms\":1500,\"path\":\"entities/search\"}");
  int64_t t0 = q_now_ms();
  cr_assert_eq(one_search(), Q_ETIMEDOUT, "%s", err);
  cr_assert_lt(q_now_ms() - t0, 1200);
  cr_assert_eq(seen("entities/search"), 1);
  /* Slow but within the timeout is fine. */
  fault("{\"mode\":\"slow\",\"delay_ms\":50,\"path\":\"entities/search\"}");
  cr_assert_eq(one_search(), 0, "%s", err);
}

Test(milvus, retries_stop_at_the_callers_deadline) {
  load_two_tenants();
  milvus_client_free(cli);
  milvus_cfg_t cfg = cfg_default();
  cfg.max_attempts = 10;
  cfg.backoff_ms = 200;
  cfg.max_backoff_ms = 200;
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0);
  reset_counters();
  fault("{\"mode\":\"http500\",\"times\":20,\"path\":\"entities/search\"}");
  int64_t t0 = q_now_ms();
  q_trace_set(NULL, t0 + 500);
  q_err_t rc = one_search();
  q_trace_clear();
  /* Unavailable when the next wait would pass the deadline; timed out when
   * the last attempt itself ran into it. */
  cr_assert(rc == Q_EUNAVAIL || rc == Q_ETIMEDOUT, "%s", q_err_name(rc));
  /* Waits never pass the deadline and an attempt's timeout is capped by it;
   * the slack is for a loaded machine. Without the deadline, ten attempts
   * would take about 1.4 s of waits. */
  int64_t took = q_now_ms() - t0;
  cr_assert_lt(took, 1000, "%lld ms", (long long)took);
  int n = seen("entities/search");
  cr_assert(n >= 1 && n <= 5, "%d attempts", n);
}

Test(milvus, auth_failures_are_not_retried) {
  milvus_client_free(cli);
  milvus_cfg_t cfg = cfg_default();
  cfg.token = "root:wrong";
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0);
  cr_assert_eq(milvus_ensure_collection(cli, err, sizeof err), Q_EUNAUTH);
  cr_assert(strstr(err, "HTTP 401"), "%s", err);
  cr_assert_eq(seen("collections/has"), 1);
  cr_assert(!milvus_ready(cli));

  /* The right token, but the server says 401 once: still not retried. */
  milvus_client_free(cli);
  cfg = cfg_default();
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0);
  fault("{\"mode\":\"auth\"}");
  cr_assert_eq(milvus_ensure_collection(cli, err, sizeof err), Q_EUNAUTH);
  ensure();
}

Test(milvus, reads_the_token_from_a_file) {
  char path[128];
  snprintf(path, sizeof path, "%s/token", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(TOKEN "\n", f);
  fclose(f);
  milvus_client_free(cli);
  milvus_cfg_t cfg = cfg_default();
  cfg.token = NULL;
  cfg.token_file = path;
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0, "%s", err);
  ensure();
  milvus_client_t *c2;
  cfg.token_file = "/nonexistent/milvus-token";
  cr_assert_eq(milvus_client_new(&cfg, &c2, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "/nonexistent/milvus-token"), "%s", err);
}

Test(milvus, an_unreachable_server_is_retried_then_unavailable) {
  milvus_client_free(cli);
  milvus_cfg_t cfg = cfg_default();
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", loopback_free_port());
  cfg.url = url;
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0);
  int64_t t0 = q_now_ms();
  cr_assert_eq(milvus_ensure_collection(cli, err, sizeof err), Q_EUNAVAIL);
  /* three attempts, waits of 5..10 and 10..20 ms between them */
  cr_assert_geq(q_now_ms() - t0, 15);
  cr_assert(!milvus_ready(cli));
}

Test(milvus, backoff_doubles_with_jitter_up_to_the_cap) {
  milvus_client_free(cli);
  milvus_cfg_t cfg = cfg_default();
  cfg.backoff_ms = 100;
  cfg.max_backoff_ms = 1000;
  cr_assert_eq(milvus_client_new(&cfg, &cli, err, sizeof err), 0);
  int want[] = {100, 200, 400, 800, 1000, 1000};
  for (int r = 1; r <= 6; r++) {
    bool varied = false;
    int first = milvus_backoff_ms(cli, r);
    for (int i = 0; i < 200; i++) {
      int w = milvus_backoff_ms(cli, r);
      cr_assert(w >= want[r - 1] / 2 && w <= want[r - 1], "retry %d: %d", r, w);
      varied |= w != first;
    }
    cr_assert(varied, "retry %d: no jitter", r);
  }
  cr_assert(milvus_code_retriable(8) && milvus_code_retriable(1807) &&
            milvus_code_retriable(1));
  cr_assert(!milvus_code_retriable(1100) && !milvus_code_retriable(100) &&
            !milvus_code_retriable(1800));
}

Test(milvus, rejects_bad_settings_and_queries) {
  milvus_client_t *c2;
  milvus_cfg_t cfg = cfg_default();
  cfg.url = "ftp://x";
  cr_assert_eq(milvus_client_new(&cfg, &c2, err, sizeof err), Q_EINVAL);
  cfg.url = "httpx://x";
  cr_assert_eq(milvus_client_new(&cfg, &c2, err, sizeof err), Q_EINVAL);
  cfg = cfg_default();
  cfg.dim = 0;
  cr_assert_eq(milvus_client_new(&cfg, &c2, err, sizeof err), Q_EINVAL);
  cfg = cfg_default();
  cfg.collection = "bad name\"";
  cr_assert_eq(milvus_client_new(&cfg, &c2, err, sizeof err), Q_EINVAL);
  cfg = cfg_default();
  cfg.token = "a\r\nX-Evil: 1";
  cr_assert_eq(milvus_client_new(&cfg, &c2, err, sizeof err), Q_EINVAL);

  reset_counters();
  milvus_hit_t *h;
  size_t n;
  milvus_query_t q = {.tenant = "", .text = "x", .dense = V_X, .top_k = 5};
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), Q_EINVAL);
  q = (milvus_query_t){.tenant = "a", .text = "   ", .top_k = 5};
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), Q_EINVAL);
  q = (milvus_query_t){.tenant = "a", .text = "x", .top_k = 0};
  cr_assert_eq(milvus_search_text(cli, &q, arena, &h, &n, err, sizeof err), Q_EINVAL);
  q = (milvus_query_t){.tenant = "a", .top_k = 5};
  cr_assert_eq(milvus_search_dense(cli, &q, arena, &h, &n, err, sizeof err), Q_EINVAL);
  cr_assert_eq(milvus_delete_doc(cli, "a", "", -1, err, sizeof err), Q_EINVAL);
  cr_assert_eq(seen("entities/search") + seen("entities/delete"), 0);
}
