/* util.c - signals, random ids, hashing, address parsing, timed waits (see
 * util.h).
 *
 * Randomness comes from libsodium, hashing from OpenSSL, so none of it is
 * hand-rolled. */
#include "quarry/util.h"

#include <netdb.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quarry/error.h"

static void stop_set(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
}

void q_signals_block(void) {
  /* A peer closing a socket must surface as EPIPE, not kill the process. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, NULL);

  sigset_t set;
  stop_set(&set);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int q_signal_wait(void) {
  sigset_t set;
  stop_set(&set);
  int sig = 0;
  while (sigwait(&set, &sig) != 0)
    ;
  return sig;
}

void q_signal_raise_term(void) {
  kill(getpid(), SIGTERM);
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_init_once(void) {
  if (sodium_init() < 0)
    abort(); /* no usable randomness: ids would not be unique */
}

void q_random_hex(char *out, size_t nbytes) {
  unsigned char raw[64];
  pthread_once(&sodium_once, sodium_init_once);
  out[0] = '\0';
  while (nbytes > 0) {
    size_t n = nbytes < sizeof raw ? nbytes : sizeof raw;
    randombytes_buf(raw, n);
    sodium_bin2hex(out, 2 * n + 1, raw, n);
    out += 2 * n;
    nbytes -= n;
  }
  sodium_memzero(raw, sizeof raw);
}

void q_uuid4(char out[37]) {
  unsigned char u[16];
  pthread_once(&sodium_once, sodium_init_once);
  randombytes_buf(u, sizeof u);
  u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
  u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
           "%02x%02x%02x%02x%02x%02x",
           u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
           u[12], u[13], u[14], u[15]);
}

void q_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
    /* Only possible if OpenSSL itself is broken; a wrong digest would
     * silently corrupt deduplication, so stop. */
    fputs("quarry: SHA-256 unavailable in OpenSSL\n", stderr);
    abort();
  }
  sodium_bin2hex(out, 65, md, 32);
}

/* Port: 1..5 decimal digits, 0..65535. */
static q_err_t parse_port(const char *s, int *port) {
  size_t n = strlen(s);
  if (n == 0 || n > 5)
    return Q_EINVAL;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return Q_EINVAL;
    v = v * 10 + (s[i] - '0');
  }
  if (v > 65535)
    return Q_EINVAL;
  *port = v;
  return 0;
}

q_err_t q_addr_split(const char *addr, char *host, size_t hostlen, int *port) {
  if (!addr || !host || hostlen == 0 || !port)
    return Q_EINVAL;
  const char *h, *colon;
  size_t hlen;
  if (addr[0] == '[') { /* "[v6]:port"; the brackets are not part of host */
    const char *close = strchr(addr, ']');
    if (!close || close[1] != ':')
      return Q_EINVAL;
    h = addr + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
    if (memchr(h, '[', hlen))
      return Q_EINVAL;
  } else {
    colon = strchr(addr, ':');
    if (!colon || strchr(colon + 1, ':')) /* bare IPv6 needs brackets */
      return Q_EINVAL;
    h = addr;
    hlen = (size_t)(colon - h);
  }
  /* A host that does not fit is an error rather than silently truncated.
   * An empty host (":8080") is rejected too: it would mean "all interfaces"
   * to some callers and be unparsable to gRPC, so listeners must say
   * 0.0.0.0 or [::] explicitly. */
  if (hlen == 0 || hlen >= hostlen)
    return Q_EINVAL;
  for (size_t i = 0; i < hlen; i++)
    if ((unsigned char)h[i] <= ' ' || h[i] == '/')
      return Q_EINVAL;
  int p;
  if (parse_port(colon + 1, &p))
    return Q_EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  *port = p;
  return 0;
}

q_err_t q_addr_listen(const char *addr, struct sockaddr_storage *out, int *port,
                      char *err, size_t errlen) {
  char host[256], port_s[16];
  if (q_addr_split(addr, host, sizeof host, port)) {
    snprintf(err, errlen, "not host:port");
    return Q_EINVAL;
  }
  snprintf(port_s, sizeof port_s, "%d", *port);
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int gai = getaddrinfo(strcmp(host, "*") != 0 ? host : NULL, port_s, &hints, &ai);
  if (gai != 0 || !ai) {
    snprintf(err, errlen, "%s", gai_strerror(gai));
    return Q_EINVAL;
  }
  memset(out, 0, sizeof *out);
  memcpy(out, ai->ai_addr, ai->ai_addrlen);
  freeaddrinfo(ai);
  return 0;
}

bool q_ct_equal(const void *a, const void *b, size_t n) {
  if (n == 0)
    return 1;
  return sodium_memcmp(a, b, n) == 0;
}

int q_cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc)
    return rc;
  rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (!rc)
    rc = pthread_cond_init(cv, &ca);
  pthread_condattr_destroy(&ca);
  return rc;
}

void q_cond_deadline(struct timespec *ts, int ms) {
  if (ms < 0)
    ms = 0;
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}
