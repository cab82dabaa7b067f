/* store.c - retriever_chunks in PostgreSQL (see store.h).
 *
 * An upsert is a handful of statements whatever the batch size: the batch is
 * streamed with COPY into a temporary staging table, checked against rows of
 * other tenants, and merged with one UPDATE (retire) and one
 * INSERT ... ON CONFLICT (upsert), all in one transaction. */
#include "store.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/pg.h"
#include "quarry/pg_wait.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ACQUIRE_MS 5000
#define COPY_FLUSH (1 << 20) /* send COPY data in pieces of about 1 MiB */
#define COPY_MAX (64u << 20) /* one row is far smaller (text <= 64 KiB) */
#define LOAD_FETCH "FETCH 1000 FROM retriever_load"

static const q_pg_migration_t migrations[] = {
    {1, "retriever_chunks",
     "CREATE TABLE retriever_chunks ("
     "  chunk_id   text PRIMARY KEY,"
     "  tenant_id  text NOT NULL,"
     "  doc_id     text NOT NULL,"
     "  version    integer NOT NULL DEFAULT 0,"
     "  ordinal    integer NOT NULL DEFAULT 0,"
     "  page       integer NOT NULL DEFAULT 0,"
     "  title      text NOT NULL DEFAULT '',"
     "  text       text NOT NULL,"
     "  embedding  bytea,"
     "  active     boolean NOT NULL DEFAULT true,"
     "  updated_at timestamptz NOT NULL DEFAULT now()"
     ");"
     "CREATE INDEX retriever_chunks_doc ON retriever_chunks (tenant_id, doc_id)"
     "  WHERE active;"},
    /* A stable number per chunk: the label of its vector in the embedded
     * engine's HNSW graphs (and in their snapshots, later). bigserial fills
     * the existing rows. It stays when a chunk is rewritten in place. */
    {2, "retriever_chunks_seq",
     "ALTER TABLE retriever_chunks ADD COLUMN seq bigserial;"
     "CREATE UNIQUE INDEX retriever_chunks_seq ON retriever_chunks (seq);"},
    /* What retrieval filters look at (quarry/filter.h): the document's
     * content type, creation date (unix seconds, 0 unknown) and user
     * metadata, repeated on each chunk row (the index keeps them once per
     * document). access_groups: room for per-chunk permissions, stored but
     * not enforced yet. */
    {3, "retriever_chunks_filter_fields",
     "ALTER TABLE retriever_chunks"
     "  ADD COLUMN IF NOT EXISTS content_type text NOT NULL DEFAULT '',"
     "  ADD COLUMN IF NOT EXISTS created_at bigint NOT NULL DEFAULT 0,"
     "  ADD COLUMN IF NOT EXISTS metadata jsonb,"
     "  ADD COLUMN IF NOT EXISTS access_groups text[] NOT NULL DEFAULT '{}';"},
    /* The ordered change log every replica tails (store.h): one row per
     * document an upsert or delete touched, written in the transaction that
     * changed the chunks. origin names the replica that wrote it. */
    {4, "retriever_changes",
     "CREATE TABLE retriever_changes ("
     "  pos       bigserial PRIMARY KEY,"
     "  tenant_id text NOT NULL,"
     "  doc_id    text NOT NULL,"
     "  origin    text NOT NULL,"
     "  at        timestamptz NOT NULL DEFAULT clock_timestamp()"
     ");"},
    /* Pruning the change log (store.h): the pruned head, this database's
     * identity (recorded in snapshots so that one made from another
     * database is never loaded), and each replica's heartbeat with the log
     * position after which it still needs the log to restart quickly. */
    {5, "retriever_log_meta_and_replicas",
     "CREATE TABLE retriever_log_meta ("
     "  one            boolean PRIMARY KEY DEFAULT true CHECK (one),"
     "  db_id          uuid NOT NULL DEFAULT gen_random_uuid(),"
     "  pruned_through bigint NOT NULL DEFAULT 0"
     ");"
     "INSERT INTO retriever_log_meta DEFAULT VALUES;"
     "CREATE TABLE retriever_replicas ("
     "  replica_id   text PRIMARY KEY,"
     "  keep_after   bigint NOT NULL,"
     "  snapshot_pos bigint,"
     "  applied_pos  bigint NOT NULL,"
     "  heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp()"
     ");"},
    /* Two more filter fields of the chunk's document: the author and the
     * language (BCP 47) extraction found in its file; '' when it says
     * nothing. Rows written before carry '' until their document is
     * indexed again. */
    {6, "retriever_chunks_author_language",
     "ALTER TABLE retriever_chunks"
     "  ADD COLUMN IF NOT EXISTS author text NOT NULL DEFAULT '',"
     "  ADD COLUMN IF NOT EXISTS language text NOT NULL DEFAULT '';"},
    /* Chunks of a new version staged batch by batch, not searchable, until
     * one commit makes the whole version live and retires the previous one
     * in the same transaction (store_stage, store_commit_staged). */
    {7, "retriever_staged",
     "CREATE TABLE IF NOT EXISTS retriever_staged ("
     "  chunk_id text PRIMARY KEY, tenant_id text NOT NULL, doc_id text NOT NULL,"
     "  version integer NOT NULL, ordinal integer NOT NULL, page integer NOT NULL,"
     "  title text NOT NULL, text text NOT NULL, embedding bytea,"
     "  content_type text NOT NULL, created_at bigint NOT NULL, metadata jsonb,"
     "  access_groups text[] NOT NULL, author text NOT NULL, language text NOT NULL,"
     "  staged_at timestamptz NOT NULL DEFAULT now());"
     "CREATE INDEX IF NOT EXISTS retriever_staged_doc ON retriever_staged"
     "  (tenant_id, doc_id, version);"},
    /* Where each chunk is in its document's extracted text, in characters
     * (Chunk.start_offset, end_offset, text_offset): citations give
     * document offsets. 0, 0, 0 for rows written before: unknown. */
    {8, "retriever_chunks_offsets",
     "ALTER TABLE retriever_chunks"
     "  ADD COLUMN IF NOT EXISTS start_offset integer NOT NULL DEFAULT 0,"
     "  ADD COLUMN IF NOT EXISTS end_offset integer NOT NULL DEFAULT 0,"
     "  ADD COLUMN IF NOT EXISTS text_offset integer NOT NULL DEFAULT 0;"
     "ALTER TABLE retriever_staged"
     "  ADD COLUMN IF NOT EXISTS start_offset integer NOT NULL DEFAULT 0,"
     "  ADD COLUMN IF NOT EXISTS end_offset integer NOT NULL DEFAULT 0,"
     "  ADD COLUMN IF NOT EXISTS text_offset integer NOT NULL DEFAULT 0;"},
};

/* Replica rows silent this long are dropped by the pruner (long dead: a
 * replica silent for far less no longer holds the log back). */
#define REPLICA_FORGET "interval '7 days'"

/* Heartbeats and prunes take this lock, so a replica that registers (and
 * reads the pruned head) is either seen by a prune or sees its result. */
#define PRUNE_LOCK "SELECT pg_advisory_xact_lock(7003300002)"

#define STR2(x) #x
#define STR(x) STR2(x)
#define STORE_PRUNE_BATCH_SQL STR(STORE_PRUNE_BATCH)

/* The log's head: the largest position written, which pruning never
 * lowers (every row may be gone, the pruned head stays). */
#define HEAD_SQL                                                                         \
  "greatest((SELECT coalesce(max(pos), 0) FROM retriever_changes),"                      \
  " (SELECT pruned_through FROM retriever_log_meta))"

/* Writers of the change log take this transaction-level advisory lock
 * before anything else, so transactions that append to the log commit one
 * after another, in the order of their positions: a reader that sees
 * position p has seen every committed position below it. */
#define LOG_LOCK "SELECT pg_advisory_xact_lock(7003300001)"

struct store {
  q_pg_pool_t *pool;
  char origin[40]; /* this replica's name in the change log */
  uint8_t db_id[16];
};

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  return ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* Reads retriever_log_meta.db_id into st->db_id. */
static q_err_t read_db_id(store_t *st, char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = 0;
  PGresult *r =
      q_pg_query(c, "SELECT replace(db_id::text, '-', '') FROM retriever_log_meta", 0,
                 NULL, "reading the database identity", &rc, err, errlen);
  q_pg_release(st->pool, c);
  if (!r)
    return rc;
  const char *hex = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "";
  for (size_t i = 0; i < 16 && !rc; i++) {
    int hi = strlen(hex) == 32 ? hexval(hex[2 * i]) : -1;
    int lo = hi >= 0 ? hexval(hex[2 * i + 1]) : -1;
    if (lo < 0) {
      snprintf(err, errlen, "retriever_log_meta: no database identity");
      rc = Q_EINTERNAL;
    } else {
      st->db_id[i] = (uint8_t)(hi << 4 | lo);
    }
  }
  PQclear(r);
  return rc;
}

/* A name for this process's writes that no other replica shares: the host's
 * name would not do (two replicas on one host), so pid, time and random
 * bits. */
static void make_origin(char *out, size_t len) {
  unsigned long long r = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  if (f) {
    if (fread(&r, sizeof r, 1, f) != 1)
      r = 0;
    fclose(f);
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(out, len, "%x-%llx-%016llx", (unsigned)getpid(),
           (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec,
           r);
}

store_t *store_new(const q_pg_cfg_t *pg, char *err, size_t errlen) {
  store_t *st = calloc(1, sizeof *st);
  if (!st || !(st->pool = q_pg_pool_new(pg->dsn, (int)pg->pool))) {
    snprintf(err, errlen, "out of memory");
    free(st);
    return NULL;
  }
  make_origin(st->origin, sizeof st->origin);
  if (q_pg_wait_migrate(st->pool, "retriever", migrations,
                        sizeof migrations / sizeof migrations[0], pg->wait_ms, err,
                        errlen) != 0 ||
      read_db_id(st, err, errlen) != 0) {
    store_free(st);
    return NULL;
  }
  return st;
}

const uint8_t *store_db_id(const store_t *st) {
  return st->db_id;
}

void store_free(store_t *st) {
  if (!st)
    return;
  q_pg_pool_free(st->pool);
  free(st);
}

bool store_ping(store_t *st, char *why, size_t whylen) {
  return q_pg_ping(st->pool, why, whylen);
}

const char *store_origin(const store_t *st) {
  return st->origin;
}

/* ---- upsert ------------------------------------------------------------- */

/* Appends s as a COPY text-format field (backslash escapes). */
static int copy_text(q_buf_t *b, const char *s) {
  const char *run = s;
  int rc = 0;
  for (; *s && !rc; s++) {
    const char *esc = NULL;
    switch (*s) {
    case '\\': esc = "\\\\"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    default: continue;
    }
    rc = q_buf_append(b, run, (size_t)(s - run));
    if (!rc)
      rc = q_buf_puts(b, esc);
    run = s + 1;
  }
  if (!rc)
    rc = q_buf_append(b, run, (size_t)(s - run));
  return rc;
}

/* Appends a vector as a COPY field of type bytea: "\\x" then the hex of its
 * little-endian float32 bytes; \N (NULL) when there is none. */
static int copy_vector(q_buf_t *b, const float *v, size_t dim) {
  static const char hex[] = "0123456789abcdef";
  if (!dim)
    return q_buf_puts(b, "\\N");
  int rc = q_buf_puts(b, "\\\\x");
  char tmp[8 * 64];
  size_t t = 0;
  for (size_t i = 0; i < dim && !rc; i++) {
    uint32_t u;
    memcpy(&u, &v[i], sizeof u);
    for (int k = 0; k < 4; k++) { /* least significant byte first */
      unsigned byte = (u >> (8 * k)) & 0xFF;
      tmp[t++] = hex[byte >> 4];
      tmp[t++] = hex[byte & 15];
    }
    if (t == sizeof tmp) {
      rc = q_buf_append(b, tmp, t);
      t = 0;
    }
  }
  if (!rc && t)
    rc = q_buf_append(b, tmp, t);
  return rc;
}

/* Appends groups as a COPY field of type text[]: an array literal with every
 * element double-quoted (backslash and quote escaped), itself escaped for
 * COPY by copy_text. */
static int copy_groups(q_buf_t *b, const char *const *groups, size_t n) {
  q_buf_t lit;
  q_buf_init(&lit, COPY_MAX);
  int rc = q_buf_puts(&lit, "{");
  for (size_t i = 0; i < n && !rc; i++) {
    rc = q_buf_puts(&lit, i ? ",\"" : "\"");
    for (const char *p = groups[i]; *p && !rc; p++)
      rc = (*p == '"' || *p == '\\') ? q_buf_printf(&lit, "\\%c", *p)
                                     : q_buf_append(&lit, p, 1);
    rc = rc ? rc : q_buf_puts(&lit, "\"");
  }
  rc = rc ? rc : q_buf_puts(&lit, "}");
  rc = rc ? rc : q_buf_append(&lit, "", 1); /* NUL-terminate */
  rc = rc ? rc : copy_text(b, lit.data);
  q_buf_cleanup(&lit);
  return rc;
}

/* The staging table every write goes through (COPY in, then one INSERT ...
 * SELECT into retriever_chunks or retriever_staged), and its columns after
 * (chunk_id, tenant_id, doc_id, version, ordinal, page) in the order copy_row
 * writes them. */
#define STAGE_TABLE_SQL                                                                  \
  "CREATE TEMP TABLE retriever_stage ("                                                  \
  "  chunk_id text, tenant_id text, doc_id text, version integer,"                       \
  "  ordinal integer, page integer, start_offset integer,"                               \
  "  end_offset integer, text_offset integer, title text, text text,"                    \
  "  embedding bytea, content_type text, created_at bigint,"                             \
  "  metadata jsonb, access_groups text[], author text, language text)"                  \
  " ON COMMIT DROP"
#define STAGE_COLUMNS_AFTER_PAGE                                                         \
  "start_offset, end_offset, text_offset, title, text, embedding, content_type,"         \
  " created_at, metadata, access_groups, author, language"

static int copy_row(q_buf_t *b, const char *tenant, const engine_chunk_t *c) {
  int rc = copy_text(b, c->chunk_id);
  rc = rc ? rc : q_buf_puts(b, "\t");
  rc = rc ? rc : copy_text(b, tenant);
  rc = rc ? rc : q_buf_puts(b, "\t");
  rc = rc ? rc : copy_text(b, c->doc_id);
  rc =
      rc ? rc
         : q_buf_printf(b, "\t%d\t%d\t%d\t%d\t%d\t%d\t", (int)c->version, (int)c->ordinal,
                        (int)c->page, (int)c->at.start, (int)c->at.end, (int)c->at.text);
  rc = rc ? rc : copy_text(b, c->title ? c->title : "");
  rc = rc ? rc : q_buf_puts(b, "\t");
  rc = rc ? rc : copy_text(b, c->text ? c->text : "");
  rc = rc ? rc : q_buf_puts(b, "\t");
  rc = rc ? rc : copy_vector(b, c->embedding, c->dim);
  rc = rc ? rc : q_buf_puts(b, "\t");
  rc = rc ? rc : copy_text(b, c->content_type ? c->content_type : "");
  rc = rc ? rc : q_buf_printf(b, "\t%lld\t", (long long)c->created_at);
  rc = rc ? rc
          : (c->metadata && *c->metadata ? copy_text(b, c->metadata)
                                         : q_buf_puts(b, "\\N"));
  rc = rc ? rc : q_buf_puts(b, "\t");
  rc = rc ? rc : copy_groups(b, c->access_groups, c->naccess_groups);
  rc = rc ? rc : q_buf_puts(b, "\t");
  rc = rc ? rc : copy_text(b, c->author ? c->author : "");
  rc = rc ? rc : q_buf_puts(b, "\t");
  rc = rc ? rc : copy_text(b, c->language ? c->language : "");
  rc = rc ? rc : q_buf_puts(b, "\n");
  return rc;
}

/* Streams chunks[] into the staging table. COPY is a protocol of its own
 * that q_pg_exec does not speak: libpq is called directly and failures are
 * reported through q_pg_fail. */
static int copy_batch(PGconn *c, const char *tenant, const engine_chunk_t *chunks,
                      size_t n, char *err, size_t errlen) {
  PGresult *r = PQexec(c, "COPY retriever_stage (chunk_id, tenant_id, doc_id, "
                          "version, ordinal, page, " STAGE_COLUMNS_AFTER_PAGE ") "
                          "FROM STDIN");
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    int rc = q_pg_fail(c, r, "staging chunks", err, errlen);
    PQclear(r);
    return rc;
  }
  PQclear(r);

  q_buf_t b;
  q_buf_init(&b, COPY_MAX);
  int rc = 0;
  const char *abort_msg = NULL;
  for (size_t i = 0; i < n && !rc; i++) {
    rc = copy_row(&b, tenant, &chunks[i]);
    if (rc) {
      snprintf(err, errlen, "chunk %zu: cannot encode the row", i);
      abort_msg = "encoding failed";
      break;
    }
    if (b.len >= COPY_FLUSH || i + 1 == n) {
      if (PQputCopyData(c, b.data, (int)b.len) != 1) {
        rc = q_pg_fail(c, NULL, "staging chunks", err, errlen);
        break;
      }
      q_buf_reset(&b);
    }
  }
  q_buf_cleanup(&b);
  if (PQputCopyEnd(c, abort_msg) != 1 && !rc)
    rc = q_pg_fail(c, NULL, "staging chunks", err, errlen);
  while ((r = PQgetResult(c)) != NULL) {
    if (!rc && PQresultStatus(r) != PGRES_COMMAND_OK)
      rc = q_pg_fail(c, r, "staging chunks", err, errlen);
    PQclear(r);
  }
  return rc;
}

/* A chunk id and its position in the batch. */
typedef struct id_pos {
  const char *id;
  size_t pos;
} id_pos_t;

static int id_pos_cmp(const void *a, const void *b) {
  return strcmp(((const id_pos_t *)a)->id, ((const id_pos_t *)b)->id);
}

/* Reads the (chunk_id, seq) rows of an INSERT ... RETURNING into seqs[] in
 * the order of chunks[] (ids are unique in a batch). */
static q_err_t read_seqs(PGresult *r, const engine_chunk_t *chunks, size_t n,
                         uint64_t *seqs, char *err, size_t errlen) {
  id_pos_t *order = malloc((n ? n : 1) * sizeof *order);
  if (!order) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    order[i] = (id_pos_t){chunks[i].chunk_id, i};
    seqs[i] = 0;
  }
  /* Rows come in no particular order: look each id up in the sorted batch. */
  qsort(order, n, sizeof *order, id_pos_cmp);
  q_err_t rc = 0;
  for (int row = 0; row < PQntuples(r); row++) {
    id_pos_t key = {PQgetvalue(r, row, 0), 0};
    id_pos_t *hit = bsearch(&key, order, n, sizeof *order, id_pos_cmp);
    if (hit)
      seqs[hit->pos] = strtoull(PQgetvalue(r, row, 1), NULL, 10);
  }
  for (size_t i = 0; i < n && !rc; i++)
    if (!seqs[i]) {
      snprintf(err, errlen, "chunk %s came back without a seq", chunks[i].chunk_id);
      rc = Q_EINTERNAL;
    }
  free(order);
  return rc;
}

/* The staged version an upsert_tx publishes instead of chunks[]. */
typedef struct staged_src {
  int32_t version;
  size_t expect; /* chunks the version has */
} staged_src_t;

/* Fills retriever_stage with the staged chunks of (tenant, doc_id, version)
 * and checks that all src->expect of them are there. */
static q_err_t fill_from_staged(PGconn *c, const char *tenant, const char *doc_id,
                                const staged_src_t *src, char *err, size_t errlen) {
  char ver[16];
  snprintf(ver, sizeof ver, "%d", (int)src->version);
  const char *params[3] = {tenant, doc_id, ver};
  int64_t rows = 0;
  q_err_t rc = q_pg_exec(
      c,
      "INSERT INTO retriever_stage (chunk_id, tenant_id, doc_id, version, ordinal,"
      "  page, " STAGE_COLUMNS_AFTER_PAGE ") SELECT chunk_id, tenant_id, doc_id,"
      "  version, ordinal, page, " STAGE_COLUMNS_AFTER_PAGE " FROM retriever_staged"
      "  WHERE tenant_id = $1 AND doc_id = $2 AND version = $3::int",
      3, params, "reading staged chunks", &rows, err, errlen);
  if (!rc && (size_t)rows != src->expect) {
    snprintf(err, errlen,
             "%lld chunks of version %d of document %.64s are staged, %zu expected",
             (long long)rows, (int)src->version, doc_id, src->expect);
    rc = Q_ENOTFOUND;
  }
  return rc;
}

static q_err_t upsert_tx(store_t *st, PGconn *c, const char *tenant,
                         const engine_chunk_t *chunks, size_t n,
                         const char *replace_doc_id, const staged_src_t *src,
                         size_t *retired, uint64_t *seqs, store_span_t *span, char *err,
                         size_t errlen) {
  q_err_t rc = q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, errlen);
  if (!rc)
    rc = q_pg_exec(c, LOG_LOCK, 0, NULL, "locking the change log", NULL, err, errlen);
  if (rc)
    return rc;
  rc = q_pg_exec(c, STAGE_TABLE_SQL, 0, NULL, "creating the staging table", NULL, err,
                 errlen);
  if (!rc && src) {
    rc = fill_from_staged(c, tenant, replace_doc_id, src, err, errlen);
    n = src->expect;
  } else if (!rc && n) {
    rc = copy_batch(c, tenant, chunks, n, err, errlen);
  }
  if (rc)
    return rc;

  /* A chunk id is a primary key over all tenants: refuse to take over
   * another tenant's row. */
  PGresult *r = q_pg_query(c,
                           "SELECT s.chunk_id FROM retriever_stage s "
                           "JOIN retriever_chunks c USING (chunk_id) "
                           "WHERE c.tenant_id <> s.tenant_id LIMIT 1",
                           0, NULL, "checking chunk ownership", &rc, err, errlen);
  if (!r)
    return rc;
  if (PQntuples(r) > 0) {
    snprintf(err, errlen, "chunk_id %.256s belongs to another tenant",
             PQgetvalue(r, 0, 0));
    PQclear(r);
    return Q_ECONFLICT;
  }
  PQclear(r);

  if (replace_doc_id && *replace_doc_id) {
    const char *params[2] = {tenant, replace_doc_id};
    int64_t rows = 0;
    rc = q_pg_exec(c,
                   "UPDATE retriever_chunks SET active = false, updated_at = now() "
                   "WHERE tenant_id = $1 AND doc_id = $2 AND active "
                   "AND chunk_id NOT IN (SELECT chunk_id FROM retriever_stage)",
                   2, params, "retiring chunks", &rows, err, errlen);
    if (rc)
      return rc;
    *retired = (size_t)rows;
  }

  if (n) {
    PGresult *ins = q_pg_query(
        c,
        "INSERT INTO retriever_chunks (chunk_id, tenant_id, doc_id, version,"
        "  ordinal, page, " STAGE_COLUMNS_AFTER_PAGE ", active, updated_at) "
        "SELECT chunk_id, tenant_id, doc_id, version, ordinal, "
        "page, " STAGE_COLUMNS_AFTER_PAGE ", true, now() FROM retriever_stage "
        "ON CONFLICT (chunk_id) DO UPDATE SET "
        "  doc_id = EXCLUDED.doc_id, version = EXCLUDED.version,"
        "  ordinal = EXCLUDED.ordinal, page = EXCLUDED.page,"
        "  start_offset = EXCLUDED.start_offset, end_offset = EXCLUDED.end_offset,"
        "  text_offset = EXCLUDED.text_offset,"
        "  title = EXCLUDED.title, text = EXCLUDED.text,"
        "  embedding = EXCLUDED.embedding, content_type = EXCLUDED.content_type,"
        "  created_at = EXCLUDED.created_at, metadata = EXCLUDED.metadata,"
        "  access_groups = EXCLUDED.access_groups, author = EXCLUDED.author,"
        "  language = EXCLUDED.language, active = true,"
        "  updated_at = now() "
        "RETURNING chunk_id, seq",
        0, NULL, "writing chunks", &rc, err, errlen);
    if (!ins)
      return rc;
    rc = seqs ? read_seqs(ins, chunks, n, seqs, err, errlen) : 0;
    PQclear(ins);
    if (rc)
      return rc;
  }

  /* One change per document touched, in the same transaction; the
   * notification is delivered to the listening replicas at commit. */
  const char *lp[3] = {tenant, replace_doc_id ? replace_doc_id : "", st->origin};
  PGresult *log =
      q_pg_query(c,
                 "INSERT INTO retriever_changes (tenant_id, doc_id, origin) "
                 "SELECT $1, d, $3 FROM (SELECT doc_id AS d FROM retriever_stage "
                 "  UNION SELECT $2::text WHERE $2::text <> '') x ORDER BY d "
                 "RETURNING pos",
                 3, lp, "logging the change", &rc, err, errlen);
  if (!log)
    return rc;
  int64_t first = 0, last = 0;
  for (int row = 0; row < PQntuples(log); row++) {
    int64_t p = strtoll(PQgetvalue(log, row, 0), NULL, 10);
    if (p > last)
      last = p;
    if (!first || p < first)
      first = p;
  }
  PQclear(log);
  if (!src && n == 0 && replace_doc_id && *replace_doc_id) {
    /* The document is deleted: what was staged for it goes too. */
    const char *dp[2] = {tenant, replace_doc_id};
    rc = q_pg_exec(c, "DELETE FROM retriever_staged WHERE tenant_id = $1 AND doc_id = $2",
                   2, dp, "clearing staged chunks", NULL, err, errlen);
    if (rc)
      return rc;
  }
  if (src) {
    /* Published: the version's staged rows, and any an older version left
     * behind (a job superseded mid-way), go. */
    char ver[16];
    snprintf(ver, sizeof ver, "%d", (int)src->version);
    const char *dp[3] = {tenant, replace_doc_id, ver};
    rc = q_pg_exec(c,
                   "DELETE FROM retriever_staged WHERE tenant_id = $1 AND doc_id = $2 "
                   "AND version <= $3::int",
                   3, dp, "clearing staged chunks", NULL, err, errlen);
    if (rc)
      return rc;
  }
  rc = q_pg_exec(c, "SELECT pg_notify('" STORE_CHANNEL "', '')", 0, NULL,
                 "notifying the replicas", NULL, err, errlen);
  if (!rc)
    rc = q_pg_exec(c, "COMMIT", 0, NULL, "commit", NULL, err, errlen);
  if (!rc && span)
    *span = (store_span_t){first, last};
  return rc;
}

q_err_t store_upsert(store_t *st, const char *tenant, const engine_chunk_t *chunks,
                     size_t n, const char *replace_doc_id, size_t *retired,
                     uint64_t *seqs, store_span_t *span, char *err, size_t errlen) {
  *retired = 0;
  if (span)
    *span = (store_span_t){0, 0};
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  int rc = upsert_tx(st, c, tenant, chunks, n, replace_doc_id, NULL, retired, seqs, span,
                     err, errlen);
  if (rc) {
    *retired = 0;
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
      PQclear(PQexec(c, "ROLLBACK"));
  }
  q_pg_release(st->pool, c);
  return rc;
}

q_err_t store_stage(store_t *st, const char *tenant, const engine_chunk_t *chunks,
                    size_t n, char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, errlen);
  if (!rc)
    rc = q_pg_exec(c, STAGE_TABLE_SQL, 0, NULL, "creating the staging table", NULL, err,
                   errlen);
  if (!rc && n)
    rc = copy_batch(c, tenant, chunks, n, err, errlen);
  /* A chunk id of another tenant's is refused now and again at commit. */
  PGresult *r = rc ? NULL
                   : q_pg_query(c,
                                "SELECT s.chunk_id FROM retriever_stage s "
                                "JOIN retriever_staged c USING (chunk_id) "
                                "WHERE c.tenant_id <> s.tenant_id LIMIT 1",
                                0, NULL, "checking chunk ownership", &rc, err, errlen);
  if (r && PQntuples(r) > 0) {
    snprintf(err, errlen, "chunk_id %.256s belongs to another tenant",
             PQgetvalue(r, 0, 0));
    rc = Q_ECONFLICT;
  }
  PQclear(r);
  if (!rc)
    rc = q_pg_exec(
        c,
        "INSERT INTO retriever_staged (chunk_id, tenant_id, doc_id, version, ordinal,"
        "  page, " STAGE_COLUMNS_AFTER_PAGE ") "
        "SELECT chunk_id, tenant_id, doc_id, version, ordinal, "
        "page, " STAGE_COLUMNS_AFTER_PAGE " FROM retriever_stage "
        "ON CONFLICT (chunk_id) DO UPDATE SET doc_id = EXCLUDED.doc_id,"
        "  version = EXCLUDED.version, ordinal = EXCLUDED.ordinal, page = EXCLUDED.page,"
        "  start_offset = EXCLUDED.start_offset, end_offset = EXCLUDED.end_offset,"
        "  text_offset = EXCLUDED.text_offset,"
        "  title = EXCLUDED.title, text = EXCLUDED.text, embedding = EXCLUDED.embedding,"
        "  content_type = EXCLUDED.content_type, created_at = EXCLUDED.created_at,"
        "  metadata = EXCLUDED.metadata, access_groups = EXCLUDED.access_groups,"
        "  author = EXCLUDED.author, language = EXCLUDED.language, staged_at = now()",
        0, NULL, "staging chunks", NULL, err, errlen);
  if (!rc)
    rc = q_pg_exec(c, "COMMIT", 0, NULL, "commit", NULL, err, errlen);
  if (rc && PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
    PQclear(PQexec(c, "ROLLBACK"));
  q_pg_release(st->pool, c);
  return rc;
}

q_err_t store_commit_staged(store_t *st, const char *tenant, const char *doc_id,
                            int32_t version, size_t expect, size_t *retired,
                            store_span_t *span, char *err, size_t errlen) {
  *retired = 0;
  if (span)
    *span = (store_span_t){0, 0};
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  staged_src_t src = {version, expect};
  int rc =
      upsert_tx(st, c, tenant, NULL, 0, doc_id, &src, retired, NULL, span, err, errlen);
  if (rc) {
    *retired = 0;
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
      PQclear(PQexec(c, "ROLLBACK"));
  }
  q_pg_release(st->pool, c);
  return rc;
}

/* ---- load --------------------------------------------------------------- */

static int32_t be_int32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (int32_t)((uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 |
                   (uint32_t)u[3]);
}

static uint64_t be_uint64(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | u[i];
  return v;
}

static int32_t int_field(PGresult *r, int row, int col) {
  return PQgetlength(r, row, col) == 4 ? be_int32(PQgetvalue(r, row, col)) : 0;
}

/* Decodes a little-endian float32 bytea into v (capacity ENGINE_MAX_DIM);
 * returns the dimension, 0 when NULL/empty or malformed. */
static size_t decode_vector(PGresult *r, int row, int col, float *v) {
  if (PQgetisnull(r, row, col))
    return 0;
  size_t len = (size_t)PQgetlength(r, row, col);
  if (len == 0 || len % 4 || len / 4 > ENGINE_MAX_DIM)
    return 0;
  const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
  for (size_t i = 0; i < len / 4; i++) {
    uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                 (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
    memcpy(&v[i], &u, sizeof u);
  }
  return len / 4;
}

/* Decodes row i of a binary result of CHUNK_COLUMNS into ch (strings
 * borrowed from r, the vector decoded into vec); returns the tenant. */
static const char *decode_row(PGresult *r, int i, float *vec, engine_chunk_t *ch) {
  *ch = (engine_chunk_t){
      .chunk_id = PQgetvalue(r, i, 0),
      .doc_id = PQgetvalue(r, i, 2),
      .version = int_field(r, i, 3),
      .ordinal = int_field(r, i, 4),
      .page = int_field(r, i, 5),
      .title = PQgetvalue(r, i, 6),
      .text = PQgetvalue(r, i, 7),
      .embedding = vec,
      .dim = decode_vector(r, i, 8, vec),
      .seq = PQgetlength(r, i, 9) == 8 ? be_uint64(PQgetvalue(r, i, 9)) : 0,
      .content_type = PQgetvalue(r, i, 10),
      .created_at =
          PQgetlength(r, i, 11) == 8 ? (int64_t)be_uint64(PQgetvalue(r, i, 11)) : 0,
      .metadata = PQgetvalue(r, i, 12),
      .author = PQgetvalue(r, i, 13),
      .language = PQgetvalue(r, i, 14),
      .at = {int_field(r, i, 15), int_field(r, i, 16), int_field(r, i, 17)},
  };
  return PQgetvalue(r, i, 1);
}

#define CHUNK_COLUMNS                                                                    \
  "chunk_id, tenant_id, doc_id, version, ordinal, page, title, text, embedding, seq,"    \
  " content_type, created_at, coalesce(metadata::text, ''), author, language,"           \
  " start_offset, end_offset, text_offset"

static int load_rows(PGconn *c, store_row_cb cb, void *ud, float *vec, size_t *loaded,
                     char *err, size_t errlen) {
  for (;;) {
    /* Binary results: integers and bytea arrive raw; text columns are the
     * bytes of the string, NUL-terminated by libpq. q_pg_query gives text
     * only, which would double the size of every vector (hex), so this one
     * statement calls libpq itself. */
    PGresult *r = PQexecParams(c, LOAD_FETCH, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      int rc = q_pg_fail(c, r, "loading chunks", err, errlen);
      PQclear(r);
      return rc;
    }
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
      engine_chunk_t ch;
      const char *tenant = decode_row(r, i, vec, &ch);
      if (cb(ud, tenant, &ch))
        (*loaded)++;
    }
    PQclear(r);
    if (rows == 0)
      return 0;
  }
}

/* The log's head (largest position, 0 when empty) as c's transaction sees
 * it. */
static q_err_t read_head(PGconn *c, int64_t *head, char *err, size_t errlen) {
  q_err_t rc = 0;
  PGresult *r = q_pg_query(c, "SELECT " HEAD_SQL, 0, NULL, "reading the change log head",
                           &rc, err, errlen);
  if (!r)
    return rc;
  *head = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return 0;
}

q_err_t store_load(store_t *st, store_row_cb cb, void *ud, size_t *loaded, int64_t *head,
                   char *err, size_t errlen) {
  *loaded = 0;
  if (head)
    *head = 0;
  float *vec = malloc(ENGINE_MAX_DIM * sizeof *vec);
  if (!vec) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c) {
    free(vec);
    return Q_EUNAVAIL;
  }
  /* A cursor lives in a transaction; REPEATABLE READ gives one snapshot. */
  int rc = q_pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
                     "begin", NULL, err, errlen);
  /* The head in the same snapshot as the rows: every change up to it is in
   * them (writers commit in log order), none after it. */
  if (!rc && head)
    rc = read_head(c, head, err, errlen);
  if (!rc)
    rc = q_pg_exec(c,
                   "DECLARE retriever_load NO SCROLL CURSOR FOR "
                   "SELECT " CHUNK_COLUMNS " FROM retriever_chunks WHERE active",
                   0, NULL, "opening the cursor", NULL, err, errlen);
  if (!rc)
    rc = load_rows(c, cb, ud, vec, loaded, err, errlen);
  if (!rc)
    rc = q_pg_exec(c, "COMMIT", 0, NULL, "commit", NULL, err, errlen);
  else if (PQstatus(c) == CONNECTION_OK)
    PQclear(PQexec(c, "ROLLBACK"));
  q_pg_release(st->pool, c);
  free(vec);
  return rc;
}

/* ---- the change log ------------------------------------------------------ */

q_err_t store_load_doc(store_t *st, const char *tenant, const char *doc_id,
                       store_doc_cb cb, void *ud, char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  const char *params[2] = {tenant, doc_id};
  PGresult *r = PQexecParams(c,
                             "SELECT " CHUNK_COLUMNS " FROM retriever_chunks "
                             "WHERE tenant_id = $1 AND doc_id = $2 AND active "
                             "ORDER BY chunk_id",
                             2, NULL, params, NULL, NULL, 1);
  q_err_t rc = 0;
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    rc = q_pg_fail(c, r, "loading a document", err, errlen);
  q_pg_release(st->pool, c);
  if (rc) {
    PQclear(r);
    return rc;
  }
  size_t n = (size_t)PQntuples(r), dim = 0;
  for (size_t i = 0; i < n; i++) {
    size_t len = (size_t)PQgetlength(r, (int)i, 8);
    if (len / 4 > dim)
      dim = len / 4;
  }
  if (dim > ENGINE_MAX_DIM)
    dim = ENGINE_MAX_DIM;
  engine_chunk_t *chunks = malloc((n ? n : 1) * sizeof *chunks);
  float *vecs = malloc((n ? n : 1) * (dim ? dim : 1) * sizeof *vecs);
  float *one = malloc(ENGINE_MAX_DIM * sizeof *one);
  if (!chunks || !vecs || !one) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
  }
  for (size_t i = 0; i < n && !rc; i++) {
    decode_row(r, (int)i, one, &chunks[i]);
    if (chunks[i].dim > dim)
      chunks[i].dim = 0; /* malformed: cannot happen, len bounded above */
    memcpy(vecs + i * dim, one, chunks[i].dim * sizeof *one);
    chunks[i].embedding = chunks[i].dim ? vecs + i * dim : NULL;
  }
  if (!rc)
    rc = cb(ud, tenant, doc_id, chunks, n, err, errlen);
  free(one);
  free(vecs);
  free(chunks);
  PQclear(r);
  return rc;
}

void store_changes_free(store_change_t *ch, size_t n) {
  for (size_t i = 0; ch && i < n; i++) {
    free(ch[i].tenant);
    free(ch[i].doc_id);
  }
  free(ch);
}

q_err_t store_changes(store_t *st, int64_t after, size_t max, store_change_t **out,
                      size_t *n, char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  char a[32], m[32];
  snprintf(a, sizeof a, "%lld", (long long)after);
  snprintf(m, sizeof m, "%zu", max);
  const char *params[2] = {a, m};
  q_err_t rc = 0;
  PGresult *r = q_pg_query(c,
                           "SELECT pos, tenant_id, doc_id, origin,"
                           "  (extract(epoch FROM at) * 1000)::bigint "
                           "FROM retriever_changes WHERE pos > $1 ORDER BY pos LIMIT $2",
                           2, params, "reading the change log", &rc, err, errlen);
  q_pg_release(st->pool, c);
  if (!r)
    return rc;
  size_t rows = (size_t)PQntuples(r);
  store_change_t *ch = calloc(rows ? rows : 1, sizeof *ch);
  if (!ch)
    rc = Q_ENOMEM;
  for (size_t i = 0; i < rows && !rc; i++) {
    ch[i].pos = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
    ch[i].tenant = strdup(PQgetvalue(r, (int)i, 1));
    ch[i].doc_id = strdup(PQgetvalue(r, (int)i, 2));
    ch[i].own = strcmp(PQgetvalue(r, (int)i, 3), st->origin) == 0;
    ch[i].at_ms = strtoll(PQgetvalue(r, (int)i, 4), NULL, 10);
    if (!ch[i].tenant || !ch[i].doc_id)
      rc = Q_ENOMEM;
  }
  PQclear(r);
  if (rc) {
    snprintf(err, errlen, "out of memory");
    store_changes_free(ch, rows);
    return rc;
  }
  *out = ch;
  *n = rows;
  return 0;
}

q_err_t store_log_state(store_t *st, int64_t after, int64_t *head, int64_t *age_ms,
                        char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  char a[32];
  snprintf(a, sizeof a, "%lld", (long long)after);
  const char *params[1] = {a};
  q_err_t rc = 0;
  PGresult *r = q_pg_query(
      c,
      "SELECT " HEAD_SQL ","
      "  coalesce((SELECT (extract(epoch FROM clock_timestamp() - at) * 1000)::bigint "
      "   FROM retriever_changes WHERE pos > $1 ORDER BY pos LIMIT 1), 0)",
      1, params, "reading the change log head", &rc, err, errlen);
  q_pg_release(st->pool, c);
  if (!r)
    return rc;
  *head = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  *age_ms = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  return 0;
}

/* ---- pruning ------------------------------------------------------------- */

/* Runs sql (n parameters) in a transaction holding the prune lock and
 * returns its result (first row wanted), or NULL with *rc. */
static PGresult *under_prune_lock(store_t *st, const char *sql, int n,
                                  const char *const *params, const char *what,
                                  const char *after_sql, q_err_t *rc, char *err,
                                  size_t errlen) {
  PGconn *c = q_pg_acquire(st->pool, ACQUIRE_MS, err, errlen);
  if (!c) {
    *rc = Q_EUNAVAIL;
    return NULL;
  }
  PGresult *r = NULL;
  *rc = q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, errlen);
  if (!*rc)
    *rc = q_pg_exec(c, PRUNE_LOCK, 0, NULL, "taking the prune lock", NULL, err, errlen);
  if (!*rc)
    r = q_pg_query(c, sql, n, params, what, rc, err, errlen);
  if (r && after_sql)
    *rc = q_pg_exec(c, after_sql, 0, NULL, what, NULL, err, errlen);
  if (r && !*rc)
    *rc = q_pg_exec(c, "COMMIT", 0, NULL, "commit", NULL, err, errlen);
  if (*rc) {
    PQclear(r);
    r = NULL;
    if (PQstatus(c) == CONNECTION_OK)
      PQclear(PQexec(c, "ROLLBACK"));
  }
  q_pg_release(st->pool, c);
  return r;
}

q_err_t store_replica_beat(store_t *st, const char *replica, int64_t keep_after,
                           int64_t snapshot_pos, int64_t applied_pos,
                           int64_t *pruned_through, char *err, size_t errlen) {
  char k[32], sp[32], ap[32];
  snprintf(k, sizeof k, "%lld", (long long)keep_after);
  snprintf(sp, sizeof sp, "%lld", (long long)snapshot_pos);
  snprintf(ap, sizeof ap, "%lld", (long long)applied_pos);
  const char *params[4] = {replica, k, snapshot_pos >= 0 ? sp : NULL, ap};
  q_err_t rc = 0;
  PGresult *r = under_prune_lock(
      st,
      "WITH beat AS ("
      "  INSERT INTO retriever_replicas"
      "    (replica_id, keep_after, snapshot_pos, applied_pos, heartbeat_at)"
      "  VALUES ($1, $2, $3, $4, clock_timestamp())"
      "  ON CONFLICT (replica_id) DO UPDATE SET keep_after = EXCLUDED.keep_after,"
      "    snapshot_pos = EXCLUDED.snapshot_pos, applied_pos = EXCLUDED.applied_pos,"
      "    heartbeat_at = EXCLUDED.heartbeat_at RETURNING 1)"
      "SELECT pruned_through, (SELECT count(*) FROM beat) FROM retriever_log_meta",
      4, params, "recording the replica's heartbeat", NULL, &rc, err, errlen);
  if (!r)
    return rc;
  if (pruned_through)
    *pruned_through = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return 0;
}

q_err_t store_prune(store_t *st, int64_t live_ms, int64_t retain_ms, store_prune_t *out,
                    char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  char l[32], k[32];
  snprintf(l, sizeof l, "%lld", (long long)(live_ms > 0 ? live_ms : 0));
  snprintf(k, sizeof k, "%lld", (long long)(retain_ms > 0 ? retain_ms : 0));
  const char *params[2] = {l, k};
  q_err_t rc = 0;
  /* The bound is the smallest keep_after of the live replicas (none live:
   * nothing is pruned, whoever asks); only changes older than the
   * retention floor go. The pruned head records the largest position
   * deleted and never goes down. */
  PGresult *r = under_prune_lock(
      st,
      "WITH live AS ("
      "  SELECT min(keep_after) AS bound, count(*) AS n FROM retriever_replicas"
      "  WHERE heartbeat_at > clock_timestamp() - make_interval(secs => $1::float8 / "
      "1000)),"
      " gone AS ("
      "  DELETE FROM retriever_changes WHERE pos IN ("
      "    SELECT pos FROM retriever_changes WHERE pos <= (SELECT bound FROM live)"
      "    AND at < clock_timestamp() - make_interval(secs => $2::float8 / 1000)"
      "    ORDER BY pos LIMIT " STORE_PRUNE_BATCH_SQL ")"
      "  RETURNING pos)"
      "UPDATE retriever_log_meta"
      "  SET pruned_through = greatest(pruned_through,"
      "                                coalesce((SELECT max(pos) FROM gone), 0))"
      "  RETURNING (SELECT count(*) FROM gone), pruned_through,"
      "    coalesce((SELECT bound FROM live), -1), (SELECT n FROM live)",
      2, params, "pruning the change log",
      "DELETE FROM retriever_replicas WHERE heartbeat_at < clock_timestamp() "
      "- " REPLICA_FORGET,
      &rc, err, errlen);
  if (!r)
    return rc;
  out->deleted = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  out->through = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  out->bound = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
  out->live = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
  PQclear(r);
  return 0;
}
