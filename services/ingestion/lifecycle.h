/* lifecycle.h - listing and deleting documents, listing jobs, and the
 * versions of a document (ListDocuments, ListJobs, DeleteDocument, the
 * versions of GetDocument).
 *
 * Lists are keyset paged, newest first: a page is ordered by (created_at,
 * id) descending and the cursor is the position of its last row, so the
 * next page is one index range scan whatever the depth (the indexes of
 * migration 5: documents_tenant_list_idx, jobs_tenant_list_idx). A cursor
 * is opaque to clients and hostile input to us: lifecycle_cursor_decode
 * takes nothing but the exact form lifecycle_cursor_encode writes.
 *
 * Deletion, in this order (docs/architecture.md, "Deleting a document"):
 *   1. one transaction locks the document row (tenant's, not deleted),
 *      marks its queued and running jobs failed ("document deleted": a
 *      worker's next heartbeat or progress update finds the job no longer
 *      its own and stops; the update waits for this transaction first)
 *      and marks the document deleted (who, when; the external id moved
 *      aside);
 *   1b. when a stopped job was indexing, its worker may have an Upsert on
 *      the way; the delete waits (bounded) until that call has returned
 *      (the worker's next write blocks on our row lock) or must have timed
 *      out, else it rolls back (UNAVAILABLE, try again);
 *   2. while that transaction is still open, the retriever retires the
 *      document's chunks (Upsert with replace_doc_id and no chunks);
 *   3. the transaction commits only when the retriever said yes, else it
 *      rolls back: a retrieval-side failure leaves the document exactly as
 *      it was (UNAVAILABLE, the gateway's 503);
 *   4. after the commit, blobs of the document's versions that no other
 *      live document uses are removed (a failure here is logged, never
 *      undoes the delete).
 * The one window left: the commit itself failing after the retriever
 * retired the chunks. The document then stays listed, out of retrieval,
 * and a repeated DELETE completes it. (Step 1b takes any session our
 * transaction blocks as the worker's; an upload of the same external id
 * blocked at that moment could end the wait early.) */
#ifndef QUARRY_INGESTION_LIFECYCLE_H
#define QUARRY_INGESTION_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest.h"
#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/pg.h"
#include "quarry/v1/ingestion.pb-c.h"

/* A position in a newest-first list: the row's created_at in microseconds
 * since the epoch and its id (a UUID). */
typedef struct list_pos {
  int64_t micros;
  char id[37];
} list_pos_t;

/* Length of an encoded cursor: "c1", 16 hex digits of micros, 32 of the
 * id. */
#define LIFECYCLE_CURSOR_LEN 50

/* Writes the cursor of pos into out (outlen > LIFECYCLE_CURSOR_LEN).
 * Q_EINVAL when pos->id is not a UUID or micros is negative. */
q_err_t lifecycle_cursor_encode(const list_pos_t *pos, char *out, size_t outlen);

/* Reads a cursor written by lifecycle_cursor_encode. Q_EINVAL for anything
 * else (wrong length or prefix, upper case or non-hex digits, a negative
 * time). */
q_err_t lifecycle_cursor_decode(const char *s, list_pos_t *pos);

/* Whether s is an RFC 3339 date-time ("2026-01-31T12:00:00Z",
 * "...T12:00:00.123+02:00"): the form only, with month 1..12, day 1..31,
 * hour 0..23, minute 0..59, second 0..60 and offsets up to 23:59. */
bool lifecycle_rfc3339_valid(const char *s);

/* Whether s is a job state a list may filter on. */
bool lifecycle_state_valid(const char *s);

/* What a list asks for; "" or NULL means no filter. */
typedef struct doc_filter {
  const char *q;            /* substring of title or filename, any case */
  const char *content_type; /* exact */
  const char *state;        /* lifecycle_state_valid */
  const char *created_after, *created_before; /* lifecycle_rfc3339_valid */
} doc_filter_t;

/* One page of tenant's documents after *after (NULL: from the newest),
 * at most limit (1..Q_LIMIT_LIST_ITEMS_MAX), into a reply allocated from a;
 * next_cursor is set when more rows follow. Inputs validated by the caller.
 * 0, or Q_EUNAVAIL / Q_EINTERNAL / Q_ENOMEM with err. */
q_err_t lifecycle_list_documents(q_pg_pool_t *p, const char *tenant,
                                 const doc_filter_t *f, const list_pos_t *after,
                                 int limit, q_arena_t *a,
                                 Quarry__V1__ListDocumentsResponse **out, char *err,
                                 size_t errlen);

/* The same for jobs, filtered by state and document id ("" for none). */
q_err_t lifecycle_list_jobs(q_pg_pool_t *p, const char *tenant, const char *state,
                            const char *document_id, const list_pos_t *after, int limit,
                            q_arena_t *a, Quarry__V1__ListJobsResponse **out, char *err,
                            size_t errlen);

/* Fills d->versions (newest first) for a document GetDocument found. 0, or
 * Q_EUNAVAIL / Q_EINTERNAL / Q_ENOMEM with err. */
q_err_t lifecycle_versions(q_pg_pool_t *p, Quarry__V1__Document *d, q_arena_t *a,
                           char *err, size_t errlen);

/* What a delete did. */
typedef struct delete_result {
  char deleted_at[40]; /* RFC 3339 */
  int jobs_stopped;
  int blobs_removed;
  int64_t indexing_ms; /* a stopped job was indexing, this long since its last
                          report; -1 when none was */
  bool refused;        /* Q_EUNAVAIL because the retrieval side could not
                          go along (err is for the client); nothing changed */
} delete_result_t;

/* Deletes a document of tenant as the file comment describes, calling the
 * retriever at in->cfg.retriever_addr for at most retire_ms (the caller
 * leaves itself time to answer before its own deadline). by names who
 * asked. 0;
 * Q_ENOTFOUND (unknown, another tenant's, already deleted); Q_EUNAVAIL
 * with err when the database or the retriever failed (nothing changed, but
 * see the commit window above); Q_EINTERNAL. */
q_err_t lifecycle_delete_document(ingest_t *in, const char *tenant, const char *id,
                                  const char *by, int retire_ms, delete_result_t *res,
                                  char *err, size_t errlen);

#endif
