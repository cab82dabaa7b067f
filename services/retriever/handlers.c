/* handlers.c - quarry.v1.Retriever: request validation and replies (see
 * handlers.h). What is stored and how is the engine's (engine/engine.h):
 * an Upsert the engine acknowledges is durable and searchable. What a
 * Search does with the engine's lists is search.c's. */
#include "handlers.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/filter.h"
#include "quarry/log.h"
#include "quarry/v1/retriever.pb-c.h"
#include "quarry/trace.h"
#include "quarry/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double chunks_gauge_cb(void *ud) {
  engine_t *e = ud;
  return (double)e->ops->chunk_count(e->st);
}

q_err_t retriever_init(retriever_t *r, engine_t *engine, int64_t default_top_k,
                       int64_t max_top_k) {
  memset(r, 0, sizeof *r);
  r->engine = engine;
  r->default_top_k = default_top_k;
  r->max_top_k = max_top_k;
  r->policy.rrf_k = Q_FUSION_RRF_K;
  r->search_seconds = q_metrics_histogram(
      "quarry_retriever_search_seconds",
      "Time to answer a Search, by mode (lexical, dense or hybrid).", "mode", NULL, 0);
  q_metrics_gauge_fn("quarry_index_chunks", "Live chunks in the retriever's engine.",
                     chunks_gauge_cb, engine);
  return r->search_seconds ? 0 : Q_EINTERNAL;
}

void retriever_cleanup(retriever_t *r) {
  (void)r;
}

q_err_t retriever_ready_cb(void *ud, char *why, size_t whylen) {
  retriever_t *r = ud;
  return r->engine->ops->ready(r->engine->st, why, whylen) ? 0 : Q_EUNAVAIL;
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

/* check_str of chunk i's field name ("chunks[i].name" in the message). */
static int check_chunk_str(q_grpc_ctx_t *ctx, size_t i, const char *name, const char *s,
                           size_t max, int required) {
  char field[64];
  snprintf(field, sizeof field, "chunks[%zu].%s", i, name);
  return check_str(ctx, field, s, max, required);
}

static int str_ptr_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- Upsert ------------------------------------------------------------- */

/* Validates the request and fills chunks[] (arena) for the index and store;
 * *tenant receives the effective tenant. */
static q_err_t upsert_validate(q_grpc_ctx_t *ctx, const Quarry__V1__UpsertRequest *req,
                               const char **tenant, engine_chunk_t **out) {
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
  bool replace = req->replace_doc_id && *req->replace_doc_id;
  if (req->stage && (replace || n == 0 || req->commit_version)) {
    q_grpc_ctx_errorf(ctx,
                      "stage takes chunks, without replace_doc_id or commit_version");
    return Q_EINVAL;
  }
  if (req->commit_version &&
      (!replace || n > 0 || req->commit_version < 0 || req->commit_chunks <= 0 ||
       req->commit_chunks > Q_LIMIT_COMMIT_CHUNKS)) {
    q_grpc_ctx_errorf(ctx,
                      "commit_version takes replace_doc_id, commit_chunks 1..%d and no "
                      "chunks",
                      Q_LIMIT_COMMIT_CHUNKS);
    return Q_EINVAL;
  }
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

  engine_chunk_t *chunks = n ? q_arena_alloc(a, n * sizeof *chunks) : NULL;
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
    if ((rc =
             check_chunk_str(ctx, i, "chunk_id", c->chunk_id, Q_LIMIT_CHUNK_ID_BYTES, 1)))
      return rc;
    if ((rc = check_chunk_str(ctx, i, "doc_id", c->doc_id, Q_LIMIT_DOCUMENT_ID_BYTES, 1)))
      return rc;
    if ((rc = check_chunk_str(ctx, i, "title", c->title, Q_LIMIT_TITLE_BYTES, 0)))
      return rc;
    if ((rc = check_chunk_str(ctx, i, "text", c->text, Q_LIMIT_PASSAGE_TEXT_BYTES, 1)))
      return rc;
    if (c->version < 0 || c->ordinal < 0 || c->page < 0) {
      q_grpc_ctx_errorf(ctx,
                        "chunks[%zu]: version, ordinal and page must not be negative", i);
      return Q_EINVAL;
    }
    if (c->start_offset < 0 || c->end_offset < c->start_offset || c->text_offset < 0) {
      q_grpc_ctx_errorf(
          ctx,
          "chunks[%zu]: offsets must be 0 <= start_offset <= end_offset and "
          "text_offset >= 0",
          i);
      return Q_EINVAL;
    }
    if (c->n_embedding > ENGINE_MAX_DIM) {
      q_grpc_ctx_errorf(ctx, "chunks[%zu].embedding has %zu dimensions; at most %d", i,
                        c->n_embedding, ENGINE_MAX_DIM);
      return Q_EINVAL;
    }
    if ((rc = check_chunk_str(ctx, i, "content_type", c->content_type,
                              Q_LIMIT_MEDIA_TYPE_BYTES, 0)))
      return rc;
    if ((rc = check_chunk_str(ctx, i, "author", c->author, Q_LIMIT_AUTHOR_BYTES, 0)))
      return rc;
    if ((rc =
             check_chunk_str(ctx, i, "language", c->language, Q_LIMIT_LANGUAGE_BYTES, 0)))
      return rc;
    if (c->created_at < 0) {
      q_grpc_ctx_errorf(ctx, "chunks[%zu].created_at must not be negative", i);
      return Q_EINVAL;
    }
    if (c->metadata && *c->metadata) {
      char why[256];
      json_t *meta;
      if (q_meta_parse(c->metadata, strlen(c->metadata), &meta, why, sizeof why)) {
        q_grpc_ctx_errorf(ctx, "chunks[%zu].metadata: %s", i, why);
        return Q_EINVAL;
      }
      json_decref(meta);
    }
    if (c->n_access_groups > Q_LIMIT_METADATA_LIST_ITEMS) {
      q_grpc_ctx_errorf(ctx, "chunks[%zu].access_groups has %zu entries; at most %d", i,
                        c->n_access_groups, Q_LIMIT_METADATA_LIST_ITEMS);
      return Q_EINVAL;
    }
    for (size_t g = 0; g < c->n_access_groups; g++) {
      snprintf(field, sizeof field, "chunks[%zu].access_groups[%zu]", i, g);
      if ((rc = check_str(ctx, field, c->access_groups[g], Q_LIMIT_METADATA_VALUE_BYTES,
                          1)))
        return rc;
    }
    chunks[i] = (engine_chunk_t){
        .chunk_id = c->chunk_id,
        .doc_id = c->doc_id,
        .title = c->title ? c->title : "",
        .text = c->text,
        .version = c->version,
        .ordinal = c->ordinal,
        .page = c->page,
        .at = {c->start_offset, c->end_offset, c->text_offset},
        .embedding = c->embedding,
        .dim = c->n_embedding,
        .content_type = c->content_type,
        .author = c->author,
        .language = c->language,
        .created_at = c->created_at,
        .metadata = c->metadata,
        .access_groups = (const char *const *)c->access_groups,
        .naccess_groups = c->n_access_groups,
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
  engine_chunk_t *chunks = NULL;
  int rc = upsert_validate(ctx, req, &tenant, &chunks);
  if (rc)
    return rc;
  size_t n = req->n_chunks;
  char err[512] = "";
  size_t retired = 0;
  const engine_ops_t *ops = r->engine->ops;
  if ((req->stage && !ops->stage) || (req->commit_version && !ops->commit)) {
    q_grpc_ctx_errorf(ctx, "the %s engine cannot stage a version", ops->name);
    return Q_EUNIMPL;
  }
  if (req->stage)
    rc = ops->stage(r->engine->st, tenant, chunks, n, err, sizeof err);
  else if (req->commit_version)
    rc = ops->commit(r->engine->st, tenant, req->replace_doc_id, req->commit_version,
                     (size_t)req->commit_chunks, &retired, err, sizeof err);
  else
    rc = ops->upsert(r->engine->st, tenant, chunks, n, req->replace_doc_id, &retired, err,
                     sizeof err);
  if (rc) {
    if (rc != Q_EINVAL && rc != Q_ENOTFOUND)
      q_log_warn("retriever: upsert not stored", "{s:s,s:s}", "tenant_id", tenant,
                 "reason", err);
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }

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
  if (req->n_query_embedding > ENGINE_MAX_DIM) {
    q_grpc_ctx_errorf(ctx, "query_embedding has %zu dimensions; at most %d",
                      req->n_query_embedding, ENGINE_MAX_DIM);
    return Q_EINVAL;
  }
  if ((rc = check_str(ctx, "embed_model", req->embed_model, Q_LIMIT_MODEL_BYTES, 0)))
    return rc;
  int64_t top_k = req->top_k ? req->top_k : r->default_top_k;
  if (top_k < 1 || top_k > r->max_top_k) {
    q_grpc_ctx_errorf(ctx, "top_k must be between 1 and %lld (0: %lld)",
                      (long long)r->max_top_k, (long long)r->default_top_k);
    return Q_EINVAL;
  }
  if (req->max_passages_per_doc < 0 || req->max_passages_per_doc > r->max_top_k) {
    q_grpc_ctx_errorf(ctx, "max_passages_per_doc must be between 0 and %lld",
                      (long long)r->max_top_k);
    return Q_EINVAL;
  }

  q_filter_t *filter = NULL;
  char ferr[384];
  if (req->filter && *req->filter &&
      (rc = q_filter_parse(req->filter, strlen(req->filter), &filter, ferr,
                           sizeof ferr))) {
    q_grpc_ctx_errorf(ctx, "%s", ferr);
    return rc;
  }
  search_req_t q = {
      .tenant = req->tenant_id,
      .mode = req->mode,
      .text = req->query,
      .text_len = qlen,
      .embedding = req->query_embedding,
      .dim = req->n_query_embedding,
      .top_k = (size_t)top_k,
      .embed_model = req->embed_model,
      .max_per_doc = (size_t)req->max_passages_per_doc,
      .filter = filter,
  };
  search_out_t so;
  char err[256] = "";
  rc = search_run(r->engine, &r->policy, &q, a, &so, err, sizeof err);
  q_filter_free(filter);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
  size_t nhits = so.n;
  const fusion_hit_t *hits = so.hits;

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
    const engine_cand_t *c = hits[i].cand;
    p->chunk_id = (char *)c->chunk_id;
    p->doc_id = (char *)c->doc_id;
    p->title = (char *)c->title;
    p->text = (char *)c->text;
    p->ordinal = c->ordinal;
    p->page = c->page;
    p->start_offset = c->at.start;
    p->end_offset = c->at.end;
    p->text_offset = c->at.text;
    p->score = (float)hits[i].fused;
    p->lexical_score = (float)hits[i].lexical;
    p->dense_score = (float)hits[i].dense;
    ps[i] = p;
  }
  resp->n_passages = nhits;
  resp->passages = ps;
  resp->lexical_only = !so.dense_used;
  resp->mode = (char *)so.mode;
  resp->fusion = q_arena_strdup(a, so.fusion);
  if (!resp->fusion)
    return Q_ERESOURCE;
  *out = &resp->base;

  const char *mode[1] = {so.mode};
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
  engine_stats_t st;
  char err[256] = "";
  rc = r->engine->ops->stats(r->engine->st, req->tenant_id, &st, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
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

/* ---- Delete ------------------------------------------------------------- */

static q_err_t delete_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  retriever_t *r = ud;
  const Quarry__V1__DeleteRequest *req = (const Quarry__V1__DeleteRequest *)in;
  int rc;
  if ((rc = check_str(ctx, "tenant_id", req->tenant_id, Q_LIMIT_TENANT_ID_BYTES, 1)) ||
      (rc = check_str(ctx, "doc_id", req->doc_id, Q_LIMIT_DOCUMENT_ID_BYTES, 1)))
    return rc;
  size_t retired = 0;
  char err[512] = "";
  rc = r->engine->ops->remove(r->engine->st, req->tenant_id, req->doc_id, &retired, err,
                              sizeof err);
  if (rc) {
    q_log_warn("retriever: delete not done", "{s:s,s:s}", "tenant_id", req->tenant_id,
               "reason", err);
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
  Quarry__V1__DeleteResponse *resp = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *resp);
  if (!resp)
    return Q_ENOMEM;
  quarry__v1__delete_response__init(resp);
  resp->retired = (int32_t)retired;
  *out = &resp->base;
  return 0;
}

const q_grpc_method_t retriever_methods[] = {
    {"Upsert", Q_GRPC_UNARY, upsert_cb},
    {"Search", Q_GRPC_UNARY, search_cb},
    {"Stats", Q_GRPC_UNARY, stats_cb},
    {"Delete", Q_GRPC_UNARY, delete_cb},
};
const size_t retriever_nmethods = sizeof retriever_methods / sizeof retriever_methods[0];
