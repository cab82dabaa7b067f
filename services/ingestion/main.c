/* main.c - quarry-ingestion: accepts documents, chunks and embeds them in
 * background workers, and feeds the retriever. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "blob.h"
#include "chunker.h"
#include "docstore.h"
#include "extract/ocr.h"
#include "extract/sandbox.h"
#include "handlers.h"
#include "ingest.h"
#include "quarry/chunking.h"
#include "quarry/error.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/pg.h"
#include "quarry/pg_wait.h"
#include "quarry/service.h"
#include "quarry/v1/ingestion.pb-c.h"
#include "worker.h"

#define TEXT_(v) #v
#define TEXT(v) TEXT_(v) /* a numeric macro's value as a string literal */

static q_common_cfg_t common;
static q_pg_cfg_t pg;
static const char *blob_dir, *llm_addr, *retriever_addr, *ingest_host, *chunking;
static int64_t max_upload, workers, batch, chunk_tokens, chunk_overlap, poll_ms,
    max_attempts, backoff_ms, retry_window_ms, retry_max_backoff_ms, lease_ms,
    call_timeout_ms, idempotency_ttl_ms;
static int64_t gather_ms;
static int64_t ex_memory, ex_cpu, ex_timeout, ex_text, ex_unzipped, ex_entries, ex_depth;
static int ex_seccomp;
static int ocr_on;
static const char *ocr_langs, *ocr_tessdata;
static int64_t ocr_dpi, ocr_max_pixels, ocr_min_conf;

/* QUARRY_CHUNKING: a strategy of chunker.h. */
static q_err_t validate_chunking(const char *value, char *err, size_t errlen) {
  if (chunker_strategy(value))
    return Q_OK;
  snprintf(err, errlen, "must be one of %s", Q_CHUNKING_STRATEGY_NAMES);
  return Q_EINVAL;
}

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7002", "127.0.0.1:9102"),
    Q_CFG_PG_ENTRIES(pg),
    {"QUARRY_BLOB_DIR", Q_CFG_STRING, "./data/blobs", 0, 0, NULL,
     "Directory for uploaded documents, named by SHA-256 (relative paths are taken from "
     "the working directory at start; created if missing).",
     0, &blob_dir},
    {"QUARRY_MAX_UPLOAD_BYTES", Q_CFG_INT, Q_LIMIT_TEXT(UPLOAD_BYTES_DEFAULT),
     Q_LIMIT_UPLOAD_BYTES_MIN, Q_LIMIT_UPLOAD_BYTES_MAX, NULL,
     "Largest document accepted, in bytes; larger uploads fail with too_large.", 0,
     &max_upload},
    {"QUARRY_INGEST_WORKERS", Q_CFG_INT, "2", 0, 64, NULL,
     "Threads processing ingestion jobs (0: accept uploads only; another instance "
     "processes them).",
     0, &workers},
    {"QUARRY_INGEST_BATCH", Q_CFG_INT, "16", 1, 256, NULL,
     "Jobs a worker claims and processes together: one claim, and the chunks of small "
     "documents embedded in shared calls (each job still has its own outcome).",
     0, &batch},
    {"QUARRY_CHUNKING", Q_CFG_STRING, CHUNKER_DEFAULT_STRATEGY, 0, 0, validate_chunking,
     "How documents are cut into chunks unless an upload says (its chunking parameter): "
     "structure (along headings, paragraphs and sentences; tables kept whole or split "
     "with their header row repeated) or fixed (windows of exactly QUARRY_CHUNK_TOKENS "
     "words).",
     0, &chunking},
    {"QUARRY_INGEST_GATHER_MS", Q_CFG_INT, "25", 0, 1000, NULL,
     "While uploads keep coming (a worker's last claim found jobs, but fewer than "
     "QUARRY_INGEST_BATCH), it waits this long before claiming again, so the jobs "
     "arriving meanwhile are processed together; an idle worker claims at once (0: "
     "never wait).",
     0, &gather_ms},
    {"QUARRY_CHUNK_TOKENS", Q_CFG_INT, "200", 8, CHUNKER_MAX_TARGET, NULL,
     "Chunk size in words (a stand-in for tokens).", 0, &chunk_tokens},
    {"QUARRY_CHUNK_OVERLAP", Q_CFG_INT, "40", 0, CHUNKER_MAX_TARGET / 2, NULL,
     "Words shared by consecutive chunks; at most half of QUARRY_CHUNK_TOKENS.", 0,
     &chunk_overlap},
    {"QUARRY_LLM_GATEWAY_ADDR", Q_CFG_ADDR, "127.0.0.1:7005", 0, 0, NULL,
     "Address of quarry-llm-gateway (embeddings).", 0, &llm_addr},
    {"QUARRY_RETRIEVER_ADDR", Q_CFG_ADDR, "127.0.0.1:7003", 0, 0, NULL,
     "Address of quarry-retriever (index updates).", 0, &retriever_addr},
    {"QUARRY_INGEST_POLL_MS", Q_CFG_INT, "5000", 10, 600000, NULL,
     "Safety-net poll of an idle worker; queued jobs wake workers at once through "
     "LISTEN/NOTIFY.",
     0, &poll_ms},
    {"QUARRY_INGEST_MAX_ATTEMPTS", Q_CFG_INT, "5", 1, 100, NULL,
     "Attempts per job before a job failing on internal errors is marked failed; "
     "retries while a dependency is unavailable do not count.",
     0, &max_attempts},
    {"QUARRY_INGEST_BACKOFF_MS", Q_CFG_INT, "1000", 0, 600000, NULL,
     "Delay before a job's first retry; doubles with each retry.", 0, &backoff_ms},
    {"QUARRY_INGEST_RETRY_WINDOW_MS", Q_CFG_INT, "3600000", 1000, 604800000, NULL,
     "How long a job keeps waiting for unavailable dependencies (llm-gateway, "
     "retriever, database) before it fails.",
     0, &retry_window_ms},
    {"QUARRY_INGEST_RETRY_MAX_BACKOFF_MS", Q_CFG_INT, "30000", 10, 3600000, NULL,
     "Longest delay between retries of a job waiting for a dependency (jittered: half to "
     "all of it).",
     0, &retry_max_backoff_ms},
    {"QUARRY_INGEST_LEASE_MS", Q_CFG_INT, "300000", 5000, 86400000, NULL,
     "A running job whose worker sent no heartbeat for this long is queued again. Keep "
     "it "
     "well above 3 x QUARRY_INGEST_CALL_TIMEOUT_MS.",
     0, &lease_ms},
    {"QUARRY_INGEST_HOST", Q_CFG_STRING, "", 0, 0, NULL,
     "This host's name in job claims (jobs.claimed_by); empty: the system's host name. "
     "A process starting queues again at once the running jobs claimed under its own "
     "host name (its crashed predecessor's); jobs claimed under other names wait for "
     "QUARRY_INGEST_LEASE_MS. Give each machine its own name (':' becomes '_', at most "
     "127 bytes).",
     0, &ingest_host},
    {"QUARRY_INGEST_CALL_TIMEOUT_MS", Q_CFG_INT, "30000", 100, 600000, NULL,
     "Deadline of each Embed and Upsert call made by the workers.", 0, &call_timeout_ms},
    {"QUARRY_EXTRACT_MEMORY_BYTES", Q_CFG_INT, "1073741824", 67108864, 68719476736, NULL,
     "Address space of the sandboxed process that extracts one document (RLIMIT_AS); "
     "past it the job fails with \"ran out of memory\".",
     0, &ex_memory},
    {"QUARRY_EXTRACT_CPU_SECONDS", Q_CFG_INT, "60", 1, 3600, NULL,
     "CPU time of the process extracting one document (RLIMIT_CPU).", 0, &ex_cpu},
    {"QUARRY_EXTRACT_TIMEOUT_MS", Q_CFG_INT, "120000", 1000, 3600000, NULL,
     "Wall-clock limit of extracting one document; the process is killed past it. Keep "
     "it below QUARRY_INGEST_LEASE_MS.",
     0, &ex_timeout},
    {"QUARRY_EXTRACT_MAX_TEXT_BYTES", Q_CFG_INT, "268435456", 65536, 4294967296, NULL,
     "Most text extracted from one document; more fails the job.", 0, &ex_text},
    {"QUARRY_EXTRACT_MAX_UNZIPPED_BYTES", Q_CFG_INT, "268435456", 65536, 4294967296, NULL,
     "Most bytes one member of a DOCX (ZIP) archive may unpack to; more fails the job "
     "(zip bombs).",
     0, &ex_unzipped},
    {"QUARRY_EXTRACT_MAX_ZIP_ENTRIES", Q_CFG_INT, "10000", 1, 1000000, NULL,
     "Most members a DOCX (ZIP) archive may have.", 0, &ex_entries},
    {"QUARRY_EXTRACT_MAX_DEPTH", Q_CFG_INT, "256", 16, 10000, NULL,
     "Deepest element nesting read in HTML and DOCX; deeper documents fail.", 0,
     &ex_depth},
    {"QUARRY_EXTRACT_SECCOMP", Q_CFG_BOOL, "true", 0, 0, NULL,
     "Lock the extracting process down with a seccomp filter (no files, network or new "
     "programs); without it only an empty network namespace is tried.",
     0, &ex_seccomp},
    {"QUARRY_OCR", Q_CFG_BOOL, "false", 0, 0, NULL,
     "Read scanned pages and images (PNG, JPEG, TIFF, PDF pages without text) with "
     "Tesseract OCR. Off by default: about 2 s of CPU and 100-160 MiB per page at 300 "
     "DPI, against 5 ms for a page with text (docs/benchmarks.md); while off, image "
     "uploads are refused with 415.",
     0, &ocr_on},
    {"QUARRY_OCR_LANGS", Q_CFG_STRING, "eng", 0, 0, NULL,
     "Tesseract languages joined by '+' (eng+deu); each needs its Debian package "
     "tesseract-ocr-<lang>, checked at start when QUARRY_OCR is on.",
     0, &ocr_langs},
    {"QUARRY_OCR_TESSDATA", Q_CFG_STRING, OCR_DEFAULT_TESSDATA, 0, 0, NULL,
     "Folder of Tesseract's <lang>.traineddata files.", 0, &ocr_tessdata},
    {"QUARRY_OCR_DPI", Q_CFG_INT, "300", 72, 1200, NULL,
     "Resolution PDF pages without text are rendered at for OCR (lowered for a page "
     "that would exceed QUARRY_OCR_MAX_PIXELS).",
     0, &ocr_dpi},
    {"QUARRY_OCR_MAX_PIXELS", Q_CFG_INT, "40000000", 1000000, 1000000000, NULL,
     "Most pixels (width x height) of one image or page read by OCR, checked from the "
     "image header before decoding; larger images fail their job (decompression bombs). "
     "OCR takes about 7 bytes of memory a pixel (306 MiB at the default): raise "
     "QUARRY_EXTRACT_MEMORY_BYTES with it.",
     0, &ocr_max_pixels},
    {"QUARRY_OCR_MIN_CONFIDENCE", Q_CFG_INT, "40", 0, 100, NULL,
     "Words Tesseract reads with a lower confidence (0-100) are left out of the text "
     "(specks and stains read as letters).",
     0, &ocr_min_conf},
    {"QUARRY_IDEMPOTENCY_TTL_MS", Q_CFG_INT, TEXT(DOCSTORE_KEY_TTL_DEFAULT_MS), 60000,
     2592000000LL, NULL,
     "How long an upload's Idempotency-Key is remembered: a retry with the key within "
     "this time answers the first upload's result (default 24 h, at most 30 days).",
     0, &idempotency_ttl_ms},
};

static q_err_t ready_cb(void *ud, char *why, size_t whylen) {
  ingest_t *in = ud;
  return q_pg_ping(in->pool, why, whylen) ? 0 : Q_EUNAVAIL;
}

int main(int argc, char **argv) {
  /* The sandboxed extractor is this binary too (extract/sandbox.h). */
  if (argc >= 2 && strcmp(argv[1], SANDBOX_SUBCOMMAND) == 0)
    return sandbox_child_main(argc, argv, NULL);
  q_service_t svc;
  int rc =
      q_service_init(&svc, "quarry-ingestion",
                     "Accepts documents, chunks and embeds them, feeds the retriever.",
                     cfg, Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;
  if (chunk_overlap > chunk_tokens / 2) {
    fprintf(stderr,
            "quarry-ingestion: QUARRY_CHUNK_OVERLAP: must be at most half of "
            "QUARRY_CHUNK_TOKENS (%lld)\n",
            (long long)(chunk_tokens / 2));
    return 2;
  }
  if (ex_timeout >= lease_ms) {
    fprintf(stderr,
            "quarry-ingestion: QUARRY_EXTRACT_TIMEOUT_MS: must be below "
            "QUARRY_INGEST_LEASE_MS (%lld)\n",
            (long long)lease_ms);
    return 2;
  }

  /* OCR's settings: this process's (the upload checks) and the
   * extractor child's, through its environment. */
  ocr_options_t ocr;
  ocr_options_default(&ocr);
  ocr.enabled = ocr_on != 0;
  snprintf(ocr.langs, sizeof ocr.langs, "%s", ocr_langs);
  snprintf(ocr.tessdata, sizeof ocr.tessdata, "%s", ocr_tessdata);
  ocr.dpi = (int)ocr_dpi;
  ocr.max_pixels = ocr_max_pixels;
  ocr.min_confidence = (int)ocr_min_conf;
  char ocr_err[768];
  if (strlen(ocr_langs) >= sizeof ocr.langs ||
      strlen(ocr_tessdata) >= sizeof ocr.tessdata) {
    fprintf(stderr,
            "quarry-ingestion: QUARRY_OCR_LANGS or QUARRY_OCR_TESSDATA: too long\n");
    return 2;
  }
  if (ocr.enabled && ocr_check_langs(&ocr, ocr_err, sizeof ocr_err)) {
    fprintf(stderr, "quarry-ingestion: %s\n", ocr_err);
    return 2;
  }
  ocr_configure(&ocr);
  static ocr_env_t ocr_env;
  ocr_env_build(&ocr_env, &ocr);

  /* The extractor child execs this binary by path: resolved now, since
   * under valgrind /proc/self/exe is valgrind itself (its readlink is
   * emulated and names the real binary). */
  static char exe[4096];
  ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[exe_len > 0 ? exe_len : 0] = '\0';
  if (exe_len <= 0 || strstr(exe, " (deleted)"))
    snprintf(exe, sizeof exe, "/proc/self/exe");

  char err[512];
  static char blob_abs[4096];
  if (blob_dir_prepare(blob_dir, blob_abs, sizeof blob_abs, err, sizeof err)) {
    q_log_error("blob directory unusable, exiting", "{s:s}", "reason", err);
    return 1;
  }
  int swept = 0;
  if (blob_sweep_temp(blob_abs, &swept, err, sizeof err))
    q_log_warn("could not remove every left-over upload file", "{s:s}", "reason", err);
  if (swept > 0)
    q_log_info("removed left-over upload files of crashed uploads", "{s:i}", "files",
               swept);
  ingest_cfg_t icfg = {
      .blob_dir = blob_abs,
      .max_upload_bytes = max_upload,
      .workers = (int)workers,
      .batch = (int)batch,
      .gather_ms = (int)gather_ms,
      .chunk_tokens = (int)chunk_tokens,
      .chunk_overlap = (int)chunk_overlap,
      .chunking = chunker_strategy(chunking),
      .llm_addr = llm_addr,
      .retriever_addr = retriever_addr,
      .pg_dsn = pg.dsn,
      .poll_ms = (int)poll_ms,
      .retry_window_ms = retry_window_ms,
      .retry_max_backoff_ms = (int)retry_max_backoff_ms,
      .max_attempts = (int)max_attempts,
      .backoff_ms = (int)backoff_ms,
      .lease_ms = (int)lease_ms,
      .host = ingest_host,
      .call_timeout_ms = (int)call_timeout_ms,
      .extract =
          {
              .exe = exe,
              .memory_bytes = ex_memory,
              .cpu_seconds = (int)ex_cpu,
              .timeout_ms = (int)ex_timeout,
              .limits = {ex_text, ex_unzipped, (int)ex_entries, (int)ex_depth},
              .seccomp = ex_seccomp != 0,
              .env = ocr_env.list,
          },
      .idempotency_ttl_ms = idempotency_ttl_ms,
  };
  q_pg_pool_t *pool = q_pg_pool_new(pg.dsn, (int)pg.pool);
  if (!pool) {
    q_log_error("out of memory", NULL);
    return 1;
  }
  static ingest_t ing;
  ingest_init(&ing, &icfg, pool);
  if (q_pg_wait_migrate(pool, "ingestion", docstore_migrations, docstore_nmigrations,
                        pg.wait_ms, err, sizeof err)) {
    q_log_error("database unavailable at start, exiting", "{s:s,s:i}", "reason", err,
                "waited_ms", (int)pg.wait_ms);
    q_pg_pool_free(pool);
    return 1;
  }
  if (worker_recover(&ing, err, sizeof err))
    q_log_warn("cannot requeue jobs of an earlier process", "{s:s}", "reason", err);

  rc = 1;
  if (q_service_start(&svc, &quarry__v1__ingestion__descriptor, ingestion_methods,
                      ingestion_nmethods, &ing, ready_cb, &ing))
    goto done;
  if (worker_start(&ing)) {
    q_log_error("cannot start job workers", NULL);
    goto done;
  }
  q_log_info("ingestion ready", "{s:s,s:i,s:s}", "blob_dir", blob_abs, "workers",
             (int)workers, "instance", ing.instance);
  q_service_wait(&svc);
  rc = 0;
done:
  worker_stop(&ing); /* after the server: no upload is in flight any more */
  q_service_cleanup(&svc);
  ingest_cleanup(&ing);
  q_pg_pool_free(pool);
  return rc;
}
