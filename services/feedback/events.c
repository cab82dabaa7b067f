/* events.c - Submit and RecordQuery: validation, JSON events, publishing;
 * see events.h. */
#include "events.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/util.h"
#include "quarry/validate.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static q_err_t check_chunk_ids(char **ids, size_t n, char *err, size_t errlen) {
  if (n > Q_LIMIT_FEEDBACK_CHUNK_IDS) {
    snprintf(err, errlen, "chunk_ids: at most %d, got %zu", Q_LIMIT_FEEDBACK_CHUNK_IDS,
             n);
    return Q_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    char field[32];
    snprintf(field, sizeof field, "chunk_ids[%zu]", i);
    int rc = q_valid_field(field, ids[i], 1, Q_LIMIT_CHUNK_ID_BYTES, err, errlen);
    if (rc)
      return rc;
  }
  return 0;
}

q_err_t events_check_feedback(const Quarry__V1__FeedbackRequest *r, char *err,
                              size_t errlen) {
  int rc;
  if ((rc = q_valid_field("query_id", r->query_id, 1, Q_LIMIT_QUERY_ID_BYTES, err,
                          errlen)) ||
      (rc = q_valid_field("tenant_id", r->tenant_id, 1, Q_LIMIT_TENANT_ID_BYTES, err,
                          errlen)) ||
      (rc =
           q_valid_field("user_id", r->user_id, 0, Q_LIMIT_USER_ID_BYTES, err, errlen)) ||
      (rc = q_valid_field("comment", r->comment, 0, Q_LIMIT_COMMENT_BYTES, err, errlen)))
    return rc;
  if (r->rating != 1 && r->rating != -1) {
    snprintf(err, errlen, "rating: must be 1 (good) or -1 (bad), got %d", (int)r->rating);
    return Q_EINVAL;
  }
  return check_chunk_ids(r->chunk_ids, r->n_chunk_ids, err, errlen);
}

q_err_t events_check_query(const Quarry__V1__QueryEvent *r, char *err, size_t errlen) {
  int rc;
  if ((rc = q_valid_field("query_id", r->query_id, 1, Q_LIMIT_QUERY_ID_BYTES, err,
                          errlen)) ||
      (rc = q_valid_field("tenant_id", r->tenant_id, 1, Q_LIMIT_TENANT_ID_BYTES, err,
                          errlen)) ||
      (rc =
           q_valid_field("user_id", r->user_id, 0, Q_LIMIT_USER_ID_BYTES, err, errlen)) ||
      (rc = q_valid_field("query", r->query, 1, Q_LIMIT_QUERY_BYTES, err, errlen)) ||
      (rc = q_valid_field("answer", r->answer, 0, Q_LIMIT_EVENT_ANSWER_BYTES, err,
                          errlen)))
    return rc;
  if (r->latency_ms < 0) {
    snprintf(err, errlen, "latency_ms: must not be negative");
    return Q_EINVAL;
  }
  if (r->ts_unix_ms < 0) {
    snprintf(err, errlen, "ts_unix_ms: must not be negative");
    return Q_EINVAL;
  }
  return check_chunk_ids(r->chunk_ids, r->n_chunk_ids, err, errlen);
}

static json_t *string_array(char **v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

static char *dump(json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

char *events_feedback_json(const Quarry__V1__FeedbackRequest *r, const char *event_id,
                           int64_t ts_ms) {
  return dump(json_pack(
      "{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:o,s:I}", "event", "feedback", "event_id",
      event_id, "feedback_id", event_id, "query_id", r->query_id, "tenant_id",
      r->tenant_id, "user_id", r->user_id ? r->user_id : "", "rating", (int)r->rating,
      "comment", r->comment ? r->comment : "", "chunk_ids",
      string_array(r->chunk_ids, r->n_chunk_ids), "ts_unix_ms", (json_int_t)ts_ms));
}

char *events_query_json(const Quarry__V1__QueryEvent *r, const char *event_id,
                        int64_t ts_ms) {
  return dump(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:I}", "event", "query",
                        "event_id", event_id, "query_id", r->query_id, "tenant_id",
                        r->tenant_id, "user_id", r->user_id ? r->user_id : "", "query",
                        r->query, "answer", r->answer ? r->answer : "", "chunk_ids",
                        string_array(r->chunk_ids, r->n_chunk_ids), "latency_ms",
                        (json_int_t)r->latency_ms, "ts_unix_ms",
                        (json_int_t)(r->ts_unix_ms > 0 ? r->ts_unix_ms : ts_ms)));
}

/* Publishes one event; 0, or a q_err_t with the status message set. */
static q_err_t publish(q_grpc_ctx_t *ctx, events_t *ev, const char *topic,
                       const char *key, const char *event_id, char *json) {
  char err[512] = "";
  if (!json) {
    q_grpc_ctx_errorf(ctx, "out of memory");
    return Q_ENOMEM;
  }
  int rc = producer_send(ev->producer, topic, key, strlen(key), json, strlen(json), 0,
                         err, sizeof err);
  free(json);
  if (rc) {
    q_log_error("event not accepted", "{s:s,s:s,s:s}", "event_id", event_id, "topic",
                topic, "error", err);
    q_grpc_ctx_errorf(ctx, "the event could not be queued; try again later");
    return Q_EUNAVAIL;
  }
  return 0;
}

q_err_t events_submit_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  events_t *ev = ud;
  const Quarry__V1__FeedbackRequest *req = (const Quarry__V1__FeedbackRequest *)in;
  char err[256], id[37];
  int rc = events_check_feedback(req, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
  q_uuid4(id);
  rc = publish(ctx, ev, ev->feedback_topic, req->query_id, id,
               events_feedback_json(req, id, q_wall_ms()));
  if (rc)
    return rc;

  Quarry__V1__FeedbackResponse *resp = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *resp);
  char *fid = q_arena_strdup(q_grpc_ctx_arena(ctx), id);
  if (!resp || !fid) {
    q_grpc_ctx_errorf(ctx, "out of memory");
    return Q_ENOMEM;
  }
  quarry__v1__feedback_response__init(resp);
  resp->feedback_id = fid;
  resp->queued = 1; /* accepted; the broker has not confirmed it yet */
  *out = &resp->base;
  return 0;
}

q_err_t events_record_query_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                               ProtobufCMessage **out, void *ud) {
  events_t *ev = ud;
  const Quarry__V1__QueryEvent *req = (const Quarry__V1__QueryEvent *)in;
  char err[256], id[37];
  int rc = events_check_query(req, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
  q_uuid4(id);
  rc = publish(ctx, ev, ev->queries_topic, req->query_id, id,
               events_query_json(req, id, q_wall_ms()));
  if (rc)
    return rc;

  Quarry__V1__QueryEventResponse *resp =
      q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *resp);
  if (!resp) {
    q_grpc_ctx_errorf(ctx, "out of memory");
    return Q_ENOMEM;
  }
  quarry__v1__query_event_response__init(resp);
  resp->queued = 1;
  *out = &resp->base;
  return 0;
}
