/* fuzz_upload.c - POST /v1/documents as the gateway parses it (upload.c):
 * the query string's metadata, the Content-Type, the Idempotency-Key and a
 * multipart/form-data body fed through libmicrohttpd's post processor into
 * upload.c's part handling.
 *
 * The request travels through a real libmicrohttpd daemon in this process
 * (no listening socket, driven with MHD_run from this thread): each input
 * becomes one HTTP request written into a socketpair handed to the daemon
 * with MHD_add_connection. The access handler below plays server.c's part
 * for the upload route - upload_ops.begin, .data for each piece, then
 * upload_check_body and a reply, .cleanup when the request completes - and
 * stops where upload_ops.end would start ingestion's Upload call, so no
 * call is ever made. A raw (non-multipart) body would start the call at
 * once, so only its headers are parsed here (begin); its bytes are counted
 * but not handed over. Multipart files stay under UPLOAD_PIECE_MAX (1 MiB,
 * far above -max_len), so the call never starts during the body either.
 *
 * Input: the query string, a newline, the Content-Type value, a newline, the
 * Idempotency-Key value ("" for none), a newline, the body. CR and NUL
 * bytes are dropped from the three header lines (they would end the HTTP
 * header, not reach upload.c), spaces from the query string.
 *
 * Checked: every request gets exactly one reply of 202 (the body is usable),
 * 400, 413 or 415 - never a 500 or none - and what begin set up is freed
 * (LeakSanitizer). On a 202 the Upload header the gateway would send must
 * pass ingestion's checks of it (services/ingestion/upload.c,
 * check_header): the gateway must not accept metadata only to stream the
 * whole document to a service that refuses it. The document's type is not
 * the gateway's to judge: it forwards the client's (a raw body's
 * Content-Type as sent, a multipart file part's Content-Type or "") and
 * ingestion's format table decides (fuzz_formats covers that decision). */

#include "fuzz.h"
#include "fuzz_mhd.h"
#include "gateway.h"
#include "handlers.h"
#include "http_util.h"
#include "upload.h"

#include "quarry/arena.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/validate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct MHD_Daemon *daemon_;

static gw_cfg_t cfg = {
    .auth_addr = "unix:/nonexistent/fuzz",
    .ingestion_addr = "unix:/nonexistent/fuzz", /* never dialled (see above) */
    .max_upload_bytes = 1 << 20,
    .max_json_bytes = 65536,
    .query_timeout_ms = 1000,
    .upload_timeout_ms = 1000,
};

/* One request's life, as the harness observes it. */
static struct {
  int accessed;  /* the access handler ran: a completion will follow */
  int completed; /* the completion callback ran */
  int multipart; /* the body may be handed to upload.c */
  unsigned status;
  int replies;
} req;

static int is_multipart(const char *ctype) {
  char media[Q_LIMIT_MEDIA_TYPE_BYTES + 1];
  return ctype && upload_media_type(ctype, media, sizeof media) == 0 &&
         strcmp(media, "multipart/form-data") == 0;
}

/* Ingestion's rules for the header (check_header and parse_content_type in
 * services/ingestion), with the same shared checks. */
static void check_header(const gw_req_t *r) {
  Quarry__V1__UploadHeader h = QUARRY__V1__UPLOAD_HEADER__INIT;
  upload_header(r, &h);
  FUZZ_CHECK(q_valid_tenant_id(h.tenant_id), "tenant");
  /* The type is the client's, forwarded for ingestion's format decision
   * (services/ingestion/extract/formats.c): a raw body's Content-Type header
   * as sent, a file part's own Content-Type ("" without one). */
  FUZZ_CHECK(h.content_type && q_valid_text(h.content_type, Q_LIMIT_MEDIA_TYPE_BYTES),
             "ingestion would refuse the content type the gateway accepted");
  if (!req.multipart)
    FUZZ_CHECK(strcmp(h.content_type, http_header(r, "Content-Type")) == 0,
               "content type %s is not the request's %s", h.content_type,
               http_header(r, "Content-Type"));
  FUZZ_CHECK(q_valid_text(h.filename, Q_LIMIT_FILENAME_BYTES),
             "ingestion would refuse the file name the gateway accepted");
  FUZZ_CHECK(q_valid_text(h.title, Q_LIMIT_TITLE_BYTES),
             "ingestion would refuse the title the gateway accepted");
  FUZZ_CHECK(q_valid_text(h.external_id, Q_LIMIT_EXTERNAL_ID_BYTES),
             "ingestion would refuse the external_id the gateway accepted");
  FUZZ_CHECK(!h.idempotency_key[0] || q_valid_idempotency_key(h.idempotency_key),
             "ingestion would refuse the idempotency key the gateway accepted");
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
  gw_req_t *r = *con_cls;
  if (!r) {
    q_arena_t *arena = q_arena_new(1 << 22);
    FUZZ_CHECK(arena, "out of memory");
    r = q_arena_alloc(arena, sizeof *r);
    r->arena = arena;
    r->conn = conn;
    r->cfg = &cfg;
    r->route_label = "/v1/documents";
    r->method_label = "POST";
    r->authenticated = 1;
    snprintf(r->principal.tenant_id, sizeof r->principal.tenant_id, "t1");
    *con_cls = r;
    req.accessed = 1;
    req.multipart =
        is_multipart(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"));
    upload_ops.begin(r);
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    r->body_bytes += n;
    if (!r->pending && !r->responded && req.multipart)
      upload_ops.data(r, upload_data, n);
    return MHD_YES;
  }
  if (r->stream)
    upload_check_body(r);
  if (r->pending) {
    http_reply_pending(r);
  } else {
    check_header(r);
    http_reply_json(r, 202, NULL); /* where upload_ops.end would call ingestion */
  }
  req.status = r->status;
  req.replies++;
  return r->queue_ok ? MHD_YES : MHD_NO;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  gw_req_t *r = *con_cls;
  req.completed = 1;
  if (!r)
    return;
  *con_cls = NULL;
  if (r->stream)
    upload_ops.cleanup(r);
  q_buf_cleanup(&r->body);
  q_arena_free(r->arena);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  q_log_init("fuzz", Q_LOG_ERROR);
  daemon_ =
      MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, access_cb, NULL,
                       MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL, MHD_OPTION_END);
  if (!daemon_) {
    fprintf(stderr, "fuzz_upload: cannot start libmicrohttpd\n");
    exit(1);
  }
  return 0;
}

/* Appends s without the bytes in drop, at most max bytes of it. */
static size_t put_clean(char *dst, const char *s, const char *drop, size_t max) {
  size_t n = 0;
  for (; *s && n < max; s++)
    if (!strchr(drop, *s))
      dst[n++] = *s;
  return n;
}

/* The HTTP request for the input, malloc'd; *len its length. */
static char *build_request(const uint8_t *data, size_t size, size_t *len) {
  char *f[4];
  size_t blen;
  char *block = fuzz_split(data, size, f, 4, &blen);
  size_t cap = size + 512;
  char *out = malloc(cap);
  FUZZ_CHECK(out, "out of memory");
  size_t n = 0;
  n += (size_t)snprintf(out + n, cap - n, "POST /v1/documents");
  if (f[0][0]) {
    out[n++] = '?';
    n += put_clean(out + n, f[0], "\r ", 2048);
  }
  n += (size_t)snprintf(out + n, cap - n, " HTTP/1.1\r\nHost: fuzz\r\nContent-Type: ");
  n += put_clean(out + n, f[1], "\r", 1024);
  if (f[2][0]) {
    n += (size_t)snprintf(out + n, cap - n, "\r\nIdempotency-Key: ");
    n += put_clean(out + n, f[2], "\r", 1024);
  }
  n += (size_t)snprintf(out + n, cap - n,
                        "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", blen);
  memcpy(out + n, f[3], blen);
  n += blen;
  free(block);
  *len = n;
  return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t len;
  char *http = build_request(data, size, &len);
  memset(&req, 0, sizeof req);

  /* An unanswered request is closed from this side after a while, which
   * libmicrohttpd reports as a client abort. */
  int spins =
      fuzz_mhd_exchange(daemon_, http, len, NULL, &req.accessed, &req.completed, true);
  FUZZ_CHECK(spins < 2 * FUZZ_MHD_ROUNDS, "the request never completed");
  free(http);

  if (req.accessed && spins < FUZZ_MHD_ROUNDS) {
    FUZZ_CHECK(req.replies == 1, "%d replies", req.replies);
    FUZZ_CHECK(req.status == 202 || req.status == 400 || req.status == 413 ||
                   req.status == 415,
               "upload answered %u", req.status);
  }
  return 0;
}
