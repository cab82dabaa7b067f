/* test_ratelimit.c - the rate limiter answers without making its caller
 * wait on Redis: disabled, Redis refusing connections, Redis silent, and a
 * real redis-server counting per principal. */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"
#include "quarry/log.h"
#include "quarry/trace.h"

typedef struct answer {
  atomic_int calls;
  atomic_int allowed;
  _Atomic int64_t at_ms;
} answer_t;

static void answer_cb(void *ud, bool allowed) {
  answer_t *a = ud;
  atomic_store(&a->allowed, allowed);
  atomic_store(&a->at_ms, q_now_ms());
  atomic_fetch_add(&a->calls, 1);
}

static bool wait_answer(answer_t *a, int ms) {
  for (int64_t until = q_now_ms() + ms; q_now_ms() < until;) {
    if (atomic_load(&a->calls))
      return true;
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return atomic_load(&a->calls) > 0;
}

static gw_principal_t principal(const char *tenant) {
  gw_principal_t p;
  memset(&p, 0, sizeof p);
  snprintf(p.tenant_id, sizeof p.tenant_id, "%s", tenant);
  snprintf(p.user_id, sizeof p.user_id, "key:k1");
  return p;
}

static void setup(void) {
  q_log_init("ratelimit-test", Q_LOG_ERROR);
}

static void teardown(void) {
  ratelimit_shutdown();
}

TestSuite(ratelimit, .init = setup, .fini = teardown, .timeout = 30);

Test(ratelimit, disabled_answers_at_once) {
  cr_assert_eq(ratelimit_init("127.0.0.1:1", 0), 0);
  cr_assert_not(ratelimit_enabled());
  answer_t a = {0};
  gw_principal_t p = principal("t1");
  cr_assert(ratelimit_check(&p, answer_cb, &a), "answered on the caller's thread");
  cr_assert_eq(atomic_load(&a.calls), 1);
  cr_assert(atomic_load(&a.allowed));
}

Test(ratelimit, malformed_address_is_refused) {
  cr_assert_eq(ratelimit_init("no-port", 5), Q_EINVAL);
}

/* Redis refusing connections: allowed, and during the back-off every
 * check is answered on the caller's thread. */
Test(ratelimit, redis_down_fails_open_then_answers_inline) {
  int port = loopback_free_port();
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  cr_assert_eq(ratelimit_init(addr, 1), 0);
  gw_principal_t p = principal("t1");
  answer_t a = {0};
  ratelimit_check(&p, answer_cb, &a);
  cr_assert(wait_answer(&a, 2000));
  cr_assert(atomic_load(&a.allowed), "fail open");
  for (int i = 0; i < 100; i++) {
    answer_t b = {0};
    cr_assert(ratelimit_check(&p, answer_cb, &b), "inline during the back-off");
    cr_assert_eq(atomic_load(&b.calls), 1);
    cr_assert(atomic_load(&b.allowed));
  }
}

/* A Redis that accepts connections and never answers: the caller gets its
 * check back at once (queued), the answer "allowed" comes after the
 * command timeout on the limiter's thread, and later checks are answered
 * inline. */
Test(ratelimit, silent_redis_never_holds_the_caller) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(fd, 16), 0); /* the kernel completes the handshake */
  socklen_t sl = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
  cr_assert_eq(ratelimit_init(addr, 1), 0);

  gw_principal_t p = principal("t1");
  enum { N = 50 };
  answer_t a[N];
  memset(a, 0, sizeof a);
  int64_t t0 = q_now_ms();
  int inline_answers = 0;
  for (int i = 0; i < N; i++)
    inline_answers += ratelimit_check(&p, answer_cb, &a[i]);
  int64_t took = q_now_ms() - t0;
  cr_assert_lt(took, 50, "%d checks took %lld ms on the caller's thread", N,
               (long long)took);
  cr_assert_lt(inline_answers, N, "the checks went to the limiter's thread");
  for (int i = 0; i < N; i++) {
    cr_assert(wait_answer(&a[i], 3000), "check %d answered", i);
    cr_assert(atomic_load(&a[i].allowed), "fail open");
  }
  int64_t last = 0;
  for (int i = 0; i < N; i++)
    if (atomic_load(&a[i].at_ms) > last)
      last = atomic_load(&a[i].at_ms);
  cr_assert_lt(last - t0, 1500, "answered within the timeouts: %lld ms",
               (long long)(last - t0));
  answer_t b = {0};
  cr_assert(ratelimit_check(&p, answer_cb, &b), "inline during the back-off");
  cr_assert(atomic_load(&b.allowed));
  close(fd);
}

static pid_t redis_start(char *addr, size_t addrlen) {
  int port = loopback_free_port();
  char port_s[16];
  snprintf(port_s, sizeof port_s, "%d", port);
  snprintf(addr, addrlen, "127.0.0.1:%d", port);
  pid_t pid = fork();
  if (pid == 0) {
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execl("/usr/bin/redis-server", "redis-server", "--port", port_s, "--bind",
          "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning",
          (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 300; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    if (ok)
      break;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return pid;
}

/* A burst of checks in one window: the limit holds per principal whether
 * the checks are pipelined together or not, and the blocking form agrees. */
Test(ratelimit, counts_per_principal_in_redis) {
  if (access("/usr/bin/redis-server", X_OK) != 0)
    cr_skip_test("redis-server is not installed");
  char addr[64];
  pid_t pid = redis_start(addr, sizeof addr);
  cr_assert_gt(pid, 0);
  /* Start at the beginning of a wall-clock second so the burst stays in
   * one window. */
  while (q_wall_ms() % 1000 > 200) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  cr_assert_eq(ratelimit_init(addr, 3), 0);
  gw_principal_t p1 = principal("t1"), p2 = principal("t2");
  enum { N = 10 };
  answer_t a[N], b = {0};
  memset(a, 0, sizeof a);
  for (int i = 0; i < N; i++)
    ratelimit_check(&p1, answer_cb, &a[i]);
  ratelimit_check(&p2, answer_cb, &b);
  int allowed = 0;
  for (int i = 0; i < N; i++) {
    cr_assert(wait_answer(&a[i], 2000));
    allowed += atomic_load(&a[i].allowed);
  }
  cr_assert(wait_answer(&b, 2000));
  cr_assert_eq(allowed, 3, "3 of %d allowed in one second", N);
  cr_assert(atomic_load(&b.allowed), "another principal has its own count");
  cr_assert_not(ratelimit_allow(&p1), "the blocking form sees the same count");
  ratelimit_shutdown();
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}
