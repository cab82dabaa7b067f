/* handlers.c - GetDocument and GetJob, plus the method table that also
 * routes Upload (upload.c). Reads are scoped by tenant: another tenant's
 * document is NOT_FOUND, exactly like one that does not exist. */
#include "handlers.h"

#include "docstore.h"
#include "ingest.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/v1/ingestion.pb-c.h"
#include "quarry/validate.h"
#include "upload.h"

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

const q_grpc_method_t ingestion_methods[] = {
    {"Upload", Q_GRPC_CLIENT_STREAM, upload_cb},
    {"GetDocument", Q_GRPC_UNARY, get_document_cb},
    {"GetJob", Q_GRPC_UNARY, get_job_cb},
    {"UploadBatch", Q_GRPC_UNARY, upload_batch_cb},
};
const size_t ingestion_nmethods = sizeof ingestion_methods / sizeof ingestion_methods[0];
