/* ingest.c - `quarry ingest PATH...`: upload files and folders, then wait
 * for their ingestion jobs.
 *
 * Three phases, all on this one thread:
 *   1. walk the arguments into a list of files (walk.h);
 *   2. upload: up to --concurrency transfers run at once on a curl multi
 *      handle; a file is hashed just before its turn and skipped when the
 *      state file says this content is already loaded (or its job is still
 *      running: then it is only waited for). Each upload is a multipart POST
 *      /v1/documents with the external id and an Idempotency-Key derived
 *      from content hash and external id, so a retried upload (429, 502-504,
 *      a dropped connection) is recognised by a server that honours the
 *      header, and is harmless before (the server answers identical content
 *      "unchanged" anyway);
 *      small .txt files instead go many to a request to POST
 *      /v1/documents/batch (batch.h), NDJSON with a key derived from the
 *      files' hashes; a file the batch cannot take goes alone, and a server
 *      without the route (404/405/415) gets single uploads for the rest of
 *      the run;
 *   3. wait: poll GET /v1/jobs/{id} for every job not finished, with
 *      backoff, until all are done or failed or --wait-timeout passes.
 *
 * Ctrl-C during 2 stops starting uploads, lets those in flight finish,
 * saves the state and exits 130; during 3 it saves and exits 130. A second
 * Ctrl-C aborts uploads in flight. The state file is saved every few
 * seconds as well, so a killed run loses little; running the same command
 * again skips what was loaded and waits for what is pending.
 *
 * Output: on a terminal a progress line on stderr (at most ~10 redraws a
 * second) with failures printed above it; otherwise one plain line per file
 * event on stdout; with --json only the summary document. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "api.h"
#include "batch.h"
#include "commands.h"
#include "progress.h"
#include "quarry/limits.h"
#include "quarry/util.h"
#include "state.h"
#include "walk.h"

#define DEFAULT_CONCURRENCY 4
#define MAX_CONCURRENCY 32
#define DEFAULT_WAIT_TIMEOUT_S 600
#define SAVE_EVERY_MS 2000
#define POLL_FIRST_MS 250
#define POLL_MAX_MS 5000
#define LOW_SPEED_TIME_S 60 /* an upload that sends nothing this long is dropped */

typedef enum {
  IT_TODO,      /* not looked at yet */
  IT_IGNORED,   /* the same path named twice: not counted */
  IT_SKIPPED,   /* loaded before (state file); maybe waiting for its job */
  IT_UPLOADING, /* in flight or waiting to retry */
  IT_UPLOADED,  /* accepted: a new version or a retry of a failed one */
  IT_UNCHANGED, /* accepted: the server already had this content */
  IT_FAILED,    /* refused, unreadable, or its job failed */
} item_state_t;

typedef struct item {
  walk_file_t *f;
  item_state_t st;
  char sha256[65];
  char document_id[Q_LIMIT_DOCUMENT_ID_BYTES + 1];
  char job_id[Q_LIMIT_JOB_ID_BYTES + 1];
  int version;
  char job_status[16]; /* queued, running, done, failed; "" no job */
  int chunks;
  char *error; /* why it failed */
  int error_exit;
  long long sent; /* bytes of the body sent so far */
  bool batched;   /* accepted through POST /v1/documents/batch */
} item_t;

struct run;
struct slot;

/* How a slot's transfer is sent and its answer read: one file
 * (single_transfer) or a batch of files (batch_transfer). */
typedef struct transfer_ops {
  q_err_t (*start)(struct run *r, CURLM *m, struct slot *s); /* (again) */
  void (*done)(struct run *r, CURLM *m, struct slot *s, CURLcode cc);
} transfer_ops_t;

typedef struct slot {
  const transfer_ops_t *ops;
  item_t *it; /* NULL: free */
  CURL *h;
  curl_mime *mime;
  struct curl_slist *hs;
  api_reply_t reply;
  int attempt;
  long long retry_at_ms; /* > 0: waiting to be sent again, not on the multi */
  char idem_header[128];
  /* A batch (it is NULL then): its files, the NDJSON body, and where each
   * file's line ends in it (for the progress of the files being sent). */
  item_t **group;
  size_t ngroup;
  char *body;
  size_t body_len, body_cap;
  size_t *ends;
} slot_t;

typedef struct run {
  cmd_ctx_t *ctx;
  const cli_out_t *o;
  api_t api;
  state_t *state;
  walk_list_t files;
  item_t *items;
  size_t n;
  /* options */
  long concurrency;
  long wait_timeout_s;
  bool force;
  const char *title;
  bool batching;    /* small text files go in batches (no --no-batch, and the
                       server has the route as far as we know) */
  item_t **singles; /* prepared files that go alone, in order */
  size_t nsingles, singles_head;
  item_t *carry; /* the file that did not fit the last batch: it opens the next */
  char *carry_line;
  size_t carry_len;
  size_t batches; /* batch requests answered (not counting 404/405/415/413) */
  /* output */
  bool bar;   /* progress line on stderr */
  bool lines; /* a plain line per event on stdout */
  bool bar_shown;
  int width;
  progress_t prog;
  /* counters */
  size_t total, processed, uploaded, unchanged, skipped, failed;
  size_t jobs_total, jobs_done, jobs_failed;
  long long bytes_total, bytes_done, bytes_sent;
  int worst;
  bool stop; /* auth failure or server down: start nothing more */
  bool interrupted;
  long long last_save_ms;
} run_t;

/* ---- output ------------------------------------------------------------------ */

static void clear_bar(run_t *r) {
  if (r->bar_shown) {
    fputs("\r\x1b[K", r->o->err);
    fflush(r->o->err);
    r->bar_shown = false;
  }
}

/* A line about one file: on stdout in plain mode, and above the progress
 * line for failures in terminal mode. */
static void say(run_t *r, bool failure, const char *fmt, ...) {
  if (r->o->json || (!r->lines && !failure))
    return;
  clear_bar(r);
  FILE *f = r->lines ? r->o->out : r->o->err;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fflush(f);
}

static void draw(run_t *r, const char *label, long long done, long long total,
                 const char *unit, bool with_bytes, bool force) {
  if (!r->bar)
    return;
  long long now = cli_now_ms();
  if (!progress_due(&r->prog, now, force))
    return;
  long long inflight = 0, sent_files = 0;
  for (size_t i = 0; i < r->n; i++)
    if (r->items[i].st == IT_UPLOADING) {
      inflight +=
          r->items[i].sent < r->items[i].f->size ? r->items[i].sent : r->items[i].f->size;
      /* A file of a batch whose line is sent counts as it goes, before the
       * batch's answer. */
      sent_files += with_bytes && r->items[i].sent >= r->items[i].f->size;
    }
  /* The rate counts bytes as they are sent, a batch's too. */
  progress_sample(&r->prog, now, r->bytes_sent + inflight);
  progress_view_t v = {
      .label = label,
      .done = done + sent_files,
      .total = total,
      .unit = unit,
      .bytes_done = with_bytes ? r->bytes_done + inflight : 0,
      .bytes_total = with_bytes ? r->bytes_total : 0,
      .rate = r->prog.rate,
      .have_rate = r->prog.have_rate,
  };
  char line[512];
  progress_format(line, sizeof line, &v, r->width - 1);
  fprintf(r->o->err, "\r%s\x1b[K", line);
  fflush(r->o->err);
  r->bar_shown = true;
}

static int terminal_width(FILE *f) {
  struct winsize ws;
  if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
    return ws.ws_col > 500 ? 500 : ws.ws_col;
  return 80;
}

/* ---- state ------------------------------------------------------------------- */

static void remember(run_t *r, const item_t *it) {
  state_entry_t e;
  memset(&e, 0, sizeof e);
  snprintf(e.sha256, sizeof e.sha256, "%s", it->sha256);
  e.size = it->f->size;
  e.mtime_ns = it->f->mtime_ns;
  snprintf(e.document_id, sizeof e.document_id, "%s", it->document_id);
  snprintf(e.job_id, sizeof e.job_id, "%s", it->job_id);
  e.version = it->version;
  snprintf(e.status, sizeof e.status, "%s", it->job_status);
  if (state_put(r->state, it->f->external_id, &e))
    fprintf(r->o->err, "quarry: warning: out of memory recording %s\n", it->f->shown);
}

static void save(run_t *r, bool force) {
  long long now = cli_now_ms();
  if (!force && now - r->last_save_ms < SAVE_EVERY_MS)
    return;
  r->last_save_ms = now;
  char err[1024];
  if (state_save(r->state, err, sizeof err)) {
    clear_bar(r);
    fprintf(r->o->err,
            "quarry: warning: %s (the run goes on; the server dedups anyway)\n", err);
  }
}

/* ---- items -------------------------------------------------------------------- */

static void fail_item(run_t *r, item_t *it, int exit_code, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Counts partition the files: one that was accepted and whose job then
   * failed moves from its first count to failed. */
  if (it->st == IT_UPLOADED)
    r->uploaded--;
  else if (it->st == IT_UNCHANGED)
    r->unchanged--;
  else if (it->st == IT_SKIPPED)
    r->skipped--;
  if (it->st != IT_FAILED)
    r->failed++;
  it->st = IT_FAILED;
  free(it->error);
  it->error = strdup(msg);
  it->error_exit = exit_code;
  r->worst = cli_exit_worst(r->worst, exit_code);
  say(r, true, "FAILED     %s: %s", it->f->shown, msg);
}

/* One file is through the upload phase: count its bytes as done. */
static void processed(run_t *r, item_t *it) {
  r->processed++;
  r->bytes_done += it->f->size;
}

static q_err_t hash_file(const char *path, char out[65], char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open: %s", strerror(errno));
    return Q_EIO;
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  q_err_t rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? 0 : Q_ENOMEM;
  static unsigned char buf[1 << 16];
  while (!rc) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      snprintf(err, errlen, "cannot read: %s", strerror(errno));
      rc = Q_EIO;
    } else if (n == 0) {
      break;
    } else if (!EVP_DigestUpdate(md, buf, (size_t)n)) {
      rc = Q_EINTERNAL;
    }
  }
  unsigned char dig[32];
  unsigned int dl = 0;
  if (!rc && !EVP_DigestFinal_ex(md, dig, &dl))
    rc = Q_EINTERNAL;
  if (rc && rc != Q_EIO)
    snprintf(err, errlen, "cannot hash the file (OpenSSL)");
  for (unsigned int i = 0; !rc && i < dl; i++)
    snprintf(out + 2 * i, 3, "%02x", dig[i]);
  EVP_MD_CTX_free(md);
  close(fd);
  return rc;
}

/* Decides what to do with the next file: true when it must be uploaded. */
static bool prepare(run_t *r, item_t *it) {
  walk_file_t *f = it->f;
  if (f->repeated) {
    it->st = IT_IGNORED;
    return false;
  }
  if (f->error) {
    fail_item(r, it, CLI_EXIT_FAILED, "%s", f->error);
    processed(r, it);
    return false;
  }
  state_entry_t e;
  bool known = !r->force && state_get(r->state, f->external_id, &e);
  if (known && e.size == f->size && e.mtime_ns == f->mtime_ns) {
    snprintf(it->sha256, sizeof it->sha256, "%s", e.sha256); /* unchanged on disk */
  } else {
    char err[512];
    if (hash_file(f->path, it->sha256, err, sizeof err)) {
      fail_item(r, it, CLI_EXIT_FAILED, "%s", err);
      processed(r, it);
      return false;
    }
  }
  if (known && strcmp(e.sha256, it->sha256) == 0 &&
      (strcmp(e.status, "done") == 0 || strcmp(e.status, "queued") == 0 ||
       strcmp(e.status, "running") == 0)) {
    /* Loaded before, or still loading: only wait for its job. A failed
     * job is uploaded again, which makes the server run it once more. */
    it->st = IT_SKIPPED;
    snprintf(it->document_id, sizeof it->document_id, "%s", e.document_id);
    snprintf(it->job_id, sizeof it->job_id, "%s", e.job_id);
    snprintf(it->job_status, sizeof it->job_status, "%s", e.status);
    it->version = e.version;
    r->skipped++;
    if (e.size != f->size || e.mtime_ns != f->mtime_ns)
      remember(r, it); /* touched but identical: spare the next run the hashing */
    say(r, false, "skipped    %s (%s)", f->shown,
        strcmp(e.status, "done") == 0 ? "loaded before" : "uploaded before; job pending");
    processed(r, it);
    return false;
  }
  return true;
}

/* ---- uploads ------------------------------------------------------------------ */

static void on_sent(void *ud, long long sent) {
  item_t *it = ud;
  it->sent = sent;
}

static void slot_release(CURLM *m, slot_t *s) {
  if (s->h) {
    curl_multi_remove_handle(m, s->h);
    curl_easy_cleanup(s->h);
  }
  curl_mime_free(s->mime);
  curl_slist_free_all(s->hs);
  api_reply_cleanup(&s->reply);
  s->h = NULL;
  s->mime = NULL;
  s->hs = NULL;
  s->retry_at_ms = 0;
}

static q_err_t add_field(curl_mime *mime, const char *name, const char *value) {
  curl_mimepart *p = curl_mime_addpart(mime);
  if (!p || curl_mime_name(p, name) != CURLE_OK ||
      curl_mime_data(p, value, CURL_ZERO_TERMINATED) != CURLE_OK)
    return Q_ENOMEM;
  return 0;
}

/* Sends s->it (again). */
static q_err_t slot_start(run_t *r, CURLM *m, slot_t *s) {
  item_t *it = s->it;
  s->h = curl_easy_init();
  api_reply_init(&s->reply);
  s->reply.interrupt_level = 2; /* the first Ctrl-C lets it finish */
  s->reply.on_progress = on_sent;
  s->reply.progress_ud = it;
  it->sent = 0;
  if (!s->h || !(s->mime = curl_mime_init(s->h)))
    return Q_ENOMEM;
  /* Fields first: the gateway takes them after the file only for small files. */
  if ((r->title && add_field(s->mime, "title", r->title)) ||
      add_field(s->mime, "external_id", it->f->external_id))
    return Q_ENOMEM;
  curl_mimepart *p = curl_mime_addpart(s->mime);
  /* The type is left to the server, which knows its formats by extension. */
  if (!p || curl_mime_name(p, "file") || curl_mime_filedata(p, it->f->path) ||
      curl_mime_filename(p, it->f->filename) ||
      curl_mime_type(p, "application/octet-stream"))
    return Q_ENOMEM;

  char seed[Q_LIMIT_EXTERNAL_ID_BYTES + 80], key[65];
  snprintf(seed, sizeof seed, "%s:%s", it->sha256, it->f->external_id);
  q_sha256_hex(seed, strlen(seed), key);
  snprintf(s->idem_header, sizeof s->idem_header, "Idempotency-Key: %s", key);
  const char *extra[] = {s->idem_header, NULL};
  s->hs = api_setup(&r->api, s->h, "POST", "/v1/documents", extra, &s->reply);
  if (!s->hs)
    return Q_ENOMEM;
  curl_easy_setopt(s->h, CURLOPT_MIMEPOST, s->mime);
  curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, 0L);      /* big files take long... */
  curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_LIMIT, 1L); /* ...but must move */
  curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_TIME, (long)LOW_SPEED_TIME_S);
  curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
  return curl_multi_add_handle(m, s->h) == CURLM_OK ? 0 : Q_EINTERNAL;
}

static void copy_json_str(const json_t *o, const char *name, char *dst, size_t dstlen) {
  const char *v = json_string_value(json_object_get(o, name));
  snprintf(dst, dstlen, "%s", v ? v : "");
}

/* The server stored it (document_id, job_id and version are set). */
static void accepted(run_t *r, item_t *it, bool unchanged) {
  it->st = unchanged ? IT_UNCHANGED : IT_UPLOADED;
  /* Unchanged content may come without a job: nothing to wait for. */
  snprintf(it->job_status, sizeof it->job_status, "%s",
           it->job_id[0] ? "queued" : "done");
  if (unchanged)
    r->unchanged++;
  else
    r->uploaded++;
  remember(r, it);
  r->bytes_sent += it->f->size;
  if (unchanged)
    say(r, false, "unchanged  %s (the server already has this content)", it->f->shown);
  else
    say(r, false, "uploaded   %s (document %s, version %d)", it->f->shown,
        it->document_id, it->version);
}

/* A transfer ended: record the result, or schedule another attempt. */
static void single_done(run_t *r, CURLM *m, slot_t *s, CURLcode cc) {
  item_t *it = s->it;
  api_reply_t *rep = &s->reply;
  api_finish(rep, s->h, cc);
  if (rep->interrupted) { /* second Ctrl-C: dropped, a re-run uploads it */
    it->st = IT_TODO;
    slot_release(m, s);
    s->it = NULL;
    return;
  }
  if (api_retryable(rep, true) && s->attempt + 1 < API_RETRIES && !r->stop) {
    if (cli_interrupted()) { /* not worth waiting for now: a re-run sends it */
      it->st = IT_TODO;
      slot_release(m, s);
      s->it = NULL;
      return;
    }
    double delay = api_retry_delay(rep, s->attempt);
    slot_release(m, s);
    s->attempt++;
    s->retry_at_ms = cli_now_ms() + (long long)(delay * 1000);
    return;
  }
  const char *slug;
  char msg[2048];
  int rc = api_outcome(&r->api, rep, &slug, msg, sizeof msg);
  if (rc == CLI_EXIT_OK) {
    json_t *j = rep->json;
    copy_json_str(j, "document_id", it->document_id, sizeof it->document_id);
    copy_json_str(j, "job_id", it->job_id, sizeof it->job_id);
    it->version = (int)json_integer_value(json_object_get(j, "version"));
    /* A replayed answer (same Idempotency-Key, i.e. same content and id)
     * means an earlier run stored this file: nothing new was stored now. */
    bool unchanged = json_is_true(json_object_get(j, "unchanged")) || rep->replayed;
    if (!it->document_id[0])
      fail_item(r, it, CLI_EXIT_SERVER, "the server's reply names no document (HTTP %ld)",
                rep->status);
    else
      accepted(r, it, unchanged);
  } else {
    fail_item(r, it, rc, "%s", msg);
    if (rc == CLI_EXIT_AUTH || (rc == CLI_EXIT_SERVER && rep->status == 0))
      r->stop = true; /* every other upload would fail the same way */
  }
  processed(r, it);
  slot_release(m, s);
  s->it = NULL;
}

/* ---- batches ------------------------------------------------------------------ */

static bool slot_busy(const slot_t *s) {
  return s->it || s->ngroup;
}

static void group_free(slot_t *s) {
  free(s->group);
  free(s->body);
  free(s->ends);
  s->group = NULL;
  s->body = NULL;
  s->ends = NULL;
  s->ngroup = s->body_len = s->body_cap = 0;
  s->idem_header[0] = '\0';
}

/* A prepared file goes alone, after the batch in hand. */
static void push_single(run_t *r, item_t *it) {
  it->st = IT_TODO;
  it->sent = 0;
  r->singles[r->nsingles++] = it; /* each file at most once: room for all */
}

/* The file as an NDJSON line when it may go in a batch; false when it goes
 * alone (not a small .txt file, unreadable, not UTF-8: the one-file upload
 * then reports what the server makes of it). */
static bool batch_prepare_line(run_t *r, item_t *it, char **line, size_t *len) {
  walk_file_t *f = it->f;
  if (!r->batching || !batch_file_eligible(f->filename, f->size))
    return false;
  FILE *fp = fopen(f->path, "rb");
  if (!fp)
    return false;
  size_t cap = (size_t)f->size + 1;
  char *buf = malloc(cap);
  size_t n = buf ? fread(buf, 1, cap, fp) : 0;
  fclose(fp);
  char err[128];
  bool ok = buf && n == (size_t)f->size &&
            batch_line(f->external_id, r->title ? r->title : f->filename, buf, n, line,
                       len, err, sizeof err) == Q_OK;
  if (ok) /* what is sent is what the key and the state name */
    q_sha256_hex(buf, n, it->sha256);
  free(buf);
  return ok;
}

/* Adds a file and its line (taken over) to the slot's batch. */
static q_err_t group_add(slot_t *s, item_t *it, char *line, size_t len) {
  if (!s->group && (!(s->group = calloc(BATCH_MAX_FILES, sizeof *s->group)) ||
                    !(s->ends = calloc(BATCH_MAX_FILES, sizeof *s->ends)))) {
    free(line);
    return Q_ENOMEM;
  }
  if (s->body_len + len > s->body_cap) {
    size_t cap = s->body_cap ? s->body_cap : 64 << 10;
    while (cap < s->body_len + len)
      cap *= 2;
    char *b = realloc(s->body, cap);
    if (!b) {
      free(line);
      return Q_ENOMEM;
    }
    s->body = b;
    s->body_cap = cap;
  }
  memcpy(s->body + s->body_len, line, len);
  free(line);
  s->body_len += len;
  s->ends[s->ngroup] = s->body_len;
  s->group[s->ngroup++] = it;
  it->st = IT_UPLOADING;
  return Q_OK;
}

static void on_batch_sent(void *ud, long long sent) {
  slot_t *s = ud;
  long long start = 0;
  for (size_t i = 0; i < s->ngroup; i++) {
    long long end = (long long)s->ends[i], size = s->group[i]->f->size;
    s->group[i]->sent = sent >= end     ? size
                        : sent <= start ? 0
                                        : (sent - start) * size / (end - start);
    start = end;
  }
}

/* Sends the slot's batch (again: the body and key stay for retries). */
static q_err_t batch_start(run_t *r, CURLM *m, slot_t *s) {
  s->h = curl_easy_init();
  api_reply_init(&s->reply);
  s->reply.interrupt_level = 2;
  s->reply.on_progress = on_batch_sent;
  s->reply.progress_ud = s;
  for (size_t i = 0; i < s->ngroup; i++)
    s->group[i]->sent = 0;
  if (!s->h)
    return Q_ENOMEM;
  if (!s->idem_header[0]) {
    const char *shas[BATCH_MAX_FILES], *ids[BATCH_MAX_FILES];
    for (size_t i = 0; i < s->ngroup; i++) {
      shas[i] = s->group[i]->sha256;
      ids[i] = s->group[i]->f->external_id;
    }
    char key[BATCH_KEY_LEN + 1];
    batch_key(shas, ids, s->ngroup, key);
    snprintf(s->idem_header, sizeof s->idem_header, "Idempotency-Key: %s", key);
  }
  const char *extra[] = {s->idem_header, "Content-Type: application/x-ndjson", NULL};
  s->hs = api_setup(&r->api, s->h, "POST", "/v1/documents/batch", extra, &s->reply);
  if (!s->hs)
    return Q_ENOMEM;
  curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
  curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body_len);
  curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, 0L);
  curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_TIME, (long)LOW_SPEED_TIME_S);
  curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
  return curl_multi_add_handle(m, s->h) == CURLM_OK ? 0 : Q_EINTERNAL;
}

/* Every file of the slot's batch goes back: alone (single) or to a later
 * run (not started). */
static void group_release(run_t *r, CURLM *m, slot_t *s, bool single) {
  for (size_t i = 0; i < s->ngroup; i++) {
    if (single)
      push_single(r, s->group[i]);
    else
      s->group[i]->st = IT_TODO;
  }
  slot_release(m, s);
  group_free(s);
}

/* The server has no batch route: every file goes alone from now on. */
static void no_batches(run_t *r, long status) {
  if (!r->batching)
    return;
  r->batching = false;
  if (r->carry) {
    free(r->carry_line);
    r->carry_line = NULL;
    push_single(r, r->carry);
    r->carry = NULL;
  }
  if (!r->o->json) {
    clear_bar(r);
    fprintf(r->o->err,
            "quarry: the server has no batch route (HTTP %ld on POST "
            "/v1/documents/batch): uploading one file per request\n",
            status);
  }
}

/* The server's message without the "line N: " the batch puts first (the
 * line number means nothing to the person who named a file). */
static const char *item_message(const char *m) {
  const char *p = m;
  if (strncmp(p, "line ", 5) != 0)
    return m;
  p += 5;
  if (*p < '0' || *p > '9')
    return m;
  while (*p >= '0' && *p <= '9')
    p++;
  return strncmp(p, ": ", 2) == 0 ? p + 2 : m;
}

/* A batch transfer ended: every file's result, or another attempt. */
static void batch_done(run_t *r, CURLM *m, slot_t *s, CURLcode cc) {
  api_reply_t *rep = &s->reply;
  api_finish(rep, s->h, cc);
  if (rep->interrupted) { /* second Ctrl-C: a re-run sends them */
    group_release(r, m, s, false);
    return;
  }
  if (api_retryable(rep, true) && s->attempt + 1 < API_RETRIES && !r->stop) {
    if (cli_interrupted()) {
      group_release(r, m, s, false);
      return;
    }
    double delay = api_retry_delay(rep, s->attempt);
    slot_release(m, s);
    s->attempt++;
    s->retry_at_ms = cli_now_ms() + (long long)(delay * 1000);
    return;
  }
  if (rep->status == 404 || rep->status == 405 || rep->status == 415) {
    no_batches(r, rep->status);
    group_release(r, m, s, true);
    return;
  }
  if (rep->status == 413) { /* the whole batch too large: each file alone */
    group_release(r, m, s, true);
    return;
  }
  r->batches++;
  const char *slug;
  char msg[2048];
  int rc = api_outcome(&r->api, rep, &slug, msg, sizeof msg);
  batch_result_t res[BATCH_MAX_FILES];
  bool listed = (rc == CLI_EXIT_OK || rep->status == 400) && rep->json &&
                json_object_get(rep->json, "documents");
  if (listed) {
    char err[256];
    if (batch_results(rep->json, s->ngroup, res, err, sizeof err)) {
      listed = false;
      rc = CLI_EXIT_SERVER;
      snprintf(msg, sizeof msg, "%s (HTTP %ld)", err, rep->status);
    }
  } else if (rc == CLI_EXIT_OK) {
    rc = CLI_EXIT_SERVER;
    snprintf(msg, sizeof msg, "the server's batch reply lists no documents (HTTP %ld)",
             rep->status);
  }
  for (size_t i = 0; i < s->ngroup; i++) {
    item_t *it = s->group[i];
    if (!listed) {
      fail_item(r, it, rc, "%s", msg);
    } else if (res[i].ok) {
      snprintf(it->document_id, sizeof it->document_id, "%s", res[i].document_id);
      snprintf(it->job_id, sizeof it->job_id, "%s", res[i].job_id);
      it->version = res[i].version;
      it->batched = true;
      /* Replayed: an earlier try of this batch (this run or one cut off)
       * stored it; nothing new was stored now. */
      accepted(r, it, res[i].unchanged || res[i].replayed);
    } else if (batch_result_too_large(&res[i])) {
      push_single(r, it);
      continue;
    } else {
      fail_item(r, it, CLI_EXIT_FAILED, "%s: %s", res[i].code,
                item_message(res[i].message));
    }
    processed(r, it);
  }
  if (!listed && (rc == CLI_EXIT_AUTH || (rc == CLI_EXIT_SERVER && rep->status == 0)))
    r->stop = true;
  slot_release(m, s);
  group_free(s);
}

static const transfer_ops_t single_transfer = {slot_start, single_done};
static const transfer_ops_t batch_transfer = {batch_start, batch_done};

/* Starts one file alone on a free slot. */
static void start_single(run_t *r, CURLM *m, slot_t *s, item_t *it) {
  s->it = it;
  s->ops = &single_transfer;
  s->attempt = 0;
  it->st = IT_UPLOADING;
  if (s->ops->start(r, m, s)) {
    fail_item(r, it, CLI_EXIT_FAILED, "cannot start the upload (out of memory)");
    processed(r, it);
    slot_release(m, s);
    s->it = NULL;
  }
}

/* Gives a free slot its next work: a file that goes alone, or a batch
 * opened by first (its line given) and filled with the files that follow
 * in the list. Files that cannot be batched are queued to go alone, so the
 * batches a run forms depend only on the batchable files in order: a
 * resumed run forms the same batches (same keys) for what is left. */
static void fill_slot(run_t *r, CURLM *m, slot_t *s, size_t *next) {
  while (!slot_busy(s) && !cli_interrupted() && !r->stop) {
    item_t *it;
    char *line = NULL;
    size_t len = 0;
    if (r->singles_head < r->nsingles) {
      start_single(r, m, s, r->singles[r->singles_head++]);
      continue;
    }
    if (r->carry) {
      it = r->carry;
      line = r->carry_line;
      len = r->carry_len;
      r->carry = NULL;
      r->carry_line = NULL;
    } else if (*next < r->n) {
      it = &r->items[(*next)++];
      if (!prepare(r, it))
        continue;
      if (!batch_prepare_line(r, it, &line, &len)) {
        start_single(r, m, s, it);
        continue;
      }
    } else {
      return;
    }
    q_err_t rc = group_add(s, it, line, len);
    item_t *lost = rc ? it : NULL; /* a file that could not join (out of memory) */
    while (!rc && s->ngroup < BATCH_MAX_FILES && *next < r->n && !cli_interrupted()) {
      item_t *nx = &r->items[(*next)++];
      if (!prepare(r, nx))
        continue;
      if (!batch_prepare_line(r, nx, &line, &len)) {
        push_single(r, nx);
        continue;
      }
      if (s->body_len + len > BATCH_MAX_BYTES) {
        r->carry = nx;
        r->carry_line = line;
        r->carry_len = len;
        break;
      }
      if ((rc = group_add(s, nx, line, len)))
        lost = nx;
    }
    s->attempt = 0;
    s->ops = &batch_transfer;
    if (rc || s->ops->start(r, m, s)) {
      for (size_t i = 0; i < s->ngroup; i++) {
        fail_item(r, s->group[i], CLI_EXIT_FAILED,
                  "cannot start the upload (out of memory)");
        processed(r, s->group[i]);
      }
      if (lost) {
        fail_item(r, lost, CLI_EXIT_FAILED, "cannot start the upload (out of memory)");
        processed(r, lost);
      }
      slot_release(m, s);
      group_free(s);
    }
  }
}

static size_t files_in_flight(const slot_t *slots, long n) {
  size_t k = 0;
  for (long i = 0; i < n; i++)
    k += slots[i].it ? 1 : slots[i].ngroup;
  return k;
}

static void upload_all(run_t *r) {
  CURLM *m = curl_multi_init();
  slot_t *slots = calloc((size_t)r->concurrency, sizeof *slots);
  r->singles = calloc(r->n ? r->n : 1, sizeof *r->singles);
  if (!m || !slots || !r->singles) {
    r->worst = cli_exit_worst(r->worst, CLI_EXIT_FAILED);
    fprintf(r->o->err, "quarry: out of memory\n");
    curl_multi_cleanup(m);
    free(slots);
    return;
  }
  size_t next = 0;
  bool told = false;
  for (;;) {
    if (cli_interrupted() && !told) {
      told = true;
      r->interrupted = true;
      size_t busy = files_in_flight(slots, r->concurrency);
      clear_bar(r);
      if (!r->o->json && busy)
        fprintf(r->o->err,
                "quarry: interrupted: finishing %zu upload%s in flight (Ctrl-C again to "
                "stop at once)\n",
                busy, busy == 1 ? "" : "s");
      else if (!r->o->json)
        fprintf(r->o->err, "quarry: interrupted: saving the state\n");
    }
    long long now = cli_now_ms();
    size_t busy = 0;
    for (long i = 0; i < r->concurrency; i++) {
      slot_t *s = &slots[i];
      if (slot_busy(s) && s->retry_at_ms > 0) {
        if (cli_interrupted() || r->stop) { /* give up the retry */
          if (s->ngroup) {
            group_release(r, m, s, false);
          } else {
            s->it->st = IT_TODO;
            s->it = NULL;
            s->retry_at_ms = 0;
          }
        } else if (now >= s->retry_at_ms) {
          s->retry_at_ms = 0;
          if (s->ops->start(r, m, s)) {
            item_t **its = s->ngroup ? s->group : &s->it;
            size_t k = s->ngroup ? s->ngroup : 1;
            for (size_t j = 0; j < k; j++) {
              fail_item(r, its[j], CLI_EXIT_FAILED,
                        "cannot start the upload (out of memory)");
              processed(r, its[j]);
            }
            slot_release(m, s);
            s->it = NULL;
            group_free(s);
          }
        }
      }
      fill_slot(r, m, s, &next);
      busy += slot_busy(s);
    }
    if (!busy)
      break;
    int running = 0;
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      slot_t *s = NULL;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      CURLcode cc = msg->data.result;
      if (s)
        s->ops->done(r, m, s, cc);
    }
    draw(r, "uploading", (long long)r->processed, (long long)r->total, "files", true,
         false);
    save(r, false);
    curl_multi_poll(m, NULL, 0, 100, NULL);
  }
  if ((next < r->n || r->carry || r->singles_head < r->nsingles) && cli_interrupted())
    r->interrupted = true;
  if (r->carry) { /* interrupted: not started */
    r->carry->st = IT_TODO;
    free(r->carry_line);
    r->carry = NULL;
    r->carry_line = NULL;
  }
  draw(r, "uploading", (long long)r->processed, (long long)r->total, "files", true, true);
  for (long i = 0; i < r->concurrency; i++) {
    slot_release(m, &slots[i]);
    group_free(&slots[i]);
  }
  free(slots);
  curl_multi_cleanup(m);
}

/* ---- waiting for jobs ------------------------------------------------------------- */

static bool job_pending(const item_t *it) {
  return it->job_id[0] && it->st != IT_FAILED && strcmp(it->job_status, "done") != 0 &&
         strcmp(it->job_status, "failed") != 0;
}

static void count_jobs(run_t *r) {
  r->jobs_total = r->jobs_done = r->jobs_failed = 0;
  for (size_t i = 0; i < r->n; i++) {
    const item_t *it = &r->items[i];
    if (!it->job_id[0])
      continue;
    r->jobs_total++;
    r->jobs_done += strcmp(it->job_status, "done") == 0;
    r->jobs_failed += strcmp(it->job_status, "failed") == 0;
  }
}

/* Polls one job; false when the run must stop (auth, server down, Ctrl-C). */
static bool poll_job(run_t *r, item_t *it) {
  char path[128];
  snprintf(path, sizeof path, "/v1/jobs/%s", it->job_id); /* a UUID: nothing to escape */
  api_reply_t rep;
  api_reply_init(&rep);
  api_call(&r->api, "GET", path, NULL, NULL, true, &rep);
  const char *slug;
  char msg[2048];
  int rc = api_outcome(&r->api, &rep, &slug, msg, sizeof msg);
  bool go_on = true;
  if (rc == CLI_EXIT_OK) {
    char status[16];
    copy_json_str(rep.json, "status", status, sizeof status);
    if (strcmp(status, it->job_status) != 0 && status[0]) {
      snprintf(it->job_status, sizeof it->job_status, "%s", status);
      it->chunks = (int)json_integer_value(json_object_get(rep.json, "chunk_count"));
      remember(r, it);
      r->jobs_done += strcmp(status, "done") == 0;
      r->jobs_failed += strcmp(status, "failed") == 0;
      if (strcmp(status, "done") == 0) {
        say(r, false, "done       %s (%d chunk%s)", it->f->shown, it->chunks,
            it->chunks == 1 ? "" : "s");
      } else if (strcmp(status, "failed") == 0) {
        const char *why = json_string_value(json_object_get(rep.json, "error"));
        fail_item(r, it, CLI_EXIT_FAILED, "ingestion failed: %s",
                  why && *why ? why : "no reason given");
      }
    }
  } else if (rc == CLI_EXIT_FAILED && rep.status == 404) {
    /* The server forgot the job (a reset database?): nothing to wait for. */
    snprintf(it->job_status, sizeof it->job_status, "failed");
    remember(r, it);
    fail_item(r, it, CLI_EXIT_FAILED,
              "job %s is unknown to the server (%s); run again with --force", it->job_id,
              msg);
  } else {
    if (rc != CLI_EXIT_INTERRUPTED) {
      clear_bar(r);
      if (!r->o->json)
        fprintf(r->o->err, "quarry: waiting for jobs: %s\n", msg);
    }
    r->worst = cli_exit_worst(r->worst, rc);
    go_on = !(rc == CLI_EXIT_AUTH || rc == CLI_EXIT_INTERRUPTED ||
              (rc == CLI_EXIT_SERVER && rep.status == 0));
    if (rc == CLI_EXIT_INTERRUPTED)
      r->interrupted = true;
  }
  api_reply_cleanup(&rep);
  return go_on;
}

static void wait_jobs(run_t *r) {
  long long deadline = cli_now_ms() + r->wait_timeout_s * 1000;
  double pause_ms = POLL_FIRST_MS;
  for (;;) {
    count_jobs(r);
    if (r->jobs_done + r->jobs_failed >= r->jobs_total)
      return;
    draw(r, "waiting", (long long)(r->jobs_done + r->jobs_failed),
         (long long)r->jobs_total, "jobs", false, true);
    if (cli_now_ms() >= deadline)
      return;
    if (!api_sleep(pause_ms / 1000.0)) {
      r->interrupted = true;
      return;
    }
    pause_ms = pause_ms * 1.5 > POLL_MAX_MS ? POLL_MAX_MS : pause_ms * 1.5;
    for (size_t i = 0; i < r->n; i++) {
      item_t *it = &r->items[i];
      if (!job_pending(it))
        continue;
      if (!poll_job(r, it))
        return;
      draw(r, "waiting", (long long)(r->jobs_done + r->jobs_failed),
           (long long)r->jobs_total, "jobs", false, false);
      save(r, false);
      if (cli_interrupted()) {
        r->interrupted = true;
        return;
      }
    }
  }
}

/* ---- summary -------------------------------------------------------------------- */

static const char *result_name(item_state_t st) {
  switch (st) {
  case IT_SKIPPED: return "skipped";
  case IT_UPLOADED: return "uploaded";
  case IT_UNCHANGED: return "unchanged";
  case IT_FAILED: return "failed";
  case IT_UPLOADING:
  case IT_TODO: return "not_started";
  default: return "ignored";
  }
}

static size_t pending_jobs(const run_t *r) {
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += job_pending(&r->items[i]);
  return n;
}

static size_t not_started(const run_t *r) {
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += r->items[i].st == IT_TODO || r->items[i].st == IT_UPLOADING;
  return n;
}

static void summary_json(run_t *r, size_t pending) {
  json_t *items = json_array();
  for (size_t i = 0; i < r->n; i++) {
    const item_t *it = &r->items[i];
    if (it->st == IT_IGNORED)
      continue;
    json_t *o =
        json_pack("{s:o,s:o,s:s}", "path", cli_json_text(it->f->shown), "external_id",
                  cli_json_text(it->f->external_id), "result", result_name(it->st));
    if (!o)
      continue;
    if (it->document_id[0])
      json_object_set_new(o, "document_id", cli_json_text(it->document_id));
    if (it->job_id[0])
      json_object_set_new(o, "job_id", cli_json_text(it->job_id));
    if (it->version)
      json_object_set_new(o, "version", json_integer(it->version));
    if (it->job_status[0])
      json_object_set_new(o, "job_status", cli_json_text(it->job_status));
    if (it->sha256[0])
      json_object_set_new(o, "sha256", json_string(it->sha256));
    if (it->batched)
      json_object_set_new(o, "batch", json_true());
    if (it->error)
      json_object_set_new(o, "error", cli_json_text(it->error));
    json_array_append_new(items, o);
  }
  json_t *doc =
      json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I},s:b,s:o}", "server",
                r->ctx->cfg->server, "files", (json_int_t)r->total, "batches",
                (json_int_t)r->batches, "uploaded", (json_int_t)r->uploaded, "unchanged",
                (json_int_t)r->unchanged, "skipped", (json_int_t)r->skipped, "failed",
                (json_int_t)r->failed, "not_started", (json_int_t)not_started(r), "jobs",
                "total", (json_int_t)r->jobs_total, "done", (json_int_t)r->jobs_done,
                "failed", (json_int_t)r->jobs_failed, "pending", (json_int_t)pending,
                "interrupted", r->interrupted, "items", items);
  if (doc) {
    cli_print_json(r->o, doc);
    json_decref(doc);
  }
}

static void summary_text(run_t *r, size_t pending) {
  FILE *f = r->o->out;
  if (r->failed) {
    fprintf(f, "\nFailed:\n");
    for (size_t i = 0; i < r->n; i++)
      if (r->items[i].st == IT_FAILED)
        fprintf(f, "  %s: %s\n", r->items[i].f->shown, r->items[i].error);
    fputc('\n', f);
  }
  fprintf(
      f,
      "%zu file%s: %zu uploaded, %zu unchanged, %zu skipped (loaded before), %zu failed",
      r->total, r->total == 1 ? "" : "s", r->uploaded, r->unchanged, r->skipped,
      r->failed);
  size_t ns = not_started(r);
  if (ns)
    fprintf(f, ", %zu not started", ns);
  fprintf(f, "; jobs: %zu done, %zu failed, %zu pending\n", r->jobs_done, r->jobs_failed,
          pending);
  if (r->interrupted)
    fprintf(f, "Interrupted: run the same command again to continue.\n");
  else if (pending && r->wait_timeout_s > 0 && !r->stop)
    fprintf(f,
            "%zu job%s still running after %lds: run the same command again to keep "
            "waiting.\n",
            pending, pending == 1 ? "" : "s", r->wait_timeout_s);
  fflush(f);
}

/* ---- the command -------------------------------------------------------------- */

static int setup(run_t *r, cmd_ctx_t *ctx) {
  const cli_out_t *o = ctx->out;
  char err[4200];
  if (args_int(ctx->args, "concurrency", DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY,
               &r->concurrency, err, sizeof err) ||
      args_int(ctx->args, "wait-timeout", DEFAULT_WAIT_TIMEOUT_S, 0, 7 * 86400,
               &r->wait_timeout_s, err, sizeof err))
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "%s", err);
  if (args_has(ctx->args, "no-wait"))
    r->wait_timeout_s = 0;
  r->force = args_has(ctx->args, "force");
  r->batching = !args_has(ctx->args, "no-batch");
  r->title = args_get(ctx->args, "title");
  const char *ext = args_get(ctx->args, "external-id");
  if (r->title && (strlen(r->title) > Q_LIMIT_TITLE_BYTES || !*r->title))
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "--title must be 1 to %d bytes",
                    Q_LIMIT_TITLE_BYTES);
  if (ext && (strlen(ext) > Q_LIMIT_EXTERNAL_ID_BYTES || !*ext))
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "--external-id must be 1 to %d bytes",
                    Q_LIMIT_EXTERNAL_ID_BYTES);

  args_t *a = ctx->args;
  walk_filter_t flt = {args_list(a, "include"), args_list(a, "exclude")};
  const char *prefix = args_get(a, "id-prefix");
  for (size_t i = 0; i < a->noperands; i++)
    if (walk_collect(a->operands[i], &flt, prefix, &r->files))
      return cli_fail(o, CLI_EXIT_FAILED, "internal", "out of memory");
  if ((r->title || ext) && r->files.n != 1)
    return cli_fail(
        o, CLI_EXIT_USAGE, "usage",
        "--title and --external-id name one document, but %zu files were found",
        r->files.n);
  if (ext && r->files.n == 1) {
    free(r->files.files[0].external_id);
    r->files.files[0].external_id = strdup(ext);
    if (!r->files.files[0].external_id)
      return cli_fail(o, CLI_EXIT_FAILED, "internal", "out of memory");
  }
  walk_mark_duplicates(&r->files);

  r->n = r->files.n;
  r->items = calloc(r->n ? r->n : 1, sizeof *r->items);
  if (!r->items)
    return cli_fail(o, CLI_EXIT_FAILED, "internal", "out of memory");
  for (size_t i = 0; i < r->n; i++) {
    r->items[i].f = &r->files.files[i];
    if (!r->files.files[i].repeated) {
      r->total++;
      r->bytes_total += r->files.files[i].size;
    }
  }

  char path[4096], target[CONFIG_URL_MAX + 64], warn[4600];
  const char *explicit_state = args_get(a, "state");
  if (!explicit_state)
    explicit_state = getenv("QUARRY_STATE");
  if (explicit_state && *explicit_state)
    snprintf(path, sizeof path, "%s", explicit_state);
  else
    state_default_path(path, sizeof path);
  if (!path[0])
    snprintf(path, sizeof path, ".quarry-state.json"); /* no home: the working folder */
  state_target(ctx->cfg->server, ctx->cfg->key_id, target, sizeof target);
  if (state_open(path, target, &r->state, err, sizeof err, warn, sizeof warn))
    return cli_fail(o, CLI_EXIT_FAILED, "state", "%s", err);
  if (warn[0])
    fprintf(o->err, "quarry: warning: %s\n", warn);

  if (api_init(&r->api, ctx->cfg, ctx->timeout_ms))
    return cli_fail(o, CLI_EXIT_FAILED, "internal", "cannot start libcurl");
  r->bar = isatty(fileno(o->err)) && !args_has(a, "no-progress");
  r->lines = !o->json && !r->bar;
  r->width = terminal_width(o->err);
  progress_init(&r->prog, cli_now_ms());
  r->last_save_ms = cli_now_ms();
  return CLI_EXIT_OK;
}

int cmd_ingest(cmd_ctx_t *ctx) {
  run_t r;
  memset(&r, 0, sizeof r);
  r.ctx = ctx;
  r.o = ctx->out;
  int rc = setup(&r, ctx);
  if (rc == CLI_EXIT_OK) {
    if (r.total == 0 && !r.o->json)
      fprintf(r.o->err, "quarry: no files to ingest (check the paths, --include and "
                        "--exclude; hidden files are skipped)\n");
    upload_all(&r);
    save(&r, true);
    count_jobs(&r);
    if (!r.interrupted && !r.stop && r.wait_timeout_s > 0)
      wait_jobs(&r);
    save(&r, true);
    count_jobs(&r);
    clear_bar(&r);
    size_t pending = pending_jobs(&r);
    if (r.o->json)
      summary_json(&r, pending);
    else
      summary_text(&r, pending);
    rc = r.worst;
    if (pending && r.wait_timeout_s > 0)
      rc = cli_exit_worst(rc, CLI_EXIT_FAILED);
    if (r.interrupted)
      rc = CLI_EXIT_INTERRUPTED;
  }
  if (r.api.easy)
    api_cleanup(&r.api);
  state_free(r.state);
  for (size_t i = 0; i < r.n; i++)
    free(r.items[i].error);
  free(r.items);
  free(r.singles);
  free(r.carry_line);
  walk_list_free(&r.files);
  return rc;
}
