/* upload.c - POST /v1/documents streamed into ingestion's Upload (see
 * upload.h for the contract). */
#include "upload.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "quarry/v1/ingestion.pb-c.h"

#include "quarry/chunking.h"
#include "quarry/error.h"
#include "quarry/filter.h"
#include "quarry/grpc.h"
#include "quarry/log.h"
#include "quarry/stubs.h"
#include "quarry/validate.h"

#include "handlers.h"
#include "http_util.h"

#define PP_BUFFER (64 << 10) /* post processor buffer: part headers fit */

enum { PART_FILE = 1, PART_TITLE, PART_EXTERNAL_ID, PART_METADATA, PART_CHUNKING };

_Static_assert(Q_LIMIT_EXTERNAL_ID_BYTES <= Q_LIMIT_TITLE_BYTES,
               "upload_t.field, sized for a title, also holds an external_id");
_Static_assert(Q_LIMIT_TITLE_BYTES <= Q_LIMIT_METADATA_BYTES,
               "upload_t.field, sized for metadata, also holds a title");

typedef struct upload {
  gw_req_t *r;
  int multipart;
  struct MHD_PostProcessor *pp;
  q_rpc_ingestion_upload_call_t *call;
  int header_sent;
  int send_failed; /* the call failed; finish() tells why */
  uint64_t doc_bytes;

  char filename[Q_LIMIT_FILENAME_BYTES + 1];
  char doc_type[Q_LIMIT_MEDIA_TYPE_BYTES + 1]; /* as the client declared it */
  char title[Q_LIMIT_TITLE_BYTES + 1];
  char external_id[Q_LIMIT_EXTERNAL_ID_BYTES + 1];
  char idempotency_key[Q_LIMIT_IDEMPOTENCY_KEY_BYTES + 1]; /* "" when none */
  int title_field, external_id_field;                      /* set by a multipart field */
  int metadata_field;
  const char *metadata;   /* user metadata as compact JSON (arena), NULL none */
  int chunking_fields[3]; /* chunking, chunk_tokens, chunk_overlap parts seen */
  q_chunking_t chunking;  /* from the query string and multipart fields */
  char chunking_spec[Q_LIMIT_CHUNKING_BYTES + 1]; /* its spec, once checked */

  /* multipart: the part being read */
  int in_part;
  int part_kind;
  char part_key[64];
  uint64_t part_bytes;
  int file_seen;
  q_buf_t field; /* value of a title / external_id field */
  q_buf_t held;  /* file bytes held back until the call starts */
} upload_t;

/* ---- pure helpers --------------------------------------------------------- */

static bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$&-^_.+", c));
}

q_err_t upload_media_type(const char *value, char *out, size_t outlen) {
  if (!value || outlen == 0)
    return Q_EINVAL;
  while (*value == ' ' || *value == '\t')
    value++;
  size_t n = 0, slashes = 0;
  for (; value[n] && value[n] != ';' && value[n] != ' ' && value[n] != '\t'; n++) {
    char c = value[n];
    if (c == '/')
      slashes++;
    else if (!is_token_char(c))
      return Q_EINVAL;
    if (n + 1 >= outlen)
      return Q_EINVAL;
    out[n] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  out[n] = '\0';
  if (slashes != 1 || out[0] == '/' || out[n - 1] == '/')
    return Q_EINVAL;
  return 0;
}

q_err_t upload_clean_filename(const char *in, char *out, size_t outlen) {
  if (!in || outlen == 0)
    return Q_EINVAL;
  const char *base = in;
  for (const char *p = in; *p; p++)
    if (*p == '/' || *p == '\\')
      base = p + 1;
  size_t n = strlen(base);
  if (n == 0 || n > Q_LIMIT_FILENAME_BYTES || n >= outlen || strcmp(base, ".") == 0 ||
      strcmp(base, "..") == 0)
    return Q_EINVAL;
  /* Ingestion's rule for a file name, so what passes here is never refused
   * there after the whole document has been streamed. */
  if (!q_valid_text(base, Q_LIMIT_FILENAME_BYTES))
    return Q_EINVAL;
  memcpy(out, base, n + 1);
  return 0;
}

/* ---- the Upload call ------------------------------------------------------ */

void upload_header(const gw_req_t *r, Quarry__V1__UploadHeader *hdr) {
  const upload_t *u = r->stream;
  hdr->tenant_id = (char *)r->principal.tenant_id;
  hdr->filename = (char *)u->filename;
  hdr->content_type = (char *)u->doc_type;
  hdr->title = (char *)u->title;
  hdr->external_id = (char *)u->external_id;
  hdr->idempotency_key = (char *)u->idempotency_key;
  hdr->metadata = (char *)(u->metadata ? u->metadata : "");
  hdr->chunking = (char *)u->chunking_spec;
}

/* ---- chunking ------------------------------------------------------------- */

static const char *const chunking_params[3] = {"chunking", "chunk_tokens",
                                               "chunk_overlap"};

q_err_t upload_chunking_param(q_chunking_t *c, const char *name, const char *v, size_t n,
                              char *err, size_t errlen) {
  if (strcmp(name, "chunking") == 0) {
    if (n == 0 || n >= sizeof c->strategy || memchr(v, '\0', n)) {
      snprintf(err, errlen, "chunking: unknown strategy; expected one of %s",
               Q_CHUNKING_STRATEGY_NAMES);
      return Q_EINVAL;
    }
    memcpy(c->strategy, v, n);
    c->strategy[n] = '\0';
    if (!q_chunking_known(c->strategy)) {
      snprintf(err, errlen, "chunking: unknown strategy \"%s\"; expected one of %s",
               c->strategy, Q_CHUNKING_STRATEGY_NAMES);
      return Q_EINVAL;
    }
    return Q_OK;
  }
  int *dst = strcmp(name, "chunk_tokens") == 0    ? &c->tokens
             : strcmp(name, "chunk_overlap") == 0 ? &c->overlap
                                                  : NULL;
  if (!dst)
    return Q_ENOTFOUND;
  int x = 0;
  bool ok = n >= 1 && n <= 5;
  for (size_t i = 0; ok && i < n; i++) {
    ok = v[i] >= '0' && v[i] <= '9';
    x = x * 10 + (v[i] - '0');
  }
  if (!ok) {
    snprintf(err, errlen, "%s: must be a whole number of tokens (words), at most %d",
             name, Q_LIMIT_CHUNK_TOKENS_MAX);
    return Q_EINVAL;
  }
  *dst = x;
  if (dst == &c->tokens && x == 0) {
    snprintf(err, errlen, "chunk_tokens: must be 1..%d (words)",
             Q_LIMIT_CHUNK_TOKENS_MAX);
    return Q_EINVAL;
  }
  return Q_OK;
}

q_err_t upload_chunking_spec(const q_chunking_t *c, char *out, size_t outlen, char *err,
                             size_t errlen) {
  q_err_t rc = q_chunking_check(c, err, errlen);
  if (rc)
    return rc;
  /* All defaults: say nothing, so ingestion's own settings apply. */
  if (!c->strategy[0] && c->tokens == 0 && c->overlap < 0) {
    if (outlen)
      out[0] = '\0';
    return Q_OK;
  }
  q_chunking_format(c, out, outlen);
  return Q_OK;
}

#define NOT_CHUNKING_PARAM (-1)

/* The position of name in chunking_params, NOT_CHUNKING_PARAM when it is
 * not one. */
static int chunking_param_index(const char *name) {
  for (int i = 0; i < 3; i++)
    if (strcmp(name, chunking_params[i]) == 0)
      return i;
  return NOT_CHUNKING_PARAM;
}

/* Checks the chunking the request asked for, as a whole (an overlap needs
 * chunk_tokens, ...), before any byte goes to ingestion: 400 naming it. */
static q_err_t chunking_ready(upload_t *u) {
  char err[256];
  if (upload_chunking_spec(&u->chunking, u->chunking_spec, sizeof u->chunking_spec, err,
                           sizeof err) == Q_OK)
    return Q_OK;
  http_reject_err(u->r, Q_EINVAL, "%s", err);
  return Q_EINVAL;
}

static void start_call(upload_t *u) {
  gw_req_t *r = u->r;
  if (chunking_ready(u))
    return;
  q_grpc_call_opts_t opts = {.timeout_ms = (int)r->cfg->upload_timeout_ms};
  u->call = q_rpc_ingestion_upload_start(q_grpc_channel(r->cfg->ingestion_addr), &opts);
  if (!u->call)
    http_reject_err(r, Q_EINTERNAL, "cannot start the ingestion Upload call");
}

/* Sends p[0..n) in pieces of at most UPLOAD_PIECE_MAX, the header riding on
 * the first message. */
static void send_data(upload_t *u, const char *p, size_t n) {
  gw_req_t *r = u->r;
  while (!u->send_failed && (n > 0 || !u->header_sent)) {
    size_t k = n < UPLOAD_PIECE_MAX ? n : UPLOAD_PIECE_MAX;
    Quarry__V1__UploadRequest msg = QUARRY__V1__UPLOAD_REQUEST__INIT;
    Quarry__V1__UploadHeader hdr = QUARRY__V1__UPLOAD_HEADER__INIT;
    if (!u->header_sent) {
      upload_header(r, &hdr);
      msg.header = &hdr;
      u->header_sent = 1;
    }
    msg.data.data = (uint8_t *)p;
    msg.data.len = k;
    if (q_rpc_ingestion_upload_send(u->call, &msg) != 0)
      u->send_failed = 1; /* keep draining; the status comes at the end */
    p += k;
    n -= k;
  }
}

/* Abandons the call so ingestion stores nothing. */
static void abort_call(upload_t *u) {
  if (!u->call)
    return;
  /* Cancel rather than half-close: ingestion must see an aborted stream,
   * not a complete (truncated) document. */
  q_rpc_ingestion_upload_cancel(u->call);
  char err[256];
  q_rpc_ingestion_upload_finish(u->call, err, sizeof err);
  u->call = NULL;
}

/* Takes file bytes: counts them against the limit, holds multipart bytes
 * back until a piece is full, streams the rest. */
static void file_data(upload_t *u, const char *p, size_t n) {
  gw_req_t *r = u->r;
  u->doc_bytes += n;
  if (u->doc_bytes > (uint64_t)r->cfg->max_upload_bytes) {
    http_reject_err(r, Q_ETOOBIG, "document larger than %lld bytes",
                    (long long)r->cfg->max_upload_bytes);
    return;
  }
  if (!u->call) {
    if (u->multipart && u->held.len + n <= UPLOAD_PIECE_MAX) {
      if (q_buf_append(&u->held, p, n) != 0)
        http_reject_err(r, Q_ENOMEM, "out of memory");
      return;
    }
    start_call(u);
    if (r->pending)
      return;
    if (u->held.len) {
      send_data(u, u->held.data, u->held.len);
      q_buf_cleanup(&u->held);
    }
  }
  send_data(u, p, n);
}

/* ---- metadata ------------------------------------------------------------- */

/* Copies a title or external_id (v[0..n), from the query string or a
 * multipart field, which may hold any bytes) into dst. Its rule is
 * ingestion's (q_valid_text: UTF-8 without control characters, tabs and
 * line breaks included), so a value accepted here is never refused there
 * once the whole document has been streamed. */
static q_err_t copy_meta(gw_req_t *r, const char *what, const char *v, size_t n,
                         char *dst, size_t max) {
  if (n > max) {
    http_reject_err(r, Q_EINVAL, "%s longer than %zu bytes", what, max);
    return Q_EINVAL;
  }
  if (!q_valid_utf8(v, n)) { /* also refuses NUL, which would cut dst short */
    http_reject_err(r, Q_EINVAL, "%s is not valid UTF-8", what);
    return Q_EINVAL;
  }
  memcpy(dst, v, n);
  dst[n] = '\0';
  if (!q_valid_text(dst, max)) {
    dst[0] = '\0';
    http_reject_err(r, Q_EINVAL, "%s contains control characters", what);
    return Q_EINVAL;
  }
  return 0;
}

/* User metadata (v[0..n), from the query string or a multipart field): a
 * JSON object q_meta_check accepts, kept as compact JSON; otherwise a 400
 * naming the problem, before any byte reaches ingestion. */
static q_err_t set_metadata(gw_req_t *r, upload_t *u, const char *v, size_t n) {
  char err[256];
  json_t *m = NULL;
  if (n == 0)
    return 0;
  if (q_meta_parse(v, n, &m, err, sizeof err)) {
    http_reject_err(r, Q_EINVAL, "%s", err);
    return Q_EINVAL;
  }
  char *s = json_dumps(m, JSON_COMPACT);
  json_decref(m);
  u->metadata = s ? q_arena_strdup(r->arena, s) : NULL;
  free(s);
  if (!u->metadata) {
    http_reject_err(r, Q_ENOMEM, "out of memory");
    return Q_ENOMEM;
  }
  return 0;
}

/* title, external_id, filename and metadata from the query string. */
static q_err_t query_meta(upload_t *u) {
  gw_req_t *r = u->r;
  const char *v;
  if ((v = http_query_arg(r, "title")) &&
      copy_meta(r, "title", v, strlen(v), u->title, Q_LIMIT_TITLE_BYTES))
    return Q_EINVAL;
  if ((v = http_query_arg(r, "external_id")) &&
      copy_meta(r, "external_id", v, strlen(v), u->external_id,
                Q_LIMIT_EXTERNAL_ID_BYTES))
    return Q_EINVAL;
  if ((v = http_query_arg(r, "metadata")) && set_metadata(r, u, v, strlen(v)))
    return Q_EINVAL;
  for (int i = 0; i < 3; i++) {
    char err[256];
    if ((v = http_query_arg(r, chunking_params[i])) &&
        upload_chunking_param(&u->chunking, chunking_params[i], v, strlen(v), err,
                              sizeof err)) {
      http_reject_err(r, Q_EINVAL, "%s", err);
      return Q_EINVAL;
    }
  }
  if ((v = http_query_arg(r, "filename")) &&
      upload_clean_filename(v, u->filename, sizeof u->filename)) {
    http_reject_err(r, Q_EINVAL,
                    "filename is empty, too long, not UTF-8 or has control characters");
    return Q_EINVAL;
  }
  return 0;
}

/* The Idempotency-Key header, when there is one (a retry of an upload
 * sends the key of the first attempt; ingestion decides). */
static q_err_t idempotency_key(upload_t *u) {
  gw_req_t *r = u->r;
  const char *v = http_header(r, UPLOAD_IDEMPOTENCY_HEADER);
  if (!v)
    return 0;
  if (!q_valid_idempotency_key(v)) {
    http_reject_err(r, Q_EINVAL,
                    "%s must be 1 to %d characters of printable ASCII (a UUID is a good "
                    "key)",
                    UPLOAD_IDEMPOTENCY_HEADER, Q_LIMIT_IDEMPOTENCY_KEY_BYTES);
    return Q_EINVAL;
  }
  snprintf(u->idempotency_key, sizeof u->idempotency_key, "%s", v);
  return 0;
}

/* ---- multipart ------------------------------------------------------------ */

static void end_part(upload_t *u) {
  gw_req_t *r = u->r;
  u->in_part = 0;
  if (u->part_kind == PART_TITLE)
    copy_meta(r, "title", u->field.data ? u->field.data : "", u->field.len, u->title,
              Q_LIMIT_TITLE_BYTES);
  else if (u->part_kind == PART_EXTERNAL_ID)
    copy_meta(r, "external_id", u->field.data ? u->field.data : "", u->field.len,
              u->external_id, Q_LIMIT_EXTERNAL_ID_BYTES);
  else if (u->part_kind == PART_METADATA)
    set_metadata(r, u, u->field.data ? u->field.data : "", u->field.len);
  else if (u->part_kind == PART_CHUNKING) {
    char err[256];
    if (upload_chunking_param(&u->chunking, u->part_key,
                              u->field.data ? u->field.data : "", u->field.len, err,
                              sizeof err))
      http_reject_err(r, Q_EINVAL, "%s", err);
  }
  q_buf_reset(&u->field);
}

static void start_file_part(upload_t *u, const char *filename, const char *content_type) {
  gw_req_t *r = u->r;
  if (u->file_seen) {
    http_reject_err(r, Q_EINVAL, "more than one \"file\" part");
    return;
  }
  u->file_seen = 1;
  u->part_kind = PART_FILE;
  if (filename && *filename &&
      upload_clean_filename(filename, u->filename, sizeof u->filename)) {
    http_reject_err(r, Q_EINVAL,
                    "file name is empty, too long, not UTF-8 or has control characters");
    return;
  }
  /* Ingestion decides what the file is, from this type, the name and
   * the bytes. */
  if (content_type)
    copy_meta(r, "Content-Type of the file part", content_type, strlen(content_type),
              u->doc_type, Q_LIMIT_MEDIA_TYPE_BYTES);
}

static void start_part(upload_t *u, const char *key, const char *filename,
                       const char *content_type, const char *encoding) {
  gw_req_t *r = u->r;
  u->in_part = 1;
  u->part_bytes = 0;
  u->part_kind = 0;
  snprintf(u->part_key, sizeof u->part_key, "%s", key ? key : "");
  if (encoding && *encoding && strcasecmp(encoding, "binary") != 0 &&
      strcasecmp(encoding, "8bit") != 0 && strcasecmp(encoding, "7bit") != 0) {
    http_reject_err(r, Q_EUNSUPPORTED, "Content-Transfer-Encoding %.32s is not supported",
                    encoding);
    return;
  }
  if (strcmp(u->part_key, "file") == 0) {
    start_file_part(u, filename, content_type);
    return;
  }
  int *seen, k;
  if (strcmp(u->part_key, "title") == 0) {
    u->part_kind = PART_TITLE;
    seen = &u->title_field;
  } else if (strcmp(u->part_key, "external_id") == 0) {
    u->part_kind = PART_EXTERNAL_ID;
    seen = &u->external_id_field;
  } else if (strcmp(u->part_key, "metadata") == 0) {
    u->part_kind = PART_METADATA;
    seen = &u->metadata_field;
  } else if ((k = chunking_param_index(u->part_key)) != NOT_CHUNKING_PARAM) {
    u->part_kind = PART_CHUNKING;
    seen = &u->chunking_fields[k];
  } else {
    http_reject_err(
        r, Q_EINVAL,
        "unknown multipart field \"%.32s\": expected file, title, external_id, "
        "metadata, chunking, chunk_tokens, chunk_overlap",
        u->part_key);
    return;
  }
  if (*seen) {
    http_reject_err(r, Q_EINVAL, "multipart field \"%s\" given twice", u->part_key);
    return;
  }
  *seen = 1;
  if (u->call)
    http_reject_err(r, Q_EINVAL,
                    "multipart field \"%s\" must come before the \"file\" part when "
                    "the file is larger than %d bytes",
                    u->part_key, UPLOAD_PIECE_MAX);
}

/* libmicrohttpd's post processor iterator: called for each piece of each
 * part, off being the piece's offset inside the part. */
static enum MHD_Result part_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *encoding, const char *data, uint64_t off,
                               size_t size) {
  upload_t *u = cls;
  gw_req_t *r = u->r;
  if (r->pending)
    return MHD_NO;
  /* A part starts at offset 0; an empty first piece of the same key (the
   * processor announces empty values that way) is not a new part. */
  int same = u->in_part && key && strcmp(key, u->part_key) == 0 && u->part_bytes == 0;
  if (off == 0 && !same) {
    if (u->in_part)
      end_part(u);
    if (!r->pending)
      start_part(u, key, filename, content_type, encoding);
    if (r->pending)
      return MHD_NO;
  }
  if (size == 0)
    return MHD_YES;
  u->part_bytes += size;
  if (u->part_kind == PART_FILE) {
    file_data(u, data, size);
  } else if (q_buf_append(&u->field, data, size) != 0) {
    http_reject_err(r, Q_EINVAL, "multipart field \"%s\" is too long", u->part_key);
  }
  return r->pending ? MHD_NO : MHD_YES;
}

/* ---- stream callbacks ----------------------------------------------------- */

static void upload_begin(gw_req_t *r) {
  upload_t *u = q_arena_alloc(r->arena, sizeof *u);
  if (!u) {
    http_reject_err(r, Q_ENOMEM, "out of memory");
    return;
  }
  r->stream = u;
  u->r = r;
  u->chunking = Q_CHUNKING_DEFAULT;
  q_buf_init(&u->field, Q_LIMIT_METADATA_BYTES + 1);
  q_buf_init(&u->held, UPLOAD_PIECE_MAX);
  uint64_t max = (uint64_t)r->cfg->max_upload_bytes;

  char media[Q_LIMIT_MEDIA_TYPE_BYTES + 1];
  if (upload_media_type(http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE), media,
                        sizeof media) != 0) {
    http_reject_err(
        r, Q_EUNSUPPORTED,
        "a Content-Type is required: the document's type (application/octet-stream "
        "lets its name and content decide) or multipart/form-data");
    return;
  }
  if (query_meta(u) || idempotency_key(u))
    return;
  if (strcmp(media, "multipart/form-data") == 0) {
    u->multipart = 1;
    if (r->has_declared_len && r->declared_len > max + UPLOAD_MULTIPART_SLACK) {
      http_reject_err(r, Q_ETOOBIG, "document larger than %lld bytes",
                      (long long)r->cfg->max_upload_bytes);
      return;
    }
    u->pp = MHD_create_post_processor(r->conn, PP_BUFFER, part_cb, u);
    if (!u->pp)
      http_reject_err(r, Q_EINVAL,
                      "malformed multipart/form-data Content-Type (missing boundary?)");
    return;
  }
  /* A raw body has all its parameters in the query string: a bad
   * chunking choice is refused before the body is sent. */
  if (chunking_ready(u))
    return;
  /* Forwarded as declared: ingestion decides what the document is. */
  const char *ct = http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (copy_meta(r, "Content-Type", ct, strlen(ct), u->doc_type, Q_LIMIT_MEDIA_TYPE_BYTES))
    return;
  if (r->has_declared_len && r->declared_len > max) {
    http_reject_err(r, Q_ETOOBIG, "document larger than %lld bytes",
                    (long long)r->cfg->max_upload_bytes);
    return;
  }
}

static void upload_data(gw_req_t *r, const char *p, size_t n) {
  upload_t *u = r->stream;
  if (!u->multipart) {
    file_data(u, p, n);
    return;
  }
  if (r->body_bytes > (uint64_t)r->cfg->max_upload_bytes + UPLOAD_MULTIPART_SLACK) {
    http_reject_err(r, Q_ETOOBIG, "document larger than %lld bytes",
                    (long long)r->cfg->max_upload_bytes);
    return;
  }
  if (MHD_post_process(u->pp, p, n) != MHD_YES)
    http_reject_err(r, Q_EINVAL, "malformed multipart/form-data body");
}

void upload_check_body(gw_req_t *r) {
  upload_t *u = r->stream;
  if (!r->pending && u->multipart) {
    enum MHD_Result ok = MHD_destroy_post_processor(u->pp);
    u->pp = NULL;
    if (ok != MHD_YES)
      http_reject_err(r, Q_EINVAL, "malformed multipart/form-data body (truncated?)");
    if (!r->pending && u->in_part)
      end_part(u);
    if (!r->pending && !u->file_seen)
      http_reject_err(r, Q_EINVAL, "multipart body has no \"file\" part");
  }
  if (!r->pending && u->doc_bytes == 0)
    http_reject_err(r, Q_EINVAL, "document is empty");
}

static void upload_end(gw_req_t *r) {
  upload_t *u = r->stream;
  upload_check_body(r);
  if (!r->pending && !u->call) {
    start_call(u);
    if (!r->pending) {
      send_data(u, u->held.data, u->held.len);
      q_buf_cleanup(&u->held);
    }
  }
  if (r->pending) {
    abort_call(u);
    http_reply_pending(r);
    return;
  }

  /* Half-close, then read the reply; when a send failed (ingestion ended
   * the call early) there is no reply and the status says why. */
  Quarry__V1__UploadResponse *resp = NULL;
  if (!u->send_failed)
    q_rpc_ingestion_upload_close_send(u->call);
  int rc = q_rpc_ingestion_upload_recv(u->call, r->arena, &resp);
  char err[512] = "";
  int frc = q_rpc_ingestion_upload_finish(u->call, err, sizeof err);
  u->call = NULL;
  if (frc) {
    http_reply_downstream(r, "ingestion", frc, err);
    return;
  }
  if (rc || !resp || !resp->document_id || !resp->document_id[0]) {
    http_reply_downstream(r, "ingestion", Q_EINTERNAL, "Upload gave no document id");
    return;
  }
  q_log_info("document uploaded", "{s:s,s:s,s:I,s:i,s:b,s:b}", "document_id",
             resp->document_id, "job_id", resp->job_id ? resp->job_id : "", "bytes",
             (json_int_t)u->doc_bytes, "version", (int)resp->version, "unchanged",
             resp->unchanged ? 1 : 0, "replayed", resp->replayed ? 1 : 0);
  /* A replay answers exactly what the first attempt answered; the header
   * alone tells the client that nothing new was stored. */
  if (resp->replayed)
    http_add_header(r, UPLOAD_REPLAYED_HEADER, "true");
  json_t *body =
      json_pack("{s:o,s:o,s:i,s:b,s:s}", "document_id",
                http_json_text(resp->document_id, strlen(resp->document_id)), "job_id",
                http_json_text(resp->job_id ? resp->job_id : "",
                               resp->job_id ? strlen(resp->job_id) : 0),
                "version", (int)resp->version, "unchanged", resp->unchanged ? 1 : 0,
                "status", resp->unchanged ? "unchanged" : "queued");
  if (!body)
    http_reply_error(r, Q_ENOMEM, "out of memory");
  else
    http_reply_json(r, 202, body);
}

static void upload_cleanup(gw_req_t *r) {
  upload_t *u = r->stream;
  if (!u)
    return;
  if (u->pp)
    MHD_destroy_post_processor(u->pp);
  u->pp = NULL;
  if (u->call) {
    /* The client went away mid-upload. */
    q_log_warn("upload abandoned by the client", "{s:I}", "bytes",
               (json_int_t)u->doc_bytes);
    abort_call(u);
  }
  q_buf_cleanup(&u->field);
  q_buf_cleanup(&u->held);
}

const stream_ops_t upload_ops = {
    .begin = upload_begin,
    .data = upload_data,
    .end = upload_end,
    .cleanup = upload_cleanup,
};
