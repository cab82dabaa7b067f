/* documents.c - the REST face of ingestion's state: GET /v1/documents (the
 * list), GET and DELETE /v1/documents/{id}, GET /v1/jobs and
 * /v1/jobs/{id}, and POST /v1/feedback. The tenant always comes from the
 * caller's principal, never from the request, so one tenant can neither
 * list, read, delete nor rate another's documents. */
#include <jansson.h>
#include <limits.h>
#include <string.h>

#include "quarry/v1/feedback.pb-c.h"
#include "quarry/v1/ingestion.pb-c.h"

#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/stubs.h"

#include "handlers.h"
#include "http_util.h"
#include "params.h"

static json_t *text_json(const char *s) {
  return http_json_text(s ? s : "", s ? strlen(s) : 0);
}

/* Ids in paths are opaque to the gateway but limited to characters an id
 * can hold; anything else cannot name a document or job. */
static bool id_ok(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_' || c == '.' || c == ':'))
      return 0;
  }
  return 1;
}

/* Options of a downstream call made for r: all the time r has left. 0, or
 * Q_ETIMEDOUT once replied because none is left. */
static q_err_t call_opts(gw_req_t *r, int idempotent, q_grpc_call_opts_t *opts) {
  int64_t left = gw_ms_left(r);
  if (left <= 0) {
    http_reply_error(r, Q_ETIMEDOUT, "request deadline exceeded");
    return Q_ETIMEDOUT;
  }
  *opts = (q_grpc_call_opts_t){.timeout_ms = left > INT_MAX ? INT_MAX : (int)left,
                               .idempotent = idempotent};
  return 0;
}

/* Maps a failed lookup: an id ingestion finds malformed cannot exist, so
 * it is a 404 like an unknown one. */
static void reply_lookup_error(gw_req_t *r, const char *what, int rc,
                               const char *detail) {
  if (rc == Q_ENOTFOUND || rc == Q_EINVAL)
    http_reply_error(r, Q_ENOTFOUND, "%s \"%s\" not found", what, r->param);
  else
    http_reply_downstream(r, "ingestion", rc, detail);
}

/* A document as the REST API shows it (lists and GET /v1/documents/{id}),
 * with "metadata" (the user metadata object) when it has any. */
static json_t *document_json(const Quarry__V1__Document *d) {
  json_t *o = json_pack(
      "{s:o,s:o,s:o,s:o,s:o,s:i,s:I,s:o,s:o,s:i,s:o,s:o,s:o}", "id", text_json(d->id),
      "title", text_json(d->title), "filename", text_json(d->filename), "content_type",
      text_json(d->content_type), "external_id", text_json(d->external_id), "version",
      (int)d->version, "size_bytes", (json_int_t)d->size_bytes, "sha256",
      text_json(d->sha256), "status", text_json(d->status), "chunk_count",
      (int)d->chunk_count, "job_id", text_json(d->job_id), "created_at",
      text_json(d->created_at), "updated_at", text_json(d->updated_at));
  json_t *meta =
      o && d->metadata && *d->metadata ? json_loads(d->metadata, 0, NULL) : NULL;
  if (meta)
    json_object_set_new(o, "metadata", meta);
  /* What extraction found in the file (GET /v1/documents/{id} only). */
  if (o && d->author && *d->author)
    json_object_set_new(o, "author", text_json(d->author));
  if (o && d->language && *d->language)
    json_object_set_new(o, "language", text_json(d->language));
  if (o && d->page_count > 0)
    json_object_set_new(o, "page_count", json_integer(d->page_count));
  if (o && d->doc_created_at && *d->doc_created_at)
    json_object_set_new(o, "doc_created_at", text_json(d->doc_created_at));
  if (o && d->doc_modified_at && *d->doc_modified_at)
    json_object_set_new(o, "doc_modified_at", text_json(d->doc_modified_at));
  return o;
}

/* A job as the REST API shows it. */
static json_t *job_json(const Quarry__V1__Job *j) {
  /* stage_ms: {"extracting": 12, ...} in stage order. */
  json_t *stage_ms = json_object();
  for (size_t i = 0; stage_ms && i < j->n_stage_ms; i++)
    if (j->stage_ms[i] && j->stage_ms[i]->stage && j->stage_ms[i]->stage[0])
      json_object_set_new(stage_ms, j->stage_ms[i]->stage,
                          json_integer((json_int_t)j->stage_ms[i]->ms));
  return stage_ms
             ? json_pack("{s:o,s:o,s:o,s:o,s:i,s:i,s:o,s:o,s:o,s:{s:i,s:i},s:o,s:i}",
                         "id", text_json(j->id), "document_id", text_json(j->document_id),
                         "status", text_json(j->status), "error", text_json(j->error),
                         "chunk_count", (int)j->chunk_count, "attempts", (int)j->attempts,
                         "created_at", text_json(j->created_at), "updated_at",
                         text_json(j->updated_at), "stage", text_json(j->stage),
                         "progress", "done", (int)j->progress_done, "total",
                         (int)j->progress_total, "stage_ms", stage_ms,
                         "dependency_retries", (int)j->dependency_retries)
             : NULL;
}

void documents_get(gw_req_t *r) {
  if (!id_ok(r->param)) {
    http_reply_error(r, Q_ENOTFOUND, "document not found");
    return;
  }
  q_grpc_call_opts_t opts;
  if (call_opts(r, 1, &opts))
    return;
  Quarry__V1__GetDocumentRequest req = QUARRY__V1__GET_DOCUMENT_REQUEST__INIT;
  req.tenant_id = r->principal.tenant_id;
  req.document_id = r->param;
  Quarry__V1__Document *d = NULL;
  char err[512] = "";
  int rc = q_rpc_ingestion_get_document(q_grpc_channel(r->cfg->ingestion_addr), &req, &d,
                                        r->arena, &opts, err, sizeof err);
  if (rc == 0 && !d)
    rc = Q_ENOTFOUND;
  if (rc) {
    reply_lookup_error(r, "document", rc, err);
    return;
  }
  json_t *body = document_json(d);
  json_t *versions = json_array();
  for (size_t i = 0; body && versions && i < d->n_versions; i++) {
    const Quarry__V1__DocumentVersion *v = d->versions[i];
    json_t *vo =
        json_pack("{s:i,s:o,s:o,s:I,s:o,s:o,s:o,s:o}", "version", (int)v->version,
                  "filename", text_json(v->filename), "content_type",
                  text_json(v->content_type), "size_bytes", (json_int_t)v->size_bytes,
                  "sha256", text_json(v->sha256), "created_at", text_json(v->created_at),
                  "job_id", text_json(v->job_id), "status", text_json(v->status));
    /* The metadata the version was uploaded with (ingestion checked it). */
    json_t *meta =
        vo && v->metadata && *v->metadata ? json_loads(v->metadata, 0, NULL) : NULL;
    if (vo)
      json_object_set_new(vo, "metadata", json_is_object(meta) ? meta : json_object());
    if (meta && !json_is_object(meta))
      json_decref(meta);
    /* How it was chunked; null for versions stored before that was kept. */
    if (vo)
      json_object_set_new(vo, "chunking",
                          v->chunking && *v->chunking ? json_string(v->chunking)
                                                      : json_null());
    json_array_append_new(versions, vo);
  }
  if (body && versions)
    json_object_set_new(body, "versions", versions);
  else
    json_decref(versions);
  if (!body) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return;
  }
  http_reply_json(r, 200, body);
}

void jobs_get(gw_req_t *r) {
  if (!id_ok(r->param)) {
    http_reply_error(r, Q_ENOTFOUND, "job not found");
    return;
  }
  q_grpc_call_opts_t opts;
  if (call_opts(r, 1, &opts))
    return;
  Quarry__V1__GetJobRequest req = QUARRY__V1__GET_JOB_REQUEST__INIT;
  req.tenant_id = r->principal.tenant_id;
  req.job_id = r->param;
  Quarry__V1__Job *j = NULL;
  char err[512] = "";
  int rc = q_rpc_ingestion_get_job(q_grpc_channel(r->cfg->ingestion_addr), &req, &j,
                                   r->arena, &opts, err, sizeof err);
  if (rc == 0 && !j)
    rc = Q_ENOTFOUND;
  if (rc) {
    reply_lookup_error(r, "job", rc, err);
    return;
  }
  json_t *body = job_json(j);
  if (!body) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return;
  }
  http_reply_json(r, 200, body);
}

/* ---- lists and delete ---------------------------------------------------- */

static const char *const states[] = {"queued", "running", "done", "failed", NULL};

/* Maps a failed list or delete call: ingestion's INVALID_ARGUMENT names
 * the parameter ("cursor: ..."), so it goes to the client as a 400. */
static void reply_call_error(gw_req_t *r, int rc, const char *err) {
  if (rc == Q_EINVAL)
    http_reply_error(r, Q_EINVAL, "parameter %s", err[0] ? err : "invalid");
  else
    http_reply_downstream(r, "ingestion", rc, err);
}

/* {"<key>": [items], "next_cursor": "..." or null}; takes items. */
static void reply_page(gw_req_t *r, const char *key, json_t *items, const char *next) {
  json_t *body = items ? json_pack("{s:o,s:o}", key, items, "next_cursor",
                                   next && *next ? json_string(next) : json_null())
                       : NULL;
  if (!body)
    http_reply_error(r, Q_ENOMEM, "out of memory");
  else
    http_reply_json(r, 200, body);
}

void documents_list(gw_req_t *r) {
  static const char *const allowed[] = {"limit",          "cursor", "q",
                                        "content_type",   "state",  "created_after",
                                        "created_before", NULL};
  Quarry__V1__ListDocumentsRequest req = QUARRY__V1__LIST_DOCUMENTS_REQUEST__INIT;
  int limit;
  const char *cursor, *q, *ctype, *state, *after, *before;
  if (params_only(r, allowed) ||
      params_int(r, "limit", Q_LIMIT_LIST_ITEMS_DEFAULT, 1, Q_LIMIT_LIST_ITEMS_MAX,
                 &limit) ||
      params_text(r, "cursor", Q_LIMIT_CURSOR_BYTES, &cursor) ||
      params_text(r, "q", Q_LIMIT_TITLE_BYTES, &q) ||
      params_text(r, "content_type", Q_LIMIT_MEDIA_TYPE_BYTES, &ctype) ||
      params_enum(r, "state", states, &state) ||
      params_text(r, "created_after", 40, &after) ||
      params_text(r, "created_before", 40, &before))
    return;
  q_grpc_call_opts_t opts;
  if (call_opts(r, 1, &opts))
    return;
  req.tenant_id = r->principal.tenant_id;
  req.limit = limit;
  req.cursor = (char *)cursor;
  req.q = (char *)q;
  req.content_type = (char *)ctype;
  req.state = (char *)state;
  req.created_after = (char *)after;
  req.created_before = (char *)before;
  Quarry__V1__ListDocumentsResponse *resp = NULL;
  char err[512] = "";
  int rc = q_rpc_ingestion_list_documents(q_grpc_channel(r->cfg->ingestion_addr), &req,
                                          &resp, r->arena, &opts, err, sizeof err);
  if (rc == 0 && !resp)
    rc = Q_EINTERNAL;
  if (rc) {
    reply_call_error(r, rc, err);
    return;
  }
  json_t *items = json_array();
  for (size_t i = 0; items && i < resp->n_documents; i++)
    if (json_array_append_new(items, document_json(resp->documents[i]))) {
      json_decref(items);
      items = NULL;
    }
  reply_page(r, "documents", items, resp->next_cursor);
}

void jobs_list(gw_req_t *r) {
  static const char *const allowed[] = {"limit", "cursor", "state", "document_id", NULL};
  Quarry__V1__ListJobsRequest req = QUARRY__V1__LIST_JOBS_REQUEST__INIT;
  int limit;
  const char *cursor, *state, *doc;
  if (params_only(r, allowed) ||
      params_int(r, "limit", Q_LIMIT_LIST_ITEMS_DEFAULT, 1, Q_LIMIT_LIST_ITEMS_MAX,
                 &limit) ||
      params_text(r, "cursor", Q_LIMIT_CURSOR_BYTES, &cursor) ||
      params_enum(r, "state", states, &state) ||
      params_text(r, "document_id", Q_LIMIT_DOCUMENT_ID_BYTES, &doc))
    return;
  if (*doc && !id_ok(doc)) {
    http_reply_error(r, Q_EINVAL, "parameter \"document_id\" must be a document id");
    return;
  }
  q_grpc_call_opts_t opts;
  if (call_opts(r, 1, &opts))
    return;
  req.tenant_id = r->principal.tenant_id;
  req.limit = limit;
  req.cursor = (char *)cursor;
  req.state = (char *)state;
  req.document_id = (char *)doc;
  Quarry__V1__ListJobsResponse *resp = NULL;
  char err[512] = "";
  int rc = q_rpc_ingestion_list_jobs(q_grpc_channel(r->cfg->ingestion_addr), &req, &resp,
                                     r->arena, &opts, err, sizeof err);
  if (rc == 0 && !resp)
    rc = Q_EINTERNAL;
  if (rc) {
    reply_call_error(r, rc, err);
    return;
  }
  json_t *items = json_array();
  for (size_t i = 0; items && i < resp->n_jobs; i++)
    if (json_array_append_new(items, job_json(resp->jobs[i]))) {
      json_decref(items);
      items = NULL;
    }
  reply_page(r, "jobs", items, resp->next_cursor);
}

void documents_delete(gw_req_t *r) {
  if (!id_ok(r->param)) {
    http_reply_error(r, Q_ENOTFOUND, "document not found");
    return;
  }
  /* Not retried by the adapter: ingestion either deleted the document or
   * changed nothing, and a retry after a lost reply would say 404. */
  q_grpc_call_opts_t opts;
  if (call_opts(r, 0, &opts))
    return;
  Quarry__V1__DeleteDocumentRequest req = QUARRY__V1__DELETE_DOCUMENT_REQUEST__INIT;
  req.tenant_id = r->principal.tenant_id;
  req.document_id = r->param;
  req.deleted_by = r->principal.user_id;
  Quarry__V1__DeleteDocumentResponse *resp = NULL;
  char err[512] = "";
  int rc = q_rpc_ingestion_delete_document(q_grpc_channel(r->cfg->ingestion_addr), &req,
                                           &resp, r->arena, &opts, err, sizeof err);
  if (rc) {
    reply_lookup_error(r, "document", rc, err);
    return;
  }
  http_reply_raw(r, 204, NULL, NULL, 0);
}

/* Validates "chunk_ids" (absent, null or an array of short strings) into
 * an arena array. */
static q_err_t chunk_ids_of(gw_req_t *r, json_t *body, char ***out, size_t *n) {
  json_t *arr = json_object_get(body, "chunk_ids");
  *out = NULL;
  *n = 0;
  if (!arr || json_is_null(arr))
    return 0;
  if (!json_is_array(arr) || json_array_size(arr) > Q_LIMIT_FEEDBACK_CHUNK_IDS) {
    http_reply_error(r, Q_EINVAL,
                     "field \"chunk_ids\" must be an array of at most %d strings",
                     Q_LIMIT_FEEDBACK_CHUNK_IDS);
    return Q_EINVAL;
  }
  size_t cnt = json_array_size(arr);
  char **ids = q_arena_alloc(r->arena, (cnt + 1) * sizeof *ids);
  if (!ids) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return Q_ENOMEM;
  }
  for (size_t i = 0; i < cnt; i++) {
    json_t *v = json_array_get(arr, i);
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > Q_LIMIT_CHUNK_ID_BYTES) {
      http_reply_error(r, Q_EINVAL,
                       "field \"chunk_ids\"[%zu] must be a string of 1 to %d bytes", i,
                       Q_LIMIT_CHUNK_ID_BYTES);
      return Q_EINVAL;
    }
    ids[i] = (char *)json_string_value(v);
  }
  *out = ids;
  *n = cnt;
  return 0;
}

void feedback_post(gw_req_t *r) {
  static const char *const keys[] = {"query_id", "rating", "comment", "chunk_ids", NULL};
  json_t *body = NULL;
  const char *query_id, *comment;
  json_int_t rating;
  char **chunk_ids;
  size_t nchunks;
  if (http_parse_json_object(r, &body) || http_json_only_keys(r, body, keys) ||
      http_json_string(r, body, "query_id", 1, 1, Q_LIMIT_QUERY_ID_BYTES, &query_id) ||
      http_json_int(r, body, "rating", 1, 0, -1, 1, &rating) ||
      http_json_string(r, body, "comment", 0, 0, Q_LIMIT_COMMENT_BYTES, &comment) ||
      chunk_ids_of(r, body, &chunk_ids, &nchunks))
    goto done;
  if (rating == 0) {
    http_reply_error(r, Q_EINVAL, "field \"rating\" must be 1 (good) or -1 (bad)");
    goto done;
  }
  /* Not retried by the adapter: a retry after a lost reply would publish
   * the feedback twice. */
  q_grpc_call_opts_t opts;
  if (call_opts(r, 0, &opts))
    goto done;

  Quarry__V1__FeedbackRequest req = QUARRY__V1__FEEDBACK_REQUEST__INIT;
  req.query_id = (char *)query_id;
  req.tenant_id = r->principal.tenant_id;
  req.user_id = r->principal.user_id;
  req.rating = (int32_t)rating;
  req.comment = (char *)(comment ? comment : "");
  req.chunk_ids = chunk_ids;
  req.n_chunk_ids = nchunks;
  Quarry__V1__FeedbackResponse *resp = NULL;
  char err[512] = "";
  int rc = q_rpc_feedback_submit(q_grpc_channel(r->cfg->feedback_addr), &req, &resp,
                                 r->arena, &opts, err, sizeof err);
  if (rc == 0 && (!resp || !resp->feedback_id || !resp->feedback_id[0])) {
    rc = Q_EINTERNAL;
    snprintf(err, sizeof err, "reply holds no feedback id");
  }
  if (rc) {
    http_reply_downstream(r, "feedback", rc, err);
    goto done;
  }
  json_t *out = json_pack("{s:o,s:b}", "feedback_id", text_json(resp->feedback_id),
                          "queued", resp->queued ? 1 : 0);
  if (!out)
    http_reply_error(r, Q_ENOMEM, "out of memory");
  else
    http_reply_json(r, 202, out);
done:
  json_decref(body);
}
