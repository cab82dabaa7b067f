/* ratelimit.c - fixed-window rate limiting in Redis with hiredis (see
 * ratelimit.h). */
#include "ratelimit.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#define POOL 8 /* connections; a request holds one briefly */
#define CONNECT_TIMEOUT_MS 200
#define COMMAND_TIMEOUT_MS 200
#define RETRY_AFTER_MS 1000 /* after a failure, leave Redis alone this long */

typedef struct conn {
  pthread_mutex_t mu;
  redisContext *ctx;
  int64_t retry_at_ms; /* no connection attempt before this */
} conn_t;

static conn_t pool[POOL];
static char host[256];
static int port;
static int64_t limit;
static int64_t last_warn_ms;
static pthread_mutex_t warn_mu = PTHREAD_MUTEX_INITIALIZER;

q_err_t ratelimit_init(const char *redis_addr, int64_t rps) {
  limit = rps;
  for (int i = 0; i < POOL; i++) {
    pthread_mutex_init(&pool[i].mu, NULL);
    pool[i].ctx = NULL;
    pool[i].retry_at_ms = 0;
  }
  if (rps <= 0)
    return 0;
  return q_addr_split(redis_addr, host, sizeof host, &port) ? Q_EINVAL : 0;
}

void ratelimit_shutdown(void) {
  for (int i = 0; i < POOL; i++) {
    pthread_mutex_lock(&pool[i].mu);
    if (pool[i].ctx)
      redisFree(pool[i].ctx);
    pool[i].ctx = NULL;
    pthread_mutex_unlock(&pool[i].mu);
  }
}

static void warn_unavailable(const char *why) {
  int64_t now = q_now_ms();
  pthread_mutex_lock(&warn_mu);
  int log = now - last_warn_ms >= 1000;
  if (log)
    last_warn_ms = now;
  pthread_mutex_unlock(&warn_mu);
  if (log)
    q_log_warn("rate_limit_unavailable", "{s:s,s:s}", "redis", host, "error", why);
}

static struct timeval tv_ms(int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  return tv;
}

/* Picks a free connection, or waits for the one this thread hashes to. */
static conn_t *acquire(void) {
  for (int i = 0; i < POOL; i++)
    if (pthread_mutex_trylock(&pool[i].mu) == 0)
      return &pool[i];
  conn_t *c = &pool[(size_t)pthread_self() % POOL];
  pthread_mutex_lock(&c->mu);
  return c;
}

static void drop(conn_t *c, const char *why) {
  if (c->ctx)
    redisFree(c->ctx);
  c->ctx = NULL;
  c->retry_at_ms = q_now_ms() + RETRY_AFTER_MS;
  warn_unavailable(why);
}

/* What incr returns when Redis could not be asked. */
#define INCR_UNAVAILABLE (-1LL)

/* Runs INCR + EXPIRE on key in one round trip; the count, or
 * INCR_UNAVAILABLE. Called with c locked. */
static long long incr(conn_t *c, const char *key) {
  if (!c->ctx) {
    if (q_now_ms() < c->retry_at_ms)
      return INCR_UNAVAILABLE;
    c->ctx = redisConnectWithTimeout(host, port, tv_ms(CONNECT_TIMEOUT_MS));
    if (!c->ctx || c->ctx->err) {
      char why[192];
      snprintf(why, sizeof why, "connect: %s", c->ctx ? c->ctx->errstr : "out of memory");
      drop(c, why);
      return INCR_UNAVAILABLE;
    }
    redisSetTimeout(c->ctx, tv_ms(COMMAND_TIMEOUT_MS));
  }
  redisAppendCommand(c->ctx, "INCR %s", key);
  redisAppendCommand(c->ctx, "EXPIRE %s 2", key);
  redisReply *r1 = NULL, *r2 = NULL;
  if (redisGetReply(c->ctx, (void **)&r1) != REDIS_OK ||
      redisGetReply(c->ctx, (void **)&r2) != REDIS_OK) {
    char why[192];
    snprintf(why, sizeof why, "command: %s", c->ctx->errstr);
    if (r1)
      freeReplyObject(r1);
    drop(c, why);
    return INCR_UNAVAILABLE;
  }
  long long n = INCR_UNAVAILABLE;
  if (r1->type == REDIS_REPLY_INTEGER)
    n = r1->integer;
  else
    warn_unavailable(r1->type == REDIS_REPLY_ERROR ? r1->str : "unexpected INCR reply");
  freeReplyObject(r1);
  freeReplyObject(r2);
  return n;
}

bool ratelimit_allow(const gw_principal_t *p) {
  if (limit <= 0)
    return 1;
  char key[Q_LIMIT_TENANT_ID_BYTES + Q_LIMIT_USER_ID_BYTES + 64];
  snprintf(key, sizeof key, "quarry:rl:%s:%s:%lld", p->tenant_id, p->user_id,
           (long long)(q_wall_ms() / 1000));
  conn_t *c = acquire();
  long long n = incr(c, key);
  pthread_mutex_unlock(&c->mu);
  return n == INCR_UNAVAILABLE || n <= limit; /* fail open when Redis is down */
}
