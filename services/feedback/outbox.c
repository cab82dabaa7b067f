/* outbox.c - PostgreSQL outbox for undelivered Kafka messages; see
 * outbox.h. */
#include "outbox.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/util.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACQUIRE_MS 2000
#define READY_MS 2000

static const q_pg_migration_t migrations[] = {
    {1, "feedback_outbox",
     /* value is the event exactly as it was produced (JSON text), so a
      * re-send publishes the same bytes. */
     "CREATE TABLE IF NOT EXISTS feedback_outbox ("
     "  id bigserial PRIMARY KEY,"
     "  topic text NOT NULL,"
     "  key text NOT NULL,"
     "  value text NOT NULL,"
     "  last_error text NOT NULL DEFAULT '',"
     "  attempts integer NOT NULL DEFAULT 0,"
     "  created_at timestamptz NOT NULL DEFAULT now()"
     ");"},
};

struct outbox {
  q_pg_pool_t *pool;
  int interval_ms;
  int batch;
  producer_t *producer;
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC; signals stop and in_flight changes */
  int stop;
  int in_flight; /* outbox rows handed to the producer, outcome pending */
  atomic_int migrated;
  q_metric_t *events; /* quarry_feedback_outbox_total{outcome} */
};

static void count(outbox_t *o, const char *outcome) {
  const char *lv[1] = {outcome};
  q_metrics_inc(o->events, lv);
}

outbox_t *outbox_new(q_pg_pool_t *pool, int interval_ms, int batch) {
  outbox_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->pool = pool;
  o->interval_ms = interval_ms > 0 ? interval_ms : 5000;
  o->batch = batch > 0 ? batch : 100;
  pthread_mutex_init(&o->mu, NULL);
  q_cond_init_monotonic(&o->cv);
  o->events = q_metrics_counter("quarry_feedback_outbox_total",
                                "Outbox events: stored (delivery failed, kept in "
                                "PostgreSQL), resent (delivered from the outbox), lost "
                                "(neither Kafka nor PostgreSQL took it).",
                                "outcome");
  return o;
}

q_err_t outbox_migrate(outbox_t *o, char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(o->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  int rc = q_pg_migrate(c, "feedback", migrations, sizeof migrations / sizeof *migrations,
                        err, errlen);
  q_pg_release(o->pool, c);
  if (rc == 0)
    atomic_store(&o->migrated, 1);
  return rc;
}

/* The event id inside a message value, for log lines about it. */
static void event_id_of(const producer_msg_t *m, char *out, size_t outlen) {
  json_t *v = json_loadb(m->value, m->value_len, 0, NULL);
  const char *id = json_string_value(json_object_get(v, "event_id"));
  snprintf(out, outlen, "%s", id ? id : "unknown");
  json_decref(v);
}

/* One outbox row's outcome is known: let the re-send thread go on. */
static void row_done(outbox_t *o) {
  pthread_mutex_lock(&o->mu);
  if (o->in_flight > 0)
    o->in_flight--;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

/* Inserts a new outbox row. Kafka keys and values are not NUL-terminated,
 * so they are copied into strings first: a text column could not hold a
 * NUL byte anyway, and such a message is refused rather than cut short. */
static q_err_t insert_row(outbox_t *o, const producer_msg_t *m, const char *reason,
                          char *err, size_t errlen) {
  const char *key = m->key ? m->key : "", *value = m->value ? m->value : "";
  size_t key_len = m->key ? m->key_len : 0, value_len = m->value ? m->value_len : 0;
  if (memchr(key, '\0', key_len) || memchr(value, '\0', value_len)) {
    snprintf(err, errlen, "key or value holds a NUL byte");
    return Q_EINVAL;
  }
  char *buf = malloc(key_len + value_len + 2);
  if (!buf) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  memcpy(buf, key, key_len);
  buf[key_len] = '\0';
  memcpy(buf + key_len + 1, value, value_len);
  buf[key_len + 1 + value_len] = '\0';
  q_err_t rc = Q_EUNAVAIL;
  PGconn *c = q_pg_acquire(o->pool, ACQUIRE_MS, err, errlen);
  if (c) {
    const char *vals[4] = {m->topic, buf, buf + key_len + 1, reason};
    rc = q_pg_exec(c,
                   "INSERT INTO feedback_outbox (topic, key, value, last_error) "
                   "VALUES ($1, $2, $3, $4)",
                   4, vals, "storing the event", NULL, err, errlen);
    q_pg_release(o->pool, c);
  }
  free(buf);
  return rc;
}

q_err_t outbox_store(void *ud, const producer_msg_t *m, const char *reason) {
  outbox_t *o = ud;
  char err[512] = "", event_id[64];
  int rc;

  if (m->outbox_id > 0) {
    /* A re-send failed: the row stays, one more attempt is recorded. */
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)m->outbox_id);
    const char *vals[2] = {id, reason};
    PGconn *c = q_pg_acquire(o->pool, ACQUIRE_MS, err, sizeof err);
    rc = Q_EUNAVAIL;
    if (c) {
      rc = q_pg_exec(c,
                     "UPDATE feedback_outbox SET attempts = attempts + 1, "
                     "last_error = $2 WHERE id = $1::bigint",
                     2, vals, "recording a re-send attempt", NULL, err, sizeof err);
      q_pg_release(o->pool, c);
    }
    if (rc)
      q_log_warn("cannot record an outbox re-send attempt", "{s:I,s:s}", "outbox_id",
                 (json_int_t)m->outbox_id, "error", err);
    row_done(o);
    return 0; /* the row itself is still stored */
  }

  if (!atomic_load(&o->migrated) && outbox_migrate(o, err, sizeof err) != 0) {
    rc = Q_EUNAVAIL;
  } else {
    rc = insert_row(o, m, reason, err, sizeof err);
  }
  event_id_of(m, event_id, sizeof event_id);
  if (rc) {
    count(o, "lost");
    q_log_error("event lost: neither Kafka nor the PostgreSQL outbox took it",
                "{s:s,s:s,s:s%,s:s}", "event_id", event_id, "topic", m->topic, "key",
                m->key ? m->key : "", m->key_len, "error", err);
    return rc;
  }
  count(o, "stored");
  q_log_info("event stored in the outbox", "{s:s,s:s,s:s}", "event_id", event_id, "topic",
             m->topic, "reason", reason);
  return 0;
}

void outbox_delivered(void *ud, const producer_msg_t *m) {
  outbox_t *o = ud;
  if (m->outbox_id <= 0)
    return;
  char id[32], err[512] = "";
  snprintf(id, sizeof id, "%lld", (long long)m->outbox_id);
  PGconn *c = q_pg_acquire(o->pool, ACQUIRE_MS, err, sizeof err);
  int ok = 0;
  if (c) {
    const char *vals[1] = {id};
    ok = q_pg_exec(c, "DELETE FROM feedback_outbox WHERE id = $1::bigint", 1, vals,
                   "deleting the row", NULL, err, sizeof err) == Q_OK;
    q_pg_release(o->pool, c);
  }
  count(o, "resent");
  if (!ok) /* it will be published again: at-least-once */
    q_log_warn("outbox row delivered but not deleted", "{s:I,s:s}", "outbox_id",
               (json_int_t)m->outbox_id, "error", err);
  row_done(o);
}

/* Sleeps up to ms unless stopped; returns 1 when stopping. */
static int nap(outbox_t *o, int ms) {
  struct timespec until;
  q_cond_deadline(&until, ms);
  pthread_mutex_lock(&o->mu);
  while (!o->stop && pthread_cond_timedwait(&o->cv, &o->mu, &until) != ETIMEDOUT)
    ;
  int stop = o->stop;
  pthread_mutex_unlock(&o->mu);
  return stop;
}

/* One pass: sends up to batch rows and waits for their outcomes. Returns
 * the number of rows delivered-or-failed, or Q_EUNAVAIL (negative) when
 * nothing could be read. */
static int resend_batch(outbox_t *o, int *full) {
  char err[512] = "";
  PGconn *c = q_pg_acquire(o->pool, ACQUIRE_MS, err, sizeof err);
  char limit[16];
  int n = 0, sent = 0;

  *full = 0;
  if (!c)
    return Q_EUNAVAIL;
  snprintf(limit, sizeof limit, "%d", o->batch);
  const char *vals[1] = {limit};
  PGresult *r = q_pg_query(c,
                           "SELECT id, topic, key, value FROM feedback_outbox "
                           "ORDER BY id LIMIT $1::int",
                           1, vals, "reading the outbox", NULL, err, sizeof err);
  q_pg_release(o->pool, c);
  if (!r) {
    q_log_warn("cannot read the outbox", "{s:s}", "error", err);
    return Q_EUNAVAIL;
  }
  n = PQntuples(r);
  if (n > 0)
    q_log_info("re-sending outbox rows", "{s:i}", "rows", n);
  for (int i = 0; i < n; i++) {
    long long id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    pthread_mutex_lock(&o->mu);
    o->in_flight++;
    pthread_mutex_unlock(&o->mu);
    /* On failure the producer has already reported the row to
     * outbox_store, which counted it done. */
    if (producer_send(o->producer, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                      (size_t)PQgetlength(r, i, 2), PQgetvalue(r, i, 3),
                      (size_t)PQgetlength(r, i, 3), id, err, sizeof err) != 0)
      break;
    sent++;
  }
  PQclear(r);

  /* Wait for every outcome so no row is ever in flight twice. */
  pthread_mutex_lock(&o->mu);
  while (o->in_flight > 0 && !o->stop)
    pthread_cond_wait(&o->cv, &o->mu);
  pthread_mutex_unlock(&o->mu);
  *full = sent == o->batch;
  return sent;
}

static void *resend_main(void *arg) {
  outbox_t *o = arg;
  int full = 0, db_down = 0;
  while (full || !nap(o, o->interval_ms)) {
    char why[256] = "";
    full = 0;
    pthread_mutex_lock(&o->mu);
    int stop = o->stop;
    pthread_mutex_unlock(&o->mu);
    if (stop)
      break;
    if (!atomic_load(&o->migrated)) {
      if (outbox_migrate(o, why, sizeof why) != 0) {
        /* Once per outage, not once per interval. */
        if (!db_down)
          q_log_warn("feedback outbox not migrated yet", "{s:s}", "error", why);
        db_down = 1;
        continue;
      }
      q_log_info("feedback outbox migrated", NULL);
      db_down = 0;
    }
    if (producer_ready(o->producer, READY_MS, why, sizeof why) != 0)
      continue;
    resend_batch(o, &full);
  }
  return NULL;
}

q_err_t outbox_start(outbox_t *o, producer_t *p) {
  o->producer = p;
  if (pthread_create(&o->thread, NULL, resend_main, o) != 0)
    return Q_EINTERNAL;
  o->started = 1;
  return 0;
}

void outbox_stop(outbox_t *o) {
  if (!o || !o->started)
    return;
  pthread_mutex_lock(&o->mu);
  o->stop = 1;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
  pthread_join(o->thread, NULL);
  o->started = 0;
}

void outbox_free(outbox_t *o) {
  if (!o)
    return;
  pthread_mutex_destroy(&o->mu);
  pthread_cond_destroy(&o->cv);
  free(o);
}
