/* events.h - the Feedback service: validates Submit and RecordQuery
 * requests, turns them into JSON events (key = query_id) and hands them to
 * the producer. Validation and serialisation are separate functions so
 * they can be tested without a server or a broker. */
#ifndef QUARRY_FEEDBACK_EVENTS_H
#define QUARRY_FEEDBACK_EVENTS_H

#include "producer.h"

#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/v1/feedback.pb-c.h"

#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

typedef struct events {
  producer_t *producer;
  const char *feedback_topic; /* quarry.feedback */
  const char *queries_topic;  /* quarry.queries */
} events_t;

/* 0 when the request is acceptable, else Q_EINVAL with a message naming
 * the offending field in err. */
q_err_t events_check_feedback(const Quarry__V1__FeedbackRequest *r, char *err,
                              size_t errlen);
q_err_t events_check_query(const Quarry__V1__QueryEvent *r, char *err, size_t errlen);

/* The event as compact JSON (malloc()ed, caller frees), or NULL when out of
 * memory. Call only on requests that passed the check. event_id names the
 * event (the feedback id for feedback); ts_ms is the time it was accepted. */
char *events_feedback_json(const Quarry__V1__FeedbackRequest *r, const char *event_id,
                           int64_t ts_ms);
char *events_query_json(const Quarry__V1__QueryEvent *r, const char *event_id,
                        int64_t ts_ms);

/* gRPC handlers for quarry.v1.Feedback; ud is the events_t. */
q_err_t events_submit_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud);
q_err_t events_record_query_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                               ProtobufCMessage **out, void *ud);

#endif
