/* producer.c - idempotent Kafka producer with a delivery-report sink; see
 * producer.h for the contract. */
#include "producer.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/metrics.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct producer {
  rd_kafka_t *rk;
  producer_sink_t sink;
  int queue_full_wait_ms;
  pthread_t poll_thread;
  atomic_int stop;
  atomic_uint_fast64_t delivered, failed;
  q_metric_t *messages; /* quarry_kafka_messages_total{topic,outcome} */
};

/* Rides along with each message to its delivery report. */
typedef struct msg_opaque {
  int64_t outbox_id;
} msg_opaque_t;

static void count(producer_t *p, const char *topic, int ok) {
  const char *lv[2] = {topic, ok ? "delivered" : "failed"};
  q_metrics_inc(p->messages, lv);
  if (ok)
    atomic_fetch_add(&p->delivered, 1);
  else
    atomic_fetch_add(&p->failed, 1);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  producer_t *p = opaque;
  msg_opaque_t *mo = m->_private;
  producer_msg_t pm = {
      .topic = rd_kafka_topic_name(m->rkt),
      .key = m->key,
      .key_len = m->key_len,
      .value = m->payload,
      .value_len = m->len,
      .outbox_id = mo ? mo->outbox_id : 0,
  };
  count(p, pm.topic, m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (p->sink.delivered)
      p->sink.delivered(p->sink.ud, &pm);
  } else {
    const char *reason = rd_kafka_err2str(m->err);
    q_log_warn("kafka delivery failed", "{s:s,s:s,s:I}", "topic", pm.topic, "error",
               reason, "outbox_id", (json_int_t)pm.outbox_id);
    if (p->sink.failed)
      p->sink.failed(p->sink.ud, &pm, reason);
  }
  free(mo);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char fatal[256];
    rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fatal, sizeof fatal);
    /* The idempotent producer cannot go on: every further message fails
     * over to the outbox until the process is restarted. */
    q_log_error("kafka producer fatal error; messages go to the outbox", "{s:s,s:s}",
                "code", rd_kafka_err2name(ferr), "error", fatal);
    return;
  }
  q_log_warn("kafka client error", "{s:s,s:s}", "code",
             rd_kafka_err2name((rd_kafka_resp_err_t)err), "error", reason);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  /* syslog levels: 0..2 critical, 3..4 error/warning, 5..6 notice/info,
   * 7 debug. */
  /* Connection failures ("FAIL") also reach the error callback, which
   * logs them once; librdkafka's own line would only repeat them. */
  if (strcmp(fac, "FAIL") == 0)
    return;
  q_log_level_t l = level <= 2   ? Q_LOG_ERROR
                    : level <= 4 ? Q_LOG_WARN
                    : level <= 6 ? Q_LOG_INFO
                                 : Q_LOG_DEBUG;
  q_logf(l, "librdkafka", "{s:s,s:s}", "facility", fac, "detail", buf);
}

static void *poll_main(void *arg) {
  producer_t *p = arg;
  while (!atomic_load(&p->stop))
    rd_kafka_poll(p->rk, 100);
  return NULL;
}

static q_err_t set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                   size_t errlen) {
  char e[256];
  if (rd_kafka_conf_set(conf, name, value, e, sizeof e) != RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "%s: %s", name, e);
    return Q_EINVAL;
  }
  return 0;
}

producer_t *producer_new(const producer_opts_t *o, char *err, size_t errlen) {
  producer_t *p = calloc(1, sizeof *p);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char timeout[32], e[512];

  if (!p || !conf) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  p->sink = o->sink;
  p->queue_full_wait_ms = o->queue_full_wait_ms > 0 ? o->queue_full_wait_ms : 1000;
  p->messages = q_metrics_counter("quarry_kafka_messages_total",
                                  "Kafka messages by topic and delivery outcome "
                                  "(delivered, failed).",
                                  "topic,outcome");
  snprintf(timeout, sizeof timeout, "%d", o->timeout_ms > 0 ? o->timeout_ms : 10000);
  if (set(conf, "bootstrap.servers", o->brokers, err, errlen) ||
      set(conf, "enable.idempotence", "true", err, errlen) ||
      set(conf, "message.timeout.ms", timeout, err, errlen) ||
      set(conf, "client.id", "quarry-feedback", err, errlen) ||
      set(conf, "linger.ms", "5", err, errlen))
    goto fail;
  for (const char *const *x = o->extra; x && x[0] && x[1]; x += 2)
    if (set(conf, x[0], x[1], err, errlen))
      goto fail;
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_opaque(conf, p);

  p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  if (!p->rk) {
    snprintf(err, errlen, "%s", e);
    goto fail;
  }
  conf = NULL; /* owned by rk now */
  if (pthread_create(&p->poll_thread, NULL, poll_main, p) != 0) {
    snprintf(err, errlen, "cannot start the poll thread");
    rd_kafka_destroy(p->rk);
    goto fail;
  }
  return p;
fail:
  if (conf)
    rd_kafka_conf_destroy(conf);
  free(p);
  return NULL;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

q_err_t producer_send(producer_t *p, const char *topic, const char *key, size_t key_len,
                      const char *value, size_t value_len, int64_t outbox_id, char *err,
                      size_t errlen) {
  msg_opaque_t *mo = malloc(sizeof *mo);
  int oom = mo == NULL;
  rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR__FAIL;
  int waited = 0;

  if (mo) {
    mo->outbox_id = outbox_id;
    for (;;) {
      rerr = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                               RD_KAFKA_V_KEY((void *)key, key_len),
                               RD_KAFKA_V_VALUE((void *)value, value_len),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_OPAQUE(mo), RD_KAFKA_V_END);
      /* A full local queue drains as the poll thread serves delivery
       * reports: wait a little for room before giving up. */
      if (rerr != RD_KAFKA_RESP_ERR__QUEUE_FULL || waited >= p->queue_full_wait_ms)
        break;
      sleep_ms(20);
      waited += 20;
    }
    if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR)
      return 0;
    free(mo);
  }

  /* Not queued: the message fails at once, through the same sink as a
   * failed delivery. */
  const char *reason = oom ? "out of memory" : rd_kafka_err2str(rerr);
  producer_msg_t pm = {topic, key, key_len, value, value_len, outbox_id};
  count(p, topic, 0);
  q_log_warn("kafka produce refused", "{s:s,s:s,s:I}", "topic", topic, "error", reason,
             "outbox_id", (json_int_t)outbox_id);
  if (p->sink.failed && p->sink.failed(p->sink.ud, &pm, reason) == 0 && outbox_id == 0)
    return 0;
  snprintf(err, errlen, "cannot queue the message for %s: %s", topic, reason);
  return Q_EUNAVAIL;
}

q_err_t producer_ready(producer_t *p, int timeout_ms, char *why, size_t whylen) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t rerr = rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
  char fatal[256];
  q_err_t rc = Q_OK;

  if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
    snprintf(why, whylen, "kafka: %s", rd_kafka_err2str(rerr));
    rc = Q_EUNAVAIL;
  } else if (md->broker_cnt == 0) {
    snprintf(why, whylen, "kafka: no brokers in metadata");
    rc = Q_EUNAVAIL;
  } else if (rd_kafka_fatal_error(p->rk, fatal, sizeof fatal) !=
             RD_KAFKA_RESP_ERR_NO_ERROR) {
    snprintf(why, whylen, "kafka: producer has a fatal error");
    rc = Q_EUNAVAIL;
  }
  if (md)
    rd_kafka_metadata_destroy(md);
  return rc;
}

void producer_stats(producer_t *p, uint64_t *delivered, uint64_t *failed) {
  if (delivered)
    *delivered = atomic_load(&p->delivered);
  if (failed)
    *failed = atomic_load(&p->failed);
}

void producer_free(producer_t *p, int flush_ms) {
  if (!p)
    return;
  atomic_store(&p->stop, 1);
  pthread_join(p->poll_thread, NULL);
  /* flush serves the remaining delivery reports on this thread. */
  rd_kafka_flush(p->rk, flush_ms);
  int left = rd_kafka_outq_len(p->rk);
  if (left > 0) {
    q_log_warn("kafka messages undelivered at shutdown; handing them to the outbox",
               "{s:i}", "messages", left);
    /* Purged messages get delivery reports with a purge error, which the
     * sink stores like any other failure. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(p->rk, 2000);
  }
  rd_kafka_destroy(p->rk);
  free(p);
}
