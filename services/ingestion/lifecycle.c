/* lifecycle.c - document and job lists, versions and deletion (see
 * lifecycle.h for the order of a delete and why). */
#include "lifecycle.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blob.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/stubs.h"
#include "quarry/trace.h"
#include "quarry/validate.h"
#include "quarry/v1/retriever.pb-c.h"

#define ACQUIRE_MS 5000
#define WAIT_POLL_MS 20 /* how often a delete looks for the indexing worker */
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* A row's position: created_at in whole microseconds since the epoch
 * (extract gives an exact numeric on PostgreSQL 14 and later). */
#define POS(col) "floor(extract(epoch FROM " col ") * 1000000)::bigint"
#define AFTER_POS "('epoch'::timestamptz + $%d::bigint * interval '1 microsecond')"

/* ---- cursors and parameters ------------------------------------------ */

#define NOT_HEX 16 /* hexval of a character that is not a lower-case hex digit */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return NOT_HEX;
}

q_err_t lifecycle_cursor_encode(const list_pos_t *pos, char *out, size_t outlen) {
  if (pos->micros < 0 || !q_valid_uuid(pos->id) || outlen <= LIFECYCLE_CURSOR_LEN)
    return Q_EINVAL;
  int n = snprintf(out, outlen, "c1%016llx", (unsigned long long)pos->micros);
  for (const char *p = pos->id; *p; p++)
    if (*p != '-') {
      char c = *p;
      out[n++] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
  out[n] = '\0';
  return n == LIFECYCLE_CURSOR_LEN ? Q_OK : Q_EINVAL;
}

q_err_t lifecycle_cursor_decode(const char *s, list_pos_t *pos) {
  if (!s || strlen(s) != LIFECYCLE_CURSOR_LEN || s[0] != 'c' || s[1] != '1')
    return Q_EINVAL;
  for (int i = 2; i < LIFECYCLE_CURSOR_LEN; i++)
    if (hexval(s[i]) == NOT_HEX)
      return Q_EINVAL;
  uint64_t v = 0;
  for (int i = 2; i < 18; i++)
    v = v << 4 | (uint64_t)hexval(s[i]);
  if (v > (uint64_t)INT64_MAX)
    return Q_EINVAL;
  pos->micros = (int64_t)v;
  /* 8-4-4-4-12 */
  static const int groups[5] = {8, 4, 4, 4, 12};
  const char *h = s + 18;
  int o = 0;
  for (int g = 0; g < 5; g++) {
    if (g)
      pos->id[o++] = '-';
    memcpy(pos->id + o, h, (size_t)groups[g]);
    o += groups[g];
    h += groups[g];
  }
  pos->id[o] = '\0';
  return Q_OK;
}

static bool digits(const char *s, int n, int lo, int hi) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return 0;
    v = v * 10 + (s[i] - '0');
  }
  return v >= lo && v <= hi;
}

bool lifecycle_rfc3339_valid(const char *s) {
  /* YYYY-MM-DDTHH:MM:SS */
  if (!s || strlen(s) < 20 || strlen(s) > 40)
    return 0;
  if (!digits(s, 4, 1, 9999) || s[4] != '-' || !digits(s + 5, 2, 1, 12) || s[7] != '-' ||
      !digits(s + 8, 2, 1, 31) || (s[10] != 'T' && s[10] != 't') ||
      !digits(s + 11, 2, 0, 23) || s[13] != ':' || !digits(s + 14, 2, 0, 59) ||
      s[16] != ':' || !digits(s + 17, 2, 0, 60))
    return 0;
  const char *p = s + 19;
  if (*p == '.') {
    int n = 0;
    for (p++; *p >= '0' && *p <= '9'; p++)
      n++;
    if (n < 1 || n > 9)
      return 0;
  }
  if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
    return 1;
  if ((*p == '+' || *p == '-') && digits(p + 1, 2, 0, 23) && p[3] == ':' &&
      digits(p + 4, 2, 0, 59) && p[6] == '\0')
    return 1;
  return 0;
}

bool lifecycle_state_valid(const char *s) {
  static const char *const states[] = {"queued", "running", "done", "failed"};
  for (size_t i = 0; s && i < sizeof states / sizeof states[0]; i++)
    if (strcmp(s, states[i]) == 0)
      return 1;
  return 0;
}

/* ---- lists -------------------------------------------------------------- */

/* A statement with a growing list of parameters. */
typedef struct stmt {
  char sql[2048];
  size_t len;
  const char *params[12];
  char bufs[4][32];
  int n;
  int overflow;
} stmt_t;

static void add_sql(stmt_t *s, const char *fmt, int arg) {
  if (s->len >= sizeof s->sql) {
    s->overflow = 1;
    return;
  }
  int k = snprintf(s->sql + s->len, sizeof s->sql - s->len, fmt, arg);
  if (k < 0 || (size_t)k >= sizeof s->sql - s->len)
    s->overflow = 1;
  else
    s->len += (size_t)k;
}

/* Appends a condition holding one new parameter ($%d in fmt). */
static void add_cond(stmt_t *s, const char *fmt, const char *value) {
  if (s->n >= (int)(sizeof s->params / sizeof s->params[0])) {
    s->overflow = 1;
    return;
  }
  s->params[s->n++] = value;
  add_sql(s, fmt, s->n);
}

static bool set(const char *s) {
  return s && *s;
}

/* The keyset condition: rows strictly older than *after. */
static void add_after(stmt_t *s, const list_pos_t *after, const char *tbl) {
  if (!after)
    return;
  snprintf(s->bufs[0], sizeof s->bufs[0], "%lld", (long long)after->micros);
  s->params[s->n++] = s->bufs[0];
  s->params[s->n++] = after->id;
  char fmt[256];
  snprintf(fmt, sizeof fmt, " AND (%s.created_at, %s.id) < (" AFTER_POS ", $%%d::uuid)",
           tbl, tbl, s->n - 1);
  add_sql(s, fmt, s->n);
}

/* ILIKE pattern for a substring: %, _ and \ taken literally. */
static char *like_pattern(q_arena_t *a, const char *q) {
  size_t n = strlen(q);
  char *out = q_arena_alloc(a, 2 * n + 3);
  if (!out)
    return NULL;
  size_t o = 0;
  out[o++] = '%';
  for (size_t i = 0; i < n; i++) {
    if (q[i] == '%' || q[i] == '_' || q[i] == '\\')
      out[o++] = '\\';
    out[o++] = q[i];
  }
  out[o++] = '%';
  out[o] = '\0';
  return out;
}

static char *cell(q_arena_t *a, PGresult *r, int row, int i) {
  return q_arena_strdup(a, PQgetisnull(r, row, i) ? "" : PQgetvalue(r, row, i));
}

/* Runs s on a borrowed connection. */
static PGresult *run(q_pg_pool_t *p, stmt_t *s, q_err_t *rc, char *err, size_t errlen) {
  if (s->overflow) {
    snprintf(err, errlen, "list statement too long");
    *rc = Q_EINTERNAL;
    return NULL;
  }
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c) {
    *rc = Q_EUNAVAIL;
    return NULL;
  }
  PGresult *r = q_pg_query(c, s->sql, s->n, s->params, "listing", rc, err, errlen);
  q_pg_release(p, c);
  return r;
}

/* next_cursor from the last row kept (its position in columns pos_col and
 * id_col), when the statement found one row more than limit. */
static q_err_t next_cursor(q_arena_t *a, PGresult *r, int limit, int pos_col, int id_col,
                           char **out) {
  *out = "";
  if (PQntuples(r) <= limit)
    return Q_OK;
  list_pos_t pos;
  pos.micros = strtoll(PQgetvalue(r, limit - 1, pos_col), NULL, 10);
  snprintf(pos.id, sizeof pos.id, "%s", PQgetvalue(r, limit - 1, id_col));
  char buf[LIFECYCLE_CURSOR_LEN + 1];
  q_err_t rc = lifecycle_cursor_encode(&pos, buf, sizeof buf);
  if (rc)
    return Q_EINTERNAL;
  *out = q_arena_strdup(a, buf);
  return *out ? Q_OK : Q_ENOMEM;
}

// clang-format off
#define DOC_COLS                                                                    \
  "SELECT d.id, d.tenant_id, d.title, d.filename, d.content_type, d.external_id, "  \
  "d.version, d.size_bytes, d.sha256, d.status, d.chunk_count, " TS("d.created_at") \
  ", " TS("d.updated_at") ", COALESCE(d.job_id::text, ''), " POS("d.created_at")    \
  " FROM documents d WHERE d.tenant_id = $1 AND d.deleted_at IS NULL"
#define JOB_COLS                                                                    \
  "SELECT j.id, j.document_id, j.status, j.error, j.chunk_count, j.attempts, "      \
  TS("j.created_at") ", " TS("j.updated_at") ", j.stage, j.progress_done, "         \
  "j.progress_total, j.dep_retries, " POS("j.created_at")                           \
  " FROM jobs j WHERE j.tenant_id = $1"
// clang-format on

q_err_t lifecycle_list_documents(q_pg_pool_t *p, const char *tenant,
                                 const doc_filter_t *f, const list_pos_t *after,
                                 int limit, q_arena_t *a,
                                 Quarry__V1__ListDocumentsResponse **out, char *err,
                                 size_t errlen) {
  stmt_t s = {.n = 0};
  s.params[s.n++] = tenant;
  memcpy(s.sql, DOC_COLS, sizeof DOC_COLS);
  s.len = sizeof DOC_COLS - 1;
  if (set(f->q)) {
    char *pat = like_pattern(a, f->q);
    if (!pat)
      return Q_ENOMEM;
    /* lower() LIKE lower(): the form the trigram indexes of migration 6
     * serve (ILIKE would too, but this keeps one case rule for both). */
    add_cond(&s,
             " AND (lower(d.title) LIKE lower($%1$d) OR lower(d.filename) LIKE "
             "lower($%1$d))",
             pat);
  }
  if (set(f->content_type))
    add_cond(&s, " AND d.content_type = $%d", f->content_type);
  if (set(f->state))
    add_cond(&s, " AND d.status = $%d", f->state);
  /* Compared at the millisecond precision created_at is shown with, so a
   * bound copied from a listed document excludes that document. */
  if (set(f->created_after))
    add_cond(&s, " AND date_trunc('milliseconds', d.created_at) > $%d::timestamptz",
             f->created_after);
  if (set(f->created_before))
    add_cond(&s, " AND date_trunc('milliseconds', d.created_at) < $%d::timestamptz",
             f->created_before);
  add_after(&s, after, "d");
  snprintf(s.bufs[1], sizeof s.bufs[1], "%d", limit + 1);
  add_cond(&s, " ORDER BY d.created_at DESC, d.id DESC LIMIT $%d::int", s.bufs[1]);

  q_err_t rc = Q_OK;
  PGresult *r = run(p, &s, &rc, err, errlen);
  if (!r)
    return rc;
  Quarry__V1__ListDocumentsResponse *resp = q_arena_alloc(a, sizeof *resp);
  int rows = PQntuples(r) < limit ? PQntuples(r) : limit;
  Quarry__V1__Document **docs = q_arena_alloc(a, ((size_t)rows + 1) * sizeof *docs);
  if (!resp || !docs) {
    PQclear(r);
    return Q_ENOMEM;
  }
  quarry__v1__list_documents_response__init(resp);
  for (int i = 0; i < rows; i++) {
    Quarry__V1__Document *d = q_arena_alloc(a, sizeof *d);
    if (!d) {
      PQclear(r);
      return Q_ENOMEM;
    }
    quarry__v1__document__init(d);
    d->id = cell(a, r, i, 0);
    d->tenant_id = cell(a, r, i, 1);
    d->title = cell(a, r, i, 2);
    d->filename = cell(a, r, i, 3);
    d->content_type = cell(a, r, i, 4);
    d->external_id = cell(a, r, i, 5);
    d->version = atoi(PQgetvalue(r, i, 6));
    d->size_bytes = strtoll(PQgetvalue(r, i, 7), NULL, 10);
    d->sha256 = cell(a, r, i, 8);
    d->status = cell(a, r, i, 9);
    d->chunk_count = atoi(PQgetvalue(r, i, 10));
    d->created_at = cell(a, r, i, 11);
    d->updated_at = cell(a, r, i, 12);
    d->job_id = cell(a, r, i, 13);
    docs[i] = d;
  }
  resp->documents = docs;
  resp->n_documents = (size_t)rows;
  rc = next_cursor(a, r, limit, 14, 0, &resp->next_cursor);
  PQclear(r);
  if (rc)
    return rc;
  *out = resp;
  return Q_OK;
}

q_err_t lifecycle_list_jobs(q_pg_pool_t *p, const char *tenant, const char *state,
                            const char *document_id, const list_pos_t *after, int limit,
                            q_arena_t *a, Quarry__V1__ListJobsResponse **out, char *err,
                            size_t errlen) {
  stmt_t s = {.n = 0};
  s.params[s.n++] = tenant;
  memcpy(s.sql, JOB_COLS, sizeof JOB_COLS);
  s.len = sizeof JOB_COLS - 1;
  if (set(state))
    add_cond(&s, " AND j.status = $%d", state);
  if (set(document_id))
    add_cond(&s, " AND j.document_id = $%d::uuid", document_id);
  add_after(&s, after, "j");
  snprintf(s.bufs[1], sizeof s.bufs[1], "%d", limit + 1);
  add_cond(&s, " ORDER BY j.created_at DESC, j.id DESC LIMIT $%d::int", s.bufs[1]);

  q_err_t rc = Q_OK;
  PGresult *r = run(p, &s, &rc, err, errlen);
  if (!r)
    return rc;
  Quarry__V1__ListJobsResponse *resp = q_arena_alloc(a, sizeof *resp);
  int rows = PQntuples(r) < limit ? PQntuples(r) : limit;
  Quarry__V1__Job **jobs = q_arena_alloc(a, ((size_t)rows + 1) * sizeof *jobs);
  if (!resp || !jobs) {
    PQclear(r);
    return Q_ENOMEM;
  }
  quarry__v1__list_jobs_response__init(resp);
  for (int i = 0; i < rows; i++) {
    Quarry__V1__Job *j = q_arena_alloc(a, sizeof *j);
    if (!j) {
      PQclear(r);
      return Q_ENOMEM;
    }
    quarry__v1__job__init(j);
    j->id = cell(a, r, i, 0);
    j->document_id = cell(a, r, i, 1);
    j->status = cell(a, r, i, 2);
    j->error = cell(a, r, i, 3);
    j->chunk_count = atoi(PQgetvalue(r, i, 4));
    j->attempts = atoi(PQgetvalue(r, i, 5));
    j->created_at = cell(a, r, i, 6);
    j->updated_at = cell(a, r, i, 7);
    j->stage = cell(a, r, i, 8);
    j->progress_done = atoi(PQgetvalue(r, i, 9));
    j->progress_total = atoi(PQgetvalue(r, i, 10));
    j->dependency_retries = atoi(PQgetvalue(r, i, 11));
    jobs[i] = j;
  }
  resp->jobs = jobs;
  resp->n_jobs = (size_t)rows;
  rc = next_cursor(a, r, limit, 12, 0, &resp->next_cursor);
  PQclear(r);
  if (rc)
    return rc;
  *out = resp;
  return Q_OK;
}

q_err_t lifecycle_versions(q_pg_pool_t *p, Quarry__V1__Document *d, q_arena_t *a,
                           char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  const char *params[1] = {d->id};
  q_err_t rc = Q_OK;
  /* A version's latest job: the newest of its jobs (a failed version
   * uploaded again gets a second one). */
  PGresult *r = q_pg_query(
      c,
      "SELECT v.version, v.filename, v.content_type, v.size_bytes, v.sha256, " TS(
          "v.created_at") ", COALESCE(j.id::text, ''), COALESCE(j.status, ''), "
                          "v.metadata::text, v.chunking "
                          "FROM document_versions v LEFT JOIN LATERAL (SELECT id, status "
                          "FROM jobs "
                          "  WHERE jobs.document_id = v.document_id AND jobs.version = "
                          "v.version "
                          "  ORDER BY created_at DESC, id DESC LIMIT 1) j ON true "
                          "WHERE v.document_id = $1::uuid ORDER BY v.version DESC",
      1, params, "reading versions", &rc, err, errlen);
  q_pg_release(p, c);
  if (!r)
    return rc;
  int n = PQntuples(r);
  d->versions = q_arena_alloc(a, ((size_t)n + 1) * sizeof *d->versions);
  if (!d->versions) {
    PQclear(r);
    return Q_ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    Quarry__V1__DocumentVersion *v = q_arena_alloc(a, sizeof *v);
    if (!v) {
      PQclear(r);
      return Q_ENOMEM;
    }
    quarry__v1__document_version__init(v);
    v->version = atoi(PQgetvalue(r, i, 0));
    v->filename = cell(a, r, i, 1);
    v->content_type = cell(a, r, i, 2);
    v->size_bytes = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    v->sha256 = cell(a, r, i, 4);
    v->created_at = cell(a, r, i, 5);
    v->job_id = cell(a, r, i, 6);
    v->status = cell(a, r, i, 7);
    v->metadata = cell(a, r, i, 8);
    v->chunking = cell(a, r, i, 9);
    d->versions[i] = v;
  }
  d->n_versions = (size_t)n;
  PQclear(r);
  return Q_OK;
}

/* ---- delete ------------------------------------------------------------- */

/* Step 1 of a delete, inside the open transaction. */
static q_err_t mark_deleted(PGconn *c, const char *tenant, const char *id, const char *by,
                            delete_result_t *res, char *err, size_t errlen) {
  const char *key[2] = {id, tenant};
  q_err_t rc = Q_OK;
  /* Locks in the order every other writer takes them, the document's jobs
   * before the document (the claim and the end of a job update a job, then
   * its document): the other order deadlocks with a worker claiming the
   * document's job at that moment. */
  PGresult *r =
      q_pg_query(c,
                 "SELECT 1 FROM jobs WHERE document_id = $1::uuid AND tenant_id = $2 "
                 "AND status IN ('queued', 'running') FOR UPDATE",
                 2, key, "locking jobs", &rc, err, errlen);
  if (!r)
    return rc;
  PQclear(r);
  r = q_pg_query(c,
                 "SELECT 1 FROM documents WHERE id = $1::uuid AND tenant_id = $2 "
                 "AND deleted_at IS NULL FOR UPDATE",
                 2, key, "locking document", &rc, err, errlen);
  if (!r)
    return rc;
  int found = PQntuples(r) == 1;
  PQclear(r);
  if (!found)
    return Q_ENOTFOUND;
  /* The old row of each stopped job says whether a worker may have an
   * Upsert in flight: only in stage "indexing" does it call the retriever,
   * right after recording that stage. */
  r = q_pg_query(
      c,
      "WITH old AS (SELECT id, status, stage, updated_at FROM jobs"
      "  WHERE document_id = $1::uuid AND status IN ('queued', 'running') FOR UPDATE),"
      " u AS (UPDATE jobs SET status = 'failed', error = 'document deleted',"
      "  claimed_by = '', updated_at = now() FROM old WHERE jobs.id = old.id"
      "  RETURNING old.status, old.stage, old.updated_at) "
      "SELECT count(*), COALESCE(min(CASE WHEN status = 'running' AND stage = 'indexing'"
      "  THEN (extract(epoch FROM clock_timestamp() - updated_at) * 1000)::bigint END),"
      "  -1) FROM u",
      1, key, "stopping jobs", &rc, err, errlen);
  if (!r)
    return rc;
  res->jobs_stopped = atoi(PQgetvalue(r, 0, 0));
  res->indexing_ms = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  const char *params[3] = {id, tenant, by ? by : ""};
  r = q_pg_query(c,
                 "UPDATE documents SET deleted_at = now(), deleted_by = $3, "
                 "deleted_external_id = external_id, external_id = '', "
                 "status = CASE WHEN status IN ('queued', 'running') THEN 'failed' "
                 "ELSE status END, updated_at = now() "
                 "WHERE id = $1::uuid AND tenant_id = $2 RETURNING " TS("deleted_at"),
                 3, params, "marking document deleted", &rc, err, errlen);
  if (!r)
    return rc;
  snprintf(res->deleted_at, sizeof res->deleted_at, "%s",
           PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "");
  PQclear(r);
  return Q_OK;
}

/* Step 1b, when a worker was indexing the document: its Upsert may still
 * be on its way to the retriever, and would bring chunks back after the
 * retirement. Once that call has returned, the worker's next write to its
 * job (progress or finish) waits for this transaction's row lock; so wait,
 * inside the transaction, until some session is blocked by us, or until
 * the Upsert must have timed out (call_timeout_ms after the stage began),
 * for at most budget_ms. Q_OK when it is safe to retire, Q_ETIMEDOUT when
 * the budget ran out first. */
static q_err_t wait_for_upsert(PGconn *c, int64_t indexing_ms, int call_timeout_ms,
                               int budget_ms, char *err, size_t errlen) {
  int64_t t0 = q_now_ms();
  for (;;) {
    int64_t waited = q_now_ms() - t0;
    if (indexing_ms + waited > call_timeout_ms) {
      q_log_info("delete: the indexing worker's call has timed out", "{s:I}", "waited_ms",
                 (json_int_t)waited);
      return Q_OK;
    }
    q_err_t rc = Q_OK;
    PGresult *r = q_pg_query(c,
                             "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE "
                             "pg_backend_pid() = ANY (pg_blocking_pids(pid)))",
                             0, NULL, "waiting for the worker", &rc, err, errlen);
    if (!r)
      return rc;
    bool blocked = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (blocked) {
      q_log_info("delete: the indexing worker let go", "{s:I}", "waited_ms",
                 (json_int_t)waited);
      return Q_OK;
    }
    if (waited >= budget_ms)
      return Q_ETIMEDOUT;
    usleep(WAIT_POLL_MS * 1000);
  }
}

/* Step 2: the retriever retires every chunk of the document. */
static q_err_t retire_chunks(ingest_t *in, const char *tenant, const char *id,
                             int timeout_ms, char *err, size_t errlen) {
  q_arena_t *a = q_arena_new(1 << 20);
  if (!a)
    return Q_ENOMEM;
  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  req.tenant_id = (char *)tenant;
  req.replace_doc_id = (char *)id;
  Quarry__V1__UpsertResponse *resp = NULL;
  q_grpc_call_opts_t opts = {.timeout_ms = timeout_ms, .idempotent = 1};
  q_err_t rc = q_rpc_retriever_upsert(q_grpc_channel(in->cfg.retriever_addr), &req, &resp,
                                      a, &opts, err, errlen);
  q_arena_free(a);
  return rc;
}

/* Step 4: removes the blobs of the document's versions that no live
 * document shares (blobs are content-addressed). */
static int remove_blobs(ingest_t *in, const char *id) {
  char err[256] = "";
  PGconn *c = q_pg_acquire(in->pool, ACQUIRE_MS, err, sizeof err);
  if (!c) {
    q_log_warn("blobs of a deleted document kept", "{s:s,s:s}", "document_id", id,
               "reason", err);
    return 0;
  }
  const char *params[1] = {id};
  q_err_t rc = Q_OK;
  PGresult *r = q_pg_query(c,
                           "SELECT DISTINCT v.sha256 FROM document_versions v "
                           "WHERE v.document_id = $1::uuid AND NOT EXISTS ("
                           "  SELECT 1 FROM document_versions o JOIN documents d "
                           "  ON d.id = o.document_id WHERE o.sha256 = v.sha256 "
                           "  AND d.deleted_at IS NULL)",
                           1, params, "finding blobs", &rc, err, sizeof err);
  q_pg_release(in->pool, c);
  if (!r) {
    q_log_warn("blobs of a deleted document kept", "{s:s,s:s}", "document_id", id,
               "reason", err);
    return 0;
  }
  int removed = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    const char *sha = PQgetvalue(r, i, 0);
    char path[PATH_MAX];
    if (!blob_name_valid(sha) ||
        snprintf(path, sizeof path, "%s/%s", in->cfg.blob_dir, sha) >= (int)sizeof path)
      continue;
    if (unlink(path) == 0)
      removed++;
    else if (errno != ENOENT)
      q_log_warn("removing a blob failed", "{s:s,s:s}", "document_id", id, "reason",
                 strerror(errno));
  }
  PQclear(r);
  return removed;
}

q_err_t lifecycle_delete_document(ingest_t *in, const char *tenant, const char *id,
                                  const char *by, int retire_ms, delete_result_t *res,
                                  char *err, size_t errlen) {
  memset(res, 0, sizeof *res);
  PGconn *c = q_pg_acquire(in->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, errlen);
  if (rc)
    goto done;
  rc = mark_deleted(c, tenant, id, by, res, err, errlen);
  if (!rc && res->indexing_ms >= 0) {
    rc = wait_for_upsert(c, res->indexing_ms, in->cfg.call_timeout_ms, retire_ms / 2, err,
                         errlen);
    if (rc == Q_ETIMEDOUT) {
      snprintf(err, errlen,
               "the document is being indexed and its worker did not let go in time; "
               "try again");
      rc = Q_EUNAVAIL;
      res->refused = true;
    }
    retire_ms -= retire_ms / 2;
  }
  if (!rc) {
    char why[256] = "";
    rc = retire_chunks(in, tenant, id, retire_ms, why, sizeof why);
    if (rc) {
      snprintf(err, errlen, "retriever could not retire the chunks: %s",
               why[0] ? why : q_strerror(rc));
      rc = Q_EUNAVAIL;
      res->refused = true;
    }
  }
  if (!rc)
    rc = q_pg_exec(c, "COMMIT", 0, NULL, "commit", NULL, err, errlen);
  else
    PQclear(PQexec(c, "ROLLBACK"));
done:
  q_pg_release(in->pool, c);
  if (rc)
    return rc;
  res->blobs_removed = remove_blobs(in, id);
  q_log_info("document deleted", "{s:s,s:s,s:s,s:i,s:i}", "tenant_id", tenant,
             "document_id", id, "deleted_by", by ? by : "", "jobs_stopped",
             res->jobs_stopped, "blobs_removed", res->blobs_removed);
  return Q_OK;
}
