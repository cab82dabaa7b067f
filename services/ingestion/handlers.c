/* handlers.c - GetDocument and GetJob, plus the method table that also
 * routes Upload (upload.c). Reads are scoped by tenant: another tenant's
 * document is NOT_FOUND, exactly like one that does not exist. */
#include "handlers.h"

#include "docstore.h"
#include "ingest.h"
#include "lifecycle.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/v1/ingestion.pb-c.h"
#include "quarry/validate.h"
#include "upload.h"

#include <string.h>

/* Maps a docstore error to the reply; logs what the client does not see. */
static int read_failed(q_grpc_ctx_t *ctx, int rc, const char *what, const char *err) {
  if (rc == Q_ENOTFOUND) {
    q_grpc_ctx_errorf(ctx, "%s not found", what);
    return rc;
  }
  q_log_error("reading failed", "{s:s,s:s}", "what", what, "reason", err);
  q_grpc_ctx_errorf(ctx, "document store unavailable");
  return rc == Q_EUNAVAIL ? Q_EUNAVAIL : rc == Q_ENOMEM ? Q_ENOMEM : Q_EINTERNAL;
}

static q_err_t check_scope(q_grpc_ctx_t *ctx, const char *tenant, const char *id,
                           const char *field) {
  if (!q_valid_tenant_id(tenant)) {
    q_grpc_ctx_errorf(ctx, "tenant_id: required, 1..%d characters of [A-Za-z0-9._-]",
                      Q_LIMIT_TENANT_ID_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_uuid(id)) {
    q_grpc_ctx_errorf(ctx, "%s: must be a UUID (8-4-4-4-12 hex digits)", field);
    return Q_EINVAL;
  }
  return Q_OK;
}

static int get_document_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                           ProtobufCMessage **out, void *ud) {
  ingest_t *ing = ud;
  const Quarry__V1__GetDocumentRequest *req = (const Quarry__V1__GetDocumentRequest *)in;
  int rc = check_scope(ctx, req->tenant_id, req->document_id, "document_id");
  if (rc)
    return rc;
  char err[512] = "";
  Quarry__V1__Document *d;
  rc = docstore_get_document(ing->pool, req->tenant_id, req->document_id,
                             q_grpc_ctx_arena(ctx), &d, err, sizeof err);
  if (rc)
    return read_failed(ctx, rc, "document", err);
  rc = lifecycle_versions(ing->pool, d, q_grpc_ctx_arena(ctx), err, sizeof err);
  if (rc)
    return read_failed(ctx, rc, "document versions", err);
  *out = &d->base;
  return Q_OK;
}

static int get_job_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                      ProtobufCMessage **out, void *ud) {
  ingest_t *ing = ud;
  const Quarry__V1__GetJobRequest *req = (const Quarry__V1__GetJobRequest *)in;
  int rc = check_scope(ctx, req->tenant_id, req->job_id, "job_id");
  if (rc)
    return rc;
  char err[512] = "";
  Quarry__V1__Job *j;
  rc = docstore_get_job(ing->pool, req->tenant_id, req->job_id, q_grpc_ctx_arena(ctx), &j,
                        err, sizeof err);
  if (rc)
    return read_failed(ctx, rc, "job", err);
  *out = &j->base;
  return Q_OK;
}

/* ---- ListDocuments, ListJobs, DeleteDocument (lifecycle.c) ------------ */

#define DELETE_REPLY_MARGIN_MS 500 /* kept back from the caller's deadline */
#define DELETE_MIN_RETIRE_MS 100   /* the retriever gets at least this */

/* The page size and start of a list: 0 (unset) takes the default. */
static q_err_t check_page(q_grpc_ctx_t *ctx, int32_t limit, const char *cursor, int *n,
                          list_pos_t *pos, const list_pos_t **after) {
  if (limit < 0 || limit > Q_LIMIT_LIST_ITEMS_MAX) {
    q_grpc_ctx_errorf(ctx, "limit: must be 1..%d", Q_LIMIT_LIST_ITEMS_MAX);
    return Q_EINVAL;
  }
  *n = limit ? limit : Q_LIMIT_LIST_ITEMS_DEFAULT;
  *after = NULL;
  if (cursor && *cursor) {
    if (lifecycle_cursor_decode(cursor, pos)) {
      q_grpc_ctx_errorf(ctx, "cursor: not a cursor this list returned");
      return Q_EINVAL;
    }
    *after = pos;
  }
  return Q_OK;
}

static q_err_t check_state(q_grpc_ctx_t *ctx, const char *state) {
  if (state && *state && !lifecycle_state_valid(state)) {
    q_grpc_ctx_errorf(ctx, "state: one of queued, running, done, failed");
    return Q_EINVAL;
  }
  return Q_OK;
}

static q_err_t check_tenant(q_grpc_ctx_t *ctx, const char *tenant) {
  if (!q_valid_tenant_id(tenant)) {
    q_grpc_ctx_errorf(ctx, "tenant_id: required, 1..%d characters of [A-Za-z0-9._-]",
                      Q_LIMIT_TENANT_ID_BYTES);
    return Q_EINVAL;
  }
  return Q_OK;
}

static int list_documents_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                             ProtobufCMessage **out, void *ud) {
  ingest_t *ing = ud;
  const Quarry__V1__ListDocumentsRequest *req =
      (const Quarry__V1__ListDocumentsRequest *)in;
  int limit;
  list_pos_t pos;
  const list_pos_t *after;
  int rc = check_tenant(ctx, req->tenant_id);
  if (!rc)
    rc = check_page(ctx, req->limit, req->cursor, &limit, &pos, &after);
  if (!rc)
    rc = check_state(ctx, req->state);
  if (rc)
    return rc;
  if (req->q &&
      (strlen(req->q) > Q_LIMIT_TITLE_BYTES || !q_valid_utf8(req->q, strlen(req->q)))) {
    q_grpc_ctx_errorf(ctx, "q: at most %d bytes of UTF-8", Q_LIMIT_TITLE_BYTES);
    return Q_EINVAL;
  }
  if (req->content_type && strlen(req->content_type) > Q_LIMIT_MEDIA_TYPE_BYTES) {
    q_grpc_ctx_errorf(ctx, "content_type: at most %d bytes", Q_LIMIT_MEDIA_TYPE_BYTES);
    return Q_EINVAL;
  }
  if (req->content_type && !q_valid_utf8(req->content_type, strlen(req->content_type))) {
    q_grpc_ctx_errorf(ctx, "content_type: must be UTF-8");
    return Q_EINVAL;
  }
  const char *times[2] = {req->created_after, req->created_before};
  static const char *const names[2] = {"created_after", "created_before"};
  for (int i = 0; i < 2; i++)
    if (times[i] && *times[i] && !lifecycle_rfc3339_valid(times[i])) {
      q_grpc_ctx_errorf(ctx, "%s: must be an RFC 3339 date-time (2026-01-31T12:00:00Z)",
                        names[i]);
      return Q_EINVAL;
    }
  doc_filter_t f = {.q = req->q,
                    .content_type = req->content_type,
                    .state = req->state,
                    .created_after = req->created_after,
                    .created_before = req->created_before};
  char err[512] = "";
  Quarry__V1__ListDocumentsResponse *resp;
  rc = lifecycle_list_documents(ing->pool, req->tenant_id, &f, after, limit,
                                q_grpc_ctx_arena(ctx), &resp, err, sizeof err);
  if (rc)
    return read_failed(ctx, rc, "documents", err);
  *out = &resp->base;
  return Q_OK;
}

static int list_jobs_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud) {
  ingest_t *ing = ud;
  const Quarry__V1__ListJobsRequest *req = (const Quarry__V1__ListJobsRequest *)in;
  int limit;
  list_pos_t pos;
  const list_pos_t *after;
  int rc = check_tenant(ctx, req->tenant_id);
  if (!rc)
    rc = check_page(ctx, req->limit, req->cursor, &limit, &pos, &after);
  if (!rc)
    rc = check_state(ctx, req->state);
  if (rc)
    return rc;
  if (req->document_id && *req->document_id && !q_valid_uuid(req->document_id)) {
    q_grpc_ctx_errorf(ctx, "document_id: must be a UUID (8-4-4-4-12 hex digits)");
    return Q_EINVAL;
  }
  char err[512] = "";
  Quarry__V1__ListJobsResponse *resp;
  rc = lifecycle_list_jobs(ing->pool, req->tenant_id, req->state, req->document_id, after,
                           limit, q_grpc_ctx_arena(ctx), &resp, err, sizeof err);
  if (rc)
    return read_failed(ctx, rc, "jobs", err);
  *out = &resp->base;
  return Q_OK;
}

static int delete_document_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                              ProtobufCMessage **out, void *ud) {
  ingest_t *ing = ud;
  const Quarry__V1__DeleteDocumentRequest *req =
      (const Quarry__V1__DeleteDocumentRequest *)in;
  int rc = check_scope(ctx, req->tenant_id, req->document_id, "document_id");
  if (rc)
    return rc;
  const char *by = req->deleted_by ? req->deleted_by : "";
  if (strlen(by) > Q_LIMIT_USER_ID_BYTES || !q_valid_utf8(by, strlen(by))) {
    q_grpc_ctx_errorf(ctx, "deleted_by: at most %d bytes of UTF-8",
                      Q_LIMIT_USER_ID_BYTES);
    return Q_EINVAL;
  }
  /* The retriever gets what is left of the caller's time but a margin, so
   * a retriever that does not answer is reported (UNAVAILABLE, nothing
   * changed) before the caller gives up on us. */
  int64_t left = q_grpc_ctx_ms_left(ctx) - DELETE_REPLY_MARGIN_MS;
  int retire_ms = left < ing->cfg.call_timeout_ms ? (int)left : ing->cfg.call_timeout_ms;
  if (retire_ms < DELETE_MIN_RETIRE_MS)
    retire_ms = DELETE_MIN_RETIRE_MS;
  char err[512] = "";
  delete_result_t res;
  rc = lifecycle_delete_document(ing, req->tenant_id, req->document_id, by, retire_ms,
                                 &res, err, sizeof err);
  if (rc == Q_EUNAVAIL && res.refused) {
    q_log_warn("delete refused: retrieval side failed", "{s:s,s:s}", "document_id",
               req->document_id, "reason", err);
    q_grpc_ctx_errorf(ctx, "%s; the document was not deleted", err);
    return rc;
  }
  if (rc)
    return read_failed(ctx, rc, "document", err);
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__DeleteDocumentResponse *resp = q_arena_alloc(a, sizeof *resp);
  if (!resp)
    return Q_ENOMEM;
  quarry__v1__delete_document_response__init(resp);
  resp->deleted_at = q_arena_strdup(a, res.deleted_at);
  resp->jobs_stopped = res.jobs_stopped;
  resp->blobs_removed = res.blobs_removed;
  if (!resp->deleted_at)
    return Q_ENOMEM;
  *out = &resp->base;
  return Q_OK;
}

const q_grpc_method_t ingestion_methods[] = {
    {"Upload", Q_GRPC_CLIENT_STREAM, upload_cb},
    {"GetDocument", Q_GRPC_UNARY, get_document_cb},
    {"GetJob", Q_GRPC_UNARY, get_job_cb},
    {"ListDocuments", Q_GRPC_UNARY, list_documents_cb},
    {"ListJobs", Q_GRPC_UNARY, list_jobs_cb},
    {"DeleteDocument", Q_GRPC_UNARY, delete_document_cb},
    {"UploadBatch", Q_GRPC_UNARY, upload_batch_cb},
};
const size_t ingestion_nmethods = sizeof ingestion_methods / sizeof ingestion_methods[0];
