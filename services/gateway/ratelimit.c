/* ratelimit.c - fixed-window rate limiting in Redis with hiredis, on a
 * thread of its own so that no HTTP or gRPC thread waits on Redis (see
 * ratelimit.h). */
#include "ratelimit.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#define CONNECT_TIMEOUT_MS 200
#define COMMAND_TIMEOUT_MS 200
#define RETRY_AFTER_MS 1000 /* after a failure, leave Redis alone this long */
#define BATCH 256           /* checks sent in one pipelined round trip */
#define KEY_MAX (Q_LIMIT_TENANT_ID_BYTES + Q_LIMIT_USER_ID_BYTES + 64)

typedef struct check {
  char key[KEY_MAX];
  ratelimit_cb cb;
  void *ud;
} check_t;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  check_t *ring; /* RATELIMIT_QUEUE entries */
  size_t head, count;
  bool running, stop;
  pthread_t thread;
} q = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static redisContext *ctx;           /* the limiter thread's own */
static _Atomic int64_t retry_at_ms; /* no Redis round trip before this */
static check_t batch[BATCH];        /* the limiter thread's own */
static char host[256];
static int port;
static int64_t limit;
static _Atomic int64_t last_warn_ms;

static void warn_unavailable(const char *why) {
  int64_t now = q_now_ms(), last = atomic_load(&last_warn_ms);
  if (now - last < 1000 || !atomic_compare_exchange_strong(&last_warn_ms, &last, now))
    return;
  q_log_warn("rate_limit_unavailable", "{s:s,s:s}", "redis", host, "error", why);
}

static struct timeval tv_ms(int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  return tv;
}

static void drop(const char *why) {
  if (ctx)
    redisFree(ctx);
  ctx = NULL;
  atomic_store(&retry_at_ms, q_now_ms() + RETRY_AFTER_MS);
  warn_unavailable(why);
}

static bool connected(void) {
  if (ctx)
    return true;
  if (q_now_ms() < atomic_load(&retry_at_ms))
    return false;
  ctx = redisConnectWithTimeout(host, port, tv_ms(CONNECT_TIMEOUT_MS));
  if (!ctx || ctx->err) {
    char why[192];
    snprintf(why, sizeof why, "connect: %s", ctx ? ctx->errstr : "out of memory");
    drop(why);
    return false;
  }
  redisSetTimeout(ctx, tv_ms(COMMAND_TIMEOUT_MS));
  return true;
}

/* INCR + EXPIRE for the n checks of the batch in one round trip; each
 * check is answered, "allowed" when Redis could not count it. */
static void run_batch(size_t n) {
  size_t answered = 0;
  if (connected()) {
    for (size_t i = 0; i < n; i++) {
      redisAppendCommand(ctx, "INCR %s", batch[i].key);
      redisAppendCommand(ctx, "EXPIRE %s 2", batch[i].key);
    }
    for (; answered < n; answered++) {
      redisReply *r1 = NULL, *r2 = NULL;
      if (redisGetReply(ctx, (void **)&r1) != REDIS_OK ||
          redisGetReply(ctx, (void **)&r2) != REDIS_OK) {
        char why[192];
        snprintf(why, sizeof why, "command: %s", ctx->errstr);
        if (r1)
          freeReplyObject(r1);
        drop(why);
        break;
      }
      bool allowed = true;
      if (r1->type == REDIS_REPLY_INTEGER)
        allowed = r1->integer <= limit;
      else
        warn_unavailable(r1->type == REDIS_REPLY_ERROR ? r1->str
                                                       : "unexpected INCR reply");
      freeReplyObject(r1);
      freeReplyObject(r2);
      batch[answered].cb(batch[answered].ud, allowed);
    }
  }
  for (; answered < n; answered++) /* fail open */
    batch[answered].cb(batch[answered].ud, true);
}

static void *limiter_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&q.mu);
  for (;;) {
    while (q.count == 0 && !q.stop)
      pthread_cond_wait(&q.cv, &q.mu);
    if (q.count == 0 && q.stop)
      break;
    size_t n = 0;
    while (q.count > 0 && n < BATCH) {
      batch[n++] = q.ring[q.head];
      q.head = (q.head + 1) % RATELIMIT_QUEUE;
      q.count--;
    }
    bool stopping = q.stop;
    pthread_mutex_unlock(&q.mu);
    if (stopping)
      for (size_t i = 0; i < n; i++)
        batch[i].cb(batch[i].ud, true);
    else
      run_batch(n);
    pthread_mutex_lock(&q.mu);
  }
  pthread_mutex_unlock(&q.mu);
  if (ctx)
    redisFree(ctx);
  ctx = NULL;
  return NULL;
}

q_err_t ratelimit_init(const char *redis_addr, int64_t rps) {
  limit = rps;
  atomic_store(&retry_at_ms, 0);
  if (rps <= 0)
    return 0;
  if (q_addr_split(redis_addr, host, sizeof host, &port))
    return Q_EINVAL;
  pthread_mutex_lock(&q.mu);
  if (q.running) {
    pthread_mutex_unlock(&q.mu);
    return 0;
  }
  if (!q.ring)
    q.ring = calloc(RATELIMIT_QUEUE, sizeof *q.ring);
  q.head = q.count = 0;
  q.stop = false;
  q.running = q.ring && pthread_create(&q.thread, NULL, limiter_main, NULL) == 0;
  bool ok = q.running;
  pthread_mutex_unlock(&q.mu);
  if (!ok)
    q_log_error("cannot start the rate limiter", "{s:s}", "redis", redis_addr);
  return ok ? 0 : Q_EINTERNAL;
}

bool ratelimit_enabled(void) {
  return limit > 0;
}

bool ratelimit_check(const gw_principal_t *p, ratelimit_cb cb, void *ud) {
  if (limit <= 0 || q_now_ms() < atomic_load(&retry_at_ms)) {
    cb(ud, true);
    return true;
  }
  pthread_mutex_lock(&q.mu);
  bool queued = q.running && !q.stop && q.count < RATELIMIT_QUEUE;
  if (queued) {
    check_t *c = &q.ring[(q.head + q.count) % RATELIMIT_QUEUE];
    snprintf(c->key, sizeof c->key, "quarry:rl:%s:%s:%lld", p->tenant_id, p->user_id,
             (long long)(q_wall_ms() / 1000));
    c->cb = cb;
    c->ud = ud;
    q.count++;
    pthread_cond_signal(&q.cv);
  }
  bool full = q.running && !q.stop && !queued;
  pthread_mutex_unlock(&q.mu);
  if (!queued) {
    if (full)
      warn_unavailable("the rate limiter's queue is full");
    cb(ud, true);
  }
  return !queued;
}

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done, allowed;
} waiter_t;

static void waiter_cb(void *ud, bool allowed) {
  waiter_t *w = ud;
  pthread_mutex_lock(&w->mu);
  w->allowed = allowed;
  w->done = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

bool ratelimit_allow(const gw_principal_t *p) {
  waiter_t w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  ratelimit_check(p, waiter_cb, &w);
  pthread_mutex_lock(&w.mu);
  while (!w.done)
    pthread_cond_wait(&w.cv, &w.mu);
  pthread_mutex_unlock(&w.mu);
  return w.allowed;
}

void ratelimit_shutdown(void) {
  pthread_mutex_lock(&q.mu);
  bool running = q.running;
  q.stop = true;
  pthread_cond_signal(&q.cv);
  pthread_mutex_unlock(&q.mu);
  if (running)
    pthread_join(q.thread, NULL);
  pthread_mutex_lock(&q.mu);
  q.running = false;
  pthread_mutex_unlock(&q.mu);
}
