/* upload.h - the client-streaming Upload handler.
 *
 * Stream contract (what a client such as the REST gateway must send): the
 * first UploadRequest carries the header (tenant_id, and optionally
 * content_type as the client declared it, filename, title, external_id)
 * and may carry data; every later
 * message carries only data (a header there is refused). Pieces of up to
 * 1 MiB are recommended; each message must fit QUARRY_MAX_MSG_BYTES. The
 * data goes straight to a file in the blob directory while it is hashed,
 * so the handler keeps no copy of the document itself; only its first
 * bytes are looked at, to check them against the declared type
 * (extract/formats.h).
 *
 * A header with an idempotency_key makes the upload exactly-once per
 * (tenant, key) for QUARRY_IDEMPOTENCY_TTL_MS: a retry of a stored upload
 * answers the stored result with replayed set, a different upload under the
 * same key is refused (ABORTED); see docstore_record_upload. The data of a
 * retry is still received and hashed, since the fingerprint includes its
 * SHA-256. */
#ifndef QUARRY_INGESTION_UPLOAD_H
#define QUARRY_INGESTION_UPLOAD_H

#include "quarry/grpc.h"
#include "quarry/error.h"

/* Upload handler; ud is the ingest_t. Errors: INVALID_ARGUMENT (missing
 * or bad header field, empty document), Q_EUNSUPPORTED for a type Quarry
 * does not read or content that contradicts the declared type (the
 * message names both), Q_ETOOBIG past QUARRY_MAX_UPLOAD_BYTES, Q_ECONFLICT
 * (ABORTED) for an idempotency key used by a different upload, UNAVAILABLE
 * when the database is down. */
q_err_t upload_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in, ProtobufCMessage **out,
                  void *ud);

/* UploadBatch handler (unary); ud is the ingest_t. Each item is stored
 * exactly as an Upload with the same header would be (its own blob,
 * document and job) and answered in its own result: an item at fault gets
 * error_code (q_err_slug) and error, the others are stored regardless.
 * When the database becomes unavailable the items after it are not tried
 * and answer "unavailable" (those before are stored). With the batch's
 * idempotency_key, item i uses the key "<key>#<i>": a retried batch
 * replays what was stored and stores the rest. The whole call fails only
 * on a bad tenant_id, key or item count (INVALID_ARGUMENT, or Q_ETOOBIG,
 * OUT_OF_RANGE, past Q_LIMIT_BATCH_DOCUMENTS items). */
q_err_t upload_batch_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud);

#endif
