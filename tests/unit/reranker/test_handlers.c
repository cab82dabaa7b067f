/* test_handlers.c - quarry.v1.Reranker/Rerank over loopback gRPC. */
#include "handlers.h"
#include "grpctest.h"
#include "method.h"

#include "quarry/error.h"
#include "quarry/v1/reranker.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static grpctest_t rpc;
static char err[512];
static reranker_t state;

/* The feature model with the weights of the old fixed formula, so scores
 * can be computed by hand: 0.45 coverage + 0.20 proximity + 0.10 phrase +
 * 0.25 retrieval. */
static void setup(void) {
  memset(&state, 0, sizeof state);
  state.method = method_find("features", 8);
  snprintf(state.model.name, sizeof state.model.name, "hand");
  state.model.w[FEAT_COVERAGE] = 0.45;
  state.model.w[FEAT_PROXIMITY] = 0.20;
  state.model.w[FEAT_PHRASE] = 0.10;
  state.model.w[FEAT_RETRIEVAL] = 0.25;
  grpctest_start(&rpc, &quarry__v1__reranker__descriptor, reranker_methods,
                 reranker_nmethods, &state);
}

static void teardown(void) {
  grpctest_stop(&rpc);
}

TestSuite(rerank, .init = setup, .fini = teardown, .timeout = 30);

static int rerank(Quarry__V1__RerankRequest *req, Quarry__V1__RerankResponse **resp) {
  return grpctest_call(&rpc, q_rpc_reranker_rerank, req, resp, err, sizeof err);
}

static Quarry__V1__Passage passage(const char *id, const char *text, float score) {
  Quarry__V1__Passage p = QUARRY__V1__PASSAGE__INIT;
  p.chunk_id = (char *)id;
  p.doc_id = "doc";
  p.text = (char *)text;
  p.score = score;
  return p;
}

Test(rerank, reorders_and_keeps_top_n) {
  Quarry__V1__Passage p[] = {
      passage("a", "unrelated words", 0.9f),
      passage("b", "How to reset your password", 0.1f),
      passage("c", "password policy; reset yearly", 0.5f),
  };
  p[1].lexical_score = 2.5f;
  p[1].dense_score = 0.7f;
  p[1].page = 4;
  Quarry__V1__Passage *pp[] = {&p[0], &p[1], &p[2]};
  Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
  req.query = "reset password";
  req.passages = pp;
  req.n_passages = 3;
  req.top_n = 2;
  Quarry__V1__RerankResponse *resp;
  cr_assert_eq(rerank(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 2);
  cr_assert_str_eq(resp->method, "features", "the response names the method");
  cr_assert_eq(resp->n_features, 0, "features only when asked for");
  cr_assert_str_eq(resp->passages[0]->chunk_id, "b");
  cr_assert_str_eq(resp->passages[1]->chunk_id, "c");
  /* b: coverage 1, proximity 1, phrase 1, retrieval 0 -> 0.75
   * c: coverage 1, proximity 1/2, no phrase, retrieval 0.5 -> 0.675 */
  cr_assert_float_eq(resp->passages[0]->score, 0.75, 1e-6);
  cr_assert_float_eq(resp->passages[1]->score, 0.675, 1e-6);
  /* everything else travels unchanged */
  cr_assert_float_eq(resp->passages[0]->lexical_score, 2.5, 1e-6);
  cr_assert_float_eq(resp->passages[0]->dense_score, 0.7, 1e-6);
  cr_assert_eq(resp->passages[0]->page, 4);
  cr_assert_str_eq(resp->passages[0]->text, "How to reset your password");
}

Test(rerank, default_top_n_is_8) {
  Quarry__V1__Passage p[12];
  Quarry__V1__Passage *pp[12];
  for (int i = 0; i < 12; i++) {
    p[i] = passage("x", "some text", (float)i);
    pp[i] = &p[i];
  }
  Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
  req.query = "text";
  req.passages = pp;
  req.n_passages = 12;
  Quarry__V1__RerankResponse *resp;
  cr_assert_eq(rerank(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 8);
  /* highest incoming; one-term query: coverage 1, proximity 1, no phrase */
  cr_assert_float_eq(resp->passages[0]->score, 0.45 + 0.20 + 0.25, 1e-6);
  /* no passages: an empty answer */
  req.n_passages = 0;
  cr_assert_eq(rerank(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 0);
}

Test(rerank, validation) {
  static char big[Q_LIMIT_QUERY_BYTES + 2], bigtext[Q_LIMIT_PASSAGE_TEXT_BYTES + 2];
  memset(big, 'q', sizeof big - 1);
  memset(bigtext, 't', sizeof bigtext - 1);
  Quarry__V1__RerankResponse *resp;
  Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;

  req.query = "";
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "query is required"), "%s", err);
  req.query = big;
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);
  char want[64];
  snprintf(want, sizeof want, "query is %d bytes", Q_LIMIT_QUERY_BYTES + 1);
  cr_assert(strstr(err, want), "%s", err);

  req.query = "ok";
  req.top_n = Q_LIMIT_GENERATE_PASSAGES + 1;
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "top_n"), "%s", err);
  req.top_n = -3;
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);

  req.top_n = 0;
  static Quarry__V1__Passage many[Q_LIMIT_RERANK_PASSAGES + 1];
  static Quarry__V1__Passage *manyp[Q_LIMIT_RERANK_PASSAGES + 1];
  for (int i = 0; i <= Q_LIMIT_RERANK_PASSAGES; i++) {
    many[i] = passage("x", "y", 0);
    manyp[i] = &many[i];
  }
  req.passages = manyp;
  req.n_passages = Q_LIMIT_RERANK_PASSAGES + 1;
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "at most 1000"), "%s", err);

  Quarry__V1__Passage one = passage("x", bigtext, 0);
  Quarry__V1__Passage *onep[] = {&one};
  req.passages = onep;
  req.n_passages = 1;
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "passages[0].text"), "%s", err);
}

static Quarry__V1__RerankRequest three(Quarry__V1__Passage *p, Quarry__V1__Passage **pp) {
  p[0] = passage("a", "unrelated words", 0.9f);
  p[1] = passage("b", "How to reset your password", 0.1f);
  p[2] = passage("c", "password policy; reset yearly", 0.5f);
  for (int i = 0; i < 3; i++)
    pp[i] = &p[i];
  Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
  req.query = "reset password";
  req.passages = pp;
  req.n_passages = 3;
  return req;
}

Test(rerank, method_none_keeps_the_retrieval_order) {
  Quarry__V1__Passage p[3], *pp[3];
  Quarry__V1__RerankRequest req = three(p, pp);
  req.method = "none";
  Quarry__V1__RerankResponse *resp;
  cr_assert_eq(rerank(&req, &resp), 0, "%s", err);
  cr_assert_str_eq(resp->method, "none");
  cr_assert_eq(resp->n_passages, 3);
  cr_assert_str_eq(resp->passages[0]->chunk_id, "a");
  cr_assert_str_eq(resp->passages[1]->chunk_id, "b");
  cr_assert_str_eq(resp->passages[2]->chunk_id, "c");
  cr_assert_float_eq(resp->passages[0]->score, 0.9, 1e-6, "the incoming score");
}

Test(rerank, configured_method_is_the_default) {
  state.method = method_find("none", 4);
  Quarry__V1__Passage p[3], *pp[3];
  Quarry__V1__RerankRequest req = three(p, pp);
  Quarry__V1__RerankResponse *resp;
  cr_assert_eq(rerank(&req, &resp), 0, "%s", err);
  cr_assert_str_eq(resp->method, "none");
  cr_assert_str_eq(resp->passages[0]->chunk_id, "a");
  req.method = "features";
  cr_assert_eq(rerank(&req, &resp), 0, "%s", err);
  cr_assert_str_eq(resp->method, "features");
  cr_assert_str_eq(resp->passages[0]->chunk_id, "b");
}

Test(rerank, unknown_method_is_invalid_argument) {
  Quarry__V1__Passage p[3], *pp[3];
  Quarry__V1__RerankRequest req = three(p, pp);
  req.method = "cross-encoder";
  Quarry__V1__RerankResponse *resp;
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "method \"cross-encoder\" is unknown"), "%s", err);
  static char longname[4096];
  memset(longname, 'm', sizeof longname - 1);
  req.method = longname;
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);
  cr_assert_lt(strlen(err), 200, "the name is not echoed whole: %s", err);
}

Test(rerank, return_features_gives_every_passage_in_request_order) {
  Quarry__V1__Passage p[3], *pp[3];
  Quarry__V1__RerankRequest req = three(p, pp);
  req.return_features = true;
  req.method = "none"; /* features come whatever the method */
  req.top_n = 1;
  p[1].title = "Password reset";
  Quarry__V1__RerankResponse *resp;
  cr_assert_eq(rerank(&req, &resp), 0, "%s", err);
  cr_assert_eq(resp->n_passages, 1);
  cr_assert_eq(resp->n_feature_names, FEATURES_N);
  for (int f = 0; f < FEATURES_N; f++)
    cr_assert_str_eq(resp->feature_names[f], features_names[f]);
  cr_assert_eq(resp->n_features, 3, "all of them, not only top_n");
  for (int i = 0; i < 3; i++)
    cr_assert_eq(resp->features[i]->n_values, FEATURES_N);
  /* request order: a has none of the terms, b has all and the title */
  cr_assert_float_eq(resp->features[0]->values[FEAT_COVERAGE], 0.0, 1e-9);
  cr_assert_float_eq(resp->features[1]->values[FEAT_COVERAGE], 1.0, 1e-9);
  cr_assert_float_eq(resp->features[1]->values[FEAT_PHRASE], 1.0, 1e-9);
  cr_assert_float_eq(resp->features[1]->values[FEAT_BM25_TITLE], 1.0, 1e-9);
  cr_assert_float_eq(resp->features[0]->values[FEAT_RETRIEVAL], 1.0, 1e-9);
  cr_assert_float_eq(resp->features[0]->values[FEAT_RANK], 1.0, 1e-9);
}

Test(rerank, long_titles_are_refused) {
  static char title[Q_LIMIT_TITLE_BYTES + 2];
  memset(title, 't', sizeof title - 1);
  Quarry__V1__Passage p[3], *pp[3];
  Quarry__V1__RerankRequest req = three(p, pp);
  p[2].title = title;
  Quarry__V1__RerankResponse *resp;
  cr_assert_eq(rerank(&req, &resp), Q_EINVAL);
  cr_assert(strstr(err, "passages[2].title"), "%s", err);
}
