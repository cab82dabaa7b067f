/* test_util.c - signals, random ids, SHA-256, address parsing, ct compare,
 * timed waits. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "quarry/error.h"
#include "quarry/util.h"

Test(util, random_hex) {
  char a[65], b[65];
  q_random_hex(a, 32);
  q_random_hex(b, 32);
  cr_assert_eq(strlen(a), 64);
  cr_assert_eq(strspn(a, "0123456789abcdef"), 64);
  cr_assert_str_neq(a, b);
  char big[2 * 200 + 1];
  q_random_hex(big, 200); /* more than one internal block */
  cr_assert_eq(strlen(big), 400);
  cr_assert_eq(strspn(big, "0123456789abcdef"), 400);
  char none[1] = {'x'};
  q_random_hex(none, 0);
  cr_assert_eq(none[0], '\0');
}

Test(util, uuid4_format) {
  char u[37], v[37];
  q_uuid4(u);
  q_uuid4(v);
  cr_assert_eq(strlen(u), 36);
  cr_assert_str_neq(u, v);
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23)
      cr_assert_eq(u[i], '-', "%s", u);
    else
      cr_assert_not_null(strchr("0123456789abcdef", u[i]), "%s", u);
  }
  cr_assert_eq(u[14], '4', "%s", u);
  cr_assert_not_null(strchr("89ab", u[19]), "%s", u);
}

Test(util, sha256_known_vectors) {
  char out[65];
  q_sha256_hex("", 0, out);
  cr_assert_str_eq(out,
                   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  q_sha256_hex("abc", 3, out);
  cr_assert_str_eq(out,
                   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(util, addr_split_accepts) {
  char host[64];
  int port = -1;
  cr_assert_eq(q_addr_split("127.0.0.1:7003", host, sizeof host, &port), 0);
  cr_assert_str_eq(host, "127.0.0.1");
  cr_assert_eq(port, 7003);
  cr_assert_eq(q_addr_split("[::1]:65535", host, sizeof host, &port), 0);
  cr_assert_str_eq(host, "::1");
  cr_assert_eq(port, 65535);
  cr_assert_eq(q_addr_split("localhost:0", host, sizeof host, &port), 0);
  cr_assert_str_eq(host, "localhost");
  cr_assert_eq(port, 0);
}

Test(util, addr_split_rejects) {
  static const char *const bad[] = {
      "",        "host",    "host:",       ":80",        "host:65536",
      "host:-1", "host:8x", "host:123456", "::1:80",     "[::1]80",
      "[::1",    "[]:80",   "a b:80",      "host:80:90", "[::1]:",
  };
  char host[64];
  int port;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(q_addr_split(bad[i], host, sizeof host, &port), Q_EINVAL,
                 "accepted '%s'", bad[i]);
  cr_assert_eq(q_addr_split(NULL, host, sizeof host, &port), Q_EINVAL);
}

Test(util, addr_split_host_must_fit) {
  char host[5];
  int port;
  cr_assert_eq(q_addr_split("abcd:1", host, sizeof host, &port), 0);
  cr_assert_str_eq(host, "abcd");
  cr_assert_eq(q_addr_split("abcde:1", host, sizeof host, &port), Q_EINVAL);
}

Test(util, addr_listen_resolves_for_bind) {
  struct sockaddr_storage ss;
  char err[128] = "";
  int port = -1;
  cr_assert_eq(q_addr_listen("127.0.0.1:9101", &ss, &port, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(port, 9101);
  const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
  cr_assert_eq(ss.ss_family, AF_INET);
  cr_assert_eq(ntohs(in->sin_port), 9101);
  cr_assert_eq(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
  cr_assert_eq(q_addr_listen("[::1]:0", &ss, &port, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ss.ss_family, AF_INET6);
  /* "*": every interface. */
  cr_assert_eq(q_addr_listen("*:8080", &ss, &port, err, sizeof err), 0, "%s", err);
  cr_assert_eq(port, 8080);
  cr_assert_eq(q_addr_listen("127.0.0.1", &ss, &port, err, sizeof err), Q_EINVAL);
  cr_assert(err[0]);
  cr_assert_eq(q_addr_listen(NULL, &ss, &port, err, sizeof err), Q_EINVAL);
}

static long ms_between(const struct timespec *a, const struct timespec *b) {
  return (b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

Test(util, monotonic_timed_wait_lasts_the_time_asked) {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv;
  cr_assert_eq(q_cond_init_monotonic(&cv), 0);
  struct timespec t0, until, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  q_cond_deadline(&until, 1250); /* carries into the seconds */
  long ahead = ms_between(&t0, &until);
  cr_assert(ahead >= 1250 && ahead < 1300, "%ld ms ahead", ahead);
  cr_assert(until.tv_nsec >= 0 && until.tv_nsec < 1000000000L);
  q_cond_deadline(&until, 150);
  pthread_mutex_lock(&mu);
  int rc;
  while ((rc = pthread_cond_timedwait(&cv, &mu, &until)) == 0)
    ;
  pthread_mutex_unlock(&mu);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  cr_assert_eq(rc, ETIMEDOUT);
  long waited = ms_between(&t0, &t1);
  cr_assert(waited >= 140 && waited < 2000, "waited %ld ms", waited);
  /* A negative wait is no wait. */
  q_cond_deadline(&until, -5);
  cr_assert_leq(ms_between(&t1, &until), 5);
  pthread_cond_destroy(&cv);
}

Test(util, ct_equal) {
  cr_assert(q_ct_equal("secret", "secret", 6));
  cr_assert_not(q_ct_equal("secret", "secreT", 6));
  cr_assert_not(q_ct_equal("Xecret", "secret", 6));
  cr_assert(q_ct_equal("a", "b", 0));
}

Test(util, term_signal_is_collected_by_wait) {
  q_signals_block();
  q_signal_raise_term();
  cr_assert_eq(q_signal_wait(), SIGTERM);
  kill(getpid(), SIGINT);
  cr_assert_eq(q_signal_wait(), SIGINT);
}

Test(util, sigpipe_is_ignored) {
  q_signals_block();
  int p[2];
  cr_assert_eq(pipe(p), 0);
  close(p[0]);
  errno = 0;
  cr_assert_eq(write(p[1], "x", 1), -1); /* would kill us if not ignored */
  cr_assert_eq(errno, EPIPE);
  close(p[1]);
}
