/* test_handlers.c - quarry.v1.Retriever over loopback gRPC with an
 * in-memory index (no store): replies and request validation. */
#include "handlers.h"
#include "grpctest.h"

#include "quarry/error.h"
#include "quarry/v1/retriever.pb-c.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static grpctest_t rpc;
static index_t *idx;
static retriever_t ret;
static char err[512];

static void setup(void) {
  idx = index_new(0);
  cr_assert_eq(retriever_init(&ret, idx, NULL, 5, 20), 0);
  grpctest_start(&rpc, &quarry__v1__retriever__descriptor, retriever_methods,
                 retriever_nmethods, &ret);
}

static void teardown(void) {
  grpctest_stop(&rpc);
  retriever_cleanup(&ret);
  index_free(idx);
}

TestSuite(handlers, .init = setup, .fini = teardown, .timeout = 30);

static int upsert(Quarry__V1__UpsertRequest *req, Quarry__V1__UpsertResponse **resp) {
  return grpctest_call(&rpc, q_rpc_retriever_upsert, req, resp, err, sizeof err);
}

static int search(Quarry__V1__SearchRequest *req, Quarry__V1__SearchResponse **resp) {
  return grpctest_call(&rpc, q_rpc_retriever_search, req, resp, err, sizeof err);
}

static Quarry__V1__Chunk chunk(const char *id, const char *doc, const char *text) {
  Quarry__V1__Chunk c = QUARRY__V1__CHUNK__INIT;
  c.chunk_id = (char *)id;
  c.doc_id = (char *)doc;
  c.text = (char *)text;
  return c;
}

static void seed(void) {
  static float e0[] = {1, 0}, e1[] = {0, 1};
  Quarry__V1__Chunk c0 = chunk("d:1:0", "d", "The refund policy allows returns");
  Quarry__V1__Chunk c1 = chunk("d:1:1", "d", "Shipping is free above fifty euros");
  c0.title = "Policies";
  c0.page = 3;
  c0.ordinal = 0;
  c1.ordinal = 1;
  c0.embedding = e0;
  c0.n_embedding = 2;
  c1.embedding = e1;
  c1.n_embedding = 2;
  Quarry__V1__Chunk *cs[] = {&c0, &c1};
  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  req.tenant_id = "acme";
  req.chunks = cs;
  req.n_chunks = 2;
  Quarry__V1__UpsertResponse *resp;
  cr_assert_eq(upsert(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->upserted, 2);
  cr_assert_eq(resp->retired, 0);
}

Test(handlers, upsert_then_search_returns_passages_with_scores) {
  seed();
  float q[] = {0.2f, 1};
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = "acme";
  req.query = "refund policy";
  req.query_embedding = q;
  req.n_query_embedding = 2;
  Quarry__V1__SearchResponse *resp;
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->lexical_only, 0);
  cr_assert_eq(resp->n_passages, 2);
  Quarry__V1__Passage *p = resp->passages[0];
  cr_assert_str_eq(p->chunk_id, "d:1:0"); /* 1/61 + 1/62 beats 1/61 */
  cr_assert_str_eq(p->doc_id, "d");
  cr_assert_str_eq(p->title, "Policies");
  cr_assert_eq(p->page, 3);
  cr_assert_gt(p->lexical_score, 0);
  cr_assert_float_eq(p->score, 1.0 / 61 + 1.0 / 62, 1e-6);
  cr_assert_float_eq(resp->passages[1]->dense_score, 1.0 / sqrt(1.04), 1e-5);
  cr_assert_float_eq(resp->passages[1]->lexical_score, 0, 1e-9);

  /* no embedding: lexical only; another tenant sees nothing */
  req.n_query_embedding = 0;
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->lexical_only, 1);
  cr_assert_eq(resp->n_passages, 1);
  req.tenant_id = "other";
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 0);
}

Test(handlers, stats_and_replace) {
  seed();
  Quarry__V1__Chunk c = chunk("d:2:0", "d", "new text");
  Quarry__V1__Chunk *cs[] = {&c};
  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  req.tenant_id = "acme";
  req.replace_doc_id = "d";
  req.chunks = cs;
  req.n_chunks = 1;
  Quarry__V1__UpsertResponse *resp;
  cr_assert_eq(upsert(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->retired, 2);

  Quarry__V1__StatsRequest sr = QUARRY__V1__STATS_REQUEST__INIT;
  sr.tenant_id = "acme";
  Quarry__V1__StatsResponse *st;
  cr_assert_eq(grpctest_call(&rpc, q_rpc_retriever_stats, &sr, &st, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(st->chunks, 1);
  cr_assert_eq(st->documents, 1);
  cr_assert_eq(st->terms, 2);
}

Test(handlers, tenant_comes_from_the_chunks_when_the_request_has_none) {
  Quarry__V1__Chunk c = chunk("x", "d", "hello world");
  c.tenant_id = "acme";
  Quarry__V1__Chunk *cs[] = {&c};
  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  req.chunks = cs;
  req.n_chunks = 1;
  Quarry__V1__UpsertResponse *resp;
  cr_assert_eq(upsert(&req, &resp), 0, "%s", err);
  index_stats_t st;
  index_stats(idx, "acme", &st);
  cr_assert_eq(st.chunks, 1);
  /* a chunk naming another tenant than the request is refused */
  req.tenant_id = "evil";
  cr_assert_eq(upsert(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "chunks[0].tenant_id"), "%s", err);
}

/* Each case: one bad field, the error must name it. */
Test(handlers, upsert_validation) {
  static char big[Q_LIMIT_PASSAGE_TEXT_BYTES + 2], longid[Q_LIMIT_CHUNK_ID_BYTES + 2];
  memset(big, 'a', sizeof big - 1);
  memset(longid, 'i', sizeof longid - 1);
  static float e3[] = {1, 2, 3};
  seed(); /* stores 2-dimensional vectors */

  struct {
    const char *id, *doc, *text, *title;
    float *emb;
    size_t dim;
    int32_t ordinal;
    const char *want;
  } cases[] = {
      {"", "d", "t", NULL, NULL, 0, 0, "chunks[0].chunk_id: required"},
      {longid, "d", "t", NULL, NULL, 0, 0, "chunks[0].chunk_id: 129 bytes"},
      {"c", "", "t", NULL, NULL, 0, 0, "chunks[0].doc_id: required"},
      {"c", "d", "", NULL, NULL, 0, 0, "chunks[0].text: required"},
      {"c", "d", big, NULL, NULL, 0, 0, "chunks[0].text: 65537 bytes"},
      {"c", "d", "bad \xff utf8", NULL, NULL, 0, 0, "chunks[0].text: not valid UTF-8"},
      {"c", "d", "t", NULL, NULL, 0, -1, "must not be negative"},
      {"c", "d", "t", NULL, e3, 3, 0, "3 dimensions; the index holds 2"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Quarry__V1__Chunk c = chunk(cases[i].id, cases[i].doc, cases[i].text);
    c.title = (char *)(cases[i].title ? cases[i].title : "");
    c.embedding = cases[i].emb;
    c.n_embedding = cases[i].dim;
    c.ordinal = cases[i].ordinal;
    Quarry__V1__Chunk *cs[] = {&c};
    Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
    req.tenant_id = "acme";
    req.chunks = cs;
    req.n_chunks = 1;
    Quarry__V1__UpsertResponse *resp;
    cr_assert_eq(upsert(&req, &resp), Q_EINVAL, "case %zu", i);
    cr_assert(strstr(err, cases[i].want), "case %zu: %s", i, err);
  }

  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  Quarry__V1__UpsertResponse *resp;
  req.tenant_id = "acme";
  cr_assert_eq(upsert(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "chunks is empty"), "%s", err);

  Quarry__V1__Chunk a = chunk("same", "d", "x"), b = chunk("same", "d", "y");
  Quarry__V1__Chunk *two[] = {&a, &b};
  req.chunks = two;
  req.n_chunks = 2;
  cr_assert_eq(upsert(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "appears more than once"), "%s", err);

  req.tenant_id = "";
  req.n_chunks = 1;
  cr_assert_eq(upsert(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "tenant_id: required"), "%s", err);

  static Quarry__V1__Chunk many[Q_LIMIT_UPSERT_CHUNKS + 1];
  static Quarry__V1__Chunk *manyp[Q_LIMIT_UPSERT_CHUNKS + 1];
  for (int i = 0; i <= Q_LIMIT_UPSERT_CHUNKS; i++) {
    many[i] = chunk("c", "d", "x");
    manyp[i] = &many[i];
  }
  req.tenant_id = "acme";
  req.chunks = manyp;
  req.n_chunks = Q_LIMIT_UPSERT_CHUNKS + 1;
  cr_assert_eq(upsert(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "at most 4096"), "%s", err);

  /* nothing of the refused requests reached the index */
  index_stats_t st;
  index_stats(idx, "acme", &st);
  cr_assert_eq(st.chunks, 2);
}

Test(handlers, search_validation) {
  seed();
  static char big[Q_LIMIT_QUERY_BYTES + 2];
  memset(big, 'q', sizeof big - 1);
  float q3[] = {1, 2, 3}, q0[] = {0, 0};
  Quarry__V1__SearchResponse *resp;

  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = "acme";
  req.query = "";
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "query is empty"), "%s", err);
  req.query = "  \n ";
  cr_assert_eq(search(&req, &resp), Q_EINVAL);

  req.query = big;
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
  char want[64];
  snprintf(want, sizeof want, "query is %d bytes", Q_LIMIT_QUERY_BYTES + 1);
  cr_assert(strstr(err, want), "%s", err);

  req.query = "refund";
  req.tenant_id = "";
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "tenant_id: required"), "%s", err);

  req.tenant_id = "acme";
  req.query_embedding = q3;
  req.n_query_embedding = 3;
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "query_embedding has 3 dimensions"), "%s", err);
  req.query_embedding = q0;
  req.n_query_embedding = 2;
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "all zeros"), "%s", err);

  req.n_query_embedding = 0;
  req.top_k = 21;
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "top_k"), "%s", err);
  req.top_k = -1;
  cr_assert_eq(search(&req, &resp), Q_EINVAL);

  /* an embedding alone is a valid query */
  float q2[] = {0, 1};
  req.top_k = 1;
  req.query = "";
  req.query_embedding = q2;
  req.n_query_embedding = 2;
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 1);
  cr_assert_str_eq(resp->passages[0]->chunk_id, "d:1:1");
}

Test(handlers, default_top_k_applies) {
  char ids[12][16];
  Quarry__V1__Chunk cs[12];
  Quarry__V1__Chunk *cp[12];
  for (int i = 0; i < 12; i++) {
    snprintf(ids[i], sizeof ids[i], "c%d", i);
    cs[i] = chunk(ids[i], "d", "common word");
    cp[i] = &cs[i];
  }
  Quarry__V1__UpsertRequest up = QUARRY__V1__UPSERT_REQUEST__INIT;
  up.tenant_id = "acme";
  up.chunks = cp;
  up.n_chunks = 12;
  Quarry__V1__UpsertResponse *ur;
  cr_assert_eq(upsert(&up, &ur), 0, "%s", err);
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = "acme";
  req.query = "common";
  Quarry__V1__SearchResponse *resp;
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 5); /* the configured default */
  req.top_k = 20;
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 12);
}
