/* docstore.c - documents and jobs in PostgreSQL (see docstore.h).
 *
 * Worker-side updates are single statements with data-modifying CTEs: the
 * job row changes only while the caller still owns it (status 'running'
 * and claimed_by = instance), and the document row follows in the same
 * statement only while it is still at the job's version. No explicit
 * transaction is needed for them, and none can be left open on error. */
#include "docstore.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/util.h"

#define ACQUIRE_MS 5000
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

const q_pg_migration_t docstore_migrations[] = {
    {1, "documents, jobs and chunks",
     "CREATE TABLE IF NOT EXISTS documents (\n"
     "  id uuid PRIMARY KEY,\n"
     "  tenant_id text NOT NULL,\n"
     "  external_id text NOT NULL DEFAULT '',\n"
     "  title text NOT NULL DEFAULT '',\n"
     "  title_explicit boolean NOT NULL DEFAULT false,\n"
     "  filename text NOT NULL DEFAULT '',\n"
     "  content_type text NOT NULL,\n"
     "  version integer NOT NULL,\n"
     "  sha256 text NOT NULL,\n"
     "  size_bytes bigint NOT NULL,\n"
     "  status text NOT NULL,\n"
     "  chunk_count integer NOT NULL DEFAULT 0,\n"
     "  job_id uuid,\n"
     "  created_at timestamptz NOT NULL DEFAULT now(),\n"
     "  updated_at timestamptz NOT NULL DEFAULT now()\n"
     ");\n"
     "CREATE UNIQUE INDEX IF NOT EXISTS documents_tenant_external_key\n"
     "  ON documents (tenant_id, external_id) WHERE external_id <> '';\n"
     "CREATE TABLE IF NOT EXISTS jobs (\n"
     "  id uuid PRIMARY KEY,\n"
     "  document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
     "  tenant_id text NOT NULL,\n"
     "  version integer NOT NULL,\n"
     "  status text NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),\n"
     "  error text NOT NULL DEFAULT '',\n"
     "  chunk_count integer NOT NULL DEFAULT 0,\n"
     "  attempts integer NOT NULL DEFAULT 0,\n"
     "  run_after timestamptz NOT NULL DEFAULT now(),\n"
     "  claimed_by text NOT NULL DEFAULT '',\n"
     "  heartbeat_at timestamptz,\n"
     "  trace_id text NOT NULL DEFAULT '',\n"
     "  created_at timestamptz NOT NULL DEFAULT now(),\n"
     "  updated_at timestamptz NOT NULL DEFAULT now()\n"
     ");\n"
     "CREATE INDEX IF NOT EXISTS jobs_queued_idx ON jobs (created_at) WHERE status = "
     "'queued';\n"
     "CREATE INDEX IF NOT EXISTS jobs_running_idx ON jobs (document_id) WHERE status = "
     "'running';\n"
     "CREATE INDEX IF NOT EXISTS jobs_document_idx ON jobs (document_id);\n"
     "CREATE TABLE IF NOT EXISTS chunks (\n"
     "  id text PRIMARY KEY,\n"
     "  document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
     "  tenant_id text NOT NULL,\n"
     "  version integer NOT NULL,\n"
     "  ordinal integer NOT NULL,\n"
     "  text text NOT NULL,\n"
     "  heading text NOT NULL DEFAULT '',\n"
     "  created_at timestamptz NOT NULL DEFAULT now()\n"
     ");\n"
     "CREATE INDEX IF NOT EXISTS chunks_document_idx ON chunks (document_id, version, "
     "ordinal);\n"},
    /* The chunks table was written and deleted but never read: the
     * retriever's retriever_chunks holds the same text and is what search
     * serves. Old ingestion instances still write it, so stop them before
     * starting this one (Kubernetes: the Recreate strategy does). */
    {2, "drop chunks: the retriever owns chunk text", "DROP TABLE IF EXISTS chunks;\n"},
    /* Idempotency keys of uploads. document_id is NULL only inside the
     * transaction that claims the key (set before it commits), hence the
     * deferred foreign key. */
    {3, "upload_keys: idempotency keys of uploads",
     "CREATE TABLE IF NOT EXISTS upload_keys (\n"
     "  tenant_id text NOT NULL,\n"
     "  idem_key text NOT NULL,\n"
     "  sha256 text NOT NULL,\n"
     "  content_type text NOT NULL,\n"
     "  external_id text NOT NULL,\n"
     "  title text NOT NULL,\n"
     "  filename text NOT NULL,\n"
     "  document_id uuid REFERENCES documents (id) ON DELETE CASCADE\n"
     "    DEFERRABLE INITIALLY DEFERRED,\n"
     "  job_id text NOT NULL DEFAULT '',\n"
     "  version integer NOT NULL DEFAULT 0,\n"
     "  unchanged boolean NOT NULL DEFAULT false,\n"
     "  created_at timestamptz NOT NULL DEFAULT now(),\n"
     "  expires_at timestamptz NOT NULL,\n"
     "  PRIMARY KEY (tenant_id, idem_key)\n"
     ");\n"
     "CREATE INDEX IF NOT EXISTS upload_keys_expires_idx ON upload_keys (expires_at);\n"
     "CREATE INDEX IF NOT EXISTS upload_keys_document_idx ON upload_keys "
     "(document_id);\n"},
    /* Jobs that tell the truth: the stage a running job is in, its progress
     * and per-stage timings; when dependency retries began (they have their
     * own time window and do not count as attempts); a per-tenant queue
     * index for the fair claim; a NOTIFY on every queued job so idle
     * workers wake without polling. */
    {4, "jobs: stage, progress, timings, dependency retries, fair claim, notify",
     "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS stage text NOT NULL DEFAULT '';\n"
     "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS progress_done integer NOT NULL "
     "DEFAULT 0;\n"
     "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS progress_total integer NOT NULL "
     "DEFAULT 0;\n"
     "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS stage_ms jsonb NOT NULL DEFAULT "
     "'{}';\n"
     "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS dep_retries integer NOT NULL "
     "DEFAULT 0;\n"
     "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS dep_retry_since timestamptz;\n"
     "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS claimed_at timestamptz;\n"
     "CREATE INDEX IF NOT EXISTS jobs_tenant_claimed_idx ON jobs (tenant_id, "
     "claimed_at);\n"
     "CREATE INDEX IF NOT EXISTS jobs_tenant_queued_idx ON jobs (tenant_id, "
     "created_at) WHERE status = 'queued';\n"
     "CREATE INDEX IF NOT EXISTS jobs_tenant_running_idx ON jobs (tenant_id) WHERE "
     "status = 'running';\n"
     "CREATE OR REPLACE FUNCTION quarry_jobs_notify() RETURNS trigger AS $$\n"
     "BEGIN\n"
     "  PERFORM pg_notify('" DOCSTORE_CHANNEL "', '');\n"
     "  RETURN NULL;\n"
     "END $$ LANGUAGE plpgsql;\n"
     "DROP TRIGGER IF EXISTS jobs_queued_notify ON jobs;\n"
     "CREATE TRIGGER jobs_queued_notify AFTER INSERT OR UPDATE OF status ON jobs\n"
     "  FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION "
     "quarry_jobs_notify();\n"},
    /* Document life cycle (lifecycle.c): deletion is recorded, not erased
     * (deleted_at, deleted_by; the external id moves aside so a later
     * upload with it starts a new document); every version is kept in
     * document_versions by a trigger, so the upload path needs no change;
     * keyset indexes keep the lists fast on millions of rows. */
    {5, "documents: deletion, versions, list indexes",
     "ALTER TABLE documents ADD COLUMN IF NOT EXISTS deleted_at timestamptz;\n"
     "ALTER TABLE documents ADD COLUMN IF NOT EXISTS deleted_by text NOT NULL "
     "DEFAULT '';\n"
     "ALTER TABLE documents ADD COLUMN IF NOT EXISTS deleted_external_id text NOT "
     "NULL DEFAULT '';\n"
     "CREATE INDEX IF NOT EXISTS documents_tenant_list_idx ON documents (tenant_id, "
     "created_at, id) WHERE deleted_at IS NULL;\n"
     "CREATE INDEX IF NOT EXISTS jobs_tenant_list_idx ON jobs (tenant_id, created_at, "
     "id);\n"
     "CREATE INDEX IF NOT EXISTS jobs_document_list_idx ON jobs (document_id, "
     "created_at, id);\n"
     "CREATE TABLE IF NOT EXISTS document_versions (\n"
     "  document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
     "  version integer NOT NULL,\n"
     "  filename text NOT NULL,\n"
     "  content_type text NOT NULL,\n"
     "  size_bytes bigint NOT NULL,\n"
     "  sha256 text NOT NULL,\n"
     "  created_at timestamptz NOT NULL DEFAULT now(),\n"
     "  PRIMARY KEY (document_id, version)\n"
     ");\n"
     "CREATE INDEX IF NOT EXISTS document_versions_sha_idx ON document_versions "
     "(sha256);\n"
     "INSERT INTO document_versions (document_id, version, filename, content_type, "
     "size_bytes, sha256, created_at) SELECT id, version, filename, content_type, "
     "size_bytes, sha256, updated_at FROM documents ON CONFLICT DO NOTHING;\n"
     "CREATE OR REPLACE FUNCTION quarry_document_version() RETURNS trigger AS $$\n"
     "BEGIN\n"
     "  INSERT INTO document_versions (document_id, version, filename, content_type,\n"
     "    size_bytes, sha256) VALUES (NEW.id, NEW.version, NEW.filename,\n"
     "    NEW.content_type, NEW.size_bytes, NEW.sha256) ON CONFLICT DO NOTHING;\n"
     "  RETURN NULL;\n"
     "END $$ LANGUAGE plpgsql;\n"
     "DROP TRIGGER IF EXISTS documents_version_kept ON documents;\n"
     "CREATE TRIGGER documents_version_kept AFTER INSERT OR UPDATE OF version ON "
     "documents\n"
     "  FOR EACH ROW EXECUTE FUNCTION quarry_document_version();\n"},
    /* GET /v1/documents?q=: trigram indexes make a substring search of
     * titles and file names an index lookup instead of a scan of the
     * tenant's rows. pg_trgm ships with PostgreSQL and is a trusted
     * extension (the database owner may create it); where it is missing or
     * may not be created, the migration still succeeds and q scans. */
    {6, "documents: trigram indexes for q (when pg_trgm is available)",
     "DO $$\n"
     "BEGIN\n"
     "  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN\n"
     "    BEGIN\n"
     "      CREATE EXTENSION IF NOT EXISTS pg_trgm;\n"
     "    EXCEPTION WHEN insufficient_privilege THEN\n"
     "      RAISE NOTICE 'pg_trgm may not be created: q scans';\n"
     "    END;\n"
     "  END IF;\n"
     "  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN\n"
     "    EXECUTE 'CREATE INDEX IF NOT EXISTS documents_title_trgm_idx ON documents "
     "USING gin (lower(title) gin_trgm_ops) WHERE deleted_at IS NULL';\n"
     "    EXECUTE 'CREATE INDEX IF NOT EXISTS documents_filename_trgm_idx ON documents "
     "USING gin (lower(filename) gin_trgm_ops) WHERE deleted_at IS NULL';\n"
     "  END IF;\n"
     "END $$;\n"},
    /* The caller's metadata of a document (the batch route's "metadata"), a
     * JSON object kept for later filtering. */
    {7, "documents: metadata",
     "ALTER TABLE documents ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT "
     "'{}';\n"},
    /* What extraction finds out about each version (docstore_set_facts). */
    {8, "document_versions: extracted metadata",
     "ALTER TABLE document_versions ADD COLUMN IF NOT EXISTS author text NOT NULL "
     "DEFAULT '';\n"
     "ALTER TABLE document_versions ADD COLUMN IF NOT EXISTS language text NOT NULL "
     "DEFAULT '';\n"
     "ALTER TABLE document_versions ADD COLUMN IF NOT EXISTS page_count integer NOT "
     "NULL DEFAULT 0;\n"
     "ALTER TABLE document_versions ADD COLUMN IF NOT EXISTS doc_created_at "
     "timestamptz;\n"
     "ALTER TABLE document_versions ADD COLUMN IF NOT EXISTS doc_modified_at "
     "timestamptz;\n"},
    /* User metadata per version: a version row keeps the metadata it was
     * uploaded with (a new version no longer overwrites its predecessor's),
     * while documents.metadata stays the current version's, which its
     * chunks carry. The trigger of migration 5 now also copies metadata,
     * and follows a change of the current version's metadata. */
    {9, "document_versions: user metadata per version",
     "ALTER TABLE document_versions ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL "
     "DEFAULT '{}';\n"
     "UPDATE document_versions v SET metadata = d.metadata FROM documents d\n"
     "  WHERE d.id = v.document_id AND d.version = v.version;\n"
     "CREATE OR REPLACE FUNCTION quarry_document_version() RETURNS trigger AS $$\n"
     "BEGIN\n"
     "  INSERT INTO document_versions (document_id, version, filename, content_type,\n"
     "    size_bytes, sha256, metadata) VALUES (NEW.id, NEW.version, NEW.filename,\n"
     "    NEW.content_type, NEW.size_bytes, NEW.sha256, NEW.metadata)\n"
     "    ON CONFLICT (document_id, version) DO UPDATE SET metadata = EXCLUDED.metadata\n"
     "    WHERE document_versions.metadata IS DISTINCT FROM EXCLUDED.metadata;\n"
     "  RETURN NULL;\n"
     "END $$ LANGUAGE plpgsql;\n"
     "DROP TRIGGER IF EXISTS documents_version_kept ON documents;\n"
     "CREATE TRIGGER documents_version_kept AFTER INSERT OR UPDATE OF version, metadata\n"
     "  ON documents FOR EACH ROW EXECUTE FUNCTION quarry_document_version();\n"},
    /* How each version is cut into chunks (upload_meta_t.chunking, the
     * resolved spec of quarry/chunking.h): on the document for its current
     * version, which the job claim reads, and kept per version by the
     * trigger (which migration 9 made follow metadata too). '' (versions
     * stored before): the worker's settings. */
    {10, "documents and document_versions: chunking",
     "ALTER TABLE documents ADD COLUMN IF NOT EXISTS chunking text NOT NULL DEFAULT "
     "'';\n"
     "ALTER TABLE document_versions ADD COLUMN IF NOT EXISTS chunking text NOT NULL "
     "DEFAULT '';\n"
     "CREATE OR REPLACE FUNCTION quarry_document_version() RETURNS trigger AS $$\n"
     "BEGIN\n"
     "  INSERT INTO document_versions (document_id, version, filename, content_type,\n"
     "    size_bytes, sha256, metadata, chunking) VALUES (NEW.id, NEW.version,\n"
     "    NEW.filename, NEW.content_type, NEW.size_bytes, NEW.sha256, NEW.metadata,\n"
     "    NEW.chunking)\n"
     "    ON CONFLICT (document_id, version) DO UPDATE SET metadata = EXCLUDED.metadata\n"
     "    WHERE document_versions.metadata IS DISTINCT FROM EXCLUDED.metadata;\n"
     "  RETURN NULL;\n"
     "END $$ LANGUAGE plpgsql;\n"},
};
const size_t docstore_nmigrations =
    sizeof docstore_migrations / sizeof docstore_migrations[0];

/* ---- connections ------------------------------------------------------ */

/* Runs one command on a connection borrowed for it; *rows (when not NULL)
 * receives the rows it affected or returned. */
static q_err_t pool_cmd(q_pg_pool_t *p, const char *sql, int n, const char *const *params,
                        const char *what, int64_t *rows, char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = q_pg_exec(c, sql, n, params, what, rows, err, errlen);
  q_pg_release(p, c);
  return rc;
}

/* ---- uploads ---------------------------------------------------------- */

static const char *const SQL_INSERT_JOB =
    "INSERT INTO jobs (id, document_id, tenant_id, version, status, trace_id) "
    "VALUES ($1, $2, $3, $4, 'queued', $5)";

static q_err_t insert_job(PGconn *c, const upload_meta_t *m, upload_result_t *r,
                          char *err, size_t errlen) {
  char ver[16];
  snprintf(ver, sizeof ver, "%d", r->version);
  const char *params[5] = {r->job_id, r->document_id, m->tenant_id, ver,
                           m->trace_id ? m->trace_id : ""};
  return q_pg_exec(c, SQL_INSERT_JOB, 5, params, "queueing job", NULL, err, errlen);
}

/* A new document, version 1. With an external id the insert may find the
 * (tenant, external_id) taken: then *inserted is 0 and nothing changed. */
static int insert_document(PGconn *c, const upload_meta_t *m, upload_result_t *r,
                           int *inserted, char *err, size_t errlen) {
  char size[24];
  snprintf(size, sizeof size, "%lld", (long long)m->size);
  const char *params[12] = {r->document_id,
                            m->tenant_id,
                            m->external_id,
                            m->title,
                            m->title_explicit ? "t" : "f",
                            m->filename,
                            m->content_type,
                            m->sha256,
                            size,
                            r->job_id,
                            m->metadata ? m->metadata : "",
                            m->chunking};
  q_err_t rc = Q_OK;
  PGresult *res = q_pg_query(
      c,
      "INSERT INTO documents (id, tenant_id, external_id, title, title_explicit, "
      "filename, content_type, version, sha256, size_bytes, status, job_id, metadata, "
      "chunking) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, 'queued', $10, "
      "COALESCE(NULLIF($11, '')::jsonb, '{}'::jsonb), $12) "
      "ON CONFLICT (tenant_id, external_id) WHERE external_id <> '' DO NOTHING "
      "RETURNING id",
      12, params, "storing document", &rc, err, errlen);
  if (!res)
    return rc;
  *inserted = PQntuples(res) == 1;
  PQclear(res);
  if (*inserted)
    r->version = 1;
  return Q_OK;
}

/* The document with m's external id exists: decide between unchanged, a
 * retry of a failed version and a new version. Runs inside the caller's
 * transaction, holding the document's row lock. */
static q_err_t update_document(PGconn *c, const upload_meta_t *m, upload_result_t *r,
                               char *err, size_t errlen) {
  const char *key[3] = {m->tenant_id, m->external_id, m->metadata ? m->metadata : ""};
  q_err_t rc = Q_OK;
  PGresult *res =
      q_pg_query(c,
                 "SELECT id, version, sha256, status, COALESCE(job_id::text, ''), "
                 "$3 <> '' AND metadata IS DISTINCT FROM NULLIF($3, '')::jsonb, "
                 "chunking "
                 "FROM documents WHERE tenant_id = $1 AND external_id = $2 FOR UPDATE",
                 3, key, "locking document", &rc, err, errlen);
  if (!res)
    return rc;
  if (PQntuples(res) != 1) {
    PQclear(res);
    snprintf(err, errlen, "document with external id vanished during upload");
    return Q_EINTERNAL;
  }
  snprintf(r->document_id, sizeof r->document_id, "%s", PQgetvalue(res, 0, 0));
  r->version = atoi(PQgetvalue(res, 0, 1));
  /* Chunked another way, the same content is a new version. */
  int same = strcmp(PQgetvalue(res, 0, 2), m->sha256) == 0 &&
             strcmp(PQgetvalue(res, 0, 6), m->chunking) == 0;
  int failed = strcmp(PQgetvalue(res, 0, 3), "failed") == 0;
  int meta_changed = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
  if (same && !failed && !meta_changed) {
    r->unchanged = 1;
    snprintf(r->job_id, sizeof r->job_id, "%s", PQgetvalue(res, 0, 4));
    PQclear(res);
    return Q_OK;
  }
  PQclear(res);

  if (same) {
    /* A failed version uploaded again: run it once more. The same content
     * with other metadata: the version's metadata changes (the trigger of
     * migration 9 follows on its document_versions row) and it is indexed
     * again, so its chunks carry the new metadata (same chunk ids: the
     * retriever replaces them). */
    const char *params[3] = {r->document_id, r->job_id, m->metadata ? m->metadata : ""};
    rc =
        q_pg_exec(c,
                  "UPDATE documents SET status = 'queued', chunk_count = 0, job_id = $2, "
                  "updated_at = now(), "
                  "metadata = COALESCE(NULLIF($3, '')::jsonb, metadata) WHERE id = $1",
                  3, params, "requeueing document", NULL, err, errlen);
    const char *sup[1] = {r->document_id};
    if (!rc && meta_changed)
      rc = q_pg_exec(c,
                     "UPDATE jobs SET status = 'failed', error = 'superseded by new "
                     "metadata', updated_at = now() "
                     "WHERE document_id = $1 AND status = 'queued'",
                     1, sup, "superseding queued jobs", NULL, err, errlen);
    return rc ? rc : insert_job(c, m, r, err, errlen);
  }

  char size[24];
  snprintf(size, sizeof size, "%lld", (long long)m->size);
  const char *params[10] = {
      r->document_id, m->title,        m->title_explicit ? "t" : "f",
      m->filename,    m->content_type, m->sha256,
      size,           r->job_id,       m->metadata ? m->metadata : "",
      m->chunking};
  res = q_pg_query(
      c,
      "UPDATE documents SET version = version + 1, title = $2, title_explicit = $3, "
      "filename = $4, content_type = $5, sha256 = $6, size_bytes = $7, "
      "status = 'queued', chunk_count = 0, job_id = $8, updated_at = now(), "
      "metadata = COALESCE(NULLIF($9, '')::jsonb, '{}'::jsonb), chunking = $10 "
      "WHERE id = $1 RETURNING version",
      10, params, "storing new version", &rc, err, errlen);
  if (!res)
    return rc;
  r->version = atoi(PQgetvalue(res, 0, 0));
  PQclear(res);

  char why[64];
  snprintf(why, sizeof why, "superseded by version %d", r->version);
  const char *sup[2] = {r->document_id, why};
  rc = q_pg_exec(c,
                 "UPDATE jobs SET status = 'failed', error = $2, updated_at = now() "
                 "WHERE document_id = $1 AND status = 'queued'",
                 2, sup, "superseding queued jobs", NULL, err, errlen);
  return rc ? rc : insert_job(c, m, r, err, errlen);
}

/* ---- idempotency keys ---------------------------------------------------- */

static bool has_key(const upload_meta_t *m) {
  return m->idempotency_key && m->idempotency_key[0];
}

/* The title as a key's fingerprint holds it: only an explicit one (a
 * default title is the filename, which the fingerprint holds anyway). */
static const char *key_title(const upload_meta_t *m) {
  return m->title_explicit && m->title ? m->title : "";
}

/* Claims (tenant, key): inserts its row, or takes over the row of an
 * expired key. When another transaction holds the key (it claimed it and
 * has not ended), the insert waits for it. *claimed is 0 when a live row
 * of an earlier upload keeps the key. */
static q_err_t claim_key(PGconn *c, const upload_meta_t *m, int *claimed, char *err,
                         size_t errlen) {
  char ttl[24];
  snprintf(ttl, sizeof ttl, "%lld",
           (long long)(m->key_ttl_ms > 0 ? m->key_ttl_ms : DOCSTORE_KEY_TTL_DEFAULT_MS));
  const char *params[8] = {
      m->tenant_id,   m->idempotency_key, m->sha256,   m->content_type,
      m->external_id, key_title(m),       m->filename, ttl};
  q_err_t rc = Q_OK;
  PGresult *res = q_pg_query(
      c,
      "INSERT INTO upload_keys (tenant_id, idem_key, sha256, content_type, external_id, "
      "title, filename, expires_at) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, "
      "now() + make_interval(secs => $8::double precision / 1000)) "
      "ON CONFLICT (tenant_id, idem_key) DO UPDATE SET sha256 = EXCLUDED.sha256, "
      "content_type = EXCLUDED.content_type, external_id = EXCLUDED.external_id, "
      "title = EXCLUDED.title, filename = EXCLUDED.filename, document_id = NULL, "
      "job_id = '', version = 0, unchanged = false, created_at = now(), "
      "expires_at = EXCLUDED.expires_at "
      "WHERE upload_keys.expires_at <= now() "
      "RETURNING 1",
      8, params, "claiming idempotency key", &rc, err, errlen);
  if (!res)
    return rc;
  *claimed = PQntuples(res) == 1;
  PQclear(res);
  return Q_OK;
}

/* The key is held by an earlier upload: its result when m is the same
 * upload, else Q_ECONFLICT naming what differs. */
static q_err_t replay_key(PGconn *c, const upload_meta_t *m, upload_result_t *r,
                          char *err, size_t errlen) {
  const char *key[2] = {m->tenant_id, m->idempotency_key};
  q_err_t rc = Q_OK;
  PGresult *res =
      q_pg_query(c,
                 "SELECT sha256, content_type, external_id, title, filename, "
                 "COALESCE(document_id::text, ''), job_id, version, unchanged "
                 "FROM upload_keys WHERE tenant_id = $1 AND idem_key = $2",
                 2, key, "reading idempotency key", &rc, err, errlen);
  if (!res)
    return rc;
  if (PQntuples(res) != 1 || !PQgetvalue(res, 0, 5)[0]) {
    PQclear(res);
    snprintf(err, errlen, "idempotency key vanished during upload");
    return Q_EINTERNAL;
  }
  static const char *const what[5] = {"content (sha256)", "content type", "external_id",
                                      "title", "filename"};
  const char *mine[5] = {m->sha256, m->content_type, m->external_id, key_title(m),
                         m->filename};
  char diff[160] = "";
  size_t dl = 0;
  for (int i = 0; i < 5; i++)
    if (strcmp(PQgetvalue(res, 0, i), mine[i]) != 0 && dl < sizeof diff)
      dl +=
          (size_t)snprintf(diff + dl, sizeof diff - dl, "%s%s", dl ? ", " : "", what[i]);
  if (dl) {
    PQclear(res);
    snprintf(err, errlen,
             "Idempotency-Key already used for a different upload (%s differs): an "
             "upload retried with the same key must be the same request; use a new key "
             "for a different document",
             diff);
    return Q_ECONFLICT;
  }
  snprintf(r->document_id, sizeof r->document_id, "%s", PQgetvalue(res, 0, 5));
  snprintf(r->job_id, sizeof r->job_id, "%s", PQgetvalue(res, 0, 6));
  r->version = atoi(PQgetvalue(res, 0, 7));
  r->unchanged = strcmp(PQgetvalue(res, 0, 8), "t") == 0;
  r->replayed = 1;
  PQclear(res);
  return Q_OK;
}

/* Stores the result of the upload that claimed the key. */
static q_err_t record_key(PGconn *c, const upload_meta_t *m, const upload_result_t *r,
                          char *err, size_t errlen) {
  char ver[16];
  snprintf(ver, sizeof ver, "%d", r->version);
  const char *params[6] = {
      m->tenant_id, m->idempotency_key,      r->document_id, r->job_id,
      ver,          r->unchanged ? "t" : "f"};
  return q_pg_exec(c,
                   "UPDATE upload_keys SET document_id = $3, job_id = $4, version = $5, "
                   "unchanged = $6 WHERE tenant_id = $1 AND idem_key = $2",
                   6, params, "recording idempotency key", NULL, err, errlen);
}

/* The statements of docstore_record_upload, inside its transaction. */
static q_err_t record_in_tx(PGconn *c, const upload_meta_t *m, upload_result_t *r,
                            char *err, size_t errlen) {
  q_err_t rc;
  if (has_key(m)) {
    int claimed = 0;
    rc = claim_key(c, m, &claimed, err, errlen);
    if (rc)
      return rc;
    if (!claimed)
      return replay_key(c, m, r, err, errlen);
  }
  int inserted = 0;
  rc = insert_document(c, m, r, &inserted, err, errlen);
  if (rc)
    return rc;
  rc =
      inserted ? insert_job(c, m, r, err, errlen) : update_document(c, m, r, err, errlen);
  if (rc)
    return rc;
  return has_key(m) ? record_key(c, m, r, err, errlen) : Q_OK;
}

q_err_t docstore_record_upload(q_pg_pool_t *p, const upload_meta_t *m, upload_result_t *r,
                               char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  q_uuid4(r->document_id);
  q_uuid4(r->job_id);
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, errlen);
  if (rc)
    goto done;
  rc = record_in_tx(c, m, r, err, errlen);
  if (!rc)
    rc = q_pg_exec(c, "COMMIT", 0, NULL, "commit", NULL, err, errlen);
  else
    PQclear(PQexec(c, "ROLLBACK"));
done:
  q_pg_release(p, c);
  return rc;
}

q_err_t docstore_record_uploads(q_pg_pool_t *p, const upload_meta_t *m, int n,
                                upload_result_t *r, q_err_t *rcs, char (*errs)[256]) {
  for (int i = 0; i < n; i++) {
    memset(&r[i], 0, sizeof r[i]);
    q_uuid4(r[i].document_id);
    q_uuid4(r[i].job_id);
    rcs[i] = Q_OK;
    errs[i][0] = '\0';
  }
  char err[256];
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, sizeof err);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, sizeof err);
  for (int i = 0; i < n && !rc; i++) {
    q_err_t irc = record_in_tx(c, &m[i], &r[i], errs[i], sizeof errs[0]);
    /* A key used for another upload changed nothing: that item alone
     * fails. Anything else leaves the transaction unusable. */
    if (irc == Q_ECONFLICT)
      rcs[i] = irc;
    else if (irc)
      rc = irc;
  }
  if (!rc)
    rc = q_pg_exec(c, "COMMIT", 0, NULL, "commit", NULL, err, sizeof err);
  else
    PQclear(PQexec(c, "ROLLBACK"));
  q_pg_release(p, c);
  if (rc == Q_EUNAVAIL)
    return rc;
  if (rc) {
    /* One item failed in the database: take them one at a time, so it
     * fails alone. */
    for (int i = 0; i < n; i++) {
      rcs[i] = docstore_record_upload(p, &m[i], &r[i], errs[i], sizeof errs[0]);
      if (rcs[i] == Q_EUNAVAIL)
        for (int k = i + 1; k < n; k++) {
          rcs[k] = Q_EUNAVAIL;
          memcpy(errs[k], errs[i], sizeof errs[0]); /* k > i: distinct rows */
        }
      if (rcs[i] == Q_EUNAVAIL)
        break;
    }
  }
  return Q_OK;
}

q_err_t docstore_expire_keys(q_pg_pool_t *p, int limit, int *n, char *err,
                             size_t errlen) {
  char lim[16];
  snprintf(lim, sizeof lim, "%d", limit);
  const char *params[1] = {lim};
  int64_t rows = 0;
  *n = 0;
  q_err_t rc = pool_cmd(p,
                        "DELETE FROM upload_keys WHERE (tenant_id, idem_key) IN ("
                        "  SELECT tenant_id, idem_key FROM upload_keys"
                        "  WHERE expires_at <= now() ORDER BY expires_at"
                        "  LIMIT $1::int FOR UPDATE SKIP LOCKED)",
                        1, params, "expiring idempotency keys", &rows, err, errlen);
  if (!rc)
    *n = (int)rows;
  return rc;
}

/* ---- reads ------------------------------------------------------------ */

/* Timestamps leave the database as RFC 3339 UTC with milliseconds. */
// clang-format off
#define SQL_GET_DOCUMENT                                                            \
  "SELECT id, tenant_id, title, filename, content_type, external_id, version, "     \
  "size_bytes, sha256, status, chunk_count, " TS("created_at") ", "                  \
  TS("updated_at") ", COALESCE(job_id::text, ''), COALESCE(metadata::text, ''), "  \
  "COALESCE(v.author, ''), COALESCE(v.language, ''), COALESCE(v.page_count, 0), "  \
  "COALESCE(" TS("v.doc_created_at") ", ''), "                                      \
  "COALESCE(" TS("v.doc_modified_at") ", '') "                                      \
  "FROM documents d LEFT JOIN LATERAL (SELECT author, language, page_count, "       \
  "  doc_created_at, doc_modified_at FROM document_versions "                       \
  "  WHERE document_id = d.id AND version = d.version) v ON true "                  \
  "WHERE d.id = $1::uuid AND d.tenant_id = $2 AND d.deleted_at IS NULL"
#define SQL_GET_JOB                                                                 \
  "SELECT id, document_id, status, error, chunk_count, attempts, "                  \
  TS("created_at") ", " TS("updated_at") ", stage, progress_done, "                 \
  "progress_total, stage_ms::text, dep_retries "                                    \
  "FROM jobs WHERE id = $1::uuid AND tenant_id = $2"
// clang-format on

static char *col(q_arena_t *a, PGresult *r, int i) {
  return q_arena_strdup(a, PQgetisnull(r, 0, i) ? "" : PQgetvalue(r, 0, i));
}

/* Runs a lookup by (id, tenant) expecting zero or one row. */
static q_err_t lookup(q_pg_pool_t *p, const char *sql, const char *tenant, const char *id,
                      PGresult **out, char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  const char *params[2] = {id, tenant};
  q_err_t rc = Q_OK;
  *out = q_pg_query(c, sql, 2, params, "reading", &rc, err, errlen);
  q_pg_release(p, c);
  if (*out && PQntuples(*out) != 1) {
    PQclear(*out);
    *out = NULL;
    return Q_ENOTFOUND;
  }
  return rc;
}

q_err_t docstore_get_document(q_pg_pool_t *p, const char *tenant, const char *id,
                              q_arena_t *a, Quarry__V1__Document **out, char *err,
                              size_t errlen) {
  PGresult *r;
  int rc = lookup(p, SQL_GET_DOCUMENT, tenant, id, &r, err, errlen);
  if (rc)
    return rc;
  Quarry__V1__Document *d = q_arena_alloc(a, sizeof *d);
  if (!d) {
    PQclear(r);
    return Q_ENOMEM;
  }
  quarry__v1__document__init(d);
  d->id = col(a, r, 0);
  d->tenant_id = col(a, r, 1);
  d->title = col(a, r, 2);
  d->filename = col(a, r, 3);
  d->content_type = col(a, r, 4);
  d->external_id = col(a, r, 5);
  d->version = atoi(PQgetvalue(r, 0, 6));
  d->size_bytes = strtoll(PQgetvalue(r, 0, 7), NULL, 10);
  d->sha256 = col(a, r, 8);
  d->status = col(a, r, 9);
  d->chunk_count = atoi(PQgetvalue(r, 0, 10));
  d->created_at = col(a, r, 11);
  d->updated_at = col(a, r, 12);
  d->job_id = col(a, r, 13);
  d->metadata = col(a, r, 14);
  d->author = col(a, r, 15);
  d->language = col(a, r, 16);
  d->page_count = atoi(PQgetvalue(r, 0, 17));
  d->doc_created_at = col(a, r, 18);
  d->doc_modified_at = col(a, r, 19);
  PQclear(r);
  *out = d;
  return Q_OK;
}

/* Parses the flat {"stage":ms,...} object docstore_progress stores into
 * Job.stage_ms entries, in stage order. */
static q_err_t stage_timings(q_arena_t *a, const char *json, Quarry__V1__Job *j) {
  static const char *const stages[] = DOCSTORE_STAGES;
  size_t n = sizeof stages / sizeof stages[0];
  j->stage_ms = q_arena_alloc(a, n * sizeof *j->stage_ms);
  if (!j->stage_ms)
    return Q_ENOMEM;
  j->n_stage_ms = 0;
  for (size_t i = 0; i < n; i++) {
    char key[32];
    snprintf(key, sizeof key, "\"%s\":", stages[i]);
    const char *at = strstr(json, key);
    if (!at)
      continue;
    Quarry__V1__JobStageTiming *t = q_arena_alloc(a, sizeof *t);
    if (!t)
      return Q_ENOMEM;
    quarry__v1__job_stage_timing__init(t);
    t->stage = (char *)stages[i];
    t->ms = strtoll(at + strlen(key), NULL, 10);
    j->stage_ms[j->n_stage_ms++] = t;
  }
  return Q_OK;
}

q_err_t docstore_get_job(q_pg_pool_t *p, const char *tenant, const char *id, q_arena_t *a,
                         Quarry__V1__Job **out, char *err, size_t errlen) {
  PGresult *r;
  int rc = lookup(p, SQL_GET_JOB, tenant, id, &r, err, errlen);
  if (rc)
    return rc;
  Quarry__V1__Job *j = q_arena_alloc(a, sizeof *j);
  if (!j) {
    PQclear(r);
    return Q_ENOMEM;
  }
  quarry__v1__job__init(j);
  j->id = col(a, r, 0);
  j->document_id = col(a, r, 1);
  j->status = col(a, r, 2);
  j->error = col(a, r, 3);
  j->chunk_count = atoi(PQgetvalue(r, 0, 4));
  j->attempts = atoi(PQgetvalue(r, 0, 5));
  j->created_at = col(a, r, 6);
  j->updated_at = col(a, r, 7);
  j->stage = col(a, r, 8);
  j->progress_done = atoi(PQgetvalue(r, 0, 9));
  j->progress_total = atoi(PQgetvalue(r, 0, 10));
  j->dependency_retries = atoi(PQgetvalue(r, 0, 12));
  rc = stage_timings(a, PQgetvalue(r, 0, 11), j);
  PQclear(r);
  if (rc)
    return rc;
  *out = j;
  return Q_OK;
}

/* ---- the queue -------------------------------------------------------- */

/* Fair across tenants: for each tenant with queued jobs, its first few
 * runnable ones in queue order (bounded work per tenant); then every
 * tenant's first job before any tenant's second (rn), a tenant with fewer
 * running jobs first, then the one served least recently (round robin),
 * then the oldest job. Locked candidates are skipped, so claimers racing
 * each other take the next in line.
 *
 * The tenants come from a skip scan of jobs_tenant_queued_idx (a recursive
 * CTE that jumps from one tenant to the next: one index probe per tenant
 * with queued jobs), not from a DISTINCT over every queued job, so the
 * claim's cost grows with the number of tenants, not with the queue
 * (bench/claim_bench.c; docs/benchmarks.md). A tenant whose queued jobs
 * all wait for run_after contributes no candidate. The candidates are
 * locked through "id = ANY (ARRAY(...))", which the planner answers with
 * probes of the primary key: a plain join with cand may be planned as a
 * hash join over a sequential scan of jobs. */
const char docstore_claim_sql[] =
    "WITH RECURSIVE t AS ("
    "  (SELECT tenant_id FROM jobs WHERE status = 'queued' ORDER BY tenant_id LIMIT 1)"
    "  UNION ALL"
    "  SELECT (SELECT q.tenant_id FROM jobs q WHERE q.status = 'queued'"
    "          AND q.tenant_id > t.tenant_id ORDER BY q.tenant_id LIMIT 1)"
    "    FROM t WHERE t.tenant_id IS NOT NULL"
    "), ts AS MATERIALIZED ("
    "  SELECT t.tenant_id,"
    "    (SELECT count(*) FROM jobs r WHERE r.tenant_id = t.tenant_id"
    "       AND r.status = 'running') AS busy,"
    "    (SELECT max(r.claimed_at) FROM jobs r WHERE r.tenant_id = t.tenant_id)"
    "       AS served"
    "  FROM t WHERE t.tenant_id IS NOT NULL"
    "), cand AS ("
    "  SELECT q.id, q.created_at, q.rn, ts.busy, ts.served"
    "  FROM ts CROSS JOIN LATERAL ("
    "    SELECT q.id, q.created_at, row_number() OVER (ORDER BY q.created_at) AS rn"
    "      FROM jobs q WHERE q.tenant_id = ts.tenant_id"
    "      AND q.status = 'queued' AND q.run_after <= now()"
    "      AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.document_id = q.document_id"
    "                      AND r.status = 'running')"
    "      AND ($3::bigint <= 0 OR (SELECT d.size_bytes FROM documents d"
    "                               WHERE d.id = q.document_id) <= $3::bigint)"
    "    ORDER BY q.created_at LIMIT greatest(8, $2::int)) q"
    "), c AS ("
    "  UPDATE jobs SET status = 'running', attempts = attempts + 1, claimed_by = $1,"
    "    heartbeat_at = now(), updated_at = now(), claimed_at = clock_timestamp(),"
    "    stage = 'extracting', progress_done = 0,"
    "    progress_total = 0, stage_ms = '{}'"
    "  WHERE id IN (SELECT j.id FROM jobs j JOIN cand ON cand.id = j.id"
    "    WHERE j.id = ANY (ARRAY(SELECT id FROM cand)) AND j.status = 'queued'"
    "    ORDER BY cand.rn, cand.busy, cand.served NULLS FIRST, cand.created_at"
    "    FOR UPDATE OF j SKIP LOCKED LIMIT $2::int)"
    "  RETURNING id, document_id, tenant_id, version, attempts, trace_id,"
    "    dep_retries, COALESCE((extract(epoch FROM now() - dep_retry_since)"
    "      * 1000)::bigint, 0) AS dep_ms"
    "), d AS ("
    "  UPDATE documents SET status = 'running', updated_at = now() FROM c"
    "  WHERE documents.id = c.document_id AND documents.version = c.version"
    "  RETURNING documents.id"
    ") "
    "SELECT c.id, c.document_id, c.tenant_id, c.version, c.attempts, c.trace_id,"
    "  doc.version, doc.sha256, doc.content_type, doc.title, doc.title_explicit,"
    "  doc.size_bytes, c.dep_retries, c.dep_ms,"
    "  (SELECT count(*) FROM jobs p WHERE p.document_id = c.document_id),"
    "  extract(epoch FROM doc.created_at)::bigint, COALESCE(doc.metadata::text, ''),"
    "  doc.chunking "
    "FROM c JOIN documents doc ON doc.id = c.document_id JOIN cand ON cand.id = c.id "
    "ORDER BY cand.rn, cand.busy, cand.served NULLS FIRST, cand.created_at";

q_err_t docstore_claim(q_pg_pool_t *p, const char *instance, job_t *j, char *err,
                       size_t errlen) {
  int n = 0;
  q_err_t rc = docstore_claim_batch(p, instance, j, 1, 0, &n, err, errlen);
  return rc ? rc : n == 1 ? Q_OK : Q_ENOTFOUND;
}

q_err_t docstore_claim_batch(q_pg_pool_t *p, const char *instance, job_t *jobs, int max,
                             int64_t max_bytes, int *n, char *err, size_t errlen) {
  *n = 0;
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  char lim[16], bytes[24];
  snprintf(lim, sizeof lim, "%d", max);
  snprintf(bytes, sizeof bytes, "%lld", (long long)max_bytes);
  const char *params[3] = {instance, lim, bytes};
  q_err_t rc = Q_OK;
  PGresult *r =
      q_pg_query(c, docstore_claim_sql, 3, params, "claiming jobs", &rc, err, errlen);
  q_pg_release(p, c);
  if (!r)
    return rc;
  int rows = PQntuples(r);
  for (int i = 0; i < rows && i < max; i++) {
    job_t *j = &jobs[i];
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", PQgetvalue(r, i, 0));
    snprintf(j->document_id, sizeof j->document_id, "%s", PQgetvalue(r, i, 1));
    snprintf(j->tenant_id, sizeof j->tenant_id, "%s", PQgetvalue(r, i, 2));
    j->version = atoi(PQgetvalue(r, i, 3));
    j->attempts = atoi(PQgetvalue(r, i, 4));
    snprintf(j->trace_id, sizeof j->trace_id, "%s", PQgetvalue(r, i, 5));
    j->doc_version = atoi(PQgetvalue(r, i, 6));
    snprintf(j->sha256, sizeof j->sha256, "%s", PQgetvalue(r, i, 7));
    snprintf(j->content_type, sizeof j->content_type, "%s", PQgetvalue(r, i, 8));
    snprintf(j->title, sizeof j->title, "%s", PQgetvalue(r, i, 9));
    j->title_explicit = strcmp(PQgetvalue(r, i, 10), "t") == 0;
    j->size = strtoll(PQgetvalue(r, i, 11), NULL, 10);
    j->dep_retries = atoi(PQgetvalue(r, i, 12));
    j->dep_retry_ms = strtoll(PQgetvalue(r, i, 13), NULL, 10);
    j->first_job = j->version == 1 && atoi(PQgetvalue(r, i, 14)) == 1;
    j->created_at = strtoll(PQgetvalue(r, i, 15), NULL, 10);
    snprintf(j->metadata, sizeof j->metadata, "%s", PQgetvalue(r, i, 16));
    snprintf(j->chunking, sizeof j->chunking, "%s", PQgetvalue(r, i, 17));
    (*n)++;
  }
  PQclear(r);
  return Q_OK;
}

q_err_t docstore_heartbeat(q_pg_pool_t *p, const char *instance, const job_t *j,
                           int *doc_version, char *err, size_t errlen) {
  const char *params[2] = {j->id, instance};
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = Q_OK;
  PGresult *r = q_pg_query(
      c,
      "UPDATE jobs SET heartbeat_at = now() WHERE id = $1 AND status = 'running' "
      "AND claimed_by = $2 "
      "RETURNING (SELECT version FROM documents WHERE id = jobs.document_id)",
      2, params, "renewing heartbeat", &rc, err, errlen);
  q_pg_release(p, c);
  if (!r)
    return rc;
  int n = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  if (n <= 0)
    return Q_ENOTFOUND;
  *doc_version = n;
  return Q_OK;
}

q_err_t docstore_finish(q_pg_pool_t *p, const char *instance, const job_t *j, int done,
                        int chunk_count, const char *error, const char *stage_ms,
                        char *err, size_t errlen) {
  char count[16];
  snprintf(count, sizeof count, "%d", chunk_count);
  const char *params[6] = {j->id, instance,           done ? "done" : "failed",
                           count, error ? error : "", stage_ms};
  int64_t n = 0;
  q_err_t rc = pool_cmd(
      p,
      "WITH j AS ("
      "  UPDATE jobs SET status = $3, chunk_count = $4::int, error = $5, updated_at = "
      "now(), stage_ms = COALESCE($6::jsonb, stage_ms),"
      "    progress_done = CASE WHEN $3 = 'done' THEN $4::int ELSE progress_done END,"
      "    progress_total = CASE WHEN $3 = 'done' THEN $4::int ELSE progress_total END"
      "  WHERE id = $1 AND status = 'running' AND claimed_by = $2"
      "  RETURNING document_id, version"
      "), d AS ("
      "  UPDATE documents SET status = $3, chunk_count = $4::int, updated_at = now() "
      "FROM j"
      "  WHERE documents.id = j.document_id AND documents.version = j.version"
      "  RETURNING documents.id"
      ") "
      "SELECT 1 FROM j",
      6, params, "finishing job", &n, err, errlen);
  if (rc)
    return rc;
  return n == 1 ? Q_OK : Q_ENOTFOUND;
}

q_err_t docstore_requeue(q_pg_pool_t *p, const char *instance, const job_t *j,
                         int delay_ms, int kind, const char *why, char *err,
                         size_t errlen) {
  char delay[16];
  snprintf(delay, sizeof delay, "%d", delay_ms);
  const char *params[6] = {j->id,          instance,
                           delay,          kind == REQUEUE_ATTEMPT ? "0" : "1",
                           why ? why : "", kind == REQUEUE_DEPENDENCY ? "t" : "f"};
  int64_t n = 0;
  q_err_t rc = pool_cmd(
      p,
      "WITH j AS ("
      "  UPDATE jobs SET status = 'queued', claimed_by = '', error = $5,"
      "    attempts = attempts - $4::int,"
      "    run_after = now() + make_interval(secs => $3::double precision / 1000),"
      "    dep_retries = dep_retries + CASE WHEN $6::boolean THEN 1 ELSE 0 END,"
      "    dep_retry_since = CASE WHEN $6::boolean THEN COALESCE(dep_retry_since, now())"
      "      ELSE dep_retry_since END,"
      "    updated_at = now()"
      "  WHERE id = $1 AND status = 'running' AND claimed_by = $2"
      "  RETURNING document_id, version"
      "), d AS ("
      "  UPDATE documents SET status = 'queued', updated_at = now() FROM j"
      "  WHERE documents.id = j.document_id AND documents.version = j.version"
      "  RETURNING documents.id"
      ") "
      "SELECT 1 FROM j",
      6, params, "requeueing job", &n, err, errlen);
  if (rc)
    return rc;
  return n == 1 ? Q_OK : Q_ENOTFOUND;
}

q_err_t docstore_requeue_stale(q_pg_pool_t *p, const char *host, int lease_ms,
                               int max_attempts, int *n, char *err, size_t errlen) {
  char lease[16], max[16];
  snprintf(lease, sizeof lease, "%d", lease_ms);
  snprintf(max, sizeof max, "%d", max_attempts);
  const char *params[3] = {host ? host : "", lease, max};
  int64_t rows = 0;
  *n = 0;
  q_err_t rc = pool_cmd(
      p,
      "WITH j AS ("
      "  UPDATE jobs SET"
      "    status = CASE WHEN attempts >= $3::int THEN 'failed' ELSE 'queued' END,"
      "    error = CASE WHEN attempts >= $3::int"
      "      THEN 'gave up after ' || attempts || ' attempts: the worker stopped "
      "responding'"
      "      ELSE 'the worker stopped responding; queued again' END,"
      "    claimed_by = '', run_after = now(), updated_at = now()"
      "  WHERE status = 'running' AND"
      "    (($1 <> '' AND split_part(claimed_by, ':', 1) = $1) OR"
      "     heartbeat_at < now() - make_interval(secs => $2::double precision / 1000))"
      "  RETURNING document_id, version, status"
      "), d AS ("
      "  UPDATE documents SET status = j.status, updated_at = now() FROM j"
      "  WHERE documents.id = j.document_id AND documents.version = j.version"
      "  RETURNING documents.id"
      ") "
      "SELECT 1 FROM j",
      3, params, "requeueing stale jobs", &rows, err, errlen);
  if (!rc)
    *n = (int)rows;
  return rc;
}

q_err_t docstore_set_facts(q_pg_pool_t *p, const job_t *j, const doc_facts_t *f,
                           char *err, size_t errlen) {
  char ver[16], pages[16], cr[24], mo[24];
  snprintf(ver, sizeof ver, "%d", j->version);
  snprintf(pages, sizeof pages, "%d", f->page_count > 0 ? f->page_count : 0);
  snprintf(cr, sizeof cr, "%lld", (long long)f->created);
  snprintf(mo, sizeof mo, "%lld", (long long)f->modified);
  const char *params[7] = {j->document_id,
                           ver,
                           f->author ? f->author : "",
                           f->language ? f->language : "",
                           pages,
                           cr,
                           mo};
  return pool_cmd(
      p,
      "UPDATE document_versions SET author = $3, language = $4,"
      "  page_count = $5::int,"
      "  doc_created_at = CASE WHEN $6::bigint > 0 THEN to_timestamp($6::bigint) END,"
      "  doc_modified_at = CASE WHEN $7::bigint > 0 THEN to_timestamp($7::bigint) END"
      " WHERE document_id = $1 AND version = $2::int",
      7, params, "recording extracted metadata", NULL, err, errlen);
}

q_err_t docstore_set_title(q_pg_pool_t *p, const job_t *j, const char *title, char *err,
                           size_t errlen) {
  char ver[16];
  snprintf(ver, sizeof ver, "%d", j->version);
  const char *params[3] = {j->document_id, ver, title};
  return pool_cmd(p,
                  "UPDATE documents SET title = $3 WHERE id = $1 AND version = $2::int",
                  3, params, "setting title", NULL, err, errlen);
}

q_err_t docstore_progress(q_pg_pool_t *p, const char *instance, const job_t *j,
                          const char *stage, int done, int total, const char *stage_ms,
                          char *err, size_t errlen) {
  char d[16], t[16];
  snprintf(d, sizeof d, "%d", done);
  snprintf(t, sizeof t, "%d", total);
  const char *params[6] = {j->id, instance, stage, d, t, stage_ms ? stage_ms : "{}"};
  int64_t n = 0;
  q_err_t rc = pool_cmd(p,
                        "UPDATE jobs SET stage = $3, progress_done = $4::int,"
                        "  progress_total = $5::int, stage_ms = $6::jsonb,"
                        "  heartbeat_at = now(), updated_at = now()"
                        " WHERE id = $1 AND status = 'running' AND claimed_by = $2",
                        6, params, "recording progress", &n, err, errlen);
  if (rc)
    return rc;
  return n == 1 ? Q_OK : Q_ENOTFOUND;
}

q_err_t docstore_progress_many(q_pg_pool_t *p, const char *instance, const char *stage,
                               const char *const *ids, const int *totals, int n,
                               bool *updated, char *err, size_t errlen) {
  q_buf_t idv, tv;
  q_buf_init(&idv, (size_t)n * 40 + 8);
  q_buf_init(&tv, (size_t)n * 12 + 8);
  q_err_t rc = q_buf_append(&idv, "{", 1) || q_buf_append(&tv, "{", 1) ? Q_ENOMEM : Q_OK;
  for (int i = 0; i < n && !rc; i++) {
    char t[16];
    int k = snprintf(t, sizeof t, "%s%d", i ? "," : "", totals[i]);
    if ((i && q_buf_append(&idv, ",", 1)) || q_buf_append(&idv, ids[i], strlen(ids[i])) ||
        q_buf_append(&tv, t, (size_t)k))
      rc = Q_ENOMEM;
  }
  if (!rc && (q_buf_append(&idv, "}", 1) || q_buf_append(&tv, "}", 1)))
    rc = Q_ENOMEM;
  for (int i = 0; i < n; i++)
    updated[i] = false;
  PGconn *c = rc ? NULL : q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!rc && !c)
    rc = Q_EUNAVAIL;
  PGresult *r = NULL;
  if (!rc) {
    const char *params[4] = {idv.data, instance, stage, tv.data};
    r = q_pg_query(c,
                   "UPDATE jobs SET stage = $3, progress_total = t.total,"
                   "  heartbeat_at = now(), updated_at = now()"
                   " FROM unnest($1::uuid[], $4::int[]) AS t(id, total)"
                   " WHERE jobs.id = t.id AND status = 'running' AND claimed_by = $2"
                   " RETURNING jobs.id::text",
                   4, params, "recording progress", &rc, err, errlen);
    q_pg_release(p, c);
  }
  for (int row = 0; r && row < PQntuples(r); row++)
    for (int i = 0; i < n; i++)
      if (strcmp(PQgetvalue(r, row, 0), ids[i]) == 0)
        updated[i] = true;
  PQclear(r);
  q_buf_cleanup(&idv);
  q_buf_cleanup(&tv);
  return rc;
}

q_err_t docstore_queue_stats(q_pg_pool_t *p, queue_stats_t *s, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  s->next_due_ms = -1;
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = Q_OK;
  /* The partial indexes keep queued and running cheap; done and failed
   * are a count over the table, which the caller runs every few seconds
   * at most. */
  PGresult *r =
      q_pg_query(c,
                 "SELECT count(*) FILTER (WHERE status = 'queued'),"
                 "  count(*) FILTER (WHERE status = 'running'),"
                 "  count(*) FILTER (WHERE status = 'done'),"
                 "  count(*) FILTER (WHERE status = 'failed'),"
                 "  COALESCE(extract(epoch FROM now() - min(created_at) FILTER"
                 "    (WHERE status = 'queued')), 0),"
                 "  COALESCE(greatest(0, (extract(epoch FROM min(run_after) FILTER"
                 "    (WHERE status = 'queued') - now()) * 1000))::bigint, -1) "
                 "FROM jobs",
                 0, NULL, "counting jobs", &rc, err, errlen);
  q_pg_release(p, c);
  if (!r)
    return rc;
  s->queued = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  s->running = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  s->done = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
  s->failed = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
  s->oldest_queued_s = strtod(PQgetvalue(r, 0, 4), NULL);
  s->next_due_ms = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
  PQclear(r);
  return Q_OK;
}

/* ---- several jobs in one statement (worker.c's batches) ------------------ */

/* Runs sql with $1 the JSON array in body and $2 instance; sets found[i]
 * when the first column of a returned row equals ids[i]. */
static q_err_t many_cmd(q_pg_pool_t *p, const char *sql, const char *body,
                        const char *instance, const char *const *ids, int n, bool *found,
                        const char *what, char *err, size_t errlen) {
  for (int i = 0; i < n; i++)
    found[i] = false;
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = Q_OK;
  const char *params[2] = {body, instance};
  PGresult *r = q_pg_query(c, sql, instance ? 2 : 1, params, what, &rc, err, errlen);
  q_pg_release(p, c);
  for (int row = 0; r && row < PQntuples(r); row++)
    for (int i = 0; i < n; i++)
      if (!found[i] && strcmp(PQgetvalue(r, row, 0), ids[i]) == 0) {
        found[i] = true;
        break;
      }
  PQclear(r);
  return rc;
}

q_err_t docstore_finish_many(q_pg_pool_t *p, const char *instance,
                             const job_t *const *jobs, const int *chunk_counts,
                             const char *const *stage_ms, int n, bool *finished,
                             char *err, size_t errlen) {
  q_buf_t b;
  q_buf_init(&b, (size_t)n * 512 + 16);
  const char **ids = malloc((size_t)n * sizeof *ids);
  q_err_t rc = ids && !q_buf_append(&b, "[", 1) ? Q_OK : Q_ENOMEM;
  for (int i = 0; i < n && !rc; i++) {
    char head[96];
    int k = snprintf(head, sizeof head, "%s{\"id\":\"%s\",\"n\":%d,\"ms\":", i ? "," : "",
                     jobs[i]->id, chunk_counts[i]);
    const char *ms = stage_ms && stage_ms[i] && stage_ms[i][0] ? stage_ms[i] : "null";
    ids[i] = jobs[i]->id;
    if (q_buf_append(&b, head, (size_t)k) || q_buf_append(&b, ms, strlen(ms)) ||
        q_buf_append(&b, "}", 1))
      rc = Q_ENOMEM;
  }
  if (!rc && q_buf_append(&b, "]", 1))
    rc = Q_ENOMEM;
  if (rc) {
    snprintf(err, errlen, "out of memory");
    for (int i = 0; i < n; i++)
      finished[i] = false;
  } else {
    rc = many_cmd(
        p,
        "WITH t AS ("
        "  SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, n int, ms jsonb)"
        "), j AS ("
        "  UPDATE jobs SET status = 'done', chunk_count = t.n, error = '',"
        "    updated_at = now(), stage_ms = COALESCE(t.ms, jobs.stage_ms),"
        "    progress_done = t.n, progress_total = t.n"
        "  FROM t WHERE jobs.id = t.id AND jobs.status = 'running' AND jobs.claimed_by = "
        "$2"
        "  RETURNING jobs.id, jobs.document_id, jobs.version, t.n"
        "), d AS ("
        "  UPDATE documents SET status = 'done', chunk_count = j.n, updated_at = now()"
        "  FROM j WHERE documents.id = j.document_id AND documents.version = j.version"
        "  RETURNING documents.id"
        ") "
        "SELECT id::text FROM j",
        b.data, instance, ids, n, finished, "finishing jobs", err, errlen);
  }
  free(ids);
  q_buf_cleanup(&b);
  return rc;
}

q_err_t docstore_set_facts_many(q_pg_pool_t *p, const job_t *const *jobs,
                                const doc_facts_t *facts, int n, char *err,
                                size_t errlen) {
  json_t *arr = json_array();
  q_err_t rc = arr ? Q_OK : Q_ENOMEM;
  for (int i = 0; i < n && !rc; i++) {
    const doc_facts_t *f = &facts[i];
    json_t *o = json_pack("{s:s,s:i,s:s?,s:s?,s:i,s:I,s:I}", "d", jobs[i]->document_id,
                          "v", jobs[i]->version, "a", f->author ? f->author : "", "l",
                          f->language ? f->language : "", "p",
                          f->page_count > 0 ? f->page_count : 0, "c",
                          (json_int_t)f->created, "m", (json_int_t)f->modified);
    /* NULL: a string that is not UTF-8 (the extractors emit only UTF-8). */
    if (!o || json_array_append_new(arr, o))
      rc = Q_EINVAL;
  }
  char *body = rc ? NULL : json_dumps(arr, JSON_COMPACT);
  json_decref(arr);
  if (!rc && !body)
    rc = Q_ENOMEM;
  if (rc) {
    snprintf(err, errlen, "cannot encode the extracted metadata");
    return rc;
  }
  PGconn *c = q_pg_acquire(p, ACQUIRE_MS, err, errlen);
  if (!c) {
    free(body);
    return Q_EUNAVAIL;
  }
  const char *params[1] = {body};
  rc = q_pg_exec(
      c,
      "UPDATE document_versions dv SET author = t.a, language = t.l, page_count = t.p,"
      "  doc_created_at = CASE WHEN t.c > 0 THEN to_timestamp(t.c) END,"
      "  doc_modified_at = CASE WHEN t.m > 0 THEN to_timestamp(t.m) END"
      " FROM jsonb_to_recordset($1::jsonb) AS t(d uuid, v int, a text, l text, p int,"
      "   c bigint, m bigint)"
      " WHERE dv.document_id = t.d AND dv.version = t.v",
      1, params, "recording extracted metadata", NULL, err, errlen);
  q_pg_release(p, c);
  free(body);
  return rc;
}
