/* upload.c - Upload: validate the header, stream the data into a blob,
 * record the document and queue its job (see upload.h). */
#include "upload.h"

#include <stdio.h>
#include <string.h>

#include "blob.h"
#include "docstore.h"
#include "extract/formats.h"
#include "ingest.h"
#include "quarry/error.h"
#include "quarry/filter.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/validate.h"
#include "quarry/v1/ingestion.pb-c.h"

/* Checks the header and fills the parts of m it determines; *fc is the
 * format the declared type and file name choose (extract/formats.h). */
static q_err_t check_header(q_grpc_ctx_t *ctx, const Quarry__V1__UploadHeader *h,
                            upload_meta_t *m, format_choice_t *fc) {
  char err[768];
  if (!q_valid_tenant_id(h->tenant_id)) {
    q_grpc_ctx_errorf(ctx,
                      "header.tenant_id: required, 1..%d characters of [A-Za-z0-9._-] "
                      "starting with a letter or digit",
                      Q_LIMIT_TENANT_ID_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_text(h->filename, Q_LIMIT_FILENAME_BYTES)) {
    q_grpc_ctx_errorf(ctx,
                      "header.filename: at most %d bytes of UTF-8 without control "
                      "characters",
                      Q_LIMIT_FILENAME_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_text(h->title, Q_LIMIT_TITLE_BYTES)) {
    q_grpc_ctx_errorf(ctx,
                      "header.title: at most %d bytes of UTF-8 without control "
                      "characters",
                      Q_LIMIT_TITLE_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_text(h->external_id, Q_LIMIT_EXTERNAL_ID_BYTES)) {
    q_grpc_ctx_errorf(ctx,
                      "header.external_id: at most %d bytes of UTF-8 without control "
                      "characters",
                      Q_LIMIT_EXTERNAL_ID_BYTES);
    return Q_EINVAL;
  }
  if (h->idempotency_key && h->idempotency_key[0] &&
      !q_valid_idempotency_key(h->idempotency_key)) {
    q_grpc_ctx_errorf(ctx, "header.idempotency_key: at most %d bytes of printable ASCII",
                      Q_LIMIT_IDEMPOTENCY_KEY_BYTES);
    return Q_EINVAL;
  }
  m->idempotency_key = h->idempotency_key ? h->idempotency_key : "";
  m->metadata = "";
  if (h->metadata && h->metadata[0]) {
    json_t *meta = NULL;
    if (q_meta_parse(h->metadata, strlen(h->metadata), &meta, err, sizeof err)) {
      q_grpc_ctx_errorf(ctx, "header.metadata: %s", err);
      return Q_EINVAL;
    }
    json_decref(meta);
    m->metadata = h->metadata;
  }
  int rc = formats_choose(h->content_type, h->filename, fc, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
  m->tenant_id = h->tenant_id;
  m->filename = h->filename ? h->filename : "";
  m->external_id = h->external_id ? h->external_id : "";
  m->title_explicit = h->title && h->title[0];
  m->title = m->title_explicit ? h->title : m->filename;
  return Q_OK;
}

/* Streams every data piece into w, starting with first's. Each later piece
 * is unpacked into its own short-lived arena, so memory stays at one piece
 * however large the upload is. */
static int receive(q_grpc_ctx_t *ctx, const Quarry__V1__UploadRequest *first,
                   blob_writer_t *w) {
  char err[256];
  const Quarry__V1__UploadRequest *r = first;
  q_arena_t *piece = NULL;
  int rc = Q_OK;
  for (;;) {
    if (r->data.len > 0) {
      rc = blob_write(w, r->data.data, r->data.len, err, sizeof err);
      if (rc) {
        q_grpc_ctx_errorf(ctx, "%s",
                          rc == Q_ETOOBIG ? err : "could not store the upload");
        if (rc != Q_ETOOBIG)
          q_log_error("upload write failed", "{s:s}", "reason", err);
        goto done;
      }
    }
    q_arena_free(piece);
    if (!(piece = q_arena_new(0))) {
      rc = Q_ENOMEM;
      goto done;
    }
    ProtobufCMessage *msg = NULL;
    rc = q_grpc_ctx_recv_into(ctx, piece, &msg);
    if (rc || !msg)
      goto done;
    r = (const Quarry__V1__UploadRequest *)msg;
    if (r->header) {
      q_grpc_ctx_errorf(ctx, "header: only allowed in the first message");
      rc = Q_EINVAL;
      goto done;
    }
  }
done:
  q_arena_free(piece);
  return rc;
}

/* Expired idempotency keys are deleted a few at a time by the uploads that
 * make new ones: each keyed upload adds one row and removes up to this
 * many, so the table stays near the live keys without a timer of its own. */
#define EXPIRE_KEYS_PER_UPLOAD 16

static void expire_keys(ingest_t *ing) {
  char err[256];
  int n = 0;
  if (docstore_expire_keys(ing->pool, EXPIRE_KEYS_PER_UPLOAD, &n, err, sizeof err))
    q_log_warn("cannot delete expired idempotency keys", "{s:s}", "reason", err);
}

q_err_t upload_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in, ProtobufCMessage **out,
                  void *ud) {
  ingest_t *ing = ud;
  char err[768];
  ProtobufCMessage *msg = NULL;
  int rc = q_grpc_ctx_recv(ctx, &msg);
  if (rc)
    return rc;
  if (!msg) {
    q_grpc_ctx_errorf(ctx,
                      "empty upload stream: the first message must carry the header");
    return Q_EINVAL;
  }
  const Quarry__V1__UploadRequest *first = (const Quarry__V1__UploadRequest *)msg;
  if (!first->header) {
    q_grpc_ctx_errorf(ctx, "header: required in the first message");
    return Q_EINVAL;
  }
  upload_meta_t m;
  memset(&m, 0, sizeof m);
  format_choice_t fc;
  rc = check_header(ctx, first->header, &m, &fc);
  if (rc)
    return rc;

  blob_writer_t w;
  rc = blob_begin(&w, ing->cfg.blob_dir, ing->cfg.max_upload_bytes, err, sizeof err);
  if (rc) {
    q_log_error("cannot start upload", "{s:s}", "reason", err);
    q_grpc_ctx_errorf(ctx, "could not store the upload");
    return rc == Q_ENOMEM ? Q_ENOMEM : Q_EINTERNAL;
  }
  rc = receive(ctx, first, &w);
  if (rc) {
    blob_abort(&w);
    return rc;
  }
  if (w.size == 0) {
    blob_abort(&w);
    q_grpc_ctx_errorf(ctx, "empty document: no data received");
    return Q_EINVAL;
  }
  /* The bytes must agree with the declared type (or decide it). */
  rc = formats_confirm(&fc, w.head, w.head_len, err, sizeof err);
  if (rc) {
    blob_abort(&w);
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
  char ctype[Q_LIMIT_MEDIA_TYPE_BYTES + 1], fname[Q_LIMIT_FILENAME_BYTES + 1];
  formats_stored_type(&fc, ctype, sizeof ctype);
  m.content_type = ctype;
  if (!m.filename[0]) {
    formats_default_filename(fc.fmt, fname, sizeof fname);
    m.filename = fname;
    if (!m.title_explicit)
      m.title = fname;
  }
  char sha[65];
  int64_t size = w.size;
  rc = blob_commit(&w, sha, err, sizeof err);
  if (rc) {
    q_log_error("cannot store upload", "{s:s}", "reason", err);
    q_grpc_ctx_errorf(ctx, "could not store the upload");
    return Q_EINTERNAL;
  }

  m.sha256 = sha;
  m.size = size;
  m.trace_id = q_trace_id();
  m.key_ttl_ms = ing->cfg.idempotency_ttl_ms;
  upload_result_t res;
  rc = docstore_record_upload(ing->pool, &m, &res, err, sizeof err);
  if (rc == Q_ECONFLICT) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
  if (rc) {
    q_log_error("recording upload failed", "{s:s}", "reason", err);
    q_grpc_ctx_errorf(ctx, "document store unavailable");
    return rc == Q_EUNAVAIL ? Q_EUNAVAIL : Q_EINTERNAL;
  }
  q_metrics_add(ing->m_bytes, NULL, (double)size);
  q_log_info(res.replayed ? "upload replayed: idempotency key seen before"
                          : "document uploaded",
             "{s:s,s:s,s:s,s:i,s:I,s:b,s:b}", "tenant_id", m.tenant_id, "document_id",
             res.document_id, "job_id", res.job_id, "version", res.version, "bytes",
             (long long)size, "unchanged", res.unchanged, "replayed", res.replayed);
  if (!res.unchanged && !res.replayed)
    ingest_kick(ing);
  if (m.idempotency_key[0] && !res.replayed)
    expire_keys(ing);

  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__UploadResponse *resp = q_arena_alloc(a, sizeof *resp);
  if (!resp)
    return Q_ENOMEM;
  quarry__v1__upload_response__init(resp);
  resp->document_id = q_arena_strdup(a, res.document_id);
  resp->job_id = q_arena_strdup(a, res.job_id);
  resp->version = res.version;
  resp->unchanged = res.unchanged;
  resp->replayed = res.replayed;
  if (!resp->document_id || !resp->job_id)
    return Q_ENOMEM;
  *out = &resp->base;
  return Q_OK;
}
