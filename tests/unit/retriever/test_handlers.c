/* test_handlers.c - quarry.v1.Retriever over loopback gRPC with the embedded
 * engine in memory (no store): replies, request validation, modes, the
 * fusion policy and Delete. */
#include "handlers.h"
#include "grpctest.h"

#include "quarry/error.h"
#include "quarry/v1/retriever.pb-c.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static grpctest_t rpc;
static engine_t eng;
static retriever_t ret;
static char err[512];

static void setup(void) {
  engine_config_t cfg = {0};
  cr_assert_eq(engine_open_ops(&eng, &engine_embedded_ops, &cfg, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(retriever_init(&ret, &eng, 5, 20), 0);
  grpctest_start(&rpc, &quarry__v1__retriever__descriptor, retriever_methods,
                 retriever_nmethods, &ret);
}

static void teardown(void) {
  grpctest_stop(&rpc);
  retriever_cleanup(&ret);
  engine_close(&eng);
}

static int64_t chunks_of(const char *tenant) {
  engine_stats_t st;
  cr_assert_eq(eng.ops->stats(eng.st, tenant, &st, err, sizeof err), 0);
  return st.chunks;
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
  c0.start_offset = 120;
  c0.end_offset = 152;
  c0.text_offset = 0;
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
  cr_assert_eq(p->start_offset, 120); /* the chunk's place in its document */
  cr_assert_eq(p->end_offset, 152);
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
  cr_assert_eq(chunks_of("acme"), 1);
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
  cr_assert_eq(chunks_of("acme"), 2);
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

static Quarry__V1__SearchResponse *search_mode(const char *mode, const char *query,
                                               float *emb, size_t dim,
                                               const char *model) {
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = "acme";
  req.query = (char *)query;
  req.query_embedding = emb;
  req.n_query_embedding = dim;
  req.mode = (char *)mode;
  req.embed_model = (char *)model;
  req.top_k = 10;
  Quarry__V1__SearchResponse *resp = NULL;
  if (search(&req, &resp) != 0)
    return NULL;
  return resp;
}

Test(handlers, modes_choose_the_lists) {
  seed(); /* d:1:0 "refund policy", vector (1,0); d:1:1 "shipping", vector (0,1) */
  float q[] = {0, 1};
  /* lexical: BM25 only, even with an embedding */
  Quarry__V1__SearchResponse *r = search_mode("lexical", "refund", q, 2, "");
  cr_assert_not_null(r, "%s", err);
  cr_assert_str_eq(r->mode, "lexical");
  cr_assert_str_eq(r->fusion, "none");
  cr_assert_eq(r->lexical_only, 1);
  cr_assert_eq(r->n_passages, 1);
  cr_assert_str_eq(r->passages[0]->chunk_id, "d:1:0");
  /* dense: vectors only, even with a query text */
  r = search_mode("dense", "refund", q, 2, "");
  cr_assert_not_null(r, "%s", err);
  cr_assert_str_eq(r->mode, "dense");
  cr_assert_eq(r->n_passages, 2);
  cr_assert_str_eq(r->passages[0]->chunk_id, "d:1:1");
  cr_assert_float_eq(r->passages[0]->dense_score, 1.0, 1e-6);
  cr_assert_float_eq(r->passages[0]->lexical_score, 0.0, 1e-9);
  /* hybrid: both, fused with plain RRF when no rule matches */
  r = search_mode("hybrid", "refund", q, 2, "some-model");
  cr_assert_not_null(r, "%s", err);
  cr_assert_str_eq(r->mode, "hybrid");
  cr_assert(strstr(r->fusion, "rrf k=60"), "%s", r->fusion);
  cr_assert_eq(r->n_passages, 2);
  /* d:1:0 is first in BM25 and second in dense; d:1:1 first in dense only */
  cr_assert_str_eq(r->passages[0]->chunk_id, "d:1:0");
  cr_assert_float_eq(r->passages[0]->score, 1.0 / 61 + 1.0 / 62, 1e-6);
  /* hybrid without an embedding runs lexical and says so */
  r = search_mode("hybrid", "refund", NULL, 0, "");
  cr_assert_not_null(r, "%s", err);
  cr_assert_str_eq(r->mode, "lexical");
  cr_assert_eq(r->lexical_only, 1);
  /* no mode: what is given decides */
  r = search_mode("", "", q, 2, "");
  cr_assert_not_null(r, "%s", err);
  cr_assert_str_eq(r->mode, "dense");
}

Test(handlers, mode_validation) {
  seed();
  float q[] = {0, 1};
  cr_assert_null(search_mode("semantic", "refund", q, 2, ""));
  cr_assert(strstr(err, "mode \"semantic\" is none of lexical, dense, hybrid"), "%s",
            err);
  cr_assert_null(search_mode("dense", "refund", NULL, 0, ""));
  cr_assert(strstr(err, "mode dense needs a query_embedding"), "%s", err);
  cr_assert_null(search_mode("lexical", "", q, 2, ""));
  cr_assert(strstr(err, "mode lexical needs a query text"), "%s", err);
  static char model[Q_LIMIT_MODEL_BYTES + 2];
  memset(model, 'm', sizeof model - 1);
  cr_assert_null(search_mode("hybrid", "refund", q, 2, model));
  cr_assert(strstr(err, "embed_model"), "%s", err);
}

Test(handlers, fusion_policy_follows_the_embedder) {
  seed();
  char why[256];
  cr_assert_eq(search_policy_parse("weak-=rrf:0,half-=weighted:50,*=rrf:100", &ret.policy,
                                   why, sizeof why),
               0, "%s", why);
  float q[] = {0, 1};
  /* a weak embedder: the lexical ranking is kept, dense-only hits follow */
  Quarry__V1__SearchResponse *r = search_mode("hybrid", "refund", q, 2, "weak-384");
  cr_assert_not_null(r, "%s", err);
  cr_assert(strstr(r->fusion, "lexical fallback: embedder weak-384 is weak"), "%s",
            r->fusion);
  cr_assert_eq(r->n_passages, 2);
  cr_assert_str_eq(r->passages[0]->chunk_id, "d:1:0");
  cr_assert_str_eq(r->passages[1]->chunk_id, "d:1:1");
  /* weighted fusion of normalised scores */
  r = search_mode("hybrid", "refund", q, 2, "half-1");
  cr_assert_not_null(r, "%s", err);
  cr_assert(strstr(r->fusion, "weighted w_lex=1.00 w_dense=0.50"), "%s", r->fusion);
  /* d:1:0: lexical 1 (only lexical hit) + 0.5 * 0 (worst dense); d:1:1: 0.5 * 1 */
  cr_assert_str_eq(r->passages[0]->chunk_id, "d:1:0");
  cr_assert_float_eq(r->passages[0]->score, 1.0, 1e-6);
  cr_assert_float_eq(r->passages[1]->score, 0.5, 1e-6);
  /* "*" catches the rest, an unnamed embedder too */
  r = search_mode("hybrid", "refund", q, 2, "");
  cr_assert_not_null(r, "%s", err);
  cr_assert(strstr(r->fusion, "rrf k=60 w_lex=1.00 w_dense=1.00 (embedder unnamed"), "%s",
            r->fusion);
}

Test(handlers, fusion_policy_parse_errors) {
  search_policy_t p = {0};
  char why[256];
  cr_assert_eq(search_policy_parse("", &p, why, sizeof why), 0);
  cr_assert_eq(p.nrules, 0);
  cr_assert_eq(search_policy_parse("a=rrf", &p, why, sizeof why), Q_EINVAL);
  cr_assert(strstr(why, "not PREFIX=METHOD:PERCENT"), "%s", why);
  cr_assert_eq(search_policy_parse("a=max:10", &p, why, sizeof why), Q_EINVAL);
  cr_assert(strstr(why, "neither rrf nor weighted"), "%s", why);
  cr_assert_eq(search_policy_parse("a=rrf:-1", &p, why, sizeof why), Q_EINVAL);
  cr_assert_eq(search_policy_parse("a=rrf:10x", &p, why, sizeof why), Q_EINVAL);
  cr_assert_eq(search_policy_parse("a=rrf:1,,b=rrf:2", &p, why, sizeof why), Q_EINVAL);
  cr_assert(strstr(why, "empty"), "%s", why);
  cr_assert_eq(
      search_policy_parse("quarry-hash-=rrf:0,*=weighted:30", &p, why, sizeof why), 0);
  cr_assert_eq(p.nrules, 2);
  cr_assert_eq(search_policy_rule(&p, "quarry-hash-384")->w_dense_pct, 0);
  cr_assert_eq(search_policy_rule(&p, "text-embedding-3-small")->method, FUSION_WEIGHTED);
  cr_assert_eq(search_policy_rule(&p, NULL)->w_dense_pct, 30);
}

Test(handlers, delete_retires_a_document) {
  seed();
  Quarry__V1__DeleteRequest req = QUARRY__V1__DELETE_REQUEST__INIT;
  Quarry__V1__DeleteResponse *resp;
  req.tenant_id = "other";
  req.doc_id = "d";
  /* another tenant cannot delete acme's document */
  cr_assert_eq(grpctest_call(&rpc, q_rpc_retriever_delete, &req, &resp, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(resp->retired, 0);
  cr_assert_eq(chunks_of("acme"), 2);
  req.tenant_id = "acme";
  cr_assert_eq(grpctest_call(&rpc, q_rpc_retriever_delete, &req, &resp, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(resp->retired, 2);
  cr_assert_eq(chunks_of("acme"), 0);
  /* neither mode finds it any more */
  float q[] = {1, 0};
  Quarry__V1__SearchResponse *r = search_mode("hybrid", "refund", q, 2, "");
  cr_assert_not_null(r, "%s", err);
  cr_assert_eq(r->n_passages, 0);
  req.doc_id = "";
  cr_assert_eq(grpctest_call(&rpc, q_rpc_retriever_delete, &req, &resp, err, sizeof err),
               Q_EINVAL);
  cr_assert(strstr(err, "doc_id: required"), "%s", err);
}

Test(handlers, upsert_with_replace_and_no_chunks_deletes) {
  seed();
  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  req.tenant_id = "acme";
  req.replace_doc_id = "d";
  Quarry__V1__UpsertResponse *resp;
  cr_assert_eq(upsert(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->upserted, 0);
  cr_assert_eq(resp->retired, 2);
  cr_assert_eq(chunks_of("acme"), 0);
}

Test(handlers, stage_and_commit_are_checked_and_need_an_engine_that_stages) {
  seed();
  Quarry__V1__Chunk c = chunk("d:2:0", "d", "staged text");
  Quarry__V1__Chunk *cs[1] = {&c};
  Quarry__V1__UpsertResponse *resp;
  struct {
    int stage;
    const char *replace;
    int32_t version, count;
    size_t n;
    const char *want;
  } bad[] = {
      {1, "d", 0, 0, 1, "stage takes chunks, without replace_doc_id"},
      {1, "", 0, 0, 0, "stage takes chunks"},
      {0, "", 2, 1, 0, "commit_version takes replace_doc_id"},
      {0, "d", 2, 1, 1, "commit_version takes replace_doc_id, commit_chunks"},
      {0, "d", 2, 0, 0, "commit_chunks 1.."},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
    req.tenant_id = "acme";
    req.stage = bad[i].stage;
    req.replace_doc_id = (char *)bad[i].replace;
    req.commit_version = bad[i].version;
    req.commit_chunks = bad[i].count;
    req.n_chunks = bad[i].n;
    req.chunks = cs;
    cr_assert_eq(upsert(&req, &resp), Q_EINVAL, "case %zu", i);
    cr_assert(strstr(err, bad[i].want), "case %zu: %s", i, err);
  }
  /* this engine has no database: it cannot stage, and says so */
  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  req.tenant_id = "acme";
  req.stage = 1;
  req.n_chunks = 1;
  req.chunks = cs;
  cr_assert_eq(upsert(&req, &resp), Q_EUNIMPL, "%s", err);
  cr_assert_eq(chunks_of("acme"), 2, "nothing staged became searchable");
}

Test(handlers, max_passages_per_doc) {
  char ids[6][16];
  Quarry__V1__Chunk cs[6];
  Quarry__V1__Chunk *cp[6];
  for (int i = 0; i < 6; i++) {
    snprintf(ids[i], sizeof ids[i], "c%d", i);
    cs[i] = chunk(ids[i], i < 4 ? "big" : "small", "common word");
    cp[i] = &cs[i];
  }
  Quarry__V1__UpsertRequest up = QUARRY__V1__UPSERT_REQUEST__INIT;
  up.tenant_id = "acme";
  up.chunks = cp;
  up.n_chunks = 6;
  Quarry__V1__UpsertResponse *ur;
  cr_assert_eq(upsert(&up, &ur), 0, "%s", err);
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = "acme";
  req.query = "common";
  req.top_k = 10;
  req.max_passages_per_doc = 1;
  Quarry__V1__SearchResponse *resp;
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 2);
  cr_assert_str_neq(resp->passages[0]->doc_id, resp->passages[1]->doc_id);
  req.max_passages_per_doc = 3;
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 5);
  req.max_passages_per_doc = -1;
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
}

Test(handlers, search_filter_and_upsert_metadata) {
  Quarry__V1__Chunk a = chunk("a:1:0", "a", "refund rules for legal");
  Quarry__V1__Chunk b = chunk("b:1:0", "b", "refund rules for engineering");
  a.content_type = "application/pdf";
  a.metadata = "{\"team\":\"legal\"}";
  b.content_type = "text/plain";
  b.metadata = "{\"team\":\"eng\",\"year\":2024}";
  b.created_at = 1700000000;
  Quarry__V1__Chunk *cs[] = {&a, &b};
  Quarry__V1__UpsertRequest up = QUARRY__V1__UPSERT_REQUEST__INIT;
  up.tenant_id = "acme";
  up.chunks = cs;
  up.n_chunks = 2;
  Quarry__V1__UpsertResponse *ur;
  cr_assert_eq(upsert(&up, &ur), 0, "%s", err);

  Quarry__V1__SearchResponse *resp;
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = "acme";
  req.query = "refund rules";
  req.filter = "{\"field\":\"meta.team\",\"eq\":\"eng\"}";
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 1);
  cr_assert_str_eq(resp->passages[0]->doc_id, "b");
  req.filter = "{\"field\":\"created_at\",\"lt\":\"2023-11-14T22:13:20Z\"}";
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 0);
  req.filter = "{\"field\":\"content_type\",\"in\":[\"application/pdf\"]}";
  cr_assert_eq(search(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 1);
  cr_assert_str_eq(resp->passages[0]->doc_id, "a");

  /* a malformed filter is INVALID_ARGUMENT naming the problem */
  req.filter = "{\"or\":[{\"field\":\"meta.team\",\"regex\":\"e.*\"}]}";
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "filter.or[0]: unknown operator \"regex\""), "%s", err);
  req.filter = "{\"field\":";
  cr_assert_eq(search(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "filter: not JSON"), "%s", err);

  /* metadata that is not user metadata is refused, nothing stored */
  b.metadata = "{\"nested\":{\"x\":1}}";
  cr_assert_eq(upsert(&up, &ur), Q_EINVAL);
  cr_assert(strstr(err, "chunks[1].metadata: metadata \"nested\""), "%s", err);
  b.metadata = "";
  b.created_at = -5;
  cr_assert_eq(upsert(&up, &ur), Q_EINVAL);
  cr_assert(strstr(err, "created_at must not be negative"), "%s", err);
}
