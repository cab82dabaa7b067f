/* Tests of the PostgreSQL outbox: events the broker does not confirm are
 * stored, re-sent when the broker is back and then deleted; with the
 * database down as well they are counted as lost, and nothing crashes.
 *
 * The round trip needs a PostgreSQL server: a private one
 * (tests/unit/support/pgtest.h) is started for it and removed after it.
 * Where PostgreSQL cannot run at all that test is skipped. */
#include "outbox.h"
#include "producer.h"
#include "pgtest.h"
#include "scrape.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/pg.h"
#include "quarry/trace.h"

#include <criterion/criterion.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOPIC "quarry.feedback"

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- without a database --------------------------------------------------- */

Test(outbox, database_down_counts_the_event_as_lost) {
  q_log_init("test-outbox", Q_LOG_ERROR);
  q_pg_pool_t *pool = q_pg_pool_new("postgresql://quarry@127.0.0.1:1/quarry", 2);
  outbox_t *o = outbox_new(pool, 1000, 10);
  char err[256] = "";
  cr_assert_neq(outbox_migrate(o, err, sizeof err), 0);
  cr_assert(err[0] != '\0');

  const char value[] = "{\"event_id\":\"e-lost\"}";
  producer_msg_t m = {TOPIC, "q1", 2, value, sizeof value - 1, 0};
  cr_assert_eq(outbox_store(o, &m, "Local: Message timed out"), Q_EUNAVAIL);
  cr_assert_float_eq(scrape_value("quarry_feedback_outbox_total{outcome=\"lost\"} "), 1,
                     1e-9);

  /* A failed re-send of a stored row leaves the row where it is. */
  m.outbox_id = 5;
  cr_assert_eq(outbox_store(o, &m, "Local: Message timed out"), 0);
  outbox_delivered(o, &m); /* must not crash either */
  outbox_free(o);
  q_pg_pool_free(pool);
}

/* ---- a private PostgreSQL -------------------------------------------------- */

static pgtest_t pg;

static void start_pg(void) {
  char why[512] = "";
  q_log_init("test-outbox", Q_LOG_ERROR);
  int rc = pgtest_start(&pg, why, sizeof why);
  if (rc == PGTEST_ABSENT)
    cr_skip_test("%s", why);
  cr_assert_eq(rc, 0, "%s", why);
}

static void stop_pg(void) {
  pgtest_remove(&pg);
}

static long long scalar(q_pg_pool_t *pool, const char *sql) {
  char err[256];
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  PGresult *r = PQexec(c, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
  long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  q_pg_release(pool, c);
  return v;
}

static long long wait_rows(q_pg_pool_t *pool, long long want, int ms) {
  int64_t until = q_now_ms() + ms;
  long long n;
  while ((n = scalar(pool, "SELECT count(*) FROM feedback_outbox")) != want &&
         q_now_ms() < until)
    sleep_ms(50);
  return n;
}

Test(outbox, stores_failures_and_resends_them_when_the_broker_is_back, .init = start_pg,
     .fini = stop_pg, .timeout = 120) {
  char dsn[128], err[256] = "";
  pgtest_dsn(&pg, "postgres", dsn, sizeof dsn);
  q_pg_pool_t *pool = q_pg_pool_new(dsn, 4);
  outbox_t *o = outbox_new(pool, 200, 2); /* small batches: several passes */
  cr_assert_eq(outbox_migrate(o, err, sizeof err), 0, "%s", err);
  cr_assert_eq(outbox_migrate(o, err, sizeof err), 0, "migrations must be idempotent");

  /* A broker that is down. */
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
  rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(host, 1);
  cr_assert_not_null(mc);
  rd_kafka_mock_topic_create(mc, TOPIC, 1, 1);
  char bootstrap[128];
  snprintf(bootstrap, sizeof bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(mc));
  rd_kafka_mock_broker_set_down(mc, 1);

  producer_opts_t po = {
      .brokers = bootstrap,
      .timeout_ms = 1000,
      .sink = {.failed = outbox_store, .delivered = outbox_delivered, .ud = o}};
  producer_t *p = producer_new(&po, err, sizeof err);
  cr_assert_not_null(p, "%s", err);
  cr_assert_eq(outbox_start(o, p), 0);

  for (int i = 0; i < 3; i++) {
    char key[16], value[64];
    snprintf(key, sizeof key, "q%d", i);
    snprintf(value, sizeof value, "{\"event_id\":\"e%d\",\"n\":%d}", i, i);
    cr_assert_eq(producer_send(p, TOPIC, key, strlen(key), value, strlen(value), 0, err,
                               sizeof err),
                 0, "%s", err);
  }
  /* Timed out after 1 s: all three in the outbox, bytes intact. */
  cr_assert_eq(wait_rows(pool, 3, 10000), 3);
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  PGresult *r = PQexec(c, "SELECT topic, key, value, last_error FROM feedback_outbox "
                          "ORDER BY key");
  cr_assert_eq(PQntuples(r), 3);
  for (int i = 0; i < 3; i++) {
    char key[16], value[64];
    snprintf(key, sizeof key, "q%d", i);
    snprintf(value, sizeof value, "{\"event_id\":\"e%d\",\"n\":%d}", i, i);
    cr_assert_str_eq(PQgetvalue(r, i, 0), TOPIC);
    cr_assert_str_eq(PQgetvalue(r, i, 1), key);
    cr_assert_str_eq(PQgetvalue(r, i, 2), value);
    cr_assert(strstr(PQgetvalue(r, i, 3), "timed out") != NULL, "%s",
              PQgetvalue(r, i, 3));
  }
  PQclear(r);
  q_pg_release(pool, c);
  cr_assert_float_eq(scrape_value("quarry_feedback_outbox_total{outcome=\"stored\"} "), 3,
                     1e-9);

  /* Broker back: the re-send thread empties the outbox. */
  rd_kafka_mock_broker_set_up(mc, 1);
  cr_assert_eq(wait_rows(pool, 0, 30000), 0, "outbox not drained");
  cr_assert_float_eq(scrape_value("quarry_feedback_outbox_total{outcome=\"resent\"} "), 3,
                     1e-9);

  outbox_stop(o);
  producer_free(p, 2000);

  /* And the events are on the topic. */
  conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", "test-outbox", err, sizeof err);
  rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
  rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  rd_kafka_poll_set_consumer(cons);
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(cons, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  int seen[3] = {0}, got = 0;
  int64_t until = q_now_ms() + 10000;
  while (got < 3 && q_now_ms() < until) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 200);
    if (!m)
      continue;
    if (!m->err && m->key_len == 2 && ((char *)m->key)[0] == 'q') {
      int i = ((char *)m->key)[1] - '0';
      char value[64];
      snprintf(value, sizeof value, "{\"event_id\":\"e%d\",\"n\":%d}", i, i);
      cr_assert(i >= 0 && i < 3);
      cr_assert(m->len == strlen(value) && memcmp(m->payload, value, m->len) == 0);
      seen[i]++;
      got++;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(cons);
  rd_kafka_destroy(cons);
  cr_assert_eq(got, 3, "read back %d of 3 events", got);
  cr_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);

  outbox_free(o);
  q_pg_pool_free(pool);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(host);
}
