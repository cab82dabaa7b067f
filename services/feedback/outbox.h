/* outbox.h - the durable home of events Kafka did not confirm.
 *
 * A failed delivery (broker down, timeout, purge at shutdown) is written to
 * the PostgreSQL table feedback_outbox; a background thread re-sends rows
 * once a broker answers again and deletes each row when its delivery is
 * confirmed. Delivery is therefore at-least-once: a message whose
 * confirmation was lost may be published twice, and consumers dedupe by
 * event_id.
 *
 * outbox_store / outbox_delivered have the shape of producer_sink_t's
 * callbacks; they are thread-safe. When PostgreSQL is unavailable as well,
 * the event is logged as lost (with its event_id) and counted in
 * quarry_feedback_outbox_total{outcome="lost"}; the service carries on. */
#ifndef QUARRY_FEEDBACK_OUTBOX_H
#define QUARRY_FEEDBACK_OUTBOX_H

#include "producer.h"

#include "quarry/pg.h"

typedef struct outbox outbox_t;

/* Creates the outbox over pool (borrowed; must outlive the outbox). Nothing
 * is contacted yet. NULL when out of memory. */
outbox_t *outbox_new(q_pg_pool_t *pool, int interval_ms, int batch);

/* Applies the feedback migrations. 0, or a q_err_t with the reason in err;
 * the re-send thread retries until it succeeds. */
q_err_t outbox_migrate(outbox_t *o, char *err, size_t errlen);

/* producer_sink_t.failed: stores a new message, or counts another attempt
 * of an outbox row (m->outbox_id > 0). 0 when stored. */
q_err_t outbox_store(void *outbox, const producer_msg_t *m, const char *reason);

/* producer_sink_t.delivered: deletes the row of a confirmed re-send. */
void outbox_delivered(void *outbox, const producer_msg_t *m);

/* Starts the thread that re-sends rows through p every interval_ms while a
 * broker is reachable. 0 or Q_EINTERNAL. */
q_err_t outbox_start(outbox_t *o, producer_t *p);

/* Stops the re-send thread (waits for it). Safe when not started. */
void outbox_stop(outbox_t *o);

/* Frees the outbox (after outbox_stop and after the producer is freed). */
void outbox_free(outbox_t *o);

#endif
