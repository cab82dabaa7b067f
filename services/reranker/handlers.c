/* handlers.c - quarry.v1.Reranker/Rerank: validate, compute the features
 * when needed, rank with the requested or configured method (method.h),
 * keep the best top_n (see handlers.h). */
#include "handlers.h"

#include "features.h"
#include "method.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/validate.h"
#include "quarry/v1/reranker.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The feature vectors of every input passage, in input order. */
static q_err_t put_features(Quarry__V1__RerankResponse *resp, q_arena_t *a,
                            const double *x, size_t n) {
  resp->feature_names = q_arena_alloc(a, FEATURES_N * sizeof *resp->feature_names);
  resp->features = n ? q_arena_alloc(a, n * sizeof *resp->features) : NULL;
  Quarry__V1__RerankFeatures *fv = n ? q_arena_alloc(a, n * sizeof *fv) : NULL;
  double *vals = n ? q_arena_alloc(a, n * FEATURES_N * sizeof *vals) : NULL;
  if (!resp->feature_names || (n && (!resp->features || !fv || !vals)))
    return Q_ERESOURCE;
  for (int f = 0; f < FEATURES_N; f++)
    resp->feature_names[f] = (char *)features_names[f];
  resp->n_feature_names = FEATURES_N;
  if (n)
    memcpy(vals, x, n * FEATURES_N * sizeof *vals);
  for (size_t i = 0; i < n; i++) {
    quarry__v1__rerank_features__init(&fv[i]);
    fv[i].values = vals + i * FEATURES_N;
    fv[i].n_values = FEATURES_N;
    resp->features[i] = &fv[i];
  }
  resp->n_features = n;
  return 0;
}

static q_err_t rerank_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  const reranker_t *r = ud;
  const Quarry__V1__RerankRequest *req = (const Quarry__V1__RerankRequest *)in;
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  size_t qlen = req->query ? strlen(req->query) : 0;
  size_t n = req->n_passages;
  char err[512];

  if (q_is_blank(req->query, qlen)) {
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
  const method_t *method = r->method;
  if (req->method && req->method[0]) {
    method = method_find(req->method, strlen(req->method));
    if (!method) {
      /* The name is not echoed whole: it is the client's, of any length. */
      q_grpc_ctx_errorf(ctx, "method \"%.32s%s\" is unknown (see docs/retrieval.md)",
                        req->method, strlen(req->method) > 32 ? "..." : "");
      return Q_EINVAL;
    }
  }

  features_passage_t *in_p = n ? q_arena_alloc(a, n * sizeof *in_p) : NULL;
  method_result_t *res = n ? q_arena_alloc(a, n * sizeof *res) : NULL;
  if (n && (!in_p || !res)) {
    q_grpc_ctx_errorf(ctx, "request too large");
    return Q_ERESOURCE;
  }
  for (size_t i = 0; i < n; i++) {
    const Quarry__V1__Passage *p = req->passages[i];
    size_t len = p->text ? strlen(p->text) : 0;
    size_t tlen = p->title ? strlen(p->title) : 0;
    if (len > Q_LIMIT_PASSAGE_TEXT_BYTES) {
      q_grpc_ctx_errorf(ctx, "passages[%zu].text is %zu bytes; at most %d allowed", i,
                        len, Q_LIMIT_PASSAGE_TEXT_BYTES);
      return Q_EINVAL;
    }
    if (tlen > Q_LIMIT_TITLE_BYTES) {
      q_grpc_ctx_errorf(ctx, "passages[%zu].title is %zu bytes; at most %d allowed", i,
                        tlen, Q_LIMIT_TITLE_BYTES);
      return Q_EINVAL;
    }
    in_p[i] = (features_passage_t){.title = p->title,
                                   .title_len = tlen,
                                   .text = p->text,
                                   .len = len,
                                   .score = p->score,
                                   .lexical = p->lexical_score,
                                   .dense = p->dense_score};
  }

  double *x = NULL;
  if (n && (method->needs_features || req->return_features)) {
    x = q_arena_alloc(a, n * FEATURES_N * sizeof *x);
    if (!x) {
      q_grpc_ctx_errorf(ctx, "request too large");
      return Q_ERESOURCE;
    }
    if (features_compute(req->query, qlen, in_p, n, x) != 0) {
      q_grpc_ctx_errorf(ctx, "out of memory while computing features");
      return Q_ERESOURCE;
    }
  }
  method_input_t mi = {req->query, qlen, in_p, n, x};
  q_err_t rc = n ? method->rank(r, &mi, res, err, sizeof err) : 0;
  if (rc == Q_EUNAVAIL && method->falls_back) {
    /* A rerank API that is down costs ranking quality, not the answer: the
     * retrieval order, and the reply says none ran. */
    q_log_warn("rerank method failed; keeping the retrieval order", "{s:s,s:s}", "method",
               method->name, "error", err);
    method = method_find("none", 4);
    rc = method->rank(r, &mi, res, err, sizeof err);
  }
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s: %s", method->name, err);
    return rc;
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
    /* The passage as it came, with the method's score; the request's
     * strings live in the same arena as the reply. */
    pv[i] = *req->passages[res[i].index];
    pv[i].score = (float)res[i].score;
    ps[i] = &pv[i];
  }
  resp->n_passages = nout;
  resp->passages = ps;
  resp->method = (char *)method->name;
  if (req->return_features && put_features(resp, a, x, n) != 0) {
    q_grpc_ctx_errorf(ctx, "result too large");
    return Q_ERESOURCE;
  }
  *out = &resp->base;
  return 0;
}

const q_grpc_method_t reranker_methods[] = {
    {"Rerank", Q_GRPC_UNARY, rerank_cb},
};
const size_t reranker_nmethods = sizeof reranker_methods / sizeof reranker_methods[0];
