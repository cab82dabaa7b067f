/* Tests of the Kafka producer against librdkafka's mock cluster: delivery
 * and read-back, failures with the brokers down reaching the outbox sink,
 * a full local queue, and the purge at shutdown. */
#include "producer.h"
#include "scrape.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"

#include <criterion/criterion.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOPIC "quarry.test"

/* ---- a mock cluster per test ------------------------------------------------- */

static rd_kafka_t *host;
static rd_kafka_mock_cluster_t *mc;
static char bootstrap[256];

static void setup(void) {
  char err[256];
  q_log_init("test-producer", Q_LOG_ERROR);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
  host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  cr_assert_not_null(host, "%s", err);
  mc = rd_kafka_mock_cluster_new(host, 1);
  cr_assert_not_null(mc);
  cr_assert_eq(rd_kafka_mock_topic_create(mc, TOPIC, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  snprintf(bootstrap, sizeof bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(mc));
}

static void teardown(void) {
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(host);
}

TestSuite(producer, .init = setup, .fini = teardown, .timeout = 60);

/* ---- a sink that records what it is told ------------------------------------- */

typedef struct record {
  int delivered;
  char topic[64], key[64], value[256], reason[128];
  int64_t outbox_id;
} record_t;

static struct {
  pthread_mutex_t mu;
  record_t r[64];
  int n;
  int refuse; /* failed() reports "not stored" */
} rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void remember(int delivered, const producer_msg_t *m, const char *reason) {
  pthread_mutex_lock(&rec.mu);
  if (rec.n < 64) {
    record_t *r = &rec.r[rec.n++];
    r->delivered = delivered;
    snprintf(r->topic, sizeof r->topic, "%s", m->topic);
    snprintf(r->key, sizeof r->key, "%.*s", (int)m->key_len, m->key);
    snprintf(r->value, sizeof r->value, "%.*s", (int)m->value_len, m->value);
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
    r->outbox_id = m->outbox_id;
  }
  pthread_mutex_unlock(&rec.mu);
}

static int failed_cb(void *ud, const producer_msg_t *m, const char *reason) {
  remember(0, m, reason);
  return rec.refuse ? Q_EUNAVAIL : 0;
}

static void delivered_cb(void *ud, const producer_msg_t *m) {
  remember(1, m, NULL);
}

static int recorded(void) {
  pthread_mutex_lock(&rec.mu);
  int n = rec.n;
  pthread_mutex_unlock(&rec.mu);
  return n;
}

static producer_t *new_producer(int timeout_ms, const char *const *extra, int qf_wait) {
  char err[256] = "";
  producer_opts_t o = {.brokers = bootstrap,
                       .timeout_ms = timeout_ms,
                       .queue_full_wait_ms = qf_wait,
                       .extra = extra,
                       .sink = {.failed = failed_cb, .delivered = delivered_cb}};
  producer_t *p = producer_new(&o, err, sizeof err);
  cr_assert_not_null(p, "%s", err);
  return p;
}

static void send_msg(producer_t *p, int i, int64_t outbox_id, int expect_rc) {
  char key[32], value[64], err[256] = "";
  snprintf(key, sizeof key, "q%d", i);
  snprintf(value, sizeof value, "{\"event_id\":\"e%d\",\"n\":%d}", i, i);
  int rc = producer_send(p, TOPIC, key, strlen(key), value, strlen(value), outbox_id, err,
                         sizeof err);
  cr_assert_eq(rc, expect_rc, "send %d: rc %d (%s)", i, rc, err);
}

/* Waits until the sink has heard about n messages. */
static void wait_recorded(int n, int ms) {
  int64_t until = q_now_ms() + ms;
  while (recorded() < n && q_now_ms() < until) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
  }
  cr_assert_eq(recorded(), n, "sink heard of %d messages, expected %d", recorded(), n);
}

/* ---- tests ------------------------------------------------------------------ */

Test(producer, delivers_and_reads_back) {
  producer_t *p = new_producer(5000, NULL, 0);
  for (int i = 0; i < 5; i++)
    send_msg(p, i, i == 3 ? 42 : 0, 0);
  wait_recorded(5, 10000);
  for (int i = 0; i < 5; i++) {
    cr_assert(rec.r[i].delivered, "message %d not delivered: %s", i, rec.r[i].reason);
    cr_assert_str_eq(rec.r[i].topic, TOPIC);
  }
  /* The outbox id rides along to the delivery report. */
  int with_id = 0;
  for (int i = 0; i < 5; i++)
    if (strcmp(rec.r[i].key, "q3") == 0 && rec.r[i].outbox_id == 42)
      with_id++;
  cr_assert_eq(with_id, 1);
  uint64_t delivered, failed;
  producer_stats(p, &delivered, &failed);
  cr_assert_eq(delivered, 5);
  cr_assert_eq(failed, 0);
  cr_assert_float_eq(scrape_value("quarry_kafka_messages_total{topic=\"" TOPIC
                                  "\",outcome=\"delivered\"} "),
                     5, 1e-9);
  char why[128] = "";
  cr_assert_eq(producer_ready(p, 2000, why, sizeof why), 0, "not ready: %s", why);
  producer_free(p, 1000);

  /* Read the topic back with an independent consumer. */
  char err[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", "test-producer", err, sizeof err);
  rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  rd_kafka_poll_set_consumer(c);
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  cr_assert_eq(rd_kafka_assign(c, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(parts);
  int got = 0;
  int64_t until = q_now_ms() + 10000;
  while (got < 5 && q_now_ms() < until) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
    if (!m)
      continue;
    if (!m->err) {
      char key[16], value[64];
      snprintf(key, sizeof key, "q%d", got);
      snprintf(value, sizeof value, "{\"event_id\":\"e%d\",\"n\":%d}", got, got);
      cr_assert_eq(m->key_len, strlen(key));
      cr_assert(memcmp(m->key, key, m->key_len) == 0, "message %d has the wrong key",
                got);
      cr_assert_eq(m->len, strlen(value));
      cr_assert(memcmp(m->payload, value, m->len) == 0, "message %d has the wrong value",
                got);
      got++;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  cr_assert_eq(got, 5, "read back %d of 5 messages", got);
}

Test(producer, brokers_down_fail_to_the_sink) {
  cr_assert_eq(rd_kafka_mock_broker_set_down(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  producer_t *p = new_producer(1000, NULL, 0);
  for (int i = 0; i < 3; i++)
    send_msg(p, i, 0, 0);
  wait_recorded(3, 10000);
  for (int i = 0; i < 3; i++) {
    cr_assert_not(rec.r[i].delivered);
    cr_assert(strstr(rec.r[i].reason, "timed out") != NULL, "reason: %s",
              rec.r[i].reason);
    cr_assert_str_eq(rec.r[i].topic, TOPIC);
    cr_assert_eq(rec.r[i].outbox_id, 0);
  }
  /* The failed messages reach the sink whole: key and value intact. */
  int seen = 0;
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 3; k++) {
      char key[16], value[64];
      snprintf(key, sizeof key, "q%d", k);
      snprintf(value, sizeof value, "{\"event_id\":\"e%d\",\"n\":%d}", k, k);
      if (strcmp(rec.r[i].key, key) == 0 && strcmp(rec.r[i].value, value) == 0)
        seen++;
    }
  cr_assert_eq(seen, 3);
  uint64_t delivered, failed;
  producer_stats(p, &delivered, &failed);
  cr_assert_eq(failed, 3);
  cr_assert_eq(delivered, 0);
  cr_assert_float_eq(scrape_value("quarry_kafka_messages_total{topic=\"" TOPIC
                                  "\",outcome=\"failed\"} "),
                     3, 1e-9);
  char why[128] = "";
  cr_assert_neq(producer_ready(p, 500, why, sizeof why), 0, "ready with brokers down");
  cr_assert(why[0] != '\0');
  producer_free(p, 500);
}

Test(producer, resends_once_the_broker_is_back) {
  cr_assert_eq(rd_kafka_mock_broker_set_down(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  producer_t *p = new_producer(1000, NULL, 0);
  send_msg(p, 0, 0, 0);
  wait_recorded(1, 10000);
  cr_assert_not(rec.r[0].delivered);

  cr_assert_eq(rd_kafka_mock_broker_set_up(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  char why[128] = "";
  int64_t until = q_now_ms() + 15000;
  while (producer_ready(p, 500, why, sizeof why) != 0 && q_now_ms() < until)
    ;
  cr_assert_eq(producer_ready(p, 1000, why, sizeof why), 0, "still not ready: %s", why);
  /* What the outbox thread does with the stored row. */
  send_msg(p, 0, 7, 0);
  wait_recorded(2, 10000);
  cr_assert(rec.r[1].delivered, "re-send failed: %s", rec.r[1].reason);
  cr_assert_eq(rec.r[1].outbox_id, 7);
  cr_assert_str_eq(rec.r[1].key, "q0");
  producer_free(p, 1000);
}

Test(producer, shutdown_hands_undelivered_messages_to_the_sink) {
  cr_assert_eq(rd_kafka_mock_broker_set_down(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  producer_t *p = new_producer(60000, NULL, 0);
  send_msg(p, 0, 0, 0);
  send_msg(p, 1, 0, 0);
  int64_t t0 = q_now_ms();
  producer_free(p, 300);
  cr_assert_lt(q_now_ms() - t0, 5000, "shutdown took too long");
  cr_assert_eq(recorded(), 2, "undelivered messages must reach the sink at shutdown");
  for (int i = 0; i < 2; i++) {
    cr_assert_not(rec.r[i].delivered);
    cr_assert(strstr(rec.r[i].reason, "urge") != NULL, "reason: %s", rec.r[i].reason);
  }
}

Test(producer, full_queue_spills_to_the_sink) {
  static const char *const extra[] = {"queue.buffering.max.messages", "1", NULL};
  cr_assert_eq(rd_kafka_mock_broker_set_down(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  producer_t *p = new_producer(60000, extra, 100);
  send_msg(p, 0, 0, 0);
  /* No room: after waiting 100 ms the message goes to the sink, which
   * stores it, so the send still counts as accepted. */
  send_msg(p, 1, 0, 0);
  cr_assert_eq(recorded(), 1);
  cr_assert_str_eq(rec.r[0].key, "q1");
  cr_assert(strstr(rec.r[0].reason, "ueue") != NULL, "reason: %s", rec.r[0].reason);

  /* When the sink cannot store it either, the caller is told. */
  rec.refuse = 1;
  send_msg(p, 2, 0, Q_EUNAVAIL);
  cr_assert_eq(recorded(), 2);
  rec.refuse = 0;
  producer_free(p, 100);
  cr_assert_eq(recorded(), 3, "the queued message must be purged to the sink");
}
