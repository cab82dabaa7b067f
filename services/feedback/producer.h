/* producer.h - a Kafka producer that loses nothing (librdkafka).
 *
 * Idempotent (enable.idempotence=true: acks=all, ordered retries without
 * duplicates), with a bounded delivery time (message.timeout.ms). Every
 * message ends in exactly one call to the sink: delivered, or failed — on a
 * delivery timeout, a broker error, a full local queue, or a purge at
 * shutdown. The sink is where failed messages are kept durably (outbox.c
 * stores them in PostgreSQL); being a callback, it can be replaced in tests.
 *
 * Delivery reports are served by a dedicated poll thread, so sink callbacks
 * run on that thread (or, for messages that could not even be queued, on
 * the thread that called producer_send). Outcomes are counted in
 * quarry_kafka_messages_total{topic,outcome} with outcome delivered|failed.
 * All functions are thread-safe. */
#ifndef QUARRY_FEEDBACK_PRODUCER_H
#define QUARRY_FEEDBACK_PRODUCER_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

typedef struct producer producer_t;

/* One message as the sink sees it; pointers are valid during the call only. */
typedef struct producer_msg {
  const char *topic;
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
  int64_t outbox_id; /* > 0: a re-send of that outbox row; 0: a new message */
} producer_msg_t;

typedef struct producer_sink {
  /* Delivery failed or the message could not be queued; reason says why.
   * Returns 0 when the message was stored durably. */
  int (*failed)(void *ud, const producer_msg_t *m, const char *reason);
  /* The broker confirmed the message. May be NULL. */
  void (*delivered)(void *ud, const producer_msg_t *m);
  void *ud;
} producer_sink_t;

typedef struct producer_opts {
  const char *brokers;      /* bootstrap.servers */
  int timeout_ms;           /* message.timeout.ms */
  int queue_full_wait_ms;   /* how long producer_send waits for room (0: 1000) */
  const char *const *extra; /* NULL-terminated name, value pairs of further
                               librdkafka properties (tests), or NULL */
  producer_sink_t sink;
} producer_opts_t;

/* Creates the producer and starts its poll thread. Connecting happens in the
 * background: a broker that is down is not an error here. NULL with the
 * reason in err on a bad configuration. */
producer_t *producer_new(const producer_opts_t *o, char *err, size_t errlen);

/* Queues one message (copied). When it cannot be queued (local queue still
 * full after queue_full_wait_ms, producer failed), it goes to the sink's
 * failed callback at once. Returns 0 when the message was queued or stored
 * by the sink; Q_EUNAVAIL (reason in err) when it is neither. */
q_err_t producer_send(producer_t *p, const char *topic, const char *key, size_t key_len,
                      const char *value, size_t value_len, int64_t outbox_id, char *err,
                      size_t errlen);

/* 0 when a broker answers a metadata request within timeout_ms, else
 * Q_EUNAVAIL with the reason in why. */
q_err_t producer_ready(producer_t *p, int timeout_ms, char *why, size_t whylen);

/* Messages delivered / failed since start (for tests and logs). */
void producer_stats(producer_t *p, uint64_t *delivered, uint64_t *failed);

/* Stops the poll thread, waits up to flush_ms for outstanding messages,
 * hands whatever is still undelivered to the sink (as failed: "purged at
 * shutdown"), and frees the producer. NULL is fine. */
void producer_free(producer_t *p, int flush_ms);

#endif
