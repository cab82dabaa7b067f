/* worker.c - job workers: claim, chunk, embed, upsert (see worker.h). */
#include "worker.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "chunker.h"
#include "docstore.h"
#include "extract/doc.h"
#include "extract/lang.h"
#include "extract/formats.h"
#include "extract/sandbox.h"
#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/stubs.h"
#include "quarry/text.h"
#include "quarry/trace.h"
#include "quarry/util.h"
#include "quarry/validate.h"
#include "quarry/v1/llm.pb-c.h"
#include "quarry/v1/retriever.pb-c.h"

#define UPSERT_BATCH 512
#define EMBED_BATCH 64
#define BATCH_ARENA_MAX (256u << 20)
#define REAP_EVERY_MS 10000
#define STATS_EVERY_MS 5000
#define MAX_BACKOFF_MS 60000
#define RECORD_FIRST_DELAY_MS 100 /* first wait before writing an outcome again */
#define RECORD_MAX_DELAY_MS 5000  /* longest wait between those writes */
#define RECORD_STOPPING_MS 10000  /* how long a stopping worker keeps trying */
#define LISTEN_RECONNECT_MAX_MS 30000
/* A running job writes its stage and renews its lease at most this often
 * (the claim wrote the first heartbeat): a small document's stages then
 * cost no round trip until its outcome, which records the last stage. */
#define REPORT_EVERY_MS 1000
/* Only documents up to this size are claimed together (worker_main). */
#define BATCH_SMALL_BYTES (256 << 10)

_Static_assert(EMBED_BATCH <= Q_LIMIT_EMBED_TEXTS, "an Embed call takes a whole batch");
_Static_assert(UPSERT_BATCH <= Q_LIMIT_UPSERT_CHUNKS, "an Upsert takes a whole batch");
_Static_assert(EXTRACT_META_BYTES <= Q_LIMIT_TITLE_BYTES,
               "an extracted title is a valid title");
/* What collect() sends as a chunk's text: heading path, "\n\n", chunk text. */
_Static_assert((CHUNKER_HEADING_MAX - 1) + 2 + CHUNKER_MAX_BYTES <= Q_LIMIT_CHUNK_BYTES,
               "a chunk's text with its heading path is one the embedder accepts");

typedef enum {
  ST_NONE = -1,
  ST_EXTRACTING,
  ST_CHUNKING,
  ST_EMBEDDING,
  ST_INDEXING,
  NSTAGES
} stage_t;

static const char *const stage_names[NSTAGES] = DOCSTORE_STAGES;

/* One job being processed. */
typedef struct run {
  ingest_t *in;
  job_t *j;
  sandbox_zygote_t *zygote; /* this worker thread's (NULL: exec per document) */
  int count;                /* chunks indexed so far */
  int total;                /* chunks the document makes, 0 until counted */
  int dim;                  /* embedding dimension, fixed by the first reply */
  int sent;                 /* an Upsert went out (later ones must not replace) */
  int staged;               /* batches are staged, then committed at once */
  stage_t stage;
  int64_t stage_t0;          /* when the current stage began */
  int64_t stage_ms[NSTAGES]; /* time spent per stage so far */
  unsigned reached;          /* bit per stage entered */
  int64_t last_beat;         /* last time the database renewed our lease */
  int unreported;            /* a stage change not written yet */
  /* Batched processing (run_batch): the document's text, and when all its
   * chunks fit one Upsert, those chunks (in arena) awaiting the shared
   * Embed calls. */
  doc_t doc;
  int has_doc;
  chunker_input_t input;
  int whole; /* chunks collected: embed with the batch, one Upsert */
  q_arena_t *arena;
  Quarry__V1__Chunk **chunks;
  size_t nchunks;
  outcome_t o;
  int64_t t0;
  int upserted; /* indexed by a shared Upsert (upsert_batch) */
  /* Extracted already, with the batch's other documents of its tenant in
   * one sandboxed child (extract_together); extract_o is how. */
  int extracted;
  outcome_t extract_o;
  /* What extraction found, for run_batch to record with the batch's
   * others in one statement (set_facts_together). */
  doc_facts_t facts;
  int facts_pending;
  char reason[512];
} run_t;

static outcome_t fail(run_t *r, outcome_t o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static outcome_t fail(run_t *r, outcome_t o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->reason, sizeof r->reason, fmt, ap);
  va_end(ap);
  return o;
}

outcome_t worker_classify(int rc) {
  if (rc == Q_EUNAVAIL || rc == Q_ETIMEDOUT || rc == Q_ERESOURCE)
    return OUT_DEPEND;
  if (rc == Q_EINTERNAL || rc == Q_ECANCELLED || rc == Q_ENOMEM)
    return OUT_RETRY;
  return OUT_FAILED;
}

/* A failed call to a dependency (service: "retriever"): the job is tried
 * again later when the error is transient, else it fails saying the
 * service rejected it (rejected: "rejected the chunks"). */
static outcome_t call_failed(run_t *r, int rc, const char *service, const char *rejected,
                             const char *err) {
  outcome_t o = worker_classify(rc);
  return fail(r, o, "%s %s: %s", service, o == OUT_FAILED ? rejected : "unavailable",
              err[0] ? err : q_strerror(rc));
}

/* A JSON object of the time spent per stage, the current one included. */
static void stage_json(const run_t *r, char *out, size_t len) {
  size_t used = (size_t)snprintf(out, len, "{");
  int first = 1;
  for (int s = 0; s < NSTAGES && used < len; s++) {
    int64_t ms = r->stage_ms[s];
    if (s == (int)r->stage)
      ms += q_now_ms() - r->stage_t0;
    if (!(r->reached & (1u << s)))
      continue;
    used += (size_t)snprintf(out + used, len - used, "%s\"%s\":%lld", first ? "" : ",",
                             stage_names[s], (long long)ms);
    first = 0;
  }
  if (used < len)
    snprintf(out + used, len - used, "}");
}

/* Stores stage and progress (force, or when the last write is
 * REPORT_EVERY_MS old); a database error is a dependency error. */
static outcome_t report(run_t *r, bool force) {
  char err[256], json[256];
  if (!force && q_now_ms() - r->last_beat < REPORT_EVERY_MS) {
    r->unreported = 1;
    return OUT_OK;
  }
  stage_json(r, json, sizeof json);
  int done = r->count;
  int rc = docstore_progress(r->in->pool, r->in->instance, r->j, stage_names[r->stage],
                             done, r->total, json, err, sizeof err);
  if (rc == Q_ENOTFOUND)
    return fail(r, OUT_LOST, "the job was taken over after its lease expired");
  if (rc)
    return fail(r, OUT_DEPEND, "database unavailable: %s", err);
  r->last_beat = q_now_ms();
  r->unreported = 0;
  return OUT_OK;
}

/* Moves the job into stage s (closing the time of the previous one) and
 * logs the step. */
static void step(run_t *r, stage_t s) {
  int64_t now = q_now_ms();
  if (r->stage != ST_NONE)
    r->stage_ms[r->stage] += now - r->stage_t0;
  int changed = r->stage != s;
  r->stage = s;
  r->stage_t0 = now;
  r->reached |= 1u << s;
  if (changed)
    q_log_info("job stage", "{s:s,s:s,s:i,s:i}", "job_id", r->j->id, "stage",
               stage_names[s], "done", r->count, "total", r->total);
}

/* Moves the job into stage s and stores it. Extracting (the claim wrote
 * it) and chunking (local and quick) are stored only with the next write
 * or when the last is REPORT_EVERY_MS old; the stages that wait on a
 * dependency are stored at once, so a job stuck in one says so. */
static outcome_t enter(run_t *r, stage_t s) {
  step(r, s);
  return report(r, s != ST_EXTRACTING && s != ST_CHUNKING);
}

static int stopping(const run_t *r) {
  return atomic_load(&r->in->stopping);
}

/* Renews the lease and checks the document was not re-uploaded meanwhile,
 * unless the database heard from this job less than REPORT_EVERY_MS ago
 * (a newer version then waits for this job, which settles it). */
static outcome_t still_ours(run_t *r) {
  char err[256];
  int doc_version = 0;
  if (q_now_ms() - r->last_beat < REPORT_EVERY_MS)
    return OUT_OK;
  int rc = docstore_heartbeat(r->in->pool, r->in->instance, r->j, &doc_version, err,
                              sizeof err);
  if (rc == Q_ENOTFOUND)
    return fail(r, OUT_LOST, "the job was taken over after its lease expired");
  if (rc)
    return fail(r, OUT_DEPEND, "database unavailable: %s", err);
  r->last_beat = q_now_ms();
  if (doc_version != r->j->version)
    return fail(r, OUT_FAILED, "superseded by version %d", doc_version);
  return OUT_OK;
}

static outcome_t embed(run_t *r, q_arena_t *a, Quarry__V1__Chunk **chunks, size_t n) {
  const ingest_cfg_t *cfg = &r->in->cfg;
  q_grpc_call_opts_t opts = {.timeout_ms = cfg->call_timeout_ms, .idempotent = 1};
  outcome_t o = enter(r, ST_EMBEDDING);
  if (o != OUT_OK)
    return o;
  for (size_t off = 0; off < n; off += EMBED_BATCH) {
    if (stopping(r))
      return OUT_STOPPED;
    size_t k = n - off < EMBED_BATCH ? n - off : EMBED_BATCH;
    char **texts = q_arena_alloc(a, k * sizeof *texts);
    if (!texts)
      return fail(r, OUT_RETRY, "out of memory");
    for (size_t i = 0; i < k; i++)
      texts[i] = chunks[off + i]->text;
    Quarry__V1__EmbedRequest req = QUARRY__V1__EMBED_REQUEST__INIT;
    req.n_texts = k;
    req.texts = texts;
    Quarry__V1__EmbedResponse *resp = NULL;
    char err[256] = "";
    int rc = q_rpc_llm_gateway_embed(q_grpc_channel(cfg->llm_addr), &req, &resp, a, &opts,
                                     err, sizeof err);
    if (rc)
      return call_failed(r, rc, "embedding service", "rejected the request", err);
    if (!resp || resp->n_embeddings != k)
      return fail(r, OUT_FAILED,
                  "embedding service returned %zu embeddings for %zu texts",
                  resp ? resp->n_embeddings : 0, k);
    for (size_t i = 0; i < k; i++) {
      Quarry__V1__Embedding *e = resp->embeddings[i];
      if (!r->dim)
        r->dim = e ? (int)e->n_values : 0;
      if (!e || r->dim <= 0 || e->n_values != (size_t)r->dim)
        return fail(r, OUT_FAILED,
                    "embedding service returned vectors of inconsistent size");
      chunks[off + i]->n_embedding = e->n_values;
      chunks[off + i]->embedding = e->values;
    }
    o = still_ours(r);
    if (o != OUT_OK)
      return o;
  }
  return OUT_OK;
}

static outcome_t upsert(run_t *r, q_arena_t *a, Quarry__V1__Chunk **chunks, size_t n) {
  const ingest_cfg_t *cfg = &r->in->cfg;
  /* A batch records its documents' indexing stage at once (batch_stage). */
  outcome_t o = r->stage == ST_INDEXING && r->whole ? OUT_OK : enter(r, ST_INDEXING);
  if (o != OUT_OK)
    return o;
  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  req.n_chunks = n;
  req.chunks = chunks;
  req.tenant_id = r->j->tenant_id;
  /* Staged batches wait for commit_version; otherwise only the first batch
   * replaces: it retires the previous version. */
  req.stage = r->staged != 0;
  req.replace_doc_id = r->sent || r->staged ? "" : r->j->document_id;
  Quarry__V1__UpsertResponse *resp = NULL;
  q_grpc_call_opts_t opts = {.timeout_ms = cfg->call_timeout_ms, .idempotent = 1};
  char err[256] = "";
  int rc = q_rpc_retriever_upsert(q_grpc_channel(cfg->retriever_addr), &req, &resp, a,
                                  &opts, err, sizeof err);
  if (rc == Q_EUNIMPL && r->staged) {
    /* An engine that cannot stage (Milvus): the version goes in batch by
     * batch, the first retiring the previous one (not atomic). */
    q_log_warn("retriever cannot stage a version; indexing it batch by batch",
               "{s:s,s:s}", "job_id", r->j->id, "reason", err);
    r->staged = 0;
    return upsert(r, a, chunks, n);
  }
  if (rc)
    return call_failed(r, rc, "retriever", "rejected the chunks", err);
  if (!r->staged)
    r->sent = 1;
  return OUT_OK;
}

/* Publishes the staged version: one Upsert that makes its r->count chunks
 * live and retires the previous version in one step. */
static outcome_t commit_staged(run_t *r) {
  const ingest_cfg_t *cfg = &r->in->cfg;
  Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
  req.tenant_id = r->j->tenant_id;
  req.replace_doc_id = r->j->document_id;
  req.commit_version = r->j->version;
  req.commit_chunks = r->count;
  Quarry__V1__UpsertResponse *resp = NULL;
  q_grpc_call_opts_t opts = {.timeout_ms = cfg->call_timeout_ms, .idempotent = 1};
  char err[256] = "";
  q_arena_t *a = q_arena_new(1 << 16);
  if (!a)
    return fail(r, OUT_RETRY, "out of memory");
  int rc = q_rpc_retriever_upsert(q_grpc_channel(cfg->retriever_addr), &req, &resp, a,
                                  &opts, err, sizeof err);
  q_arena_free(a);
  /* NOT_FOUND: a staged batch is missing; the attempt fails and the job
   * runs again from the start (staging the same ids again is harmless). */
  if (rc == Q_ENOTFOUND)
    return fail(r, OUT_RETRY, "retriever: the staged version is incomplete: %s", err);
  if (rc)
    return call_failed(r, rc, "retriever", "refused to publish the version", err);
  r->sent = 1;
  return OUT_OK;
}

_Static_assert(EXTRACT_META_BYTES <= Q_LIMIT_AUTHOR_BYTES &&
                   DOC_LANGUAGE_BYTES <= Q_LIMIT_LANGUAGE_BYTES,
               "an extracted author or language fits Chunk.author / Chunk.language");

/* Collects up to UPSERT_BATCH chunks from ch into chunk messages allocated
 * from a. *exhausted is set when the text ended. */
static outcome_t collect(run_t *r, chunker_t *ch, q_arena_t *a, Quarry__V1__Chunk **out,
                         size_t *n, int *exhausted) {
  const job_t *j = r->j;
  chunk_t c;
  int rc = 0;
  *n = 0;
  while (*n < UPSERT_BATCH && (rc = chunker_next(ch, &c)) == 1) {
    Quarry__V1__Chunk *m = q_arena_alloc(a, sizeof *m);
    char *id = q_arena_alloc(a, Q_LIMIT_CHUNK_ID_BYTES + 1);
    char *body = q_arena_strndup(a, c.text, c.len);
    char *heading = q_arena_strdup(a, c.heading);
    if (!m || !id || !body || !heading)
      return fail(r, OUT_RETRY, "out of memory");
    quarry__v1__chunk__init(m);
    chunker_chunk_id(id, Q_LIMIT_CHUNK_ID_BYTES + 1, j->document_id, j->version,
                     c.ordinal);
    m->chunk_id = id;
    m->doc_id = (char *)j->document_id;
    m->tenant_id = (char *)j->tenant_id;
    m->title = (char *)j->title;
    /* The section heading travels with the text so both lexical and dense
     * search see the context a chunk was written in. */
    m->text = heading[0] ? q_arena_printf(a, "%s\n\n%s", heading, body) : body;
    if (!m->text)
      return fail(r, OUT_RETRY, "out of memory");
    m->ordinal = c.ordinal;
    m->page = c.page;
    /* The chunk's place in the document's text, in characters; the text
     * from text_offset on is that part of it (common.proto). */
    m->start_offset = (int32_t)c.start;
    m->end_offset = (int32_t)c.end;
    m->text_offset =
        (int32_t)(q_text_chars(c.text, c.lead) +
                  (heading[0] ? q_text_chars(heading, strlen(heading)) + 2 : 0));
    m->version = j->version;
    /* What retrieval filters look at (docs/retrieval.md, "Filters"). */
    m->content_type = (char *)j->content_type;
    m->created_at = j->created_at;
    m->metadata = (char *)j->metadata;
    m->author = r->doc.author;
    m->language = r->doc.language;
    out[(*n)++] = m;
  }
  if (rc < 0)
    return fail(r, OUT_RETRY, "out of memory while chunking");
  *exhausted = rc == 0;
  return OUT_OK;
}

/* Counts the chunks the text makes (a dry run of the chunker, cheap next
 * to embedding them) so progress can say "n of total". */
static outcome_t count_chunks(run_t *r, const chunker_input_t *input,
                              const chunker_opts_t *opts) {
  char err[512];
  chunker_t *ch = NULL;
  if (chunker_new(input, opts, &ch, err, sizeof err))
    return fail(r, OUT_FAILED, "chunker: %s", err);
  chunk_t c;
  int rc, n = 0;
  while ((rc = chunker_next(ch, &c)) == 1)
    n++;
  chunker_free(ch);
  if (rc < 0)
    return fail(r, OUT_RETRY, "out of memory while chunking");
  r->total = n;
  return OUT_OK;
}

/* The chunking the job's version was stored with (upload.c resolved it in
 * full), the settings for a version stored before that was recorded. */
static outcome_t job_chunking(run_t *r, chunker_opts_t *o) {
  const ingest_cfg_t *cfg = &r->in->cfg;
  chunker_opts_t def = {cfg->chunk_tokens, cfg->chunk_overlap, cfg->chunking};
  char err[256];
  if (chunker_opts_parse(r->j->chunking, &def, o, err, sizeof err))
    return fail(r, OUT_FAILED, "the version's %s", err);
  return OUT_OK;
}

/* Chunks, embeds and upserts everything. */
static outcome_t index_text(run_t *r, const chunker_input_t *input) {
  ingest_t *in = r->in;
  char err[512];
  chunker_opts_t opts;
  outcome_t o = job_chunking(r, &opts);
  if (o == OUT_OK)
    o = enter(r, ST_CHUNKING);
  if (o == OUT_OK)
    o = count_chunks(r, input, &opts);
  if (o != OUT_OK)
    return o;
  chunker_t *ch = NULL;
  if (chunker_new(input, &opts, &ch, err, sizeof err))
    return fail(r, OUT_FAILED, "chunker: %s", err);
  /* A new version that takes several Upserts is staged and then swapped in
   * at once, so no search sees both versions or neither (or half of the
   * new one). A document's first version has nothing to swap. */
  r->staged = !r->j->first_job && r->total > UPSERT_BATCH;

  int exhausted = 0;
  while (!exhausted && o == OUT_OK) {
    q_arena_t *a = q_arena_new(BATCH_ARENA_MAX);
    Quarry__V1__Chunk **chunks =
        a ? q_arena_alloc(a, UPSERT_BATCH * sizeof *chunks) : NULL;
    size_t n = 0;
    if (!chunks)
      o = fail(r, OUT_RETRY, "out of memory");
    if (o == OUT_OK)
      o = collect(r, ch, a, chunks, &n, &exhausted);
    /* An empty first batch still goes out: it retires the old version. */
    if (o == OUT_OK && (n > 0 || (!r->sent && !r->staged))) {
      if (n > 0)
        o = embed(r, a, chunks, n);
      if (o == OUT_OK)
        o = still_ours(r);
      if (o == OUT_OK)
        o = upsert(r, a, chunks, n);
      if (o == OUT_OK) {
        r->count += (int)n;
        q_metrics_add(in->m_chunks, NULL, (double)n);
      }
    }
    q_arena_free(a);
    if (o == OUT_OK && !exhausted && stopping(r))
      o = OUT_STOPPED;
  }
  chunker_free(ch);
  if (o == OUT_OK && r->staged)
    o = still_ours(r);
  if (o == OUT_OK && r->staged)
    o = commit_staged(r);
  return o;
}

static outcome_t extracted(run_t *r, const format_t *fmt, q_err_t rc, const char *err,
                           const sandbox_info_t *info, bool alone);

/* Extracts the blob in the sandbox into d. */
static outcome_t extract(run_t *r, const format_t *fmt, const char *charset, doc_t *d) {
  ingest_t *in = r->in;
  job_t *j = r->j;
  char err[768];
  int fd;
  outcome_t o = enter(r, ST_EXTRACTING);
  if (o != OUT_OK)
    return o;
  int rc = blob_open_fd(in->cfg.blob_dir, j->sha256, &fd, err, sizeof err);
  if (rc == Q_ENOTFOUND || rc == Q_EINVAL)
    return fail(r, OUT_FAILED, "document content is missing from the blob store");
  if (rc)
    return fail(r, OUT_RETRY, "blob store: %s", err);
  sandbox_cfg_t cfg = in->cfg.extract;
  cfg.cancel = &in->stopping;
  cfg.zygote = r->zygote;
  sandbox_info_t info;
  rc = sandbox_extract(&cfg, fmt, charset, fd, d, &info, err, sizeof err);
  close(fd);
  return extracted(r, fmt, rc, err, &info, false);
}

/* The outcome of extracting the job's document: rc, err and info as
 * sandbox_extract gives them; alone says a shared child failed to finish
 * it (sandbox_item_t.alone). Observes the time and logs the result. */
static outcome_t extracted(run_t *r, const format_t *fmt, q_err_t rc, const char *err,
                           const sandbox_info_t *info, bool alone) {
  ingest_t *in = r->in;
  job_t *j = r->j;
  doc_t *d = &r->doc;
  if (rc == Q_ECANCELLED)
    return OUT_STOPPED;
  const char *flabel[1] = {fmt->id};
  q_metrics_observe(in->m_extract, flabel, (double)info->ms / 1000.0);
  q_log_info("document extracted", "{s:s,s:s,s:s,s:I,s:i,s:I,s:I,s:s,s:b}", "job_id",
             j->id, "format", fmt->id, "outcome", rc ? "failed" : "ok", "text_bytes",
             (long long)d->text.len, "pages", d->max_page, "ms", (long long)info->ms,
             "max_rss_kb", (long long)info->max_rss_kb, "lockdown", info->lockdown,
             "alone", alone);
  if (rc == Q_EUNAVAIL)
    return fail(r, OUT_RETRY, "%s", err);
  if (rc)
    return fail(r, OUT_FAILED, "%s", err);
  return OUT_OK;
}

/* The first part of a job: checks, extraction into r->doc, the title;
 * then, when the document's chunks fit one Upsert, those chunks into
 * r->chunks (r->whole), ready for embedding with the rest of the batch. */
static outcome_t prepare(run_t *r) {
  ingest_t *in = r->in;
  job_t *j = r->j;
  char err[512], charset[FORMATS_CHARSET_BYTES];
  if (j->doc_version != j->version)
    return fail(r, OUT_FAILED, "superseded by version %d", j->doc_version);
  const format_t *fmt = formats_parse_stored(j->content_type, charset, sizeof charset);
  if (!fmt)
    return fail(r, OUT_FAILED, "content type %s is not supported", j->content_type);

  outcome_t o;
  if (r->extracted) {
    o = r->extract_o; /* extract_together */
  } else {
    doc_init(&r->doc, fmt->chunking, (size_t)in->cfg.extract.limits.max_text_bytes);
    r->has_doc = 1;
    o = extract(r, fmt, charset, &r->doc);
  }
  if (o != OUT_OK)
    return o;
  if (r->doc.blocks == 0)
    return fail(r, OUT_FAILED, "%s: no text found in the document%s", fmt->label,
                fmt->chunking == CHUNK_BY_PAGE
                    ? " (scanned pages are read only with OCR: QUARRY_OCR)"
                    : "");
  if (!j->title_explicit && r->doc.title[0]) {
    char title[Q_LIMIT_TITLE_BYTES + 1];
    snprintf(title, sizeof title, "%s", r->doc.title);
    if (docstore_set_title(in->pool, j, title, err, sizeof err))
      return fail(r, OUT_DEPEND, "database unavailable: %s", err);
    snprintf(j->title, sizeof j->title, "%s", title);
  }
  /* The format's language, else a guess from the text (extract/lang.h). */
  if (!r->doc.language[0])
    lang_detect(r->doc.text.data, r->doc.text.len, r->doc.language,
                sizeof r->doc.language);
  doc_facts_t facts = {.author = r->doc.author,
                       .created = r->doc.created,
                       .modified = r->doc.modified,
                       .language = r->doc.language,
                       .page_count =
                           r->doc.page_count ? r->doc.page_count : r->doc.max_page};
  if (r->extracted) {
    r->facts = facts; /* its strings live in r->doc */
    r->facts_pending = 1;
  } else if (docstore_set_facts(in->pool, j, &facts, err, sizeof err)) {
    return fail(r, OUT_DEPEND, "database unavailable: %s", err);
  }
  /* Filters see the creation date the file records, else the upload's. */
  if (r->doc.created > 0)
    j->created_at = r->doc.created;
  doc_input(&r->doc, &r->input);
  chunker_opts_t opts;
  o = job_chunking(r, &opts);
  if (o == OUT_OK)
    o = enter(r, ST_CHUNKING);
  if (o == OUT_OK)
    o = count_chunks(r, &r->input, &opts);
  if (o != OUT_OK || r->total > UPSERT_BATCH)
    return o; /* a large document goes through index_text alone */
  chunker_t *ch = NULL;
  if (chunker_new(&r->input, &opts, &ch, err, sizeof err))
    return fail(r, OUT_FAILED, "chunker: %s", err);
  r->arena = q_arena_new(BATCH_ARENA_MAX);
  r->chunks = r->arena ? q_arena_alloc(r->arena, UPSERT_BATCH * sizeof *r->chunks) : NULL;
  int exhausted = 0;
  if (!r->chunks)
    o = fail(r, OUT_RETRY, "out of memory");
  else
    o = collect(r, ch, r->arena, r->chunks, &r->nchunks, &exhausted);
  chunker_free(ch);
  if (o == OUT_OK && !exhausted)
    o = fail(r, OUT_RETRY, "the chunker made more chunks than it counted");
  r->whole = o == OUT_OK;
  return o;
}

/* Extracts the documents of the batch in shared sandboxed children, one
 * per tenant (up to SANDBOX_BATCH_MAX documents each; sandbox.h says why
 * one tenant): one fork and one lockdown for many small documents. A
 * document that stops its child is extracted again alone and fails alone.
 * What cannot go this way (superseded, unknown type, blob missing) is
 * left to prepare, which fails it with its reason. */
static void job_trace(const job_t *j);

static void extract_together(ingest_t *in, run_t *runs, int n) {
  if (n < 2 || !runs[0].zygote)
    return;
  sandbox_item_t *items = calloc(SANDBOX_BATCH_MAX, sizeof *items);
  char(*charsets)[FORMATS_CHARSET_BYTES] = calloc(SANDBOX_BATCH_MAX, sizeof *charsets);
  bool *taken = calloc((size_t)n, sizeof *taken);
  int idx[SANDBOX_BATCH_MAX];
  if (!items || !charsets || !taken) {
    free(items);
    free(charsets);
    free(taken);
    return; /* each on its own in prepare */
  }
  sandbox_cfg_t cfg = in->cfg.extract;
  cfg.cancel = &in->stopping;
  cfg.zygote = runs[0].zygote;
  for (int i = 0; i < n; i++) {
    int m = 0;
    for (int k = i; k < n && m < SANDBOX_BATCH_MAX; k++) {
      run_t *r = &runs[k];
      if (taken[k] || r->o != OUT_OK || r->j->doc_version != r->j->version ||
          strcmp(r->j->tenant_id, runs[i].j->tenant_id) != 0)
        continue;
      const format_t *fmt =
          formats_parse_stored(r->j->content_type, charsets[m], sizeof charsets[m]);
      int fd;
      char err[256];
      if (!fmt || blob_open_fd(in->cfg.blob_dir, r->j->sha256, &fd, err, sizeof err))
        continue;
      taken[k] = true;
      job_trace(r->j);
      step(r, ST_EXTRACTING); /* the claim stored it */
      doc_init(&r->doc, fmt->chunking, (size_t)in->cfg.extract.limits.max_text_bytes);
      r->has_doc = 1;
      items[m] =
          (sandbox_item_t){.fmt = fmt, .charset = charsets[m], .fd = fd, .out = &r->doc};
      idx[m++] = k;
    }
    if (m == 0)
      continue;
    sandbox_extract_many(&cfg, items, m);
    for (int x = 0; x < m; x++) {
      run_t *r = &runs[idx[x]];
      close(items[x].fd);
      job_trace(r->j);
      r->extracted = 1;
      r->extract_o = extracted(r, items[x].fmt, items[x].rc, items[x].err, &items[x].info,
                               items[x].alone);
    }
  }
  q_trace_clear();
  free(items);
  free(charsets);
  free(taken);
}

/* Records the extracted facts of the batch's prepared documents in one
 * statement (one by one when that statement refuses one of them). */
static void set_facts_together(ingest_t *in, run_t *runs, int n) {
  const job_t *jobs[n];
  doc_facts_t facts[n];
  int idx[n], m = 0;
  for (int i = 0; i < n; i++)
    if (runs[i].facts_pending && runs[i].o == OUT_OK) {
      jobs[m] = runs[i].j;
      facts[m] = runs[i].facts;
      idx[m++] = i;
    }
  if (m == 0)
    return;
  char err[256];
  q_err_t rc = docstore_set_facts_many(in->pool, jobs, facts, m, err, sizeof err);
  for (int k = 0; k < m; k++) {
    run_t *r = &runs[idx[k]];
    r->facts_pending = 0;
    /* Refused as a whole (not unreachable): each on its own. */
    q_err_t one = rc && rc != Q_EUNAVAIL
                      ? docstore_set_facts(in->pool, r->j, &r->facts, err, sizeof err)
                      : rc;
    if (one)
      r->o = fail(r, OUT_DEPEND, "database unavailable: %s", err);
  }
}

static void settle(ingest_t *in, run_t *r, outcome_t o, int64_t t0);
static void count(ingest_t *in, const char *status);

/* Settles runs[idx[0..m)], whose documents are indexed, as done in one
 * statement; what that cannot settle goes through settle one by one. */
static void settle_done_together(ingest_t *in, run_t *runs, const int *idx, int m) {
  if (m == 0)
    return;
  const job_t *jobs[m];
  int counts[m];
  char(*json)[256] = calloc((size_t)m, sizeof *json);
  const char *ms[m];
  bool finished[m];
  char err[512] = "";
  q_err_t rc = json ? Q_OK : Q_ENOMEM;
  for (int k = 0; k < m && json; k++) {
    run_t *r = &runs[idx[k]];
    jobs[k] = r->j;
    counts[k] = r->count;
    stage_json(r, json[k], sizeof json[k]);
    ms[k] = json[k];
  }
  if (!rc)
    rc = docstore_finish_many(in->pool, in->instance, jobs, counts, ms, m, finished, err,
                              sizeof err);
  for (int k = 0; k < m; k++) {
    run_t *r = &runs[idx[k]];
    job_trace(r->j);
    if (rc) {
      settle(in, r, OUT_OK, r->t0); /* retries through a blip */
    } else if (!finished[k]) {
      q_log_warn("job lost before it was settled", "{s:s}", "job_id", r->j->id);
    } else {
      count(in, "done");
      q_log_info("job done", "{s:s,s:s,s:i,s:i,s:i}", "job_id", r->j->id, "document_id",
                 r->j->document_id, "version", r->j->version, "chunks", r->count, "ms",
                 (int)(q_now_ms() - r->t0));
    }
    q_trace_clear();
  }
  free(json);
}

/* Moves every prepared whole document of the batch into stage s, and
 * records that for all of them in one statement (renewing their leases). */
static void batch_stage(ingest_t *in, run_t *runs, int n, stage_t s) {
  const char *ids[n];
  int totals[n], idx[n], m = 0;
  bool updated[n];
  for (int i = 0; i < n; i++)
    if (runs[i].o == OUT_OK && runs[i].whole) {
      step(&runs[i], s);
      ids[m] = runs[i].j->id;
      totals[m] = runs[i].total;
      idx[m++] = i;
    }
  if (m == 0)
    return;
  char err[256];
  q_err_t rc = docstore_progress_many(in->pool, in->instance, stage_names[s], ids, totals,
                                      m, updated, err, sizeof err);
  for (int k = 0; k < m; k++) {
    run_t *r = &runs[idx[k]];
    if (rc)
      r->o = fail(r, OUT_DEPEND, "database unavailable: %s", err);
    else if (!updated[k])
      r->o = fail(r, OUT_LOST, "the job was taken over after its lease expired");
    else {
      r->last_beat = q_now_ms();
      r->unreported = 0;
    }
  }
}

/* Embeds the chunks of every prepared whole document of the batch in
 * shared Embed calls of up to Q_LIMIT_EMBED_TEXTS texts: one call for many
 * small documents. A failed call decides the outcome of every document it
 * carried. */
static void embed_batch(ingest_t *in, run_t *runs, int n) {
  const ingest_cfg_t *cfg = &in->cfg;
  batch_stage(in, runs, n, ST_EMBEDDING);
  size_t total = 0;
  for (int i = 0; i < n; i++)
    if (runs[i].o == OUT_OK && runs[i].whole)
      total += runs[i].nchunks;
  if (total == 0)
    return;
  q_grpc_call_opts_t opts = {.timeout_ms = cfg->call_timeout_ms, .idempotent = 1};
  int ri = 0;    /* run of the next chunk */
  size_t ci = 0; /* its chunk */
  while (ri < n) {
    if (atomic_load(&in->stopping)) {
      for (int i = ri; i < n; i++)
        if (runs[i].o == OUT_OK && runs[i].whole)
          runs[i].o = OUT_STOPPED;
      return;
    }
    q_arena_t *a = q_arena_new(BATCH_ARENA_MAX);
    char **texts = a ? q_arena_alloc(a, Q_LIMIT_EMBED_TEXTS * sizeof *texts) : NULL;
    struct {
      int run;
      size_t chunk;
    } *at = a ? q_arena_alloc(a, Q_LIMIT_EMBED_TEXTS * sizeof *at) : NULL;
    size_t k = 0;
    /* The next texts, across documents. */
    for (; ri < n && (!at || k < Q_LIMIT_EMBED_TEXTS); ri++, ci = 0) {
      run_t *r = &runs[ri];
      if (r->o != OUT_OK || !r->whole)
        continue;
      for (; ci < r->nchunks && at && k < Q_LIMIT_EMBED_TEXTS; ci++, k++) {
        texts[k] = r->chunks[ci]->text;
        at[k].run = ri;
        at[k].chunk = ci;
      }
      if (ci < r->nchunks)
        break; /* this document continues in the next call */
    }
    if (!at) {
      for (int i = 0; i < n; i++)
        if (runs[i].o == OUT_OK && runs[i].whole)
          runs[i].o = fail(&runs[i], OUT_RETRY, "out of memory");
      q_arena_free(a);
      return;
    }
    if (k == 0) {
      q_arena_free(a);
      break;
    }
    Quarry__V1__EmbedRequest req = QUARRY__V1__EMBED_REQUEST__INIT;
    req.n_texts = k;
    req.texts = texts;
    Quarry__V1__EmbedResponse *resp = NULL;
    char err[256] = "";
    int rc = q_rpc_llm_gateway_embed(q_grpc_channel(cfg->llm_addr), &req, &resp, a, &opts,
                                     err, sizeof err);
    for (size_t i = 0; i < k; i++) {
      run_t *r = &runs[at[i].run];
      if (r->o != OUT_OK)
        continue;
      if (rc) {
        r->o = call_failed(r, rc, "embedding service", "rejected the request", err);
        continue;
      }
      if (!resp || resp->n_embeddings != k) {
        r->o =
            fail(r, OUT_FAILED, "embedding service returned %zu embeddings for %zu texts",
                 resp ? resp->n_embeddings : 0, k);
        continue;
      }
      Quarry__V1__Embedding *e = resp->embeddings[i];
      if (!r->dim)
        r->dim = e ? (int)e->n_values : 0;
      if (!e || r->dim <= 0 || e->n_values != (size_t)r->dim) {
        r->o = fail(r, OUT_FAILED,
                    "embedding service returned vectors of inconsistent size");
        continue;
      }
      /* The vectors move to the document's arena, which lives until its
       * Upsert; this call's arena goes now. */
      float *v = q_arena_alloc(r->arena, e->n_values * sizeof *v);
      if (!v) {
        r->o = fail(r, OUT_RETRY, "out of memory");
        continue;
      }
      memcpy(v, e->values, e->n_values * sizeof *v);
      r->chunks[at[i].chunk]->n_embedding = e->n_values;
      r->chunks[at[i].chunk]->embedding = v;
    }
    q_arena_free(a);
  }
}

/* Whether a prepared document can share an Upsert with others: a new
 * document's first job, so the retriever holds nothing of it and nothing
 * needs retiring (replace_doc_id, which names one document per call, stays
 * empty). */
static bool shareable(const run_t *r) {
  return r->o == OUT_OK && r->whole && r->j->first_job && r->nchunks > 0 && !r->upserted;
}

/* Indexes the shareable documents of the batch in shared Upsert calls, one
 * tenant per call, up to Q_LIMIT_UPSERT_CHUNKS chunks each. A failed call
 * decides the outcome of every document it carried. */
static void upsert_batch(ingest_t *in, run_t *runs, int n) {
  const ingest_cfg_t *cfg = &in->cfg;
  Quarry__V1__Chunk **chunks = malloc(Q_LIMIT_UPSERT_CHUNKS * sizeof *chunks);
  int *members = malloc((size_t)n * sizeof *members);
  if (!chunks || !members) {
    free(chunks);
    free(members);
    return; /* each goes through its own Upsert */
  }
  for (int i = 0; i < n; i++) {
    if (!shareable(&runs[i]))
      continue;
    size_t k = 0;
    int m = 0;
    for (int j = i; j < n; j++) {
      run_t *r = &runs[j];
      if (!shareable(r) || strcmp(r->j->tenant_id, runs[i].j->tenant_id) != 0 ||
          k + r->nchunks > Q_LIMIT_UPSERT_CHUNKS)
        continue;
      memcpy(chunks + k, r->chunks, r->nchunks * sizeof *chunks);
      k += r->nchunks;
      members[m++] = j;
    }
    if (m < 2)
      continue; /* alone: its own Upsert, which also retires */
    Quarry__V1__UpsertRequest req = QUARRY__V1__UPSERT_REQUEST__INIT;
    req.n_chunks = k;
    req.chunks = chunks;
    req.tenant_id = runs[i].j->tenant_id;
    req.replace_doc_id = "";
    q_arena_t *a = q_arena_new(1 << 20);
    Quarry__V1__UpsertResponse *resp = NULL;
    q_grpc_call_opts_t opts = {.timeout_ms = cfg->call_timeout_ms, .idempotent = 1};
    char err[256] = "";
    int rc = a ? q_rpc_retriever_upsert(q_grpc_channel(cfg->retriever_addr), &req, &resp,
                                        a, &opts, err, sizeof err)
               : Q_ENOMEM;
    q_arena_free(a);
    q_log_info("documents indexed together", "{s:s,s:i,s:i,s:s}", "tenant_id",
               runs[i].j->tenant_id, "documents", m, "chunks", (int)k, "outcome",
               rc ? q_strerror(rc) : "ok");
    for (int x = 0; x < m; x++) {
      run_t *r = &runs[members[x]];
      if (rc) {
        r->o = call_failed(r, rc, "retriever", "rejected the chunks", err);
        continue;
      }
      r->upserted = r->sent = 1;
      r->count += (int)r->nchunks;
      q_metrics_add(in->m_chunks, NULL, (double)r->nchunks);
    }
  }
  free(chunks);
  free(members);
}

/* Sets the thread's trace context to the job's. */
static void job_trace(const job_t *j) {
  char tid[Q_TRACE_ID_LEN + 1];
  if (q_trace_id_valid(j->trace_id)) {
    q_trace_set(j->trace_id, 0);
  } else {
    q_trace_new_id(tid);
    q_trace_set(tid, 0);
  }
}

/* The end of a prepared whole document: its one Upsert. */
static outcome_t index_whole(run_t *r) {
  outcome_t o = still_ours(r);
  if (o == OUT_OK)
    o = upsert(r, r->arena, r->chunks, r->nchunks);
  if (o == OUT_OK) {
    r->count += (int)r->nchunks;
    q_metrics_add(r->in->m_chunks, NULL, (double)r->nchunks);
  }
  return o;
}

static int backoff_ms(const ingest_t *in, int attempts) {
  int64_t d = in->cfg.backoff_ms;
  for (int i = 1; i < attempts && d < MAX_BACKOFF_MS; i++)
    d *= 2;
  return (int)(d < MAX_BACKOFF_MS ? d : MAX_BACKOFF_MS);
}

int worker_dependency_backoff_ms(const ingest_cfg_t *cfg, int retries, unsigned rnd) {
  int64_t cap =
      cfg->retry_max_backoff_ms > 0 ? cfg->retry_max_backoff_ms : MAX_BACKOFF_MS;
  int64_t d = cfg->backoff_ms > 0 ? cfg->backoff_ms : 1;
  for (int i = 0; i < retries && d < cap; i++)
    d *= 2;
  if (d > cap)
    d = cap;
  /* "Equal jitter": half fixed, half random, so jobs failed by one outage
   * do not all come back at the same instant, yet none comes back at once. */
  return (int)(d / 2 + (int64_t)(rnd % (unsigned)(d / 2 + 1)));
}

/* Notes that a job is due at now + delay_ms so an idle worker of this
 * process wakes for it without waiting for the safety-net poll. */
static void due_in(ingest_t *in, int delay_ms) {
  int64_t at = q_now_ms() + delay_ms, cur = atomic_load(&in->next_due_ms);
  while ((cur == 0 || at < cur) &&
         !atomic_compare_exchange_weak(&in->next_due_ms, &cur, at))
    ;
}

/* Whether an outcome write that failed with rc should be tried again: the
 * database is unreachable, and there is time before the lease runs out
 * (when the reaper would queue the job again anyway). */
static int write_again(ingest_t *in, run_t *r, int rc, int64_t start, int *delay) {
  if (rc == Q_OK || rc == Q_ENOTFOUND)
    return 0;
  int64_t now = q_now_ms();
  int64_t deadline = r->last_beat + in->cfg.lease_ms - 1000;
  if (atomic_load(&in->stopping) && start + RECORD_STOPPING_MS < deadline)
    deadline = start + RECORD_STOPPING_MS;
  if (now + *delay >= deadline)
    return 0;
  struct timespec ts = {*delay / 1000, (long)(*delay % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  *delay = *delay * 2 > RECORD_MAX_DELAY_MS ? RECORD_MAX_DELAY_MS : *delay * 2;
  return 1;
}

static void count(ingest_t *in, const char *status) {
  const char *labels[1] = {status};
  q_metrics_inc(in->m_jobs, labels);
}

/* Records the outcome of one attempt. */
static void settle(ingest_t *in, run_t *r, outcome_t o, int64_t t0) {
  job_t *j = r->j;
  char err[512] = "", why[640];
  int rc = Q_OK;
  int ms = (int)(q_now_ms() - t0), delay = RECORD_FIRST_DELAY_MS;
  int64_t start = q_now_ms();
  char json[256] = "{}";
  if (r->stage != ST_NONE)
    stage_json(r, json, sizeof json); /* the final timings, current stage closed */
  if (o == OUT_DEPEND && j->dep_retry_ms >= in->cfg.retry_window_ms) {
    size_t used = strlen(r->reason);
    snprintf(r->reason + used, sizeof r->reason - used,
             " (gave up: dependencies unavailable for %lld s, %d retries)",
             (long long)(j->dep_retry_ms / 1000), j->dep_retries);
    o = OUT_FAILED;
  }
  if (o == OUT_RETRY && j->attempts >= in->cfg.max_attempts) {
    size_t used = strlen(r->reason);
    snprintf(r->reason + used, sizeof r->reason - used, " (gave up after %d attempts)",
             j->attempts);
    o = OUT_FAILED;
  }
  /* The stage a job ended in is part of its outcome. */
  if ((o == OUT_OK || o == OUT_FAILED) && r->unreported && r->stage != ST_NONE) {
    char reason[sizeof r->reason];
    memcpy(reason, r->reason, sizeof reason);
    /* A failed write is no reason to hold the outcome back: the finish
     * below retries through a blip, and only the stage column stays old. */
    outcome_t ro = report(r, true);
    if (ro == OUT_LOST) {
      q_log_warn("job lost", "{s:s,s:s}", "job_id", j->id, "reason", r->reason);
      return;
    }
    memcpy(r->reason, reason, sizeof reason);
  }
  switch (o) {
  case OUT_OK:
    do
      rc = docstore_finish(in->pool, in->instance, j, 1, r->count, "", json, err,
                           sizeof err);
    while (write_again(in, r, rc, start, &delay));
    if (!rc) {
      count(in, "done");
      q_log_info("job done", "{s:s,s:s,s:i,s:i,s:i}", "job_id", j->id, "document_id",
                 j->document_id, "version", j->version, "chunks", r->count, "ms", ms);
    }
    break;
  case OUT_FAILED:
    do
      rc = docstore_finish(in->pool, in->instance, j, 0, 0, r->reason, json, err,
                           sizeof err);
    while (write_again(in, r, rc, start, &delay));
    if (!rc) {
      count(in, "failed");
      q_log_warn("job failed", "{s:s,s:s,s:i,s:i,s:s}", "job_id", j->id, "document_id",
                 j->document_id, "version", j->version, "attempts", j->attempts, "reason",
                 r->reason);
    }
    break;
  case OUT_RETRY: {
    int wait = backoff_ms(in, j->attempts);
    snprintf(why, sizeof why, "attempt %d failed: %s; retrying", j->attempts, r->reason);
    do
      rc = docstore_requeue(in->pool, in->instance, j, wait, REQUEUE_ATTEMPT, why, err,
                            sizeof err);
    while (write_again(in, r, rc, start, &delay));
    if (!rc) {
      due_in(in, wait);
      count(in, "retried");
      q_log_warn("job will be retried", "{s:s,s:i,s:i,s:s}", "job_id", j->id, "attempts",
                 j->attempts, "delay_ms", wait, "reason", r->reason);
    }
    break;
  }
  case OUT_DEPEND: {
    /* Jitter that differs per job and per moment (FNV-1a of the id and
     * the clock): enough to spread jobs failed by one outage. */
    unsigned rnd = 2166136261u ^ (unsigned)q_now_ms();
    for (const char *c = j->id; *c; c++)
      rnd = (rnd ^ (unsigned char)*c) * 16777619u;
    int wait = worker_dependency_backoff_ms(&in->cfg, j->dep_retries, rnd);
    snprintf(why, sizeof why, "waiting for a dependency (retry %d): %s",
             j->dep_retries + 1, r->reason);
    do
      rc = docstore_requeue(in->pool, in->instance, j, wait, REQUEUE_DEPENDENCY, why, err,
                            sizeof err);
    while (write_again(in, r, rc, start, &delay));
    if (!rc) {
      due_in(in, wait);
      count(in, "waiting");
      q_log_warn("job waits for a dependency", "{s:s,s:i,s:i,s:s}", "job_id", j->id,
                 "dependency_retries", j->dep_retries + 1, "delay_ms", wait, "reason",
                 r->reason);
    }
    break;
  }
  case OUT_STOPPED:
    do
      rc = docstore_requeue(in->pool, in->instance, j, 0, REQUEUE_GIVE_BACK,
                            "the worker stopped; queued again", err, sizeof err);
    while (write_again(in, r, rc, start, &delay));
    if (!rc)
      q_log_info("job given back", "{s:s}", "job_id", j->id);
    break;
  case OUT_LOST:
    q_log_warn("job lost", "{s:s,s:s}", "job_id", j->id, "reason", r->reason);
    return;
  }
  /* When even this fails the heartbeat stops, and the lease brings the job
   * back to the queue later. */
  if (rc == Q_ENOTFOUND)
    q_log_warn("job lost before it was settled", "{s:s}", "job_id", j->id);
  else if (rc)
    q_log_error("cannot record job outcome", "{s:s,s:s}", "job_id", j->id, "reason", err);
}

/* Processes jobs claimed together: each is extracted and chunked on its
 * own; the chunks of every document that fits one Upsert are embedded in
 * shared calls; then each such document gets its Upsert and its outcome,
 * and the larger ones go through index_text one after the other. Every
 * job keeps its own outcome, retries and lease. */
static void run_batch(ingest_t *in, job_t *jobs, int n, sandbox_zygote_t *zygote) {
  run_t *runs = calloc((size_t)n, sizeof *runs);
  if (!runs) {
    for (int i = 0; i < n; i++) {
      run_t r = {.in = in, .j = &jobs[i], .stage = ST_NONE, .last_beat = q_now_ms()};
      settle(in, &r, fail(&r, OUT_RETRY, "out of memory"), r.last_beat);
    }
    return;
  }
  for (int i = 0; i < n; i++) {
    run_t *r = &runs[i];
    job_t *j = &jobs[i];
    job_trace(j);
    r->t0 = q_now_ms();
    r->in = in;
    r->j = j;
    r->zygote = zygote;
    r->stage = ST_NONE;
    r->last_beat = r->t0;
    q_log_info("job started", "{s:s,s:s,s:i,s:i,s:I}", "job_id", j->id, "document_id",
               j->document_id, "version", j->version, "attempt", j->attempts, "bytes",
               (long long)j->size);
    r->o = atomic_load(&in->stopping) ? OUT_STOPPED : OUT_OK;
    q_trace_clear();
  }
  extract_together(in, runs, n);
  for (int i = 0; i < n; i++) {
    run_t *r = &runs[i];
    job_trace(r->j);
    if (r->o == OUT_OK)
      r->o = atomic_load(&in->stopping) ? OUT_STOPPED : prepare(r);
    q_trace_clear();
  }
  set_facts_together(in, runs, n);
  embed_batch(in, runs, n);
  batch_stage(in, runs, n, ST_INDEXING);
  upsert_batch(in, runs, n);
  /* Whole documents first (they are nearly done; those indexed are
   * settled together), then the large ones. */
  int *done = malloc((size_t)n * sizeof *done), ndone = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < n; i++) {
      run_t *r = &runs[i];
      bool big = r->o == OUT_OK && !r->whole;
      if (pass != big)
        continue;
      job_trace(r->j);
      if (r->o == OUT_OK && atomic_load(&in->stopping))
        r->o = OUT_STOPPED;
      if (r->o == OUT_OK)
        r->o = r->upserted ? OUT_OK
               : r->whole  ? index_whole(r)
                           : index_text(r, &r->input);
      /* A done job whose stage is stored settles with the others below. */
      if (done && pass == 0 && r->o == OUT_OK && !r->unreported)
        done[ndone++] = i;
      else
        settle(in, r, r->o, r->t0);
      q_arena_free(r->arena);
      r->arena = NULL;
      if (r->has_doc)
        doc_cleanup(&r->doc);
      r->has_doc = 0;
      q_trace_clear();
    }
    if (pass == 0)
      settle_done_together(in, runs, done, ndone);
  }
  free(done);
  free(runs);
}

/* Sleeps up to ms unless kicked or stopping. */
static void nap(ingest_t *in, int ms, int *seen_kicks) {
  int64_t due = atomic_load(&in->next_due_ms), now = q_now_ms();
  if (due > 0 && due - now < ms)
    ms = due - now > 0 ? (int)(due - now) + 5 : 1;
  if (due > 0 && due <= now)
    atomic_compare_exchange_strong(&in->next_due_ms, &due, 0);
  struct timespec ts;
  q_cond_deadline(&ts, ms);
  pthread_mutex_lock(&in->mu);
  while (!atomic_load(&in->stopping) && in->kicks == *seen_kicks) {
    if (pthread_cond_timedwait(&in->cv, &in->mu, &ts) == ETIMEDOUT)
      break;
  }
  *seen_kicks = in->kicks;
  pthread_mutex_unlock(&in->mu);
}

/* Sleeps ms unless stopping (kicks do not end it). */
static void nap_ms(ingest_t *in, int ms) {
  struct timespec ts;
  q_cond_deadline(&ts, ms);
  pthread_mutex_lock(&in->mu);
  while (!atomic_load(&in->stopping))
    if (pthread_cond_timedwait(&in->cv, &in->mu, &ts) == ETIMEDOUT)
      break;
  pthread_mutex_unlock(&in->mu);
}

typedef struct worker_arg {
  ingest_t *in;
  int index;
} worker_arg_t;

static void reap(ingest_t *in) {
  char err[512];
  int n = 0;
  if (docstore_requeue_stale(in->pool, NULL, in->cfg.lease_ms, in->cfg.max_attempts, &n,
                             err, sizeof err)) {
    q_log_warn("cannot check for stale jobs", "{s:s}", "reason", err);
    return;
  }
  if (n > 0) {
    const char *labels[1] = {"requeued"};
    q_metrics_add(in->m_jobs, labels, n);
    q_log_warn("stale jobs queued again", "{s:i}", "jobs", n);
    ingest_kick(in);
  }
}

/* Refreshes the gauges of jobs by state and the queue's oldest age. */
static void refresh_stats(ingest_t *in) {
  queue_stats_t st;
  char err[256];
  if (docstore_queue_stats(in->pool, &st, err, sizeof err))
    return;
  const char *names[4] = {"queued", "running", "done", "failed"};
  int64_t values[4] = {st.queued, st.running, st.done, st.failed};
  for (int i = 0; i < 4; i++) {
    const char *labels[1] = {names[i]};
    q_metrics_set(in->m_state, labels, (double)values[i]);
  }
  q_metrics_set(in->m_oldest, NULL, st.oldest_queued_s);
  /* A job queued with a delay (by any process) is due: wake for it. */
  if (st.next_due_ms >= 0)
    due_in(in, (int)(st.next_due_ms < 86400000 ? st.next_due_ms : 86400000));
}

static void *worker_main(void *p) {
  worker_arg_t *arg = p;
  ingest_t *in = arg->in;
  int index = arg->index, seen = 0;
  free(arg);
  int64_t next_reap = q_now_ms() + REAP_EVERY_MS, next_stats = 0;
  int64_t quiet_until = 0; /* rate limit for "database down" warnings */
  /* Started at the first extraction, restarted when it dies, ended with
   * this thread (extract/sandbox.h). */
  sandbox_zygote_t *zygote = sandbox_zygote_new(in->cfg.extract.exe);
  job_t *jobs = calloc((size_t)(in->cfg.batch > 0 ? in->cfg.batch : 1), sizeof *jobs);
  if (!jobs) {
    q_log_error("worker out of memory", NULL);
    sandbox_zygote_free(zygote);
    return NULL;
  }
  while (!atomic_load(&in->stopping)) {
    if (index == 0 && q_now_ms() >= next_reap) {
      reap(in);
      next_reap = q_now_ms() + REAP_EVERY_MS;
    }
    if (index == 0 && q_now_ms() >= next_stats) {
      refresh_stats(in);
      next_stats = q_now_ms() + STATS_EVERY_MS;
    }
    char err[512];
    int got = 0;
    int rc =
        docstore_claim_batch(in->pool, in->instance, jobs, 1, 0, &got, err, sizeof err);
    /* A small document takes other small ones along; a large one runs
     * alone, so a bulk load of large files delays another tenant's job by
     * at most one job per worker, and of small ones by one batch. */
    if (rc == Q_OK && got == 1 && in->cfg.batch > 1 &&
        jobs[0].size <= BATCH_SMALL_BYTES) {
      int more = 0;
      char err2[512];
      if (docstore_claim_batch(in->pool, in->instance, jobs + 1, in->cfg.batch - 1,
                               BATCH_SMALL_BYTES, &more, err2, sizeof err2) == Q_OK)
        got += more;
    }
    if (rc == Q_OK && got > 0) {
      run_batch(in, jobs, got, zygote);
      /* The queue ran dry while uploads keep coming: let the next ones
       * gather for a moment rather than claim them one or two at a time
       * (a claim, an Embed and an Upsert each per couple of documents).
       * A worker that found nothing claims at once when kicked. */
      if (got < in->cfg.batch && in->cfg.gather_ms > 0)
        nap_ms(in, in->cfg.gather_ms);
      continue;
    }
    if (rc == Q_OK)
      rc = Q_ENOTFOUND;
    if (rc != Q_ENOTFOUND && q_now_ms() >= quiet_until) {
      q_log_warn("cannot claim jobs", "{s:s}", "reason", err);
      quiet_until = q_now_ms() + 30000;
    }
    nap(in, rc == Q_ENOTFOUND ? in->cfg.poll_ms : 5 * in->cfg.poll_ms, &seen);
  }
  sandbox_zygote_free(zygote);
  free(jobs);
  return NULL;
}

q_err_t worker_recover(ingest_t *in, char *err, size_t errlen) {
  int n = 0;
  int rc = docstore_requeue_stale(in->pool, in->host, in->cfg.lease_ms,
                                  in->cfg.max_attempts, &n, err, errlen);
  if (!rc && n > 0) {
    const char *labels[1] = {"requeued"};
    q_metrics_add(in->m_jobs, labels, n);
    q_log_warn("jobs left running by an earlier process queued again", "{s:i}", "jobs",
               n);
  }
  return rc;
}

/* Opens the LISTEN connection; NULL (err set) when it cannot. */
static PGconn *listen_open(ingest_t *in, char *err, size_t errlen) {
  /* A bounded connect: a stopped (SIGSTOPped, unreachable) server must not
   * hold this thread, which worker_stop joins. */
  const char *keys[3] = {"dbname", "connect_timeout", NULL};
  const char *vals[3] = {in->cfg.pg_dsn, "5", NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    snprintf(err, errlen, "%s", c ? PQerrorMessage(c) : "out of memory");
    PQfinish(c);
    return NULL;
  }
  PGresult *res = PQexec(c, "LISTEN " DOCSTORE_CHANNEL);
  int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  PQclear(res);
  if (!ok) {
    snprintf(err, errlen, "LISTEN: %s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}

/* The listener: one connection outside the pool, LISTENing on the jobs
 * channel; each notification wakes the workers. When the connection
 * breaks it reconnects with backoff, and wakes the workers once it is back
 * (notifications sent meanwhile are lost; the claim finds their jobs). The
 * workers' slow poll covers the time it is down. */
static void *listen_main(void *p) {
  ingest_t *in = p;
  PGconn *c = NULL;
  int backoff = 250;
  int64_t quiet_until = 0;
  while (!atomic_load(&in->stopping)) {
    char err[512];
    if (!c) {
      c = listen_open(in, err, sizeof err);
      if (!c) {
        if (q_now_ms() >= quiet_until) {
          q_log_warn("cannot listen for queued jobs; polling meanwhile", "{s:s}",
                     "reason", err);
          quiet_until = q_now_ms() + 30000;
        }
        for (int waited = 0; waited < backoff && !atomic_load(&in->stopping);
             waited += 50)
          usleep(50 * 1000);
        backoff =
            backoff * 2 > LISTEN_RECONNECT_MAX_MS ? LISTEN_RECONNECT_MAX_MS : backoff * 2;
        continue;
      }
      backoff = 250;
      ingest_kick(in);
    }
    struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
    int n = pfd.fd >= 0 ? poll(&pfd, 1, 500) : -1;
    if (n == 0 || (n < 0 && errno == EINTR))
      continue;
    if (n < 0 || !PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) {
      q_log_warn("job notifications lost their connection; reconnecting", "{s:s}",
                 "reason", PQerrorMessage(c));
      PQfinish(c);
      c = NULL;
      continue;
    }
    int got = 0;
    PGnotify *nt;
    while ((nt = PQnotifies(c)) != NULL) {
      got = 1;
      PQfreemem(nt);
    }
    if (got)
      ingest_kick(in);
  }
  PQfinish(c);
  return NULL;
}

q_err_t worker_start(ingest_t *in) {
  int n = in->cfg.workers;
  in->nthreads = 0;
  if (n <= 0)
    return Q_OK;
  in->threads = calloc((size_t)n, sizeof *in->threads);
  if (!in->threads)
    return Q_ENOMEM;
  for (int i = 0; i < n; i++) {
    worker_arg_t *arg = malloc(sizeof *arg);
    if (arg)
      *arg = (worker_arg_t){in, i};
    if (!arg || pthread_create(&in->threads[i], NULL, worker_main, arg) != 0) {
      free(arg);
      worker_stop(in);
      return Q_EINTERNAL;
    }
    in->nthreads++;
  }
  if (in->cfg.pg_dsn && pthread_create(&in->listener, NULL, listen_main, in) == 0)
    in->listening = 1;
  return Q_OK;
}

void worker_stop(ingest_t *in) {
  atomic_store(&in->stopping, 1);
  ingest_kick(in);
  for (int i = 0; i < in->nthreads; i++)
    pthread_join(in->threads[i], NULL);
  if (in->listening)
    pthread_join(in->listener, NULL);
  in->listening = 0;
  free(in->threads);
  in->threads = NULL;
  in->nthreads = 0;
}
