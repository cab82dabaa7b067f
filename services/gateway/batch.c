/* batch.c - POST /v1/documents/batch (see batch.h): NDJSON lines or
 * multipart files collected, checked one by one, then sent to ingestion's
 * UploadBatch in one call. */
#include "batch.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "handlers.h"
#include "http_util.h"
#include "quarry/buf.h"
#include "quarry/filter.h"
#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/stubs.h"
#include "quarry/validate.h"
#include "quarry/v1/ingestion.pb-c.h"
#include "upload.h"

#define PP_BUFFER (64 << 10)
#define TEXT_TYPE "text/plain; charset=utf-8"
/* The batch's own arena: every document's bytes, the messages, the reply. */
#define BATCH_ARENA_MAX ((size_t)Q_LIMIT_BATCH_BYTES * 2 + (16u << 20))

/* ---- one NDJSON line ------------------------------------------------------ */

static const char *const line_keys[] = {"external_id",   "title",    "text",
                                        "metadata",      "chunking", "chunk_tokens",
                                        "chunk_overlap", NULL};

/* "chunking" (a string), "chunk_tokens" and "chunk_overlap" (whole
 * numbers) of a line into out->chunking, checked as an upload's. */
static q_err_t chunking_members(json_t *o, batch_doc_t *out, char *err, size_t errlen) {
  q_chunking_t c = Q_CHUNKING_DEFAULT;
  static const char *const keys[] = {"chunking", "chunk_tokens", "chunk_overlap"};
  for (int i = 0; i < 3; i++) {
    json_t *v = json_object_get(o, keys[i]);
    if (!v || json_is_null(v))
      continue;
    char num[24];
    const char *s;
    size_t n;
    if (i == 0) {
      if (!json_is_string(v)) {
        snprintf(err, errlen, "\"chunking\" must be a string");
        return Q_EINVAL;
      }
      s = json_string_value(v);
      n = json_string_length(v);
    } else {
      if (!json_is_integer(v) || json_integer_value(v) < 0 ||
          json_integer_value(v) > Q_LIMIT_CHUNK_TOKENS_MAX) {
        snprintf(err, errlen, "\"%s\" must be a whole number 0..%d", keys[i],
                 Q_LIMIT_CHUNK_TOKENS_MAX);
        return Q_EINVAL;
      }
      n = (size_t)snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
      s = num;
    }
    q_err_t rc = upload_chunking_param(&c, keys[i], s, n, err, errlen);
    if (rc)
      return rc;
  }
  return upload_chunking_spec(&c, out->chunking, sizeof out->chunking, err, errlen);
}

/* A string member (NULL when absent) that must be UTF-8 without control
 * characters and at most max bytes (ingestion's rule). */
static q_err_t text_member(json_t *o, const char *key, size_t max, q_arena_t *a,
                           const char **out, char *err, size_t errlen) {
  json_t *v = json_object_get(o, key);
  *out = "";
  if (!v || json_is_null(v))
    return Q_OK;
  if (!json_is_string(v)) {
    snprintf(err, errlen, "\"%s\" must be a string", key);
    return Q_EINVAL;
  }
  size_t n = json_string_length(v);
  if (n > max) {
    snprintf(err, errlen, "\"%s\" is longer than %zu bytes", key, max);
    return Q_EINVAL;
  }
  char *s = q_arena_strndup(a, json_string_value(v), n);
  if (!s)
    return Q_ENOMEM;
  if (strlen(s) != n || !q_valid_text(s, max)) {
    snprintf(err, errlen, "\"%s\" contains control characters", key);
    return Q_EINVAL;
  }
  *out = s;
  return Q_OK;
}

q_err_t batch_parse_line(const char *line, size_t len, int64_t max_doc_bytes,
                         q_arena_t *a, batch_doc_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (len > Q_LIMIT_BATCH_LINE_BYTES) {
    snprintf(err, errlen, "longer than %d bytes", Q_LIMIT_BATCH_LINE_BYTES);
    return Q_ETOOBIG;
  }
  if (!q_valid_utf8(line, len)) {
    snprintf(err, errlen, "not valid UTF-8");
    return Q_EINVAL;
  }
  json_error_t je;
  json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
  q_err_t rc = Q_OK;
  if (!o) {
    snprintf(err, errlen, "not valid JSON: %s (column %d)", je.text, je.column);
    return Q_EINVAL;
  }
  if (!json_is_object(o)) {
    snprintf(err, errlen, "not a JSON object");
    rc = Q_EINVAL;
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    size_t i = 0;
    while (line_keys[i] && strcmp(line_keys[i], key) != 0)
      i++;
    if (!line_keys[i]) {
      snprintf(err, errlen,
               "unknown key \"%.64s\": expected external_id, title, text, metadata, "
               "chunking, chunk_tokens, chunk_overlap",
               key);
      rc = Q_EINVAL;
      goto done;
    }
  }
  if ((rc = text_member(o, "external_id", Q_LIMIT_EXTERNAL_ID_BYTES, a, &out->external_id,
                        err, errlen)) ||
      (rc = text_member(o, "title", Q_LIMIT_TITLE_BYTES, a, &out->title, err, errlen)) ||
      (rc = chunking_members(o, out, err, errlen)))
    goto done;
  json_t *t = json_object_get(o, "text");
  if (!t || !json_is_string(t) || json_string_length(t) == 0) {
    snprintf(err, errlen, "\"text\" is required: the document as a non-empty string");
    rc = Q_EINVAL;
    goto done;
  }
  out->text_len = json_string_length(t);
  if ((int64_t)out->text_len > max_doc_bytes) {
    snprintf(err, errlen, "\"text\" is larger than %lld bytes", (long long)max_doc_bytes);
    rc = Q_ETOOBIG;
    goto done;
  }
  /* "\u0000" is refused by the parser (no JSON_ALLOW_NUL), so the text
   * holds no NUL; other control characters are the document's business. */
  if (!(out->text = q_arena_strndup(a, json_string_value(t), out->text_len))) {
    rc = Q_ENOMEM;
    goto done;
  }
  out->metadata = "";
  json_t *m = json_object_get(o, "metadata");
  if (m && !json_is_null(m)) {
    if (!json_is_object(m)) {
      snprintf(err, errlen, "\"metadata\" must be a JSON object");
      rc = Q_EINVAL;
      goto done;
    }
    char *s = json_dumps(m, JSON_COMPACT);
    if (!s) {
      rc = Q_ENOMEM;
      goto done;
    }
    size_t n = strlen(s);
    if (n > Q_LIMIT_METADATA_BYTES) {
      snprintf(err, errlen, "\"metadata\" is larger than %d bytes as compact JSON",
               Q_LIMIT_METADATA_BYTES);
      rc = Q_ETOOBIG;
    } else if (q_meta_check(m, err, errlen)) {
      rc = Q_EINVAL; /* the rule a single upload's metadata follows */
    } else if (!(out->metadata = q_arena_strndup(a, s, n))) {
      rc = Q_ENOMEM;
    }
    free(s);
  }
done:
  json_decref(o);
  return rc;
}

/* ---- the request ---------------------------------------------------------- */

typedef struct item {
  int where;  /* line or part number, from 1 */
  q_err_t rc; /* the gateway's verdict: 0, or why the document is refused */
  const char *msg;
  const char *filename;             /* multipart */
  Quarry__V1__UploadBatchItem *doc; /* set when rc == 0 */
} item_t;

typedef struct batch {
  gw_req_t *r;
  q_arena_t *a;
  int multipart;
  struct MHD_PostProcessor *pp;
  char idem[Q_LIMIT_BATCH_IDEMPOTENCY_KEY_BYTES + 1];

  item_t *items; /* Q_LIMIT_BATCH_DOCUMENTS of them */
  size_t n;

  /* NDJSON */
  q_buf_t line;
  int line_no;
  int line_long; /* the current line passed its limit: skipped to its end */

  /* multipart: the part being read */
  int in_part, part_no, part_big;
  char part_key[64];
  char part_raw_name[Q_LIMIT_FILENAME_BYTES + 2]; /* as sent, to tell parts apart */
  uint64_t part_bytes;
  q_buf_t part;
  char filename[Q_LIMIT_FILENAME_BYTES + 1];
  char ctype[Q_LIMIT_MEDIA_TYPE_BYTES + 1];
  const char *part_err;
} batch_t;

/* Takes the next document slot, or refuses the batch (too many). */
static item_t *next_item(batch_t *b, int where) {
  if (b->n >= Q_LIMIT_BATCH_DOCUMENTS) {
    http_reject_err(b->r, Q_ETOOBIG, "more than %d documents in one batch",
                    Q_LIMIT_BATCH_DOCUMENTS);
    return NULL;
  }
  item_t *it = &b->items[b->n++];
  memset(it, 0, sizeof *it);
  it->where = where;
  return it;
}

static void item_fail(batch_t *b, item_t *it, q_err_t rc, const char *fmt,
                      const char *why) {
  it->rc = rc;
  it->msg = q_arena_printf(b->a, fmt, it->where, why);
  if (!it->msg)
    http_reject_err(b->r, Q_ENOMEM, "out of memory");
}

static Quarry__V1__UploadBatchItem *new_doc(batch_t *b) {
  Quarry__V1__UploadBatchItem *d = q_arena_alloc(b->a, sizeof *d);
  Quarry__V1__UploadHeader *h = q_arena_alloc(b->a, sizeof *h);
  if (!d || !h) {
    http_reject_err(b->r, Q_ENOMEM, "out of memory");
    return NULL;
  }
  quarry__v1__upload_batch_item__init(d);
  quarry__v1__upload_header__init(h);
  d->header = h;
  return d;
}

static bool blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
      return false;
  return true;
}

static void end_line(batch_t *b) {
  gw_req_t *r = b->r;
  b->line_no++;
  int long_line = b->line_long;
  b->line_long = 0;
  if (!long_line && blank(b->line.data ? b->line.data : "", b->line.len)) {
    q_buf_reset(&b->line);
    return;
  }
  item_t *it = next_item(b, b->line_no);
  if (!it)
    return;
  if (long_line) {
    char why[64];
    snprintf(why, sizeof why, "longer than %d bytes", Q_LIMIT_BATCH_LINE_BYTES);
    item_fail(b, it, Q_ETOOBIG, "line %d: %s", why);
    q_buf_reset(&b->line);
    return;
  }
  batch_doc_t d;
  char err[256];
  q_err_t rc = batch_parse_line(b->line.data, b->line.len, r->cfg->max_upload_bytes, b->a,
                                &d, err, sizeof err);
  q_buf_reset(&b->line);
  if (rc == Q_ENOMEM) {
    http_reject_err(r, Q_ENOMEM, "out of memory");
    return;
  }
  if (rc) {
    item_fail(b, it, rc, "line %d: %s", err);
    return;
  }
  if (!(it->doc = new_doc(b)))
    return;
  it->doc->header->content_type = (char *)TEXT_TYPE;
  it->doc->header->title = (char *)d.title;
  it->doc->header->external_id = (char *)d.external_id;
  it->doc->data.data = (uint8_t *)d.text;
  it->doc->data.len = d.text_len;
  it->doc->metadata_json = (char *)d.metadata;
  if (!(it->doc->header->chunking = q_arena_strdup(b->a, d.chunking)))
    http_reject_err(r, Q_ENOMEM, "out of memory");
}

static void ndjson_data(batch_t *b, const char *p, size_t n) {
  while (n > 0 && !b->r->pending) {
    const char *nl = memchr(p, '\n', n);
    size_t k = nl ? (size_t)(nl - p) : n;
    if (!b->line_long && q_buf_append(&b->line, p, k) != 0) {
      b->line_long = 1; /* over Q_LIMIT_BATCH_LINE_BYTES (+1 for a "\r") */
      q_buf_reset(&b->line);
    }
    if (!nl)
      return;
    end_line(b);
    p += k + 1;
    n -= k + 1;
  }
}

/* ---- multipart ------------------------------------------------------------ */

static void end_part(batch_t *b) {
  b->in_part = 0;
  item_t *it = next_item(b, b->part_no);
  if (!it)
    return;
  it->filename = q_arena_strdup(b->a, b->filename);
  if (b->part_err) {
    item_fail(b, it, Q_EINVAL, "part %d: %s", b->part_err);
  } else if (b->part_big) {
    char why[96];
    snprintf(why, sizeof why, "document larger than %lld bytes",
             (long long)b->r->cfg->max_upload_bytes);
    item_fail(b, it, Q_ETOOBIG, "part %d: %s", why);
  } else if (b->part.len == 0) {
    item_fail(b, it, Q_EINVAL, "part %d: %s", "document is empty");
  } else if ((it->doc = new_doc(b))) {
    char *data = q_arena_alloc(b->a, b->part.len);
    char *fname = q_arena_strdup(b->a, b->filename);
    char *ctype = q_arena_strdup(b->a, b->ctype);
    if (!data || !fname || !ctype) {
      http_reject_err(b->r, Q_ENOMEM, "out of memory");
      return;
    }
    memcpy(data, b->part.data, b->part.len);
    it->doc->header->filename = fname;
    it->doc->header->content_type = ctype;
    it->doc->data.data = (uint8_t *)data;
    it->doc->data.len = b->part.len;
  }
  q_buf_reset(&b->part);
}

static void start_part(batch_t *b, const char *key, const char *filename,
                       const char *content_type, const char *encoding) {
  gw_req_t *r = b->r;
  if (!key || strcmp(key, "file") != 0) {
    http_reject_err(
        r, Q_EINVAL,
        "unknown multipart field \"%.32s\": a batch takes \"file\" parts only",
        key ? key : "");
    return;
  }
  b->in_part = 1;
  b->part_no++;
  b->part_bytes = 0;
  b->part_big = 0;
  b->part_err = NULL;
  b->filename[0] = b->ctype[0] = '\0';
  snprintf(b->part_key, sizeof b->part_key, "%s", key);
  snprintf(b->part_raw_name, sizeof b->part_raw_name, "%s", filename ? filename : "");
  if (encoding && *encoding && strcasecmp(encoding, "binary") != 0 &&
      strcasecmp(encoding, "8bit") != 0 && strcasecmp(encoding, "7bit") != 0)
    b->part_err = "Content-Transfer-Encoding is not supported";
  else if (filename && *filename &&
           upload_clean_filename(filename, b->filename, sizeof b->filename))
    b->part_err = "file name is empty, too long, not UTF-8 or has control characters";
  else if (content_type && (strlen(content_type) > Q_LIMIT_MEDIA_TYPE_BYTES ||
                            !q_valid_text(content_type, Q_LIMIT_MEDIA_TYPE_BYTES)))
    b->part_err = "the part's Content-Type is too long or has control characters";
  else if (content_type)
    snprintf(b->ctype, sizeof b->ctype, "%s", content_type);
}

static enum MHD_Result part_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *encoding, const char *data, uint64_t off,
                               size_t size) {
  batch_t *b = cls;
  gw_req_t *r = b->r;
  if (r->pending)
    return MHD_NO;
  /* An empty first piece announces a part; the piece after it with the same
   * key and file name is that part's data, not a new part. Every part here
   * is "file", so the file name tells an empty part from the next one. */
  int same =
      b->in_part && key && strcmp(key, b->part_key) == 0 && b->part_bytes == 0 &&
      strncmp(filename ? filename : "", b->part_raw_name, sizeof b->part_raw_name) == 0;
  if (off == 0 && !same) {
    if (b->in_part)
      end_part(b);
    if (!r->pending)
      start_part(b, key, filename, content_type, encoding);
    if (r->pending)
      return MHD_NO;
  }
  if (size == 0)
    return MHD_YES;
  b->part_bytes += size;
  if (b->part_big || b->part_err)
    return MHD_YES;
  if (b->part_bytes > (uint64_t)r->cfg->max_upload_bytes) {
    b->part_big = 1;
    q_buf_reset(&b->part);
    return MHD_YES;
  }
  if (q_buf_append(&b->part, data, size) != 0)
    http_reject_err(r, Q_ENOMEM, "out of memory");
  return r->pending ? MHD_NO : MHD_YES;
}

/* ---- stream callbacks ----------------------------------------------------- */

static void batch_begin(gw_req_t *r) {
  batch_t *b = q_arena_alloc(r->arena, sizeof *b);
  if (!b) {
    http_reject_err(r, Q_ENOMEM, "out of memory");
    return;
  }
  memset(b, 0, sizeof *b);
  r->stream = b;
  b->r = r;
  q_buf_init(&b->line, Q_LIMIT_BATCH_LINE_BYTES + 1);
  q_buf_init(&b->part, (size_t)r->cfg->max_upload_bytes);
  b->a = q_arena_new(BATCH_ARENA_MAX);
  b->items =
      b->a ? q_arena_alloc(b->a, Q_LIMIT_BATCH_DOCUMENTS * sizeof *b->items) : NULL;
  if (!b->items) {
    http_reject_err(r, Q_ENOMEM, "out of memory");
    return;
  }
  const char *key = http_header(r, UPLOAD_IDEMPOTENCY_HEADER);
  if (key) {
    if (strlen(key) > Q_LIMIT_BATCH_IDEMPOTENCY_KEY_BYTES ||
        !q_valid_idempotency_key(key)) {
      http_reject_err(r, Q_EINVAL,
                      "%s of a batch must be 1 to %d characters of printable ASCII",
                      UPLOAD_IDEMPOTENCY_HEADER, Q_LIMIT_BATCH_IDEMPOTENCY_KEY_BYTES);
      return;
    }
    snprintf(b->idem, sizeof b->idem, "%s", key);
  }
  if (r->has_declared_len && r->declared_len > Q_LIMIT_BATCH_BYTES) {
    http_reject_err(r, Q_ETOOBIG, "batch larger than %d bytes", Q_LIMIT_BATCH_BYTES);
    return;
  }
  char media[Q_LIMIT_MEDIA_TYPE_BYTES + 1];
  const char *ct = http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (upload_media_type(ct, media, sizeof media) == 0 &&
      strcmp(media, "application/x-ndjson") == 0)
    return;
  if (upload_media_type(ct, media, sizeof media) == 0 &&
      strcmp(media, "multipart/form-data") == 0) {
    b->multipart = 1;
    b->pp = MHD_create_post_processor(r->conn, PP_BUFFER, part_cb, b);
    if (!b->pp)
      http_reject_err(r, Q_EINVAL,
                      "malformed multipart/form-data Content-Type (missing boundary?)");
    return;
  }
  http_reject_err(r, Q_EUNSUPPORTED,
                  "a batch is application/x-ndjson (one JSON document per line) or "
                  "multipart/form-data (one \"file\" part per document)");
}

static void batch_data(gw_req_t *r, const char *p, size_t n) {
  batch_t *b = r->stream;
  if (r->body_bytes > Q_LIMIT_BATCH_BYTES) {
    http_reject_err(r, Q_ETOOBIG, "batch larger than %d bytes", Q_LIMIT_BATCH_BYTES);
    return;
  }
  if (!b->multipart) {
    ndjson_data(b, p, n);
    return;
  }
  if (MHD_post_process(b->pp, p, n) != MHD_YES && !r->pending)
    http_reject_err(r, Q_EINVAL, "malformed multipart/form-data body");
}

/* Closes the body: the last line or part, and the checks of the whole. */
static void finish_body(batch_t *b) {
  gw_req_t *r = b->r;
  if (!b->multipart) {
    if (b->line.len > 0 || b->line_long)
      end_line(b);
  } else {
    enum MHD_Result ok = MHD_destroy_post_processor(b->pp);
    b->pp = NULL;
    if (ok != MHD_YES && !r->pending)
      http_reject_err(r, Q_EINVAL, "malformed multipart/form-data body (truncated?)");
    if (!r->pending && b->in_part)
      end_part(b);
  }
  if (!r->pending && b->n == 0)
    http_reject_err(r, Q_EINVAL, "the batch holds no document");
}

static json_t *entry_json(const batch_t *b, size_t i, const item_t *it) {
  json_t *e = json_pack("{s:I,s:i}", "index", (json_int_t)i,
                        b->multipart ? "part" : "line", it->where);
  if (e && it->filename && it->filename[0])
    json_object_set_new(e, "filename",
                        http_json_text(it->filename, strlen(it->filename)));
  return e;
}

static void batch_end(gw_req_t *r) {
  batch_t *b = r->stream;
  finish_body(b);
  if (r->pending) {
    http_reply_pending(r);
    return;
  }
  Quarry__V1__UploadBatchRequest req = QUARRY__V1__UPLOAD_BATCH_REQUEST__INIT;
  Quarry__V1__UploadBatchItem **docs = q_arena_alloc(b->a, b->n * sizeof *docs);
  if (!docs) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return;
  }
  for (size_t i = 0; i < b->n; i++)
    if (!b->items[i].rc)
      docs[req.n_items++] = b->items[i].doc;
  req.tenant_id = (char *)r->principal.tenant_id;
  req.idempotency_key = b->idem;
  req.items = docs;
  Quarry__V1__UploadBatchResponse *resp = NULL;
  if (req.n_items > 0) {
    q_grpc_call_opts_t opts = {.timeout_ms = (int)r->cfg->upload_timeout_ms};
    char err[512] = "";
    q_err_t rc = q_rpc_ingestion_upload_batch(q_grpc_channel(r->cfg->ingestion_addr),
                                              &req, &resp, b->a, &opts, err, sizeof err);
    if (rc) {
      http_reply_downstream(r, "ingestion", rc, err);
      return;
    }
    if (!resp || resp->n_results != req.n_items) {
      http_reply_downstream(r, "ingestion", Q_EINTERNAL,
                            "UploadBatch answered a different number of documents");
      return;
    }
  }
  json_t *list = json_array();
  int accepted = 0, failed = 0;
  size_t k = 0;
  for (size_t i = 0; i < b->n && list; i++) {
    const item_t *it = &b->items[i];
    json_t *e = entry_json(b, i, it);
    if (!e)
      break;
    const char *code = NULL, *msg = NULL;
    char buf[900];
    if (it->rc) {
      code = q_err_slug(it->rc);
      msg = it->msg;
    } else {
      const Quarry__V1__UploadBatchResult *res = resp->results[k++];
      if (res->error_code && res->error_code[0]) {
        code = res->error_code;
        snprintf(buf, sizeof buf, "%s %d: %s", b->multipart ? "part" : "line", it->where,
                 res->error ? res->error : "");
        msg = buf;
      } else if (res->result) {
        const Quarry__V1__UploadResponse *u = res->result;
        json_object_set_new(e, "document_id",
                            http_json_text(u->document_id, strlen(u->document_id)));
        json_object_set_new(e, "job_id", http_json_text(u->job_id, strlen(u->job_id)));
        json_object_set_new(e, "version", json_integer(u->version));
        json_object_set_new(e, "status",
                            json_string(u->unchanged ? "unchanged" : "queued"));
        json_object_set_new(e, "replayed", json_boolean(u->replayed));
        accepted++;
      } else {
        code = q_err_slug(Q_EINTERNAL);
        msg = "ingestion gave no result";
      }
    }
    if (code) {
      failed++;
      json_object_set_new(e, "error",
                          json_pack("{s:s,s:o}", "code", code, "message",
                                    http_json_text(msg, strlen(msg))));
    }
    json_array_append_new(list, e);
  }
  q_log_info("batch uploaded", "{s:s,s:i,s:i,s:b}", "form",
             b->multipart ? "multipart" : "ndjson", "accepted", accepted, "failed",
             failed, "keyed", b->idem[0] != 0);
  json_t *body = list ? json_pack("{s:i,s:i,s:o}", "accepted", accepted, "failed", failed,
                                  "documents", list)
                      : NULL;
  if (!body) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return;
  }
  if (accepted == 0) {
    json_object_set_new(
        body, "error",
        json_pack("{s:s,s:s}", "code", q_err_slug(Q_EINVAL), "message",
                  "no document of the batch was accepted; see documents"));
    http_reply_json(r, 400, body);
    return;
  }
  http_reply_json(r, 202, body);
}

static void batch_cleanup(gw_req_t *r) {
  batch_t *b = r->stream;
  if (!b)
    return;
  if (b->pp)
    MHD_destroy_post_processor(b->pp);
  b->pp = NULL;
  q_buf_cleanup(&b->line);
  q_buf_cleanup(&b->part);
  q_arena_free(b->a);
  b->a = NULL;
}

const stream_ops_t batch_ops = {
    .begin = batch_begin,
    .data = batch_data,
    .end = batch_end,
    .cleanup = batch_cleanup,
};
