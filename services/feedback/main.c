/* quarry-feedback: takes feedback and query events and publishes them to
 * Kafka; what the broker does not confirm waits in a PostgreSQL outbox. */
#include "events.h"
#include "outbox.h"
#include "producer.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/pg.h"
#include "quarry/service.h"
#include "quarry/v1/feedback.pb-c.h"

#include <stdio.h>
#include <string.h>
#include "quarry/error.h"

static q_common_cfg_t common;
static const char *brokers, *feedback_topic, *queries_topic;
static q_pg_cfg_t pg; /* no QUARRY_PG_WAIT_MS: start-up does not wait (see main) */
static int64_t kafka_timeout, outbox_interval, outbox_batch;

static q_err_t validate_topic(const char *v, char *err, size_t errlen) {
  size_t n = strlen(v);
  if (n == 0 || n > 249 ||
      strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789._-") != n) {
    snprintf(err, errlen, "must be 1..249 characters of [A-Za-z0-9._-]");
    return Q_EINVAL;
  }
  return 0;
}

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7006", "127.0.0.1:9106"),
    {"QUARRY_KAFKA_BROKERS", Q_CFG_STRING, "127.0.0.1:9092", 0, 0, NULL,
     "Kafka bootstrap servers (host:port,...).", 0, &brokers},
    {"QUARRY_KAFKA_TIMEOUT_MS", Q_CFG_INT, "10000", 1000, 600000, NULL,
     "How long a message may wait for the broker's confirmation before it goes to "
     "the outbox (message.timeout.ms).",
     0, &kafka_timeout},
    {"QUARRY_FEEDBACK_TOPIC", Q_CFG_STRING, "quarry.feedback", 0, 0, validate_topic,
     "Topic for feedback events (Submit).", 0, &feedback_topic},
    {"QUARRY_QUERIES_TOPIC", Q_CFG_STRING, "quarry.queries", 0, 0, validate_topic,
     "Topic for query events (RecordQuery).", 0, &queries_topic},
    Q_CFG_PG_DSN_ENTRY(pg),
    Q_CFG_PG_POOL_ENTRY(pg),
    {"QUARRY_OUTBOX_INTERVAL_MS", Q_CFG_INT, "5000", 100, 3600000, NULL,
     "How often the outbox is checked for events to re-send.", 0, &outbox_interval},
    {"QUARRY_OUTBOX_BATCH", Q_CFG_INT, "100", 1, 10000, NULL,
     "Outbox rows re-sent per pass.", 0, &outbox_batch},
};

typedef struct readiness {
  producer_t *producer;
  q_pg_pool_t *pool;
} readiness_t;

/* Ready while events can be kept: the broker answers, or, failing that,
 * the outbox database does (events then wait there for the broker). Only
 * when both are down would an accepted event be lost, so only then is the
 * service not ready. */
static q_err_t ready_cb(void *ud, char *why, size_t whylen) {
  readiness_t *r = ud;
  char kafka_why[256] = "", pg_why[256] = "";
  if (producer_ready(r->producer, 500, kafka_why, sizeof kafka_why) == 0)
    return 0;
  if (q_pg_ping(r->pool, pg_why, sizeof pg_why))
    return 0;
  snprintf(why, whylen, "kafka: %s; outbox database: %s", kafka_why, pg_why);
  return Q_EUNAVAIL;
}

int main(int argc, char **argv) {
  q_service_t svc;
  q_pg_pool_t *pool = NULL;
  outbox_t *outbox = NULL;
  producer_t *producer = NULL;
  char err[512] = "";
  int rc = q_service_init(&svc, "quarry-feedback",
                          "Publishes feedback and query events to Kafka.", cfg,
                          Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;

  pool = q_pg_pool_new(pg.dsn, (int)pg.pool);
  outbox = pool ? outbox_new(pool, (int)outbox_interval, (int)outbox_batch) : NULL;
  if (!outbox) {
    q_log_error("out of memory while starting", NULL);
    rc = 1;
    goto done;
  }
  /* The database is only needed when the broker fails: start without it
   * and let the outbox thread migrate once it is reachable. */
  if (outbox_migrate(outbox, err, sizeof err) != 0)
    q_log_warn("feedback outbox not migrated yet; will retry", "{s:s}", "error", err);

  producer_opts_t po = {
      .brokers = brokers,
      .timeout_ms = (int)kafka_timeout,
      .sink = {.failed = outbox_store, .delivered = outbox_delivered, .ud = outbox},
  };
  producer = producer_new(&po, err, sizeof err);
  if (!producer) {
    fprintf(stderr, "quarry-feedback: QUARRY_KAFKA_BROKERS: %s\n", err);
    rc = 2;
    goto done;
  }
  if (outbox_start(outbox, producer) != 0) {
    q_log_error("cannot start the outbox thread", NULL);
    rc = 1;
    goto done;
  }

  events_t ev = {.producer = producer,
                 .feedback_topic = feedback_topic,
                 .queries_topic = queries_topic};
  readiness_t readiness = {.producer = producer, .pool = pool};
  static const q_grpc_method_t methods[] = {
      {"Submit", Q_GRPC_UNARY, events_submit_cb},
      {"RecordQuery", Q_GRPC_UNARY, events_record_query_cb},
  };
  if (q_service_start(&svc, &quarry__v1__feedback__descriptor, methods, Q_NELEM(methods),
                      &ev, ready_cb, &readiness)) {
    rc = 1;
    goto done;
  }
  q_service_wait(&svc);
  rc = 0;

done:
  outbox_stop(outbox);
  /* Flushing may hand undelivered messages to the outbox, so the outbox
   * and its pool go last. */
  producer_free(producer,
                (int)(common.grace_ms < kafka_timeout ? common.grace_ms : kafka_timeout));
  outbox_free(outbox);
  q_pg_pool_free(pool);
  q_service_cleanup(&svc);
  return rc;
}
