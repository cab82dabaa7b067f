/* http_util.c - replies, the error envelope, request ids and traceparent,
 * and JSON request-body helpers (see http_util.h). */
#include "http_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/util.h"
#include "quarry/validate.h"

#include "downstream.h"
#include "sink.h"

#define STREAM_BLOCK (16u << 10) /* most bytes a streamed reply reads at once */

void http_init_ids(gw_req_t *r) {
  const char *rid = http_header(r, "X-Request-Id");
  if (rid && q_trace_id_valid(rid))
    snprintf(r->request_id, sizeof r->request_id, "%s", rid);
  else
    q_uuid4(r->request_id);

  const char *tp = http_header(r, "traceparent");
  char tid[Q_TRACE_ID_LEN + 1];
  if (tp && q_trace_parse_traceparent(tp, tid) == 0)
    memcpy(r->trace_id, tid, sizeof r->trace_id);
  else
    q_trace_new_id(r->trace_id);
  q_random_hex(r->span_id, 8);
}

const char *http_header(const gw_req_t *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query_arg(const gw_req_t *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

static const char *skip_ows(const char *p) {
  while (*p == ' ' || *p == '\t')
    p++;
  return p;
}

bool http_json_media(const char *ctype) {
  if (!ctype)
    return false;
  const char *p = skip_ows(ctype);
  if (strncasecmp(p, "application/json", 16) != 0)
    return false;
  p = skip_ows(p + 16);
  if (*p == '\0')
    return true;
  if (*p != ';')
    return false;
  /* The one parameter JSON allows (RFC 8259 defines no charset; UTF-8 is
   * the only encoding, so only that one is tolerated). */
  p = skip_ows(p + 1);
  if (strncasecmp(p, "charset=", 8) != 0)
    return false;
  p += 8;
  bool quoted = *p == '"';
  p += quoted;
  if (strncasecmp(p, "utf-8", 5) != 0)
    return false;
  p += 5;
  if (quoted && *p++ != '"')
    return false;
  return *skip_ows(p) == '\0';
}

void http_add_header(gw_req_t *r, const char *name, const char *value) {
  if (r->nhdr < (int)(sizeof r->hdr_name / sizeof r->hdr_name[0])) {
    r->hdr_name[r->nhdr] = name;
    r->hdr_value[r->nhdr] = value;
    r->nhdr++;
  }
}

/* Adds the headers every reply carries and queues resp (consumed). */
static void queue_reply_cc(gw_req_t *r, unsigned status, const char *ctype,
                           const char *cache_control, struct MHD_Response *resp) {
  char traceparent[64];
  snprintf(traceparent, sizeof traceparent, "00-%s-%s-01", r->trace_id, r->span_id);
  if (ctype)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  MHD_add_response_header(resp, "X-Request-Id", r->request_id);
  MHD_add_response_header(resp, "traceparent", traceparent);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
  for (int i = 0; i < r->nhdr; i++)
    MHD_add_response_header(resp, r->hdr_name[i], r->hdr_value[i]);
  r->queue_ok = MHD_queue_response(r->conn, status, resp) == MHD_YES;
  MHD_destroy_response(resp);
}

static void queue_reply(gw_req_t *r, unsigned status, const char *ctype,
                        struct MHD_Response *resp) {
  queue_reply_cc(r, status, ctype, "no-store", resp);
}

void http_reply_response(gw_req_t *r, unsigned status, const char *ctype,
                         const char *cache_control, struct MHD_Response *resp) {
  if (r->responded) {
    MHD_destroy_response(resp);
    return;
  }
  r->responded = 1;
  r->status = status;
  queue_reply_cc(r, status, ctype, cache_control, resp);
}

void http_reply_raw(gw_req_t *r, unsigned status, const char *ctype, char *data,
                    size_t len) {
  if (r->responded) {
    free(data);
    return;
  }
  r->responded = 1;
  r->status = status;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(data);
    q_log_error("cannot create HTTP response", NULL);
    return;
  }
  queue_reply(r, status, ctype, resp);
}

void http_reply_stream(gw_req_t *r, unsigned status, const char *ctype,
                       MHD_ContentReaderCallback read, void *cls,
                       MHD_ContentReaderFreeCallback done) {
  if (r->responded) {
    done(cls);
    return;
  }
  r->responded = 1;
  r->status = status;
  struct MHD_Response *resp =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, read, cls, done);
  if (!resp) {
    done(cls);
    q_log_error("cannot create HTTP response", NULL);
    return;
  }
  queue_reply(r, status, ctype, resp);
}

void http_reply_json(gw_req_t *r, unsigned status, json_t *body) {
  if (!body)
    body = json_object();
  char *s = body ? json_dumps(body, GW_JSON_FLAGS) : NULL;
  json_decref(body);
  if (!s) {
    /* Out of memory: still answer, with a body that needs no allocation. */
    static const char oom[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
    s = malloc(sizeof oom);
    if (!s) {
      r->responded = 1;
      r->status = 500;
      return;
    }
    memcpy(s, oom, sizeof oom);
    status = 500;
  }
  http_reply_raw(r, status, "application/json", s, strlen(s));
}

json_t *http_json_text(const char *s, size_t n) {
  if (q_valid_utf8(s, n))
    return json_stringn(s, n);
  /* Rare: rebuild with replacement characters (3 bytes each at most). */
  q_buf_t b;
  q_buf_init(&b, 3 * n + 1);
  for (size_t i = 0; i < n;) {
    size_t l = q_valid_utf8_seq(s + i, n - i);
    if (l) {
      q_buf_append(&b, s + i, l);
      i += l;
    } else {
      q_buf_append(&b, "\xEF\xBF\xBD", 3);
      i++;
    }
  }
  json_t *v = json_stringn(b.data ? b.data : "", b.len);
  q_buf_cleanup(&b);
  return v;
}

bool http_openai_route(const char *label) {
  return label &&
         (strcmp(label, "/v1/chat/completions") == 0 || strcmp(label, "/v1/models") == 0);
}

static void reply_vparam(gw_req_t *r, unsigned status, const char *slug,
                         const char *param, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  /* OpenAI clients parse OpenAI's error object, so its routes answer with
   * it, whichever layer refused the request (auth, limits, the handler). */
  json_t *body = http_openai_route(r->route_label)
                     ? sink_openai_error_json(status, slug, msg, param)
                     : json_pack("{s:{s:s,s:o}}", "error", "code", slug, "message",
                                 http_json_text(msg, strlen(msg)));
  if (status == 401)
    http_add_header(r, "WWW-Authenticate", "Bearer");
  http_reply_json(r, status, body);
}

static void reply_vstatus(gw_req_t *r, unsigned status, const char *slug, const char *fmt,
                          va_list ap) {
  reply_vparam(r, status, slug, NULL, fmt, ap);
}

void http_reply_param_error(gw_req_t *r, int err, const char *param, const char *fmt,
                            ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_vparam(r, (unsigned)q_err_to_http(err), q_err_slug(err), param, fmt, ap);
  va_end(ap);
}

void http_reply_status(gw_req_t *r, unsigned status, const char *slug, const char *fmt,
                       ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_vstatus(r, status, slug, fmt, ap);
  va_end(ap);
}

void http_reply_error(gw_req_t *r, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_vstatus(r, (unsigned)q_err_to_http(err), q_err_slug(err), fmt, ap);
  va_end(ap);
}

void http_downstream_msg(char *out, size_t outlen, const char *service, int err,
                         const char *detail) {
  downstream_msg(out, outlen, service, err, detail);
}

void http_reply_downstream(gw_req_t *r, const char *service, int err,
                           const char *detail) {
  char msg[768];
  http_downstream_msg(msg, sizeof msg, service, err, detail);
  http_reply_error(r, err, "%s", msg);
}

static void vreject(gw_req_t *r, unsigned status, const char *slug, const char *fmt,
                    va_list ap) {
  if (r->pending || r->responded)
    return;
  r->pending = 1;
  r->pending_status = status;
  r->pending_slug = slug;
  vsnprintf(r->pending_msg, sizeof r->pending_msg, fmt, ap);
}

void http_reject(gw_req_t *r, unsigned status, const char *slug, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreject(r, status, slug, fmt, ap);
  va_end(ap);
}

void http_reject_err(gw_req_t *r, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreject(r, (unsigned)q_err_to_http(err), q_err_slug(err), fmt, ap);
  va_end(ap);
}

void http_reply_pending(gw_req_t *r) {
  if (r->pending)
    http_reply_status(r, r->pending_status, r->pending_slug, "%s", r->pending_msg);
}

q_err_t http_parse_json_object(gw_req_t *r, json_t **out) {
  *out = NULL;
  if (r->body.len == 0) {
    http_reply_error(r, Q_EINVAL, "request body is empty: expected a JSON object");
    return Q_EINVAL;
  }
  json_error_t jerr;
  json_t *v = json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &jerr);
  if (!v) {
    http_reply_error(r, Q_EINVAL, "malformed JSON at line %d, column %d: %s", jerr.line,
                     jerr.column, jerr.text);
    return Q_EINVAL;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    http_reply_error(r, Q_EINVAL, "request body must be a JSON object");
    return Q_EINVAL;
  }
  *out = v;
  return 0;
}

q_err_t http_json_only_keys(gw_req_t *r, json_t *obj, const char *const *allowed) {
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    int known = 0;
    for (const char *const *a = allowed; *a; a++)
      if (strcmp(*a, key) == 0)
        known = 1;
    if (!known) {
      http_reply_error(r, Q_EINVAL, "unknown field \"%.64s\"", key);
      return Q_EINVAL;
    }
  }
  return 0;
}

q_err_t http_json_string(gw_req_t *r, json_t *obj, const char *key, int required,
                         size_t minlen, size_t maxlen, const char **out) {
  json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (!v || json_is_null(v)) {
    if (required) {
      http_reply_error(r, Q_EINVAL, "field \"%s\" is required", key);
      return Q_EINVAL;
    }
    return 0;
  }
  if (!json_is_string(v)) {
    http_reply_error(r, Q_EINVAL, "field \"%s\" must be a string", key);
    return Q_EINVAL;
  }
  size_t n = json_string_length(v);
  if (n < minlen || n > maxlen) {
    http_reply_error(r, Q_EINVAL, "field \"%s\" must be %zu to %zu bytes long (got %zu)",
                     key, minlen, maxlen, n);
    return Q_EINVAL;
  }
  *out = json_string_value(v);
  return 0;
}

q_err_t http_json_int(gw_req_t *r, json_t *obj, const char *key, int required,
                      json_int_t def, json_int_t lo, json_int_t hi, json_int_t *out) {
  json_t *v = json_object_get(obj, key);
  *out = def;
  if (!v || json_is_null(v)) {
    if (required) {
      http_reply_error(r, Q_EINVAL, "field \"%s\" is required", key);
      return Q_EINVAL;
    }
    return 0;
  }
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
    http_reply_error(r, Q_EINVAL, "field \"%s\" must be an integer from %lld to %lld",
                     key, (long long)lo, (long long)hi);
    return Q_EINVAL;
  }
  *out = json_integer_value(v);
  return 0;
}
