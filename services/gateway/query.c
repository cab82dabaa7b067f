/* query.c - POST /v1/query at the HTTP edge: reads the request, picks the
 * sink (one JSON reply, or Server-Sent Events when the body says "stream":
 * true or the client accepts text/event-stream), starts the pipeline once
 * admission control lets it (pool.h) and answers when the sink has
 * something, without ever holding an HTTP thread while a downstream
 * service works (the pipeline runs on asynchronous gRPC completions).
 * Everything from the pipeline on is query_submit (query.h), which POST
 * /v1/chat/completions (chat.c) shares with its own sink.
 *
 * The connection waits suspended (MHD_suspend_connection). A sink's wake
 * (on the pipeline's thread) resumes it; libmicrohttpd then calls the
 * request's handler again (async_resume), which queues the JSON reply, or
 * the SSE reply whose content reader (sse_read_cb) copies what the sink
 * has queued. With nothing queued the reader suspends the connection and
 * returns 0: in libmicrohttpd 0.9.75 a 0 from the reader of a chunked
 * reply leaves the connection "unready", which its internal poll loop
 * retries at once, so without the suspension it would spin. The next wake
 * resumes it and libmicrohttpd calls the reader again.
 *
 * Every suspension and every resume happens under query_t.mu, with
 * `suspended` saying which one is due: the reader or handler that finds
 * nothing suspends under the lock, a wake that comes after it resumes
 * under the lock, so a wake is never lost and a connection is never
 * resumed twice or after it closed (libmicrohttpd calls resuming a
 * connection that is not suspended undefined).
 *
 * A client that goes away: libmicrohttpd does not watch suspended
 * connections, so the hang-up watcher (hangup.h) does; it cancels the
 * pipeline and resumes the connection, whose handler or reader then makes
 * libmicrohttpd close it without writing. A failed write or a timeout ends
 * the request through async_close, which cancels the pipeline too. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quarry/error.h"
#include "quarry/filter.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/validate.h"

#include "handlers.h"
#include "hangup.h"
#include "http_util.h"
#include "pipeline.h"
#include "pool.h"
#include "query.h"
#include "sink.h"

#define SSE_MAX_BYTES QUERY_SSE_MAX_BYTES

_Static_assert(SSE_MAX_BYTES > 8 * Q_LIMIT_ANSWER_BYTES, "a whole answer fits");

/* Flow control of a stream: above this much unread, the pipeline pauses
 * generation; once the reader is below half of it, generation resumes. */
#define SSE_PAUSE_BYTES (64u << 10)

_Static_assert(SSE_PAUSE_BYTES < SSE_MAX_BYTES / 4, "pauses long before the cut");

/* One query, shared by its HTTP request, its pipeline run and its SSE
 * reply: freed when the last of them lets go. */
typedef struct query {
  pthread_mutex_t mu;
  int refs;
  struct MHD_Connection *conn; /* NULL once the request is over */
  bool suspended;              /* suspended by us: the next step is a resume */
  bool gone;                   /* the client hung up, or the server stops */
  bool sse;
  sink_t *sink;   /* the pipeline reports here (owned) */
  sink_t *reader; /* the JSON or SSE sink read here: sink, or its carrier */
  pipeline_t *pl;
  pool_job_t job;
  pool_t *pool;        /* admitted by; pool_done when the run ends */
  atomic_bool yielded; /* its tenant slot went back when generation began */
  uint64_t watch;      /* hang-up watch; 0: none */
  struct query *prev, *next;
} query_t;

/* Module state: one server at a time (query_start .. query_stop). */
static struct {
  pthread_mutex_t mu; /* guards stopping and live */
  pool_t *pool;
  hangup_t *hangup;
  bool stopping;
  query_t *live; /* queries whose HTTP request is not over */
} state = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void count(const char *outcome) {
  const char *labels[] = {outcome};
  q_metrics_inc(gw_metrics.queries, labels);
}

static void query_unref(query_t *q) {
  pthread_mutex_lock(&q->mu);
  int refs = --q->refs;
  pthread_mutex_unlock(&q->mu);
  if (refs)
    return;
  pipeline_free(q->pl);
  if (q->sink)
    q->sink->free(q->sink);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

/* Under q->mu, on the request's thread. */
static void suspend(query_t *q) {
  q->suspended = true;
  MHD_suspend_connection(q->conn);
}

/* Under q->mu, on any thread. */
static void resume(query_t *q) {
  if (q->conn && q->suspended) {
    q->suspended = false;
    MHD_resume_connection(q->conn);
  }
}

/* The sink has output (pipeline thread). */
static void wake_cb(void *ud) {
  query_t *q = ud;
  pthread_mutex_lock(&q->mu);
  resume(q);
  pthread_mutex_unlock(&q->mu);
}

/* The client hung up while waiting (watcher thread). */
static void client_hung_up_cb(void *ud) {
  query_t *q = ud;
  pthread_mutex_lock(&q->mu);
  q->gone = true;
  resume(q);
  pthread_mutex_unlock(&q->mu);
  pipeline_cancel(q->pl);
}

/* The run is over (whichever thread ended it): the slot goes to the next
 * query, and the run's reference goes. */
static void run_ended_cb(void *ud) {
  query_t *q = ud;
  pool_t *pool = q->pool;
  char tenant[sizeof q->job.tenant];
  memcpy(tenant, q->job.tenant, sizeof tenant);
  bool yielded = atomic_load(&q->yielded);
  query_unref(q);
  pool_done(pool, yielded ? NULL : tenant);
}

/* The run waits on the model from now on (pipeline thread): the tenant's
 * cap counts CPU work, so its slot goes to the next query (pool.h). */
static void generating_cb(void *ud) {
  query_t *q = ud;
  atomic_store(&q->yielded, true);
  pool_yield(q->pool, q->job.tenant);
}

/* Admitted (on the HTTP thread, or on a loop thread when it waited). */
static void run_job(pool_job_t *job) {
  query_t *q = (query_t *)((char *)job - offsetof(query_t, job));
  pipeline_start(q->pl, run_ended_cb, q);
}

/* Whether the SSE reader is so far behind that generation should pause
 * (pipeline thread). */
static bool sse_full_cb(void *ud) {
  query_t *q = ud;
  return sink_sse_unread(q->reader) > SSE_PAUSE_BYTES;
}

/* ---- replies ----------------------------------------------------------------- */

static void send_reply(gw_req_t *r, sink_reply_t *rep) {
  if (rep->body) {
    http_reply_json(r, 200, rep->body);
    return;
  }
  if (rep->retry_after_s > 0)
    http_add_header(r, "Retry-After", q_arena_printf(r->arena, "%d", rep->retry_after_s));
  http_reply_error(r, rep->err, "%s", rep->message);
}

static ssize_t sse_read_cb(void *cls, uint64_t pos, char *buf, size_t max) {
  query_t *q = cls;
  pthread_mutex_lock(&q->mu);
  ssize_t n = q->gone ? SINK_SSE_CUT : sink_sse_read(q->reader, buf, max);
  if (n == 0)
    suspend(q);
  pthread_mutex_unlock(&q->mu);
  /* Below the mark: generation may go on (a no-op unless it is paused). */
  if (n >= 0 && sink_sse_unread(q->reader) <= SSE_PAUSE_BYTES / 2)
    pipeline_resume(q->pl);
  if (n == SINK_SSE_END)
    return MHD_CONTENT_READER_END_OF_STREAM;
  if (n == SINK_SSE_CUT)
    return MHD_CONTENT_READER_END_WITH_ERROR;
  return n;
}

static void sse_free_cb(void *cls) {
  query_unref(cls);
}

/* After a resume (request's thread): reply if the sink has something, else
 * wait again. */
static enum MHD_Result async_resume(gw_req_t *r) {
  query_t *q = r->async_state;
  sink_reply_t rep = {0};
  pthread_mutex_lock(&q->mu);
  if (q->gone) {
    pthread_mutex_unlock(&q->mu);
    return MHD_NO; /* close without writing to a client that left */
  }
  if (!q->sse) {
    if (sink_json_take(q->reader, &rep)) {
      pthread_mutex_unlock(&q->mu);
      send_reply(r, &rep);
      return r->queue_ok ? MHD_YES : MHD_NO;
    }
  } else {
    switch (sink_sse_begin(q->reader, &rep)) {
    case SINK_SSE_REPLY:
      pthread_mutex_unlock(&q->mu);
      send_reply(r, &rep);
      return r->queue_ok ? MHD_YES : MHD_NO;
    case SINK_SSE_STREAM:
      q->refs++; /* the reply's */
      pthread_mutex_unlock(&q->mu);
      /* Proxies (nginx) must not buffer the stream. */
      http_add_header(r, "X-Accel-Buffering", "no");
      http_reply_stream(r, 200, "text/event-stream", sse_read_cb, q, sse_free_cb);
      return r->queue_ok ? MHD_YES : MHD_NO;
    case SINK_SSE_WAIT: break;
    }
  }
  suspend(q);
  pthread_mutex_unlock(&q->mu);
  return MHD_YES;
}

static void unlink_live(query_t *q) {
  pthread_mutex_lock(&state.mu);
  if (q->prev)
    q->prev->next = q->next;
  else
    state.live = q->next;
  if (q->next)
    q->next->prev = q->prev;
  pthread_mutex_unlock(&state.mu);
}

/* The request is over (request's thread). */
static void async_close(gw_req_t *r, bool ok) {
  query_t *q = r->async_state;
  hangup_unwatch(state.hangup, q->watch);
  unlink_live(q);

  pthread_mutex_lock(&q->mu);
  q->conn = NULL;
  q->suspended = false;
  if (!ok)
    q->gone = true;
  pthread_mutex_unlock(&q->mu);
  if (!ok) {
    q_log_info("query request ended before its reply went out", "{s:s}", "query_id",
               pipeline_query_id(q->pl));
    pipeline_cancel(q->pl);
  }
  query_unref(q);
}

static const gw_async_t async_ops = {.resume = async_resume, .close = async_close};

/* ---- the handler ---------------------------------------------------------- */

/* Whether an Accept header value lists text/event-stream (with a q above
 * 0). */
static bool accepts_event_stream(const char *accept) {
  static const char want[] = "text/event-stream";
  for (const char *p = accept; p && *p;) {
    p += strspn(p, " \t,");
    size_t item = strcspn(p, ",");
    size_t mt = strcspn(p, ";,");
    size_t n = mt;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
      n--;
    if (n == sizeof want - 1 && strncasecmp(p, want, n) == 0) {
      const char *qp = NULL;
      for (const char *s = p + mt; s < p + item; s++)
        if ((*s == 'q' || *s == 'Q') && s[1] == '=' && (s[-1] == ';' || s[-1] == ' '))
          qp = s + 2;
      if (!qp || strtod(qp, NULL) > 0)
        return true;
    }
    p += item;
  }
  return false;
}

/* "stream": true/false, or absent/null (*given = false). Replies 400 on
 * anything else. */
static q_err_t stream_field(gw_req_t *r, json_t *body, bool *given, bool *value) {
  json_t *v = json_object_get(body, "stream");
  *given = v && !json_is_null(v);
  *value = *given && json_is_true(v);
  if (*given && !json_is_boolean(v)) {
    http_reply_error(r, Q_EINVAL, "field \"stream\" must be true or false");
    return Q_EINVAL;
  }
  return 0;
}

/* query_submit with a retrieval mode (NULL: the retriever's default) and a
 * filter (compact JSON, NULL: none). */
static void submit(gw_req_t *r, const char *query, int top_k, const char *mode,
                   const char *filter, bool sse, query_sink_fn make, void *ud) {
  query_t *q = calloc(1, sizeof *q);
  if (!q) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    goto fail;
  }
  pthread_mutex_init(&q->mu, NULL);
  q->refs = 1; /* the request's */
  q->conn = r->conn;
  q->sse = sse;
  if (make) {
    q->sink = make(ud, wake_cb, q, &q->reader);
  } else {
    q->sink = sse ? sink_sse_new(SSE_MAX_BYTES, wake_cb, q) : sink_json_new(wake_cb, q);
    q->reader = q->sink;
  }
  /* Flow control: a streamed answer pauses the Generate stream while the
   * client is far behind (the reader is the SSE sink bytes go out of). */
  pipeline_req_t req = {
      .cfg = r->cfg,
      .principal = r->authenticated ? &r->principal : NULL,
      .auth_ms = r->auth_ms,
      .rate_limited = true, /* at admission (server.c) */
      .query = query,
      .top_k = top_k,
      .mode = mode,
      .filter = filter,
      .trace_id = r->trace_id,
      .deadline_ms = r->deadline_ms,
      .t0 = r->t0,
      .sink_full = q->sse ? sse_full_cb : NULL,
      .flow_ud = q,
      .generating = generating_cb,
      .generating_ud = q,
  };
  q->pl = q->sink ? pipeline_new(&req, q->sink) : NULL;
  if (!q->pl) {
    query_unref(q);
    http_reply_error(r, Q_ENOMEM, "out of memory");
    goto fail;
  }
  snprintf(q->job.tenant, sizeof q->job.tenant, "%s", r->principal.tenant_id);
  q->job.run = run_job;

  /* In the live list before it can be suspended, so query_quiesce finds
   * every suspended connection. */
  pthread_mutex_lock(&state.mu);
  bool stopping = state.stopping || !state.pool;
  if (!stopping) {
    q->next = state.live;
    if (state.live)
      state.live->prev = q;
    state.live = q;
  }
  pthread_mutex_unlock(&state.mu);
  if (stopping) {
    query_unref(q);
    http_reply_error(r, Q_EUNAVAIL, "the gateway is shutting down");
    goto fail;
  }

  /* Admitted and suspended under the lock: a wake that comes at once
   * waits for the suspension it has to undo. A query admitted at once
   * starts here once the lock is released (the run may end at once and
   * wake the connection); a queued one starts when a slot frees. */
  bool start_now = false;
  pthread_mutex_lock(&q->mu);
  q->pool = state.pool;
  q_err_t rc = q->gone ? Q_ECANCELLED : pool_submit(state.pool, &q->job, &start_now);
  if (rc == 0) {
    q->refs++; /* the run's */
    suspend(q);
  }
  pthread_mutex_unlock(&q->mu);
  if (start_now)
    run_job(&q->job);
  if (rc) {
    unlink_live(q);
    query_unref(q);
    if (rc == Q_ERESOURCE) {
      http_add_header(r, "Retry-After", "1");
      http_reply_error(r, Q_EUNAVAIL, "too many queries waiting: try again shortly");
    } else {
      http_reply_error(r, Q_EUNAVAIL, "the gateway is shutting down");
    }
    goto fail;
  }
  r->async = &async_ops;
  r->async_state = q;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  q->watch = ci ? hangup_watch(state.hangup, ci->connect_fd, client_hung_up_cb, q) : 0;
  return;

fail:
  count("failed");
}

void query_submit(gw_req_t *r, const char *query, int top_k, const char *filter, bool sse,
                  query_sink_fn make, void *ud) {
  submit(r, query, top_k, NULL, filter, sse, make, ud);
}

/* The optional "mode" field: lexical, dense or hybrid (the retriever's). */
static q_err_t mode_field(gw_req_t *r, json_t *body, const char **mode) {
  if (http_json_string(r, body, "mode", 0, 1, 16, mode))
    return Q_EINVAL;
  if (*mode && strcmp(*mode, "lexical") != 0 && strcmp(*mode, "dense") != 0 &&
      strcmp(*mode, "hybrid") != 0) {
    http_reply_error(r, Q_EINVAL, "field \"mode\" must be lexical, dense or hybrid");
    return Q_EINVAL;
  }
  return 0;
}

q_err_t query_filter_compact(const json_t *v, char **compact, char *err, size_t errlen) {
  *compact = NULL;
  q_filter_t *f = NULL;
  q_err_t rc = q_filter_compile(v, &f, err, errlen);
  q_filter_free(f);
  if (rc)
    return rc;
  *compact = json_dumps(v, JSON_COMPACT);
  if (!*compact) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  if (strlen(*compact) > Q_LIMIT_FILTER_BYTES) {
    snprintf(err, errlen, "filter: %zu bytes as compact JSON; at most %d",
             strlen(*compact), Q_LIMIT_FILTER_BYTES);
    free(*compact);
    *compact = NULL;
    return Q_EINVAL;
  }
  return 0;
}

/* The optional "filter" field (quarry/filter.h, docs/retrieval.md): checked
 * here, once, so a malformed filter is a 400 naming the problem before any
 * downstream call; *compact receives it as compact JSON for
 * SearchRequest.filter (NULL: none; free() it). */
static q_err_t filter_field(gw_req_t *r, json_t *body, char **compact) {
  *compact = NULL;
  json_t *v = json_object_get(body, "filter");
  if (!v || json_is_null(v))
    return 0;
  char err[384];
  q_err_t rc = query_filter_compact(v, compact, err, sizeof err);
  if (rc)
    http_reply_error(r, rc, "%s", err);
  return rc;
}

void query_post(gw_req_t *r) {
  static const char *const keys[] = {"query", "top_k", "stream", "mode", "filter", NULL};
  json_t *body = NULL;
  char *filter = NULL;
  const char *text, *mode = NULL;
  json_int_t top_k;
  bool stream_given, stream;
  if (http_parse_json_object(r, &body) || http_json_only_keys(r, body, keys) ||
      http_json_string(r, body, "query", 1, 1, Q_LIMIT_QUERY_BYTES, &text) ||
      http_json_int(r, body, "top_k", 0, PIPELINE_TOP_K_DEFAULT, 1, Q_LIMIT_TOP_K_MAX,
                    &top_k) ||
      stream_field(r, body, &stream_given, &stream) || mode_field(r, body, &mode) ||
      filter_field(r, body, &filter))
    goto rejected;
  if (q_is_blank(text, strlen(text))) {
    http_reply_error(r, Q_EINVAL, "field \"query\" must not be blank");
    goto rejected;
  }

  /* The pipeline copies the query: the body can go. */
  submit(r, text, (int)top_k, mode, filter,
         stream_given ? stream : accepts_event_stream(http_header(r, "Accept")), NULL,
         NULL);
  json_decref(body);
  free(filter);
  return;

rejected:
  json_decref(body);
  free(filter);
  count("rejected");
  return;
}

/* ---- life cycle ----------------------------------------------------------- */

q_err_t query_start(const gw_cfg_t *cfg) {
  pool_opts_t o = {
      .max_inflight =
          (int)(cfg->pipeline_max_inflight ? cfg->pipeline_max_inflight
                                           : GW_PIPELINE_MAX_INFLIGHT_DEFAULT),
      .queue_max =
          (int)(cfg->pipeline_queue ? cfg->pipeline_queue : GW_PIPELINE_QUEUE_DEFAULT),
      .tenant_max = (int)(cfg->tenant_max_inflight ? cfg->tenant_max_inflight
                                                   : GW_TENANT_MAX_INFLIGHT_DEFAULT),
  };
  hangup_t *h = hangup_new();
  pool_t *p = h ? pool_new(&o) : NULL;
  if (!p) {
    hangup_free(h);
    return Q_EINTERNAL;
  }
  pthread_mutex_lock(&state.mu);
  state.pool = p;
  state.hangup = h;
  state.stopping = false;
  state.live = NULL;
  pthread_mutex_unlock(&state.mu);
  q_log_info("query pipeline ready", "{s:i,s:i,s:i}", "max_inflight", o.max_inflight,
             "queue", o.queue_max, "tenant_max_inflight", o.tenant_max);
  return 0;
}

void query_quiesce(void) {
  pthread_mutex_lock(&state.mu);
  state.stopping = true;
  for (query_t *q = state.live; q; q = q->next) {
    pthread_mutex_lock(&q->mu);
    q->gone = true;
    resume(q);
    pthread_mutex_unlock(&q->mu);
    pipeline_cancel(q->pl);
  }
  pthread_mutex_unlock(&state.mu);
}

void query_stop(void) {
  pthread_mutex_lock(&state.mu);
  pool_t *p = state.pool;
  hangup_t *h = state.hangup;
  state.pool = NULL;
  state.hangup = NULL;
  state.stopping = true;
  pthread_mutex_unlock(&state.mu);
  pool_free(p); /* runs what is queued (cancelled: it ends at once) and waits
                   for every run in flight to end */
  hangup_free(h);
}
