/* quarry-devbroker: a Kafka broker for development and tests, where no real
 * one can be installed.
 *
 * Serves librdkafka's built-in mock cluster (rdkafka_mock.h) on loopback: it
 * speaks the Kafka wire protocol (produce, fetch, metadata, idempotent
 * producers, consumer groups) and keeps everything in memory. The `consume`
 * subcommand reads a topic back from any broker, for tests that check what
 * was published.
 *
 *   quarry-devbroker [--brokers N] [--bootstrap-file F] [--topics A,B]
 *                    [--partitions P]
 *       prints "bootstrap=host:port,..." on stdout, writes host:port,... to F
 *       (atomically), runs until SIGTERM/SIGINT, exits 0.
 *   quarry-devbroker consume --brokers B --topic T [--count N] [--timeout-ms M]
 *       prints up to N messages as JSON lines
 *       {"topic","partition","offset","key","value"}; exits 0 once N were
 *       read, 1 on timeout, 2 on bad usage.
 *
 * Logs go to stderr as JSON lines (quarry/log.h); stdout carries only the
 * bootstrap line or the messages. */
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#include <errno.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "quarry/error.h"

#define DEFAULT_TOPICS "quarry.feedback,quarry.queries"

static void usage(FILE *f) {
  fprintf(f,
          "usage: quarry-devbroker [--brokers N] [--bootstrap-file F] [--topics A,B]\n"
          "                        [--partitions P]\n"
          "       quarry-devbroker consume --brokers B --topic T [--count N]\n"
          "                        [--timeout-ms M]\n"
          "\n"
          "Starts a Kafka mock cluster (librdkafka) of N brokers (default 1) on\n"
          "127.0.0.1, creates the topics (default " DEFAULT_TOPICS ", P partitions\n"
          "each, default 1; other topics are created on first use), prints\n"
          "\"bootstrap=host:port,...\" and, with --bootstrap-file, writes host:port,...\n"
          "to F. Runs until SIGTERM or SIGINT.\n"
          "\n"
          "consume: reads topic T from the beginning on bootstrap servers B and\n"
          "prints up to N (default 1) messages as JSON lines; exits 0 when N were\n"
          "read, 1 when M milliseconds (default 10000) passed first.\n");
}

/* Parses a decimal integer in [min, max]; 0 on success. */
static q_err_t parse_int(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max)
    return Q_EINVAL;
  *out = v;
  return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  /* The handle hosting the mock cluster has no bootstrap servers on
   * purpose; librdkafka's warning about that is noise here. */
  if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers"))
    return;
  q_log_level_t l = level <= 2   ? Q_LOG_ERROR
                    : level <= 4 ? Q_LOG_WARN
                    : level <= 6 ? Q_LOG_INFO
                                 : Q_LOG_DEBUG;
  q_logf(l, "librdkafka", "{s:s,s:s}", "facility", fac, "detail", buf);
}

/* Writes s + "\n" to path through a temporary file and rename(2), so a
 * reader polling for the file never sees it half written. */
static q_err_t write_file_atomic(const char *path, const char *s) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
    return Q_EIO;
  FILE *f = fopen(tmp, "w");
  if (!f)
    return Q_EIO;
  int bad = fprintf(f, "%s\n", s) < 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    unlink(tmp);
    return Q_EIO;
  }
  return 0;
}

static int serve(int argc, char **argv) {
  long nbrokers = 1, partitions = 1;
  const char *bootstrap_file = NULL, *topics = DEFAULT_TOPICS;
  char errstr[512];

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--brokers") == 0 && v) {
      if (parse_int(v, 1, 16, &nbrokers)) {
        fprintf(stderr, "quarry-devbroker: --brokers: must be 1..16\n");
        return 2;
      }
      i++;
    } else if (strcmp(a, "--partitions") == 0 && v) {
      if (parse_int(v, 1, 64, &partitions)) {
        fprintf(stderr, "quarry-devbroker: --partitions: must be 1..64\n");
        return 2;
      }
      i++;
    } else if (strcmp(a, "--bootstrap-file") == 0 && v) {
      bootstrap_file = v;
      i++;
    } else if (strcmp(a, "--topics") == 0 && v) {
      topics = v;
      i++;
    } else {
      fprintf(stderr, "quarry-devbroker: unknown or incomplete argument: %s\n", a);
      usage(stderr);
      return 2;
    }
  }

  /* Block the stop signals before librdkafka starts its threads so they
   * all inherit the mask and q_signal_wait receives them. */
  q_signals_block();

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, log_cb);
  /* The handle only hosts the mock cluster; it never produces. */
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    q_log_error("cannot create the librdkafka handle", "{s:s}", "error", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)nbrokers);
  if (!mc) {
    q_log_error("cannot start the mock cluster", NULL);
    rd_kafka_destroy(rk);
    return 1;
  }
  const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);

  int rc = 0;
  char *list = strdup(topics);
  for (char *save = NULL, *t = list ? strtok_r(list, ",", &save) : NULL; t;
       t = strtok_r(NULL, ",", &save)) {
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
        mc, t, (int)partitions, (int)(nbrokers < 3 ? nbrokers : 3));
    if (err) {
      q_log_error("cannot create topic", "{s:s,s:s}", "topic", t, "error",
                  rd_kafka_err2str(err));
      rc = 1;
    }
  }
  free(list);

  if (rc == 0 && bootstrap_file && write_file_atomic(bootstrap_file, bootstrap) != 0) {
    q_log_error("cannot write the bootstrap file", "{s:s,s:s}", "path", bootstrap_file,
                "error", strerror(errno));
    rc = 1;
  }
  if (rc == 0) {
    printf("bootstrap=%s\n", bootstrap);
    fflush(stdout);
    q_log_info("mock kafka cluster running", "{s:s,s:i,s:s}", "bootstrap", bootstrap,
               "brokers", (int)nbrokers, "topics", topics);
    int sig = q_signal_wait();
    q_log_info("stopping", "{s:i}", "signal", sig);
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return rc;
}

static json_t *bytes_json(const void *p, size_t n) {
  if (!p)
    return json_null();
  json_t *s = json_stringn(p, n);
  if (s)
    return s;
  /* Not UTF-8: show it hex-encoded rather than dropping it. */
  char *hex = malloc(2 * n + 5);
  if (!hex)
    return json_null();
  memcpy(hex, "hex:", 4);
  for (size_t i = 0; i < n; i++)
    snprintf(hex + 4 + 2 * i, 3, "%02x", ((const unsigned char *)p)[i]);
  s = json_string(hex);
  free(hex);
  return s ? s : json_null();
}

static int consume(int argc, char **argv) {
  const char *brokers = NULL, *topic = NULL;
  long count = 1, timeout_ms = 10000;
  char errstr[512], group[64];

  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--brokers") == 0 && v) {
      brokers = v;
    } else if (strcmp(a, "--topic") == 0 && v) {
      topic = v;
    } else if (strcmp(a, "--count") == 0 && v) {
      if (parse_int(v, 1, 1000000, &count)) {
        fprintf(stderr, "quarry-devbroker: --count: must be 1..1000000\n");
        return 2;
      }
    } else if (strcmp(a, "--timeout-ms") == 0 && v) {
      if (parse_int(v, 1, 3600000, &timeout_ms)) {
        fprintf(stderr, "quarry-devbroker: --timeout-ms: must be 1..3600000\n");
        return 2;
      }
    } else {
      fprintf(stderr, "quarry-devbroker: unknown or incomplete argument: %s\n", a);
      usage(stderr);
      return 2;
    }
    i++;
  }
  if (!brokers || !topic || !*brokers || !*topic) {
    fprintf(stderr, "quarry-devbroker consume: --brokers and --topic are required\n");
    return 2;
  }

  int64_t deadline = q_now_ms() + timeout_ms;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  snprintf(group, sizeof group, "quarry-devbroker-%ld", (long)getpid());
  if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) ||
      rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) ||
      rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr)) {
    fprintf(stderr, "quarry-devbroker consume: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 2;
  }
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "quarry-devbroker consume: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 2;
  }
  rd_kafka_poll_set_consumer(rk);

  /* Find the topic's partitions (it may not exist yet: keep asking until
   * the deadline), then read them all from the beginning, without joining
   * a consumer group. */
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  int nparts = 0;
  while (nparts == 0 && q_now_ms() < deadline) {
    const struct rd_kafka_metadata *md = NULL;
    int64_t left = deadline - q_now_ms();
    if (rd_kafka_metadata(rk, 0, rkt, &md, (int)(left < 1000 ? left : 1000)) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
      nparts = md->topics[0].partition_cnt;
    if (md)
      rd_kafka_metadata_destroy(md);
    if (nparts == 0) {
      struct timespec ts = {0, 200 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  rd_kafka_topic_destroy(rkt);

  long got = 0;
  if (nparts > 0) {
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
      rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err)
      q_log_error("cannot assign partitions", "{s:s}", "error", rd_kafka_err2str(err));

    while (!err && got < count && q_now_ms() < deadline) {
      int64_t left = deadline - q_now_ms();
      rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, (int)(left < 500 ? left : 500));
      if (!m)
        continue;
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
          q_log_warn("consume error", "{s:s}", "error", rd_kafka_message_errstr(m));
      } else {
        json_t *j = json_pack(
            "{s:s,s:i,s:I,s:o,s:o}", "topic", rd_kafka_topic_name(m->rkt), "partition",
            (int)m->partition, "offset", (json_int_t)m->offset, "key",
            bytes_json(m->key, m->key_len), "value", bytes_json(m->payload, m->len));
        char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (line) {
          printf("%s\n", line);
          fflush(stdout);
          got++;
        }
        free(line);
        json_decref(j);
      }
      rd_kafka_message_destroy(m);
    }
  } else {
    q_log_warn("topic not found before the timeout", "{s:s}", "topic", topic);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return got >= count ? 0 : 1;
}

int main(int argc, char **argv) {
  q_log_level_t level = Q_LOG_INFO;
  const char *env = getenv("QUARRY_LOG_LEVEL");
  if (env && q_log_level_parse(env, &level) != 0)
    level = Q_LOG_INFO;
  q_log_init("devbroker", level);
  if (argc > 1 && strcmp(argv[1], "consume") == 0)
    return consume(argc, argv);
  return serve(argc, argv);
}
