/* depwatch.c - the background checks of the gateway's dependencies
 * (depwatch.h). One thread sleeps between rounds; a round's calls are
 * asynchronous, so it costs no thread per dependency and their callbacks,
 * which only copy a result, run on the adapter's loop threads. */
#include "depwatch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "quarry/v1/reranker.pb-c.h"

#include "quarry/arena.h"
#include "quarry/grpc.h"
#include "quarry/log.h"
#include "quarry/stubs.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#define INTERVAL_DEFAULT_MS 1000
#define ARENA_BYTES (1 << 16)
#define METHOD_MAX 32

enum { RERANK_UNKNOWN, RERANK_NONE, RERANK_OTHER };

typedef struct round round_t;

/* One call of a round. */
typedef struct probe {
  round_t *round;
  const char *name;
  q_arena_t *arena;
  q_err_t rc;
  char err[256];
  char method[METHOD_MAX]; /* the Rerank probe's reply */
} probe_t;

/* A round: the three health checks and the Rerank probe ([DEPWATCH_NDEPS]),
 * all in flight at once; pending counts the callbacks still to come. */
struct round {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int pending;
  probe_t p[DEPWATCH_NDEPS + 1];
};

static const char *const dep_names[DEPWATCH_NDEPS] = {"auth", "retriever", "llm-gateway"};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* the thread's sleep; the end of a round */
  pthread_t th;
  bool running, stop, refresh;
  const gw_cfg_t *cfg;
  uint64_t rounds;  /* completed */
  bool in_round;    /* one is under way */
  int64_t ended_at; /* q_now_ms() at the end of the last round */
  depwatch_state_t last;
  atomic_int rerank; /* RERANK_* */
} w = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void cv_init(void) {
  q_cond_init_monotonic(&w.cv);
}

static void probe_end(probe_t *p) {
  round_t *r = p->round;
  pthread_mutex_lock(&r->mu);
  if (--r->pending == 0)
    pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void health_cb(void *ud, q_err_t rc, Grpc__Health__V1__HealthCheckResponse *resp,
                      const char *status_message) {
  probe_t *p = ud;
  p->rc = rc;
  if (rc)
    snprintf(p->err, sizeof p->err, "%s",
             status_message && status_message[0] ? status_message : q_strerror(rc));
  else if (!resp ||
           resp->status !=
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
    p->rc = Q_EUNAVAIL;
    snprintf(p->err, sizeof p->err, "reachable but not ready (see its /readyz)");
  }
  probe_end(p);
}

static void rerank_cb(void *ud, q_err_t rc, Quarry__V1__RerankResponse *resp,
                      const char *status_message) {
  probe_t *p = ud;
  p->rc = rc;
  if (rc)
    snprintf(p->err, sizeof p->err, "%s",
             status_message && status_message[0] ? status_message : q_strerror(rc));
  else
    snprintf(p->method, sizeof p->method, "%s", resp && resp->method ? resp->method : "");
  probe_end(p);
}

/* Starts one probe; on a start that fails, the probe is ended here (no
 * callback will come). */
static void probe_start(round_t *r, int i, const char *addr) {
  probe_t *p = &r->p[i];
  q_grpc_call_opts_t opts = {.timeout_ms = DEPWATCH_CHECK_TIMEOUT_MS, .max_attempts = 1};
  q_grpc_async_t *h = NULL;
  q_err_t rc;
  if (i < DEPWATCH_NDEPS) {
    Grpc__Health__V1__HealthCheckRequest req =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    rc = q_rpc_health_check_async(q_grpc_channel(addr), &req, p->arena, &opts, health_cb,
                                  p, &h);
  } else {
    /* No passages: the reply only names the configured method. */
    Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
    req.query = "method";
    rc = q_rpc_reranker_rerank_async(q_grpc_channel(addr), &req, p->arena, &opts,
                                     rerank_cb, p, &h);
  }
  if (rc) {
    p->rc = rc;
    snprintf(p->err, sizeof p->err, "cannot start the check: %s", q_strerror(rc));
    probe_end(p);
  }
}

/* One round into out (everything but age_ms). */
static void round_run(const gw_cfg_t *cfg, depwatch_state_t *out, int *rerank) {
  round_t r;
  memset(&r, 0, sizeof r);
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  const char *addrs[DEPWATCH_NDEPS + 1] = {cfg->auth_addr, cfg->retriever_addr,
                                           cfg->llm_addr, cfg->reranker_addr};
  int64_t t0 = q_now_ms();
  r.pending = DEPWATCH_NDEPS + 1;
  for (int i = 0; i <= DEPWATCH_NDEPS; i++) {
    r.p[i].round = &r;
    r.p[i].name = i < DEPWATCH_NDEPS ? dep_names[i] : "reranker";
    r.p[i].arena = q_arena_new(ARENA_BYTES);
  }
  for (int i = 0; i <= DEPWATCH_NDEPS; i++) {
    if (r.p[i].arena) {
      probe_start(&r, i, addrs[i]);
    } else {
      r.p[i].rc = Q_ENOMEM;
      snprintf(r.p[i].err, sizeof r.p[i].err, "out of memory");
      probe_end(&r.p[i]);
    }
  }
  /* Every started call calls back exactly once, at the latest at its
   * deadline (quarry/grpc.h), so this wait is bounded. */
  pthread_mutex_lock(&r.mu);
  while (r.pending > 0)
    pthread_cond_wait(&r.cv, &r.mu);
  pthread_mutex_unlock(&r.mu);

  memset(out, 0, sizeof *out);
  out->checked = true;
  out->check_ms = q_now_ms() - t0;
  size_t off = 0;
  for (int i = 0; i < DEPWATCH_NDEPS; i++) {
    if (r.p[i].rc == 0)
      continue;
    int n =
        snprintf(out->why + off, off < sizeof out->why ? sizeof out->why - off : 0,
                 "%s%s (%s)", out->ndown ? ", " : "not ready: ", r.p[i].name, r.p[i].err);
    if (n > 0)
      off += (size_t)n;
    out->down[out->ndown++] = r.p[i].name;
  }
  probe_t *rp = &r.p[DEPWATCH_NDEPS];
  if (rp->rc == 0 && rp->method[0]) {
    snprintf(out->rerank_method, sizeof out->rerank_method, "%s", rp->method);
    *rerank = strcmp(rp->method, "none") == 0 ? RERANK_NONE : RERANK_OTHER;
  } else {
    /* Down or mute: the query path calls it, and degrades if it must. */
    *rerank = RERANK_UNKNOWN;
  }
  for (int i = 0; i <= DEPWATCH_NDEPS; i++)
    q_arena_free(r.p[i].arena);
  pthread_cond_destroy(&r.cv);
  pthread_mutex_destroy(&r.mu);
}

static int64_t interval_ms(void) {
  return w.cfg->readyz_interval_ms > 0 ? w.cfg->readyz_interval_ms : INTERVAL_DEFAULT_MS;
}

static void *watch_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&w.mu);
  while (!w.stop) {
    w.in_round = true;
    w.refresh = false;
    pthread_mutex_unlock(&w.mu);
    depwatch_state_t st;
    int rerank;
    round_run(w.cfg, &st, &rerank);
    pthread_mutex_lock(&w.mu);
    int before = atomic_exchange(&w.rerank, rerank);
    if (before != rerank && rerank != RERANK_UNKNOWN)
      q_log_info("reranker method", "{s:s,s:b}", "method", st.rerank_method,
                 "call_skipped", rerank == RERANK_NONE);
    if (st.ndown && !w.last.ndown)
      q_log_warn("dependencies not ready", "{s:s}", "why", st.why);
    w.last = st;
    w.ended_at = q_now_ms();
    w.rounds++;
    w.in_round = false;
    pthread_cond_broadcast(&w.cv);
    struct timespec until;
    q_cond_deadline(&until, (int)interval_ms());
    while (!w.stop && !w.refresh)
      if (pthread_cond_timedwait(&w.cv, &w.mu, &until) != 0)
        break;
  }
  pthread_mutex_unlock(&w.mu);
  return NULL;
}

q_err_t depwatch_start(const gw_cfg_t *cfg) {
  /* The sleep between rounds waits for a q_cond_deadline (CLOCK_MONOTONIC):
   * on a cv of the default clock that deadline is long past, and the
   * rounds ran back to back. */
  static pthread_once_t cv_once = PTHREAD_ONCE_INIT;
  pthread_once(&cv_once, cv_init);
  pthread_mutex_lock(&w.mu);
  w.cfg = cfg;
  w.stop = false;
  w.refresh = false;
  w.rounds = 0;
  w.ended_at = 0;
  memset(&w.last, 0, sizeof w.last);
  atomic_store(&w.rerank, RERANK_UNKNOWN);
  pthread_mutex_unlock(&w.mu);
  if (pthread_create(&w.th, NULL, watch_main, NULL) != 0) {
    q_log_error("cannot start the dependency checks", NULL);
    return Q_EINTERNAL;
  }
  w.running = true;
  return 0;
}

void depwatch_stop(void) {
  if (!w.running)
    return;
  pthread_mutex_lock(&w.mu);
  w.stop = true;
  pthread_cond_broadcast(&w.cv);
  pthread_mutex_unlock(&w.mu);
  pthread_join(w.th, NULL);
  w.running = false;
  atomic_store(&w.rerank, RERANK_UNKNOWN);
}

void depwatch_get(depwatch_state_t *out) {
  pthread_mutex_lock(&w.mu);
  *out = w.last;
  out->age_ms = w.rounds ? q_now_ms() - w.ended_at : -1;
  int64_t stale_after =
      w.cfg ? interval_ms() + DEPWATCH_CHECK_TIMEOUT_MS + DEPWATCH_STALE_MS
            : DEPWATCH_STALE_MS;
  pthread_mutex_unlock(&w.mu);
  if (!out->checked) {
    snprintf(out->why, sizeof out->why,
             "not ready: no check of the dependencies has completed yet");
  } else if (out->age_ms > stale_after) {
    out->checked = false;
    snprintf(out->why, sizeof out->why,
             "not ready: the last check of the dependencies ended %lld ms ago",
             (long long)out->age_ms);
  }
}

q_err_t depwatch_ready(char *why, size_t whylen) {
  depwatch_state_t st;
  depwatch_get(&st);
  snprintf(why, whylen, "%s", st.why);
  return st.checked && st.ndown == 0 ? 0 : Q_EUNAVAIL;
}

bool depwatch_rerank_is_none(void) {
  return atomic_load_explicit(&w.rerank, memory_order_relaxed) == RERANK_NONE;
}

void depwatch_refresh(void) {
  pthread_mutex_lock(&w.mu);
  if (w.running && !w.stop) {
    /* A round under way may have started before the caller's change. */
    uint64_t want = w.rounds + (w.in_round ? 2 : 1);
    while (w.running && !w.stop && w.rounds < want) {
      w.refresh = true;
      pthread_cond_broadcast(&w.cv);
      pthread_cond_wait(&w.cv, &w.mu);
    }
  }
  pthread_mutex_unlock(&w.mu);
}
