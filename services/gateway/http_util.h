/* http_util.h - replies of the REST API: JSON bodies, the error envelope
 * {"error":{"code","message"}}, request ids and W3C traceparent headers,
 * and the JSON request-body helpers every handler uses.
 *
 * Every reply function queues exactly one response on r's connection and
 * records its status; calling a second one for the same request does
 * nothing. They run on the request's worker thread. */
#ifndef QUARRY_GW_HTTP_UTIL_H
#define QUARRY_GW_HTTP_UTIL_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway.h"
#include "quarry/error.h"

/* Serialises reply flags: compact, keys in insertion order, floats with
 * enough digits to round-trip a protobuf float. */
#define GW_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

/* Sets r's request id (the client's X-Request-Id when q_trace_id_valid
 * accepts it, else a new UUID) and trace id (from a valid client
 * traceparent, else new), plus a fresh span id for this hop. */
void http_init_ids(gw_req_t *r);

/* Value of request header name (case-insensitive), or NULL. */
const char *http_header(const gw_req_t *r, const char *name);

/* Value of query-string argument name, or NULL. */
const char *http_query_arg(const gw_req_t *r, const char *name);

/* Adds a header to the reply about to be sent (name and value must outlive
 * the request: literals or arena strings). At most four. */
void http_add_header(gw_req_t *r, const char *name, const char *value);

/* Whether a Content-Type value names JSON: "application/json", optionally
 * with the one parameter charset=utf-8 (case-insensitive, the value may be
 * quoted). NULL is not JSON. */
bool http_json_media(const char *ctype);

/* Replies with body serialised (takes the reference; NULL sends {}). */
void http_reply_json(gw_req_t *r, unsigned status, json_t *body);

/* Replies with data[0..len) of content type ctype; takes ownership of data
 * (malloc'd), which is freed even when queuing fails. */
void http_reply_raw(gw_req_t *r, unsigned status, const char *ctype, char *data,
                    size_t len);

/* Replies with resp (consumed), which the caller built and gave headers of
 * its own (static.c: ETag, Content-Security-Policy): adds those every reply
 * carries, with cache_control in place of "no-store" and no Content-Type
 * when ctype is NULL (a 304). */
void http_reply_response(gw_req_t *r, unsigned status, const char *ctype,
                         const char *cache_control, struct MHD_Response *resp);

/* Replies with a body of unknown length (chunked) produced by read, which
 * libmicrohttpd calls on r's thread as it can send more
 * (MHD_ContentReaderCallback: a byte count, 0 for "nothing now" - the
 * reader must then suspend the connection, or libmicrohttpd 0.9.75 polls
 * it in a busy loop - or MHD_CONTENT_READER_END_OF_STREAM /
 * _END_WITH_ERROR). done(cls) runs when the reply is released, also when
 * it could not be created or queued. */
void http_reply_stream(gw_req_t *r, unsigned status, const char *ctype,
                       MHD_ContentReaderCallback read, void *cls,
                       MHD_ContentReaderFreeCallback done);

/* Replies {"error":{"code":slug,"message":...}} with the given status. */
void http_reply_status(gw_req_t *r, unsigned status, const char *slug, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

/* The same with status and slug from q_err_to_http / q_err_slug. */
void http_reply_error(gw_req_t *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same naming the request field at fault: OpenAI's error object
 * carries it as "param" (other routes leave it out). */
void http_reply_param_error(gw_req_t *r, int err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Whether route template label is one of the OpenAI-compatible routes,
 * whose errors are OpenAI's {"error":{"message","type","param","code"}}
 * (sink_openai_error_json) instead of {"error":{"code","message"}}. */
bool http_openai_route(const char *label);

/* Replies for a failed downstream call to service ("retriever"): the
 * status follows err, the message names the service and what went wrong
 * ("retriever unavailable: <detail>"). */
void http_reply_downstream(gw_req_t *r, const char *service, int err, const char *detail);

/* Writes the downstream failure message used above into out. */
void http_downstream_msg(char *out, size_t outlen, const char *service, int err,
                         const char *detail);

/* Records a rejection to send once the request body has been read (see
 * gateway.h); the first rejection wins. */
void http_reject(gw_req_t *r, unsigned status, const char *slug, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void http_reject_err(gw_req_t *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends the pending rejection. */
void http_reply_pending(gw_req_t *r);

/* Parses r's body as one JSON object (duplicate keys rejected). On
 * failure replies 400 naming line, column and problem, and returns
 * Q_EINVAL. The caller json_decref()s *out. */
q_err_t http_parse_json_object(gw_req_t *r, json_t **out);

/* Replies 400 and returns Q_EINVAL when obj has a key not in allowed
 * (NULL-terminated). */
q_err_t http_json_only_keys(gw_req_t *r, json_t *obj, const char *const *allowed);

/* A JSON string of s[0..n) with every byte sequence that is not valid
 * UTF-8 replaced by U+FFFD, so text from elsewhere (documents, model
 * output, error details) can never make a reply fail to serialise. NULL
 * only when out of memory. */
json_t *http_json_text(const char *s, size_t n);

/* Reads string field key of obj into *out (owned by obj): a missing or null
 * field gives *out = NULL (an error when required); otherwise it must be a
 * string of minlen..maxlen bytes. Replies 400 and returns Q_EINVAL on a
 * violation. */
q_err_t http_json_string(gw_req_t *r, json_t *obj, const char *key, int required,
                         size_t minlen, size_t maxlen, const char **out);

/* Reads integer field key of obj (default def when absent or null) into
 * *out, which must lie in lo..hi. Replies 400 on a violation. */
q_err_t http_json_int(gw_req_t *r, json_t *obj, const char *key, int required,
                      json_int_t def, json_int_t lo, json_int_t hi, json_int_t *out);

#endif
