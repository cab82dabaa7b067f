/* handlers.c - quarry.v1.Retriever: request validation and the order of
 * work (see handlers.h).
 *
 * Upsert: validate everything, then under upsert_mu: check the vectors
 * against the index, write the batch to PostgreSQL (one transaction), and
 * only then apply it to the index. A reply of OK therefore means the batch
 * is durable; if the process dies between commit and index update, the
 * restart rebuilds the index from the table. */
#include "handlers.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/v1/retriever.pb-c.h"
#include "quarry/trace.h"
#include "quarry/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double chunks_gauge_cb(void *ud) {
  return (double)index_chunk_count(ud);
}

q_err_t retriever_init(retriever_t *r, index_t *index, store_t *store,
                       int64_t default_top_k, int64_t max_top_k) {
  memset(r, 0, sizeof *r);
  r->index = index;
  r->store = store;
  r->default_top_k = default_top_k;
  r->max_top_k = max_top_k;
  r->dense_weight = 1.0;
  if (pthread_mutex_init(&r->upsert_mu, NULL) != 0)
    return Q_EINTERNAL;
  r->search_seconds = q_metrics_histogram(
      "quarry_retriever_search_seconds",
      "Time to answer a Search, by mode (lexical, dense or hybrid).", "mode", NULL, 0);
  q_metrics_gauge_fn("quarry_index_chunks",
                     "Live chunks in the retriever's in-memory index.", chunks_gauge_cb,
                     index);
  return 0;
}

void retriever_cleanup(retriever_t *r) {
  pthread_mutex_destroy(&r->upsert_mu);
}

q_err_t retriever_ready_cb(void *ud, char *why, size_t whylen) {
  retriever_t *r = ud;
  if (!r->store)
    return 0;
  return store_ping(r->store, why, whylen) ? 0 : Q_EUNAVAIL;
}

/* ---- validation helpers ------------------------------------------------- */

/* q_valid_field, with the reason sent to the client. */
static int check_str(q_grpc_ctx_t *ctx, const char *field, const char *s, size_t max,
                     int required) {
  char err[160];
  int rc = q_valid_field(field, s, required, max, err, sizeof err);
  if (rc)
    q_grpc_ctx_errorf(ctx, "%s", err);
  return rc;
}

static int str_ptr_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- Upsert ------------------------------------------------------------- */

/* Validates the request and fills chunks[] (arena) for the index and store;
 * *tenant receives the effective tenant. */
static q_err_t upsert_validate(q_grpc_ctx_t *ctx, const Quarry__V1__UpsertRequest *req,
                               const char **tenant, index_chunk_t **out) {
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  size_t n = req->n_chunks;
  char field[64];
  int rc;

  if (n > Q_LIMIT_UPSERT_CHUNKS) {
    q_grpc_ctx_errorf(ctx, "chunks has %zu entries; at most %d per request", n,
                      Q_LIMIT_UPSERT_CHUNKS);
    return Q_EINVAL;
  }
  if ((rc = check_str(ctx, "replace_doc_id", req->replace_doc_id,
                      Q_LIMIT_DOCUMENT_ID_BYTES, 0)))
    return rc;
  if (n == 0 && (!req->replace_doc_id || !*req->replace_doc_id)) {
    q_grpc_ctx_errorf(ctx, "chunks is empty (and no replace_doc_id to retire)");
    return Q_EINVAL;
  }
  /* The tenant comes from the request, else from the chunks, which must then
   * all name the same one; a chunk naming another tenant is refused. */
  const char *t = req->tenant_id && *req->tenant_id ? req->tenant_id : NULL;
  for (size_t i = 0; i < n && !t; i++)
    if (req->chunks[i]->tenant_id && *req->chunks[i]->tenant_id)
      t = req->chunks[i]->tenant_id;
  if ((rc = check_str(ctx, "tenant_id", t, Q_LIMIT_TENANT_ID_BYTES, 1)))
    return rc;

  index_chunk_t *chunks = n ? q_arena_alloc(a, n * sizeof *chunks) : NULL;
  const char **ids = n ? q_arena_alloc(a, n * sizeof *ids) : NULL;
  if (n && (!chunks || !ids)) {
    q_grpc_ctx_errorf(ctx, "request too large");
    return Q_ERESOURCE;
  }
  for (size_t i = 0; i < n; i++) {
    const Quarry__V1__Chunk *c = req->chunks[i];
    if (c->tenant_id && *c->tenant_id && strcmp(c->tenant_id, t) != 0) {
      q_grpc_ctx_errorf(ctx, "chunks[%zu].tenant_id differs from the request's tenant",
                        i);
      return Q_EINVAL;
    }
    snprintf(field, sizeof field, "chunks[%zu].chunk_id", i);
    if ((rc = check_str(ctx, field, c->chunk_id, Q_LIMIT_CHUNK_ID_BYTES, 1)))
      return rc;
    snprintf(field, sizeof field, "chunks[%zu].doc_id", i);
    if ((rc = check_str(ctx, field, c->doc_id, Q_LIMIT_DOCUMENT_ID_BYTES, 1)))
      return rc;
    snprintf(field, sizeof field, "chunks[%zu].title", i);
    if ((rc = check_str(ctx, field, c->title, Q_LIMIT_TITLE_BYTES, 0)))
      return rc;
    snprintf(field, sizeof field, "chunks[%zu].text", i);
    if ((rc = check_str(ctx, field, c->text, Q_LIMIT_PASSAGE_TEXT_BYTES, 1)))
      return rc;
    if (c->version < 0 || c->ordinal < 0 || c->page < 0) {
      q_grpc_ctx_errorf(ctx,
                        "chunks[%zu]: version, ordinal and page must not be negative", i);
      return Q_EINVAL;
    }
    if (c->n_embedding > Q_INDEX_MAX_DIM) {
      q_grpc_ctx_errorf(ctx, "chunks[%zu].embedding has %zu dimensions; at most %d", i,
                        c->n_embedding, Q_INDEX_MAX_DIM);
      return Q_EINVAL;
    }
    chunks[i] = (index_chunk_t){
        .chunk_id = c->chunk_id,
        .doc_id = c->doc_id,
        .title = c->title ? c->title : "",
        .text = c->text,
        .version = c->version,
        .ordinal = c->ordinal,
        .page = c->page,
        .embedding = c->embedding,
        .dim = c->n_embedding,
    };
    ids[i] = c->chunk_id;
  }
  if (n > 1) {
    qsort(ids, n, sizeof *ids, str_ptr_cmp);
    for (size_t i = 1; i < n; i++)
      if (strcmp(ids[i - 1], ids[i]) == 0) {
        q_grpc_ctx_errorf(ctx, "chunk_id %s appears more than once", ids[i]);
        return Q_EINVAL;
      }
  }
  *tenant = t;
  *out = chunks;
  return 0;
}

static q_err_t upsert_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  retriever_t *r = ud;
  const Quarry__V1__UpsertRequest *req = (const Quarry__V1__UpsertRequest *)in;
  const char *tenant = NULL;
  index_chunk_t *chunks = NULL;
  int rc = upsert_validate(ctx, req, &tenant, &chunks);
  if (rc)
    return rc;
  size_t n = req->n_chunks;
  const char *replace = req->replace_doc_id;
  char err[512] = "";
  size_t retired = 0, retired_mem = 0;

  pthread_mutex_lock(&r->upsert_mu);
  rc = index_check(r->index, tenant, chunks, n, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    goto unlock;
  }
  if (r->store) {
    rc = store_upsert(r->store, tenant, chunks, n, replace, &retired, err, sizeof err);
    if (rc) {
      q_log_warn("retriever: upsert not stored", "{s:s,s:s}", "tenant_id", tenant,
                 "reason", err);
      q_grpc_ctx_errorf(ctx, "%s", err);
      goto unlock;
    }
  }
  rc = index_upsert(r->index, tenant, chunks, n, replace, &retired_mem, err, sizeof err);
  if (rc) {
    /* Cannot happen after index_check under the same lock; if it does, the
     * table and the index disagree until a restart. */
    q_log_error("retriever: stored upsert not applied to the index", "{s:s,s:s}",
                "tenant_id", tenant, "reason", err);
    q_grpc_ctx_errorf(ctx, "stored but not indexed: %s", err);
    rc = Q_EINTERNAL;
    goto unlock;
  }
  if (!r->store)
    retired = retired_mem;
  else if (retired != retired_mem)
    q_log_warn("retriever: table and index retired different counts", "{s:s,s:i,s:i}",
               "tenant_id", tenant, "table", (int)retired, "index", (int)retired_mem);
unlock:
  pthread_mutex_unlock(&r->upsert_mu);
  if (rc)
    return rc;

  Quarry__V1__UpsertResponse *resp = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *resp);
  if (!resp)
    return Q_ENOMEM;
  quarry__v1__upsert_response__init(resp);
  resp->upserted = (int32_t)n;
  resp->retired = (int32_t)retired;
  *out = &resp->base;
  q_log_debug("retriever: upsert", "{s:s,s:i,s:i}", "tenant_id", tenant, "upserted",
              (int)n, "retired", (int)retired);
  return 0;
}

/* ---- Search ------------------------------------------------------------- */

static q_err_t search_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  retriever_t *r = ud;
  const Quarry__V1__SearchRequest *req = (const Quarry__V1__SearchRequest *)in;
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  double t0 = q_now_s();
  int rc;

  if ((rc = check_str(ctx, "tenant_id", req->tenant_id, Q_LIMIT_TENANT_ID_BYTES, 1)))
    return rc;
  size_t qlen = req->query ? strlen(req->query) : 0;
  if (qlen > Q_LIMIT_QUERY_BYTES) {
    q_grpc_ctx_errorf(ctx, "query is %zu bytes; at most %d allowed", qlen,
                      Q_LIMIT_QUERY_BYTES);
    return Q_EINVAL;
  }
  int has_text = !q_is_blank(req->query, strlen(req->query));
  if (!has_text && req->n_query_embedding == 0) {
    q_grpc_ctx_errorf(ctx, "query is empty and there is no query_embedding");
    return Q_EINVAL;
  }
  if (req->n_query_embedding > Q_INDEX_MAX_DIM) {
    q_grpc_ctx_errorf(ctx, "query_embedding has %zu dimensions; at most %d",
                      req->n_query_embedding, Q_INDEX_MAX_DIM);
    return Q_EINVAL;
  }
  int64_t top_k = req->top_k ? req->top_k : r->default_top_k;
  if (top_k < 1 || top_k > r->max_top_k) {
    q_grpc_ctx_errorf(ctx, "top_k must be between 1 and %lld (0: %lld)",
                      (long long)r->max_top_k, (long long)r->default_top_k);
    return Q_EINVAL;
  }

  index_query_t q = {
      .tenant = req->tenant_id,
      .text = has_text ? req->query : NULL,
      .text_len = has_text ? qlen : 0,
      .embedding = req->query_embedding,
      .dim = req->n_query_embedding,
      .top_k = (size_t)top_k,
      .dense_weight = r->dense_weight,
  };
  index_hit_t *hits;
  size_t nhits;
  int dense_used;
  char err[256] = "";
  rc = index_search(r->index, &q, a, &hits, &nhits, &dense_used, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }

  Quarry__V1__SearchResponse *resp = q_arena_alloc(a, sizeof *resp);
  Quarry__V1__Passage **ps = nhits ? q_arena_alloc(a, nhits * sizeof *ps) : NULL;
  Quarry__V1__Passage *pv = nhits ? q_arena_alloc(a, nhits * sizeof *pv) : NULL;
  if (!resp || (nhits && (!ps || !pv))) {
    q_grpc_ctx_errorf(ctx, "result too large");
    return Q_ERESOURCE;
  }
  quarry__v1__search_response__init(resp);
  for (size_t i = 0; i < nhits; i++) {
    Quarry__V1__Passage *p = &pv[i];
    quarry__v1__passage__init(p);
    p->chunk_id = (char *)hits[i].chunk_id;
    p->doc_id = (char *)hits[i].doc_id;
    p->title = (char *)hits[i].title;
    p->text = (char *)hits[i].text;
    p->ordinal = hits[i].ordinal;
    p->page = hits[i].page;
    p->score = (float)hits[i].fused;
    p->lexical_score = (float)hits[i].lexical;
    p->dense_score = (float)hits[i].dense;
    ps[i] = p;
  }
  resp->n_passages = nhits;
  resp->passages = ps;
  resp->lexical_only = !dense_used;
  *out = &resp->base;

  const char *mode[1] = {!dense_used ? "lexical" : has_text ? "hybrid" : "dense"};
  q_metrics_observe(r->search_seconds, mode, q_now_s() - t0);
  return 0;
}

/* ---- Stats -------------------------------------------------------------- */

static q_err_t stats_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud) {
  retriever_t *r = ud;
  const Quarry__V1__StatsRequest *req = (const Quarry__V1__StatsRequest *)in;
  int rc = check_str(ctx, "tenant_id", req->tenant_id, Q_LIMIT_TENANT_ID_BYTES, 0);
  if (rc)
    return rc;
  index_stats_t st;
  index_stats(r->index, req->tenant_id, &st);
  Quarry__V1__StatsResponse *resp = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *resp);
  if (!resp)
    return Q_ENOMEM;
  quarry__v1__stats_response__init(resp);
  resp->chunks = st.chunks;
  resp->documents = st.documents;
  resp->terms = st.terms;
  *out = &resp->base;
  return 0;
}

const q_grpc_method_t retriever_methods[] = {
    {"Upsert", Q_GRPC_UNARY, upsert_cb},
    {"Search", Q_GRPC_UNARY, search_cb},
    {"Stats", Q_GRPC_UNARY, stats_cb},
};
const size_t retriever_nmethods = sizeof retriever_methods / sizeof retriever_methods[0];
