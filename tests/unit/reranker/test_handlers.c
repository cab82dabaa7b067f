/* test_handlers.c - quarry.v1.Reranker/Rerank over loopback gRPC. */
#include "handlers.h"
#include "grpctest.h"

#include "quarry/error.h"
#include "quarry/v1/reranker.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static grpctest_t rpc;
static char err[512];

static void setup(void) {
  grpctest_start(&rpc, &quarry__v1__reranker__descriptor, reranker_methods,
                 reranker_nmethods, NULL);
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
