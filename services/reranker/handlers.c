/* handlers.c - quarry.v1.Reranker/Rerank: validate, score, keep the best
 * top_n (see handlers.h and scorer.c). */
#include "handlers.h"

#include "remote.h"
#include "scorer.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/validate.h"
#include "quarry/v1/reranker.pb-c.h"

#include <stdlib.h>
#include <string.h>

static q_err_t rerank_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  const Quarry__V1__RerankRequest *req = (const Quarry__V1__RerankRequest *)in;
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  size_t qlen = req->query ? strlen(req->query) : 0;
  size_t n = req->n_passages;

  if (q_is_blank(req->query, strlen(req->query))) {
    q_grpc_ctx_errorf(ctx, "query is required");
    return Q_EINVAL;
  }
  if (qlen > Q_LIMIT_QUERY_BYTES) {
    q_grpc_ctx_errorf(ctx, "query is %zu bytes; at most %d allowed", qlen,
                      Q_LIMIT_QUERY_BYTES);
    return Q_EINVAL;
  }
  if (n > Q_LIMIT_RERANK_PASSAGES) {
    q_grpc_ctx_errorf(ctx, "passages has %zu entries; at most %d allowed", n,
                      Q_LIMIT_RERANK_PASSAGES);
    return Q_EINVAL;
  }
  int32_t top_n = req->top_n ? req->top_n : Q_RERANKER_DEFAULT_TOP_N;
  if (top_n < 1 || top_n > Q_LIMIT_GENERATE_PASSAGES) {
    q_grpc_ctx_errorf(ctx, "top_n must be between 1 and %d (0: %d)",
                      Q_LIMIT_GENERATE_PASSAGES, Q_RERANKER_DEFAULT_TOP_N);
    return Q_EINVAL;
  }

  scorer_passage_t *in_p = n ? q_arena_alloc(a, n * sizeof *in_p) : NULL;
  scorer_result_t *res = n ? q_arena_alloc(a, n * sizeof *res) : NULL;
  if (n && (!in_p || !res)) {
    q_grpc_ctx_errorf(ctx, "request too large");
    return Q_ERESOURCE;
  }
  for (size_t i = 0; i < n; i++) {
    const Quarry__V1__Passage *p = req->passages[i];
    size_t len = p->text ? strlen(p->text) : 0;
    if (len > Q_LIMIT_PASSAGE_TEXT_BYTES) {
      q_grpc_ctx_errorf(ctx, "passages[%zu].text is %zu bytes; at most %d allowed", i,
                        len, Q_LIMIT_PASSAGE_TEXT_BYTES);
      return Q_EINVAL;
    }
    in_p[i] = (scorer_passage_t){p->text, len, p->score};
  }
  /* A configured rerank API first (ud, remote.h); the built-in scorer when
   * there is none or every provider failed. */
  char rerr[512] = "";
  q_err_t remote_rc =
      ud && n ? remote_rank(ud, req->query, qlen, in_p, n, res, rerr, sizeof rerr)
              : Q_EUNAVAIL;
  if (remote_rc && ud && n)
    q_log_warn("rerank providers failed; using the built-in scorer", "{s:s}", "error",
               rerr);
  if (remote_rc && scorer_rank(req->query, qlen, in_p, n, res) != 0) {
    q_grpc_ctx_errorf(ctx, "out of memory while scoring");
    return Q_ERESOURCE;
  } else if (!ud && scorer_rank(req->query, qlen, in_p, n, res) != 0) {
    q_grpc_ctx_errorf(ctx, "out of memory while scoring");
    return Q_ERESOURCE;
  }

  size_t nout = n < (size_t)top_n ? n : (size_t)top_n;
  Quarry__V1__RerankResponse *resp = q_arena_alloc(a, sizeof *resp);
  Quarry__V1__Passage **ps = nout ? q_arena_alloc(a, nout * sizeof *ps) : NULL;
  Quarry__V1__Passage *pv = nout ? q_arena_alloc(a, nout * sizeof *pv) : NULL;
  if (!resp || (nout && (!ps || !pv))) {
    q_grpc_ctx_errorf(ctx, "result too large");
    return Q_ERESOURCE;
  }
  quarry__v1__rerank_response__init(resp);
  for (size_t i = 0; i < nout; i++) {
    /* The passage as it came, with the rerank score; the request's strings
     * live in the same arena as the reply. */
    pv[i] = *req->passages[res[i].index];
    pv[i].score = (float)res[i].score;
    ps[i] = &pv[i];
  }
  resp->n_passages = nout;
  resp->passages = ps;
  *out = &resp->base;
  return 0;
}

const q_grpc_method_t reranker_methods[] = {
    {"Rerank", Q_GRPC_UNARY, rerank_cb},
};
const size_t reranker_nmethods = sizeof reranker_methods / sizeof reranker_methods[0];
