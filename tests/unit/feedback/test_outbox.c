/* Tests of the PostgreSQL outbox: events the broker does not confirm are
 * stored, re-sent when the broker is back and then deleted; with the
 * database down as well they are counted as lost, and nothing crashes.
 *
 * The round trip needs a PostgreSQL server: a private one is started in a
 * temporary directory on a free loopback port (as the postgres user when
 * run as root, since PostgreSQL refuses to run as root) and stopped after
 * the test. Without PostgreSQL's server binaries that test is skipped. */
#include "../../../services/feedback/outbox.h"
#include "../../../services/feedback/producer.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/pg.h"
#include "quarry/trace.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <glob.h>
#include <librdkafka/rdkafka_mock.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOPIC "quarry.feedback"

static double metric(const char *series) {
  q_buf_t b;
  q_buf_init(&b, 1 << 20);
  q_metrics_render(&b);
  const char *p = b.data ? strstr(b.data, series) : NULL;
  double v = p ? strtod(p + strlen(series), NULL) : 0;
  q_buf_free(&b);
  return v;
}

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
  cr_assert_float_eq(metric("quarry_feedback_outbox_total{outcome=\"lost\"} "), 1, 1e-9);

  /* A failed re-send of a stored row leaves the row where it is. */
  m.outbox_id = 5;
  cr_assert_eq(outbox_store(o, &m, "Local: Message timed out"), 0);
  outbox_delivered(o, &m); /* must not crash either */
  outbox_free(o);
  q_pg_pool_free(pool);
}

/* ---- a private PostgreSQL -------------------------------------------------- */

static char dir[64];
static char bindir[256];
static int pg_port, pg_up;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return system(cmd);
}

static int find_bindir(void) {
  glob_t g;
  int ok = 0;
  if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
    snprintf(bindir, sizeof bindir, "%s", g.gl_pathv[g.gl_pathc - 1]);
    *strrchr(bindir, '/') = '\0';
    ok = 1;
  }
  globfree(&g);
  return ok;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof sa;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  close(fd);
  return ntohs(sa.sin_port);
}

static void start_pg(void) {
  q_log_init("test-outbox", Q_LOG_ERROR);
  if (!find_bindir())
    cr_skip_test("PostgreSQL server binaries not installed (make deps)");
  snprintf(dir, sizeof dir, "/tmp/quarry-outbox-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  chmod(dir, 0755);
  const char *as = "";
  if (geteuid() == 0) {
    struct passwd *pw = getpwnam("postgres");
    if (!pw)
      cr_skip_test("running as root without a postgres user");
    cr_assert_eq(chown(dir, pw->pw_uid, pw->pw_gid), 0);
    as = "runuser -u postgres -- ";
  }
  pg_port = free_port();
  cr_assert_gt(pg_port, 0);
  cr_assert_eq(run("%s%s/initdb -D %s/data -A trust -U quarry -N >%s/initdb.log 2>&1", as,
                   bindir, dir, dir),
               0, "initdb failed, see %s/initdb.log", dir);
  cr_assert_eq(run("%s%s/pg_ctl -D %s/data -o \"-p %d -k %s -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off\" "
                   "-l %s/server.log -w start >/dev/null 2>&1",
                   as, bindir, dir, pg_port, dir, dir),
               0, "PostgreSQL did not start, see %s/server.log", dir);
  pg_up = 1;
}

static void stop_pg(void) {
  if (pg_up)
    run("%s%s/pg_ctl -D %s/data -m immediate stop >/dev/null 2>&1",
        geteuid() == 0 ? "runuser -u postgres -- " : "", bindir, dir);
  pg_up = 0;
  if (dir[0] && strncmp(dir, "/tmp/quarry-outbox-", 19) == 0)
    run("rm -rf '%s'", dir);
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
  snprintf(dsn, sizeof dsn, "postgresql://quarry@127.0.0.1:%d/postgres", pg_port);
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

  producer_opts_t po = {.brokers = bootstrap,
                        .timeout_ms = 1000,
                        .sink = {.failed = outbox_store, .delivered = outbox_delivered,
                                 .ud = o}};
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
    cr_assert(strstr(PQgetvalue(r, i, 3), "timed out") != NULL, "%s", PQgetvalue(r, i, 3));
  }
  PQclear(r);
  q_pg_release(pool, c);
  cr_assert_float_eq(metric("quarry_feedback_outbox_total{outcome=\"stored\"} "), 3, 1e-9);

  /* Broker back: the re-send thread empties the outbox. */
  rd_kafka_mock_broker_set_up(mc, 1);
  cr_assert_eq(wait_rows(pool, 0, 30000), 0, "outbox not drained");
  cr_assert_float_eq(metric("quarry_feedback_outbox_total{outcome=\"resent\"} "), 3, 1e-9);

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
