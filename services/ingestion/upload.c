/* upload.c - Upload: validate the header, stream the data into a blob,
 * record the document and queue its job (see upload.h). */
#include "upload.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "docstore.h"
#include "extract/formats.h"
#include "ingest.h"
#include "quarry/error.h"
#include "quarry/limits.h"
#include "quarry/filter.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/validate.h"
#include "quarry/v1/ingestion.pb-c.h"

/* Checks the header and fills the parts of m it determines; *fc is the
 * format the declared type and file name choose (extract/formats.h). The
 * chunking spec is resolved against the service's settings (cfg) and kept
 * in full with the version. err names the field at fault. */
static q_err_t check_header(const ingest_cfg_t *cfg, const Quarry__V1__UploadHeader *h,
                            upload_meta_t *m, format_choice_t *fc, char *err,
                            size_t errlen) {
  if (!q_valid_tenant_id(h->tenant_id)) {
    snprintf(err, errlen,
             "header.tenant_id: required, 1..%d characters of [A-Za-z0-9._-] "
             "starting with a letter or digit",
             Q_LIMIT_TENANT_ID_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_text(h->filename, Q_LIMIT_FILENAME_BYTES)) {
    snprintf(err, errlen,
             "header.filename: at most %d bytes of UTF-8 without control characters",
             Q_LIMIT_FILENAME_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_text(h->title, Q_LIMIT_TITLE_BYTES)) {
    snprintf(err, errlen,
             "header.title: at most %d bytes of UTF-8 without control characters",
             Q_LIMIT_TITLE_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_text(h->external_id, Q_LIMIT_EXTERNAL_ID_BYTES)) {
    snprintf(err, errlen,
             "header.external_id: at most %d bytes of UTF-8 without control characters",
             Q_LIMIT_EXTERNAL_ID_BYTES);
    return Q_EINVAL;
  }
  if (h->idempotency_key && h->idempotency_key[0] &&
      !q_valid_idempotency_key(h->idempotency_key)) {
    snprintf(err, errlen, "header.idempotency_key: at most %d bytes of printable ASCII",
             Q_LIMIT_IDEMPOTENCY_KEY_BYTES);
    return Q_EINVAL;
  }
  m->idempotency_key = h->idempotency_key ? h->idempotency_key : "";
  m->metadata = "";
  if (h->metadata && h->metadata[0]) {
    json_t *meta = NULL;
    char why[256];
    if (q_meta_parse(h->metadata, strlen(h->metadata), &meta, why, sizeof why)) {
      snprintf(err, errlen, "header.metadata: %s", why);
      return Q_EINVAL;
    }
    json_decref(meta);
    m->metadata = h->metadata;
  }
  chunker_opts_t def = {cfg->chunk_tokens, cfg->chunk_overlap, cfg->chunking}, co;
  char why[256];
  if (chunker_opts_parse(h->chunking, &def, &co, why, sizeof why)) {
    snprintf(err, errlen, "header.chunking: %s", why);
    return Q_EINVAL;
  }
  chunker_opts_format(&co, m->chunking, sizeof m->chunking);
  int rc = formats_choose(h->content_type, h->filename, fc, err, errlen);
  if (rc)
    return rc;
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
  rc = check_header(&ing->cfg, first->header, &m, &fc, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }

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
  m.size = size;
  m.trace_id = q_trace_id();
  m.key_ttl_ms = ing->cfg.idempotency_ttl_ms;
  upload_result_t res;
  if (m.idempotency_key[0]) {
    /* A keyed upload commits on its own: its key's row lock orders it
     * against a concurrent retry (docstore_record_upload). */
    rc = blob_commit(&w, sha, err, sizeof err);
    if (rc) {
      q_log_error("cannot store upload", "{s:s}", "reason", err);
      q_grpc_ctx_errorf(ctx, "could not store the upload");
      return Q_EINTERNAL;
    }
    m.sha256 = sha;
    rc = docstore_record_upload(ing->pool, &m, &res, err, sizeof err);
  } else {
    /* Durable together with the uploads arriving meanwhile (commit.h). */
    bool blob_failed = false;
    rc = commit_upload(&ing->commits, ing->pool, &w, &m, sha, &res, &blob_failed, err,
                       sizeof err);
    if (blob_failed) {
      q_log_error("cannot store upload", "{s:s}", "reason", err);
      q_grpc_ctx_errorf(ctx, "could not store the upload");
      return Q_EINTERNAL;
    }
    m.sha256 = sha;
  }
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

/* ---- UploadBatch ---------------------------------------------------------- */

/* Checks an item's metadata: a JSON object of at most
 * Q_LIMIT_METADATA_BYTES bytes, or nothing. */
static q_err_t check_metadata(const char *json, char *err, size_t errlen) {
  if (!json || !json[0])
    return Q_OK;
  /* The rules of every upload's metadata (quarry/filter.h, q_meta_check). */
  json_t *meta = NULL;
  char why[256];
  q_err_t rc = q_meta_parse(json, strlen(json), &meta, why, sizeof why);
  json_decref(meta);
  if (rc)
    snprintf(err, errlen, "metadata: %s", why);
  return rc;
}

/* One item of a batch on its way: checked, written, then committed with
 * the others, then recorded. */
typedef struct staged {
  blob_writer_t w;
  int writing; /* w holds an open upload */
  upload_meta_t m;
  format_choice_t fc;
  char key[Q_LIMIT_IDEMPOTENCY_KEY_BYTES + 1];
  char ctype[Q_LIMIT_MEDIA_TYPE_BYTES + 1];
  char fname[Q_LIMIT_FILENAME_BYTES + 1];
  char sha[65];
  upload_result_t res;
  q_err_t rc;
  char err[768];
} staged_t;

/* The first half of storing an item as Upload would: header checks, the
 * bytes into a blob (not yet committed), the type confirmed from them. */
static q_err_t stage_item(ingest_t *ing, const char *tenant,
                          const Quarry__V1__UploadBatchItem *it, staged_t *st) {
  char *err = st->err;
  size_t errlen = sizeof st->err;
  if (!it->header) {
    snprintf(err, errlen, "header: required");
    return Q_EINVAL;
  }
  if ((it->header->tenant_id && it->header->tenant_id[0]) ||
      (it->header->idempotency_key && it->header->idempotency_key[0])) {
    snprintf(err, errlen,
             "header.tenant_id and header.idempotency_key: empty in an item (the batch's "
             "apply)");
    return Q_EINVAL;
  }
  Quarry__V1__UploadHeader h = *it->header;
  h.tenant_id = (char *)tenant;
  h.idempotency_key = st->key;
  q_err_t rc = check_header(&ing->cfg, &h, &st->m, &st->fc, err, errlen);
  if (!rc)
    rc = check_metadata(it->metadata_json, err, errlen);
  if (rc)
    return rc;
  if (it->data.len == 0) {
    snprintf(err, errlen, "empty document: no data");
    return Q_EINVAL;
  }
  char why[512];
  rc = blob_begin(&st->w, ing->cfg.blob_dir, ing->cfg.max_upload_bytes, why, sizeof why);
  if (rc) {
    q_log_error("cannot start upload", "{s:s}", "reason", why);
    snprintf(err, errlen, "could not store the document");
    return rc == Q_ENOMEM ? Q_ENOMEM : Q_EINTERNAL;
  }
  st->writing = 1;
  rc = blob_write(&st->w, it->data.data, it->data.len, why, sizeof why);
  if (rc) {
    snprintf(err, errlen, "%s", rc == Q_ETOOBIG ? why : "could not store the document");
    return rc == Q_ETOOBIG ? rc : Q_EINTERNAL;
  }
  rc = formats_confirm(&st->fc, st->w.head, st->w.head_len, err, errlen);
  if (rc)
    return rc;
  formats_stored_type(&st->fc, st->ctype, sizeof st->ctype);
  st->m.content_type = st->ctype;
  if (!st->m.filename[0]) {
    formats_default_filename(st->fc.fmt, st->fname, sizeof st->fname);
    st->m.filename = st->fname;
    if (!st->m.title_explicit)
      st->m.title = st->fname;
  }
  st->m.size = st->w.size;
  st->m.trace_id = q_trace_id();
  st->m.key_ttl_ms = ing->cfg.idempotency_ttl_ms;
  st->m.metadata = it->metadata_json;
  return Q_OK;
}

static Quarry__V1__UploadResponse *result_msg(q_arena_t *a, const upload_result_t *res) {
  Quarry__V1__UploadResponse *r = q_arena_alloc(a, sizeof *r);
  if (!r)
    return NULL;
  quarry__v1__upload_response__init(r);
  r->document_id = q_arena_strdup(a, res->document_id);
  r->job_id = q_arena_strdup(a, res->job_id);
  r->version = res->version;
  r->unchanged = res->unchanged;
  r->replayed = res->replayed;
  return r->document_id && r->job_id ? r : NULL;
}

q_err_t upload_batch_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud) {
  ingest_t *ing = ud;
  const Quarry__V1__UploadBatchRequest *req = (const Quarry__V1__UploadBatchRequest *)in;
  if (!q_valid_tenant_id(req->tenant_id)) {
    q_grpc_ctx_errorf(ctx,
                      "tenant_id: required, 1..%d characters of [A-Za-z0-9._-] starting "
                      "with a letter or digit",
                      Q_LIMIT_TENANT_ID_BYTES);
    return Q_EINVAL;
  }
  if (req->n_items == 0 || req->n_items > Q_LIMIT_BATCH_DOCUMENTS) {
    q_grpc_ctx_errorf(ctx, "items: 1 to %d documents", Q_LIMIT_BATCH_DOCUMENTS);
    return req->n_items ? Q_ETOOBIG : Q_EINVAL;
  }
  const char *bkey = req->idempotency_key ? req->idempotency_key : "";
  if (bkey[0] && (strlen(bkey) > Q_LIMIT_BATCH_IDEMPOTENCY_KEY_BYTES ||
                  !q_valid_idempotency_key(bkey))) {
    q_grpc_ctx_errorf(ctx, "idempotency_key: at most %d bytes of printable ASCII",
                      Q_LIMIT_BATCH_IDEMPOTENCY_KEY_BYTES);
    return Q_EINVAL;
  }
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__UploadBatchResponse *resp = q_arena_alloc(a, sizeof *resp);
  Quarry__V1__UploadBatchResult **results =
      q_arena_alloc(a, req->n_items * sizeof *results);
  if (!resp || !results)
    return Q_ENOMEM;
  quarry__v1__upload_batch_response__init(resp);
  resp->results = results;
  resp->n_results = req->n_items;
  int queued = 0, stored = 0, failed = 0;
  size_t n = req->n_items;
  staged_t *st = calloc(n, sizeof *st);
  blob_writer_t *ws = calloc(n, sizeof *ws);
  q_err_t *brc = calloc(n, sizeof *brc);
  char(*shas)[65] = calloc(n, sizeof *shas);
  if (!st || !ws || !brc || !shas) {
    free(st);
    free(ws);
    free(brc);
    free(shas);
    return Q_ENOMEM;
  }
  /* Every blob written, then made durable together (one syncfs), then
   * every document recorded: the disk flush is paid once per batch. */
  for (size_t i = 0; i < n; i++) {
    if (bkey[0])
      snprintf(st[i].key, sizeof st[i].key, "%s#%zu", bkey, i);
    st[i].rc = stage_item(ing, req->tenant_id, req->items[i], &st[i]);
    if (st[i].rc && st[i].writing)
      blob_abort(&st[i].w);
    if (!st[i].rc)
      ws[i] = st[i].w;
    brc[i] = st[i].rc ? Q_EINVAL : Q_OK; /* non-zero: not to be committed */
  }
  char cerr[256] = "";
  blob_commit_many(ws, (int)n, shas, brc, cerr, sizeof cerr);
  /* Every document and job in one transaction (one commit, one NOTIFY). */
  upload_meta_t *metas = calloc(n, sizeof *metas);
  upload_result_t *res = calloc(n, sizeof *res);
  q_err_t *rrc = calloc(n, sizeof *rrc);
  char(*rerr)[256] = calloc(n, sizeof *rerr);
  size_t *at = calloc(n, sizeof *at);
  size_t m = 0;
  q_err_t rc = metas && res && rrc && rerr && at ? Q_OK : Q_ENOMEM;
  for (size_t i = 0; i < n && !rc; i++) {
    if (!st[i].rc && brc[i]) {
      q_log_error("cannot store upload", "{s:s}", "reason", cerr);
      snprintf(st[i].err, sizeof st[i].err, "could not store the document");
      st[i].rc = Q_EINTERNAL;
    }
    if (st[i].rc)
      continue;
    memcpy(st[i].sha, shas[i], sizeof st[i].sha);
    st[i].m.sha256 = st[i].sha;
    metas[m] = st[i].m;
    at[m++] = i;
  }
  q_err_t drc = rc || m == 0
                    ? Q_OK
                    : docstore_record_uploads(ing->pool, metas, (int)m, res, rrc, rerr);
  for (size_t k = 0; k < m && !rc; k++) {
    staged_t *x = &st[at[k]];
    q_err_t irc = drc ? drc : rrc[k];
    if (irc == Q_ECONFLICT) {
      snprintf(x->err, sizeof x->err, "%s", rerr[k]);
    } else if (irc) {
      q_log_error("recording upload failed", "{s:s}", "reason",
                  drc ? "database unavailable" : rerr[k]);
      snprintf(x->err, sizeof x->err,
               "document store unavailable; not stored, send it again");
      irc = irc == Q_EUNAVAIL ? Q_EUNAVAIL : Q_EINTERNAL;
    } else {
      x->res = res[k];
      q_metrics_add(ing->m_bytes, NULL, (double)x->m.size);
    }
    x->rc = irc;
  }
  free(metas);
  free(res);
  free(rrc);
  free(rerr);
  free(at);
  for (size_t i = 0; i < n && !rc; i++) {
    Quarry__V1__UploadBatchResult *r = q_arena_alloc(a, sizeof *r);
    if (!r) {
      rc = Q_ENOMEM;
      break;
    }
    quarry__v1__upload_batch_result__init(r);
    results[i] = r;
    if (st[i].rc) {
      failed++;
      r->error_code = (char *)q_err_slug(st[i].rc);
      if (!(r->error = q_arena_strdup(a, st[i].err)))
        rc = Q_ENOMEM;
      continue;
    }
    if (!(r->result = result_msg(a, &st[i].res)))
      rc = Q_ENOMEM;
    stored++;
    queued += !st[i].res.unchanged && !st[i].res.replayed;
  }
  free(st);
  free(ws);
  free(brc);
  free(shas);
  if (rc)
    return rc;
  q_log_info("batch uploaded", "{s:s,s:i,s:i,s:i,s:i}", "tenant_id", req->tenant_id,
             "documents", (int)req->n_items, "stored", stored, "queued", queued, "failed",
             failed);
  if (queued)
    ingest_kick(ing);
  if (bkey[0] && stored)
    expire_keys(ing);
  *out = &resp->base;
  return Q_OK;
}
