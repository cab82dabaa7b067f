/* guard.c - connection caps, request deadlines and strict framing around
 * libmicrohttpd (see guard.h for what is enforced).
 *
 * How a connection libmicrohttpd owns gets closed. libmicrohttpd 0.9.75
 * has no call to close one of its connections from outside its worker
 * thread, and its own timeout restarts with every byte. The guard keeps a
 * record per connection (created and removed in MHD_OPTION_NOTIFY_CONNECTION,
 * kept in the connection's socket context) in one list under a mutex. A
 * sweeper thread walks the list a few times per deadline; to end a
 * connection it writes a 408 itself when a request is under way and nothing
 * else is being written (see "states" below), then shutdown(2)s the socket
 * both ways. The worker thread then reads end-of-file, and libmicrohttpd
 * closes the connection through its normal path (completion callbacks
 * included). The socket cannot be a reused descriptor: libmicrohttpd calls
 * NOTIFY_CLOSED, which removes the record under the same mutex, before it
 * close(2)s the socket, and the sweeper only touches sockets of records in
 * the list while holding the mutex. The sweeper never calls libmicrohttpd.
 *
 * States of the request in progress on a connection (c->state; changed by
 * compare-and-swap, so the sweeper and the worker never both act):
 *   HEAD   waiting for the request head; the sweeper may end it, with a 408
 *          once the request line has arrived, else silently (an idle
 *          kept-alive connection, or nothing sent yet);
 *   BODY   the head is in, the body arrives; the sweeper may answer 408;
 *   REPLY  the request is complete or a reply is queued: libmicrohttpd may be
 *          writing, so the sweeper stays away (the handlers have their own
 *          deadlines, a slow reader meets libmicrohttpd's idle timeout);
 *   DEAD   the guard ended it; the access handler refuses every later call.
 * The access handler the server gives libmicrohttpd is wrapped
 * (guard_access_cb): HEAD->BODY on the first call of a request, BODY->REPLY
 * on the final call or as soon as a reply is queued; the completion callback
 * is wrapped too and starts the next request's clock (REPLY->HEAD).
 *
 * Time the server itself was busy does not count against the client. A
 * worker thread serves many connections and blocks while one of them runs a
 * handler (a query, an upload's end), and meanwhile reads nothing for the
 * others. Each worker thread therefore keeps its busy time (entered and
 * left around every callback); a deadline is measured on the thread's idle
 * time since it started. request_timeout_ms is the exception: wall-clock
 * time, the hard bound.
 *
 * Reading the raw head. Some framing faults are invisible through the API:
 * libmicrohttpd accepts bare LF line ends, keeps only what precedes a NUL
 * byte of a field value and joins folded lines. The head is still in its
 * read buffer when the access handler first runs, with each CR and LF
 * replaced by NUL, the colon of each field too, and the field names and
 * values pointing into it. So with CRLF everywhere, every field line starts
 * right where the previous one ended, its value is followed by exactly two
 * NULs, and the head ends with two more; a bare LF leaves one NUL, a NUL in
 * a value leaves bytes after the value's end, a folded line moves the value
 * out of the buffer. This reads libmicrohttpd's internals, so it is only
 * done with the version it was written against (checked at start; other
 * versions log a warning and skip it), and tests/unit/gateway/test_guard.c
 * pins it. It cannot tell "\0\n" from "\r\n"; that one passes. */
#include "guard.h"

#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/trace.h"
#include "quarry/util.h"

/* libmicrohttpd's memory per connection: the read buffer (the whole head
 * must fit), the parsed fields and parameters, and the write buffer of the
 * reply's head (and of a streamed body's chunks). libmicrohttpd 0.9.75
 * zeroes the whole pool after every request, so a kept-alive connection
 * costs its full pool in resident memory: cfg->conn_memory_bytes (0: the
 * old 256 KiB), raised to max_header_bytes + CONN_MEMORY_SLACK when the
 * head limit needs more. */
#define CONN_MEMORY_DEFAULT (256u << 10)
#define CONN_MEMORY_SLACK (16u << 10)
/* The libmicrohttpd whose read buffer layout the raw head check reads. */
#define LAYOUT_VERSION "0.9.75"
#define SWEEP_MIN_MS 20
#define SWEEP_MAX_MS 500
#define LOG_EVERY_MS 10000 /* one warning per refusal reason and period */
#define NO_ENTRY (-1)      /* a connection without a per-address entry */

enum { ST_HEAD, ST_BODY, ST_REPLY, ST_DEAD };

/* The busy time of one worker thread, in q_now_ms() milliseconds. */
typedef struct busy {
  _Atomic int64_t since; /* when the current callback began; 0 when idle */
  _Atomic int64_t total; /* finished callbacks */
} busy_t;

/* Connections open from one address, chained in a bucket by index. */
typedef struct ipent {
  unsigned char key[16];
  unsigned count;
  int next;
} ipent_t;

typedef struct gconn {
  guard_t *g;
  struct gconn *prev, *next;
  int fd;
  int ip;     /* index in g->ents, or NO_ENTRY */
  busy_t *bt; /* of the worker thread serving the connection; may be NULL */

  _Atomic int state;
  _Atomic int64_t start_ms, start_busy; /* this request's clock */
  _Atomic int64_t body_ms, body_busy;   /* when its head was complete */
  _Atomic uint64_t body_bytes;
  _Atomic unsigned req_no;
  _Atomic bool line_seen;    /* its request line has arrived */
  _Atomic unsigned answered; /* status the guard sent for it */
  atomic_bool first_again;   /* the next bodiless call repeats the first */
  _Atomic unsigned requests; /* completed on this connection */

  /* worker thread only */
  size_t uri_len; /* raw request target, as the URI callback saw it */
  bool uri_bad;   /* ... with a control byte or %00 in it */

  /* sweeper only: the body window being measured */
  unsigned win_req;
  int64_t win_ms, win_busy;
  uint64_t win_bytes;
} gconn_t;

struct guard {
  const gw_cfg_t *cfg;
  MHD_AccessHandlerCallback access;
  void *access_cls;
  MHD_RequestCompletedCallback completed;
  void *completed_cls;
  struct MHD_OptionItem opts[8];
  bool layout_check;
  int64_t tick_ms;

  pthread_mutex_t mu; /* everything below */
  pthread_cond_t cv;
  bool stop, started;
  pthread_t sweeper;
  gconn_t *conns;
  size_t nconns;
  int *buckets; /* per-address counts: nbuckets chains into ents */
  size_t nbuckets;
  ipent_t *ents;
  size_t nents;
  int free_ent;

  busy_t *threads; /* one per worker thread, handed out on first use */
  size_t nthreads;
  atomic_size_t used_threads;
};

static q_metric_t *m_rejected, *m_conns;

/* ---- metrics and logs ----------------------------------------------------- */

/* Refusal reasons: the bounded label set of quarry_http_rejected_total. */
static const char *const reasons[] = {
    "connections",    "connections_per_ip", "header_timeout", "idle_timeout",
    "body_rate",      "request_timeout",    "url_length",     "query_params",
    "header_count",   "header_bytes",       "content_length", "transfer_encoding",
    "malformed_head", "nul_in_target",      "content_type",   "unread_body",
};
#define NREASONS (sizeof reasons / sizeof reasons[0])
static _Atomic int64_t last_log[NREASONS];

static void metrics_init(void) {
  m_rejected = q_metrics_counter(
      "quarry_http_rejected_total",
      "HTTP connections or requests refused by the gateway's edge defences, by reason.",
      "reason");
  m_conns = q_metrics_gauge("quarry_http_connections",
                            "HTTP connections open on the gateway.", "");
}

void guard_count(const char *reason) {
  for (size_t i = 0; i < NREASONS; i++) {
    if (strcmp(reasons[i], reason) != 0)
      continue;
    const char *labels[] = {reasons[i]};
    q_metrics_inc(m_rejected, labels);
    /* Under attack a refusal per connection would flood the log: one
     * warning per reason and period, the counter has the rest. */
    int64_t now = q_now_ms(), last = atomic_load(&last_log[i]);
    if (now - last >= LOG_EVERY_MS &&
        atomic_compare_exchange_strong(&last_log[i], &last, now))
      q_log_warn("HTTP edge refusal (further ones of this kind are only counted for a "
                 "while)",
                 "{s:s}", "reason", reasons[i]);
    return;
  }
}

/* ---- busy time ------------------------------------------------------------ */

static _Thread_local busy_t *tls_busy;
static _Thread_local const guard_t *tls_owner;

/* The calling worker thread's busy record (NULL past the expected number
 * of threads: that thread's time is then never excused). */
static busy_t *thread_busy(guard_t *g) {
  if (tls_owner != g) {
    size_t i = atomic_fetch_add(&g->used_threads, 1);
    tls_busy = i < g->nthreads ? &g->threads[i] : NULL;
    tls_owner = g;
  }
  return tls_busy;
}

static int64_t busy_at(const busy_t *b, int64_t now) {
  if (!b)
    return 0;
  int64_t since = atomic_load(&b->since);
  return atomic_load(&b->total) + (since && now > since ? now - since : 0);
}

static void busy_enter(busy_t *b) {
  if (b && !atomic_load(&b->since))
    atomic_store(&b->since, q_now_ms() | 1); /* never 0 while busy */
}

static void busy_leave(busy_t *b) {
  if (!b)
    return;
  int64_t since = atomic_load(&b->since);
  if (since) {
    /* since may be now + 1 (the | 1 above): a callback that took no
     * millisecond adds 0, never -1, which at tens of thousands of
     * callbacks a second drove the total down by minutes and made the
     * sweeper end idle kept-alive connections long before their time. */
    int64_t d = q_now_ms() - since;
    atomic_fetch_add(&b->total, d > 0 ? d : 0);
    atomic_store(&b->since, 0);
  }
}

/* Milliseconds of [from, now) during which the thread was not busy. */
static int64_t idle_since(const gconn_t *c, int64_t from, int64_t busy0, int64_t now) {
  return (now - from) - (busy_at(c->bt, now) - busy0);
}

/* ---- per-address counts --------------------------------------------------- */

/* The key of a client address: IPv4 as IPv4-mapped IPv6, IPv6 by its /64
 * (one host usually has a whole /64). false for other families. */
static bool addr_key(const struct sockaddr *sa, socklen_t len, unsigned char key[16]) {
  memset(key, 0, 16);
  if (sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &in->sin_addr, 4);
    return true;
  }
  if (sa && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    memcpy(key, &in6->sin6_addr, 16);
    if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
      memset(key + 8, 0, 8);
    return true;
  }
  return false;
}

static size_t bucket_of(const guard_t *g, const unsigned char key[16]) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (int i = 0; i < 16; i++)
    h = (h ^ key[i]) * 1099511628211ull;
  return (size_t)(h % g->nbuckets);
}

static int ip_find(const guard_t *g, const unsigned char key[16]) {
  for (int i = g->buckets[bucket_of(g, key)]; i != NO_ENTRY; i = g->ents[i].next)
    if (memcmp(g->ents[i].key, key, 16) == 0)
      return i;
  return NO_ENTRY;
}

static int ip_add(guard_t *g, const unsigned char key[16]) {
  int i = ip_find(g, key);
  if (i == NO_ENTRY) {
    if (g->free_ent == NO_ENTRY)
      return NO_ENTRY; /* more connections than libmicrohttpd allows: cannot be */
    i = g->free_ent;
    g->free_ent = g->ents[i].next;
    size_t b = bucket_of(g, key);
    memcpy(g->ents[i].key, key, 16);
    g->ents[i].count = 0;
    g->ents[i].next = g->buckets[b];
    g->buckets[b] = i;
  }
  g->ents[i].count++;
  return i;
}

static void ip_del(guard_t *g, int i) {
  if (i == NO_ENTRY || --g->ents[i].count > 0)
    return;
  int *link = &g->buckets[bucket_of(g, g->ents[i].key)];
  while (*link != i)
    link = &g->ents[*link].next;
  *link = g->ents[i].next;
  g->ents[i].next = g->free_ent;
  g->free_ent = i;
}

/* ---- ending a connection -------------------------------------------------- */

/* Ends the request on c, whose state the caller saw as from: answers status
 * (none when 0) and shuts the socket both ways. false when the state moved
 * meanwhile (the worker got there first). The caller holds g->mu or runs on
 * c's worker thread, so c->fd is c's socket. */
static bool end_conn(gconn_t *c, int from, unsigned status, const char *slug,
                     const char *reason, const char *msg) {
  int expect = from;
  if (!atomic_compare_exchange_strong(&c->state, &expect, ST_DEAD))
    return false;
  if (reason)
    guard_count(reason);
  if (status) {
    const char *phrase = status == 408   ? "Request Timeout"
                         : status == 414 ? "URI Too Long"
                                         : "Bad Request";
    char body[384], out[768];
    int bl = snprintf(body, sizeof body,
                      "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", slug, msg);
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nCache-Control: no-store\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, phrase, bl, body);
    /* Best effort and never blocking: nothing else writes to the socket in
     * HEAD and BODY (libmicrohttpd writes a reply only after REPLY), and a
     * client that does not read deserves no more. */
    if (n > 0 && (size_t)n < sizeof out &&
        send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
      atomic_store(&c->answered, status);
  }
  shutdown(c->fd, SHUT_RDWR);
  return true;
}

/* Whether the client closed its side with nothing left unread. With
 * epoll, libmicrohttpd 0.9.75 does not notice a client that goes away in
 * the middle of a request body (with poll it does): the sweeper looks, and
 * shuts the socket, which libmicrohttpd does notice. */
static bool peer_gone(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  if (poll(&p, 1, 0) != 1 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
    return false;
  char b;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* One connection's deadlines; g->mu held. */
static void sweep(guard_t *g, gconn_t *c, int64_t now) {
  const gw_cfg_t *cfg = g->cfg;
  int st = atomic_load(&c->state);
  if (st != ST_HEAD && st != ST_BODY)
    return;
  int64_t start = atomic_load(&c->start_ms);
  if (cfg->request_timeout_ms && now - start > cfg->request_timeout_ms) {
    end_conn(c, st, atomic_load(&c->line_seen) ? 408 : 0, "request_timeout",
             "request_timeout", "the request did not arrive within the time allowed");
    return;
  }
  if (st == ST_HEAD) {
    if (!cfg->header_timeout_ms ||
        idle_since(c, start, atomic_load(&c->start_busy), now) <= cfg->header_timeout_ms)
      return;
    if (atomic_load(&c->line_seen))
      end_conn(c, ST_HEAD, 408, "request_timeout", "header_timeout",
               "the request head did not arrive within the time allowed");
    else if (atomic_load(&c->requests) == 0)
      end_conn(c, ST_HEAD, 0, NULL, "header_timeout", NULL);
    else
      end_conn(c, ST_HEAD, 0, NULL, "idle_timeout", NULL);
    return;
  }
  if (cfg->http_epoll && peer_gone(c->fd)) {
    end_conn(c, ST_BODY, 0, NULL, NULL, NULL);
    return;
  }
  if (!cfg->body_timeout_ms)
    return;
  unsigned req = atomic_load(&c->req_no);
  if (c->win_req != req) { /* a new body: its first window starts with it */
    c->win_req = req;
    c->win_ms = atomic_load(&c->body_ms);
    c->win_busy = atomic_load(&c->body_busy);
    c->win_bytes = 0;
  }
  if (idle_since(c, c->win_ms, c->win_busy, now) < cfg->body_timeout_ms)
    return;
  uint64_t bytes = atomic_load(&c->body_bytes);
  uint64_t need = (uint64_t)cfg->body_min_rate * (uint64_t)cfg->body_timeout_ms / 1000;
  if (bytes - c->win_bytes < (need ? need : 1)) {
    end_conn(c, ST_BODY, 408, "request_timeout", "body_rate",
             "the request body arrived too slowly");
    return;
  }
  c->win_ms = now;
  c->win_busy = busy_at(c->bt, now);
  c->win_bytes = bytes;
}

static void *sweeper_main(void *arg) {
  guard_t *g = arg;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    struct timespec until;
    q_cond_deadline(&until, (int)g->tick_ms);
    pthread_cond_timedwait(&g->cv, &g->mu, &until);
    int64_t now = q_now_ms();
    for (gconn_t *c = g->conns; c && !g->stop; c = c->next)
      sweep(g, c, now);
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

/* ---- libmicrohttpd callbacks ---------------------------------------------- */

static gconn_t *conn_of(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

enum MHD_Result guard_accept_cb(void *cls, const struct sockaddr *addr,
                                socklen_t addrlen) {
  guard_t *g = cls;
  const gw_cfg_t *cfg = g->cfg;
  unsigned char key[16];
  bool keyed = addr_key(addr, addrlen, key);
  const char *reason = NULL;
  /* The counts change in the notification callback, after this check: a
   * few accepts racing on different worker threads can pass it together,
   * so a cap may be exceeded by at most the number of threads. */
  pthread_mutex_lock(&g->mu);
  if (cfg->max_connections && g->nconns >= (size_t)cfg->max_connections) {
    reason = "connections";
  } else if (keyed && cfg->max_connections_per_ip) {
    int i = ip_find(g, key);
    if (i != NO_ENTRY && g->ents[i].count >= (unsigned)cfg->max_connections_per_ip)
      reason = "connections_per_ip";
  }
  pthread_mutex_unlock(&g->mu);
  if (!reason)
    return MHD_YES;
  guard_count(reason);
  return MHD_NO;
}

static void notify_conn_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode code) {
  guard_t *g = cls;
  if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    gconn_t *c = *socket_context;
    if (!c)
      return;
    pthread_mutex_lock(&g->mu);
    if (c->prev)
      c->prev->next = c->next;
    else
      g->conns = c->next;
    if (c->next)
      c->next->prev = c->prev;
    ip_del(g, c->ip);
    g->nconns--;
    q_metrics_set(m_conns, NULL, (double)g->nconns);
    pthread_mutex_unlock(&g->mu);
    free(c);
    *socket_context = NULL;
    return;
  }
  /* Without a record (out of memory) the connection is served unguarded;
   * every callback below copes with that. */
  gconn_t *c = calloc(1, sizeof *c);
  if (!c)
    return;
  const union MHD_ConnectionInfo *fd =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  const union MHD_ConnectionInfo *ad =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  c->g = g;
  c->fd = fd ? fd->connect_fd : -1;
  c->bt = thread_busy(g);
  int64_t now = q_now_ms();
  atomic_store(&c->start_ms, now);
  atomic_store(&c->start_busy, busy_at(c->bt, now));
  unsigned char key[16];
  bool keyed = ad && ad->client_addr &&
               addr_key(ad->client_addr, sizeof(struct sockaddr_in6), key);
  pthread_mutex_lock(&g->mu);
  c->ip = keyed ? ip_add(g, key) : NO_ENTRY;
  c->next = g->conns;
  if (g->conns)
    g->conns->prev = c;
  g->conns = c;
  g->nconns++;
  q_metrics_set(m_conns, NULL, (double)g->nconns);
  pthread_mutex_unlock(&g->mu);
  *socket_context = c;
}

size_t guard_query_params(const char *target) {
  const char *q = target ? strchr(target, '?') : NULL;
  if (!q)
    return 0;
  size_t n = 1;
  for (q++; *q; q++)
    n += *q == '&';
  return n;
}

/* The request line is in; libmicrohttpd is about to split the target's
 * parameters into its pool. uri is the raw target (NULL when none). */
static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *conn) {
  guard_t *g = cls;
  const gw_cfg_t *cfg = g->cfg;
  gconn_t *c = conn_of(conn);
  if (!c || atomic_load(&c->state) != ST_HEAD)
    return NULL;
  atomic_store(&c->line_seen, true);
  c->uri_len = uri ? strlen(uri) : 0;
  c->uri_bad = false;
  for (size_t i = 0; i < c->uri_len; i++)
    if ((unsigned char)uri[i] < 0x21 || uri[i] == 0x7f ||
        (uri[i] == '%' && uri[i + 1] == '0' && uri[i + 2] == '0'))
      c->uri_bad = true;
  /* Refused here, not in the access handler: a long query string of tiny
   * parameters exhausts libmicrohttpd's pool while it parses them, and it
   * then closes the connection without any reply. */
  if (cfg->max_url_bytes && c->uri_len > (size_t)cfg->max_url_bytes)
    end_conn(c, ST_HEAD, 414, "uri_too_long", "url_length",
             "the request target is longer than the gateway accepts");
  else if (cfg->max_query_params &&
           guard_query_params(uri) > (size_t)cfg->max_query_params)
    end_conn(c, ST_HEAD, 400, "invalid_argument", "query_params",
             "the request target has more query parameters than the gateway accepts");
  return NULL; /* the request context stays the server's (NULL: first call) */
}

enum MHD_Result guard_access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version,
                                const char *upload_data, size_t *upload_data_size,
                                void **con_cls) {
  guard_t *g = cls;
  gconn_t *c = conn_of(conn);
  if (!c)
    return g->access(g->access_cls, conn, url, method, version, upload_data,
                     upload_data_size, con_cls);
  int st = atomic_load(&c->state);
  if (st == ST_HEAD) { /* first call: the head is complete */
    int64_t now = q_now_ms();
    atomic_store(&c->body_ms, now);
    atomic_store(&c->body_busy, busy_at(c->bt, now));
    atomic_store(&c->body_bytes, 0);
    atomic_fetch_add(&c->req_no, 1);
    if (!atomic_compare_exchange_strong(&c->state, &st, ST_BODY))
      return MHD_NO; /* the sweeper ended it meanwhile */
  } else if (st == ST_BODY && !upload_data && atomic_exchange(&c->first_again, false)) {
    /* the first call again, after a suspension in it: still ST_BODY */
  } else if (st == ST_BODY && !upload_data) {
    /* final call: the body is complete */
    if (!atomic_compare_exchange_strong(&c->state, &st, ST_REPLY))
      return MHD_NO;
  } else if (st == ST_DEAD) {
    return MHD_NO;
  } else if (*upload_data_size) {
    atomic_fetch_add(&c->body_bytes, *upload_data_size);
  }
  busy_enter(c->bt);
  enum MHD_Result ret = g->access(g->access_cls, conn, url, method, version, upload_data,
                                  upload_data_size, con_cls);
  busy_leave(c->bt);
  /* A reply queued before the end of the body (a refusal) is written
   * while the body is discarded: the sweeper must not write too. */
  st = ST_BODY;
  if (MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS))
    atomic_compare_exchange_strong(&c->state, &st, ST_REPLY);
  return ret;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  guard_t *g = cls;
  gconn_t *c = conn_of(conn);
  busy_t *bt = c ? c->bt : NULL;
  busy_enter(bt);
  g->completed(g->completed_cls, conn, con_cls, toe);
  busy_leave(bt);
  if (!c)
    return;
  /* The next request on this connection starts its clock now. */
  int st = atomic_load(&c->state);
  if (st == ST_DEAD)
    return;
  int64_t now = q_now_ms();
  atomic_store(&c->start_ms, now);
  atomic_store(&c->start_busy, busy_at(c->bt, now));
  atomic_store(&c->line_seen, false);
  atomic_store(&c->answered, 0);
  atomic_fetch_add(&c->requests, 1);
  c->uri_len = 0;
  c->uri_bad = false;
  atomic_store(&c->first_again, false);
  atomic_compare_exchange_strong(&c->state, &st, ST_HEAD);
}

unsigned guard_answered(struct MHD_Connection *conn) {
  gconn_t *c = conn_of(conn);
  return c ? atomic_load(&c->answered) : 0;
}

void guard_first_call_again(struct MHD_Connection *conn) {
  gconn_t *c = conn_of(conn);
  if (c)
    atomic_store(&c->first_again, true);
}

/* ---- the request head ----------------------------------------------------- */

bool guard_is_token(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch))))
      return false;
  }
  return true;
}

bool guard_has_ctl(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return true;
  }
  return false;
}

unsigned guard_transfer_encoding_status(const char *value) {
  if (!value)
    return 400;
  if (strcasecmp(value, "chunked") == 0)
    return 0;
  /* The last coding of the comma-separated list decides whether the body
   * length is known at all (RFC 9112, 6.3). */
  const char *end = value + strlen(value);
  while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  const char *last = end;
  while (last > value && last[-1] != ',')
    last--;
  while (last < end && (*last == ' ' || *last == '\t'))
    last++;
  bool chunked_last = end - last == 7 && strncasecmp(last, "chunked", 7) == 0;
  return chunked_last ? 501 : 400;
}

typedef struct scan {
  const char *end; /* of the head in libmicrohttpd's buffer */
  const char *p;   /* where the next field line must start */
  bool layout_ok;
  size_t nfields, ncl, nte, nhost;
  const char *cl, *te;
  bool cl_differs, bad_name, bad_value;
} scan_t;

static enum MHD_Result scan_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                               size_t key_size, const char *value, size_t value_size) {
  (void)kind;
  scan_t *s = cls;
  s->nfields++;
  if (!guard_is_token(key, key_size))
    s->bad_name = true;
  if (value && guard_has_ctl(value, value_size))
    s->bad_value = true;
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    if (s->ncl++ && (!value || !s->cl || strcmp(value, s->cl) != 0))
      s->cl_differs = true;
    s->cl = value;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    s->nte++;
    s->te = value;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
    s->nhost++;
  }
  if (!s->layout_ok)
    return MHD_YES;
  /* "name:[SP/HTAB]value" then CRLF, right where the previous line ended. */
  if (key != s->p || !value || value <= key + key_size || value > s->end ||
      (size_t)(s->end - value) < value_size + 2 || value[value_size + 1] != '\0') {
    s->layout_ok = false;
    return MHD_YES;
  }
  for (const char *q = key + key_size + 1; q < value; q++)
    if (*q != ' ' && *q != '\t')
      s->layout_ok = false;
  s->p = value + value_size + 2;
  return MHD_YES;
}

static bool refuse(guard_verdict_t *v, unsigned status, const char *slug,
                   const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static bool refuse(guard_verdict_t *v, unsigned status, const char *slug,
                   const char *reason, const char *fmt, ...) {
  v->status = status;
  v->slug = slug;
  v->reason = reason;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->msg, sizeof v->msg, fmt, ap);
  va_end(ap);
  guard_count(reason);
  return true;
}

bool guard_check_head(struct MHD_Connection *conn, const char *method, const char *url,
                      const char *version, guard_verdict_t *v) {
  memset(v, 0, sizeof *v);
  gconn_t *c = conn_of(conn);
  if (!c)
    return false;
  const gw_cfg_t *cfg = c->g->cfg;
  const union MHD_ConnectionInfo *hs =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
  size_t head = hs ? hs->header_size : 0;

  scan_t s;
  memset(&s, 0, sizeof s);
  s.end = method + head;
  /* The request line: "method SP target SP version CRLF", each piece where
   * the previous one ended (a second space, or a NUL in the target, shifts
   * them). */
  s.layout_ok = c->g->layout_check && head > 0 && atomic_load(&c->line_seen) &&
                url == method + strlen(method) + 1 && version == url + c->uri_len + 1;
  if (s.layout_ok) {
    s.p = version + strlen(version);
    s.layout_ok = s.p + 2 <= s.end && s.p[0] == '\0' && s.p[1] == '\0';
    s.p += 2;
  }
  MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_cb, &s);
  if (s.layout_ok)
    s.layout_ok = s.p + 2 == s.end && s.p[0] == '\0' && s.p[1] == '\0';

  if (c->uri_bad)
    return refuse(v, 400, "invalid_argument", "nul_in_target",
                  "the request target contains a NUL or control character (raw or "
                  "percent-encoded)");
  if (cfg->max_headers && s.nfields > (size_t)cfg->max_headers)
    return refuse(v, 431, "header_fields_too_large", "header_count",
                  "more than %lld header fields", (long long)cfg->max_headers);
  if (cfg->max_header_bytes && head > (size_t)cfg->max_header_bytes)
    return refuse(v, 431, "header_fields_too_large", "header_bytes",
                  "request head larger than %lld bytes",
                  (long long)cfg->max_header_bytes);
  if (c->g->layout_check && !s.layout_ok)
    return refuse(v, 400, "invalid_argument", "malformed_head",
                  "malformed request head: lines must end with CRLF, the request line "
                  "must have single spaces, and header fields must not contain NUL "
                  "bytes or continue on a folded line");
  if (s.bad_name || s.bad_value)
    return refuse(v, 400, "invalid_argument", "malformed_head",
                  s.bad_name ? "malformed header field name"
                             : "header field value contains a control character");
  bool http10 = strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
  if (!http10 && s.nhost != 1)
    return refuse(v, 400, "invalid_argument", "malformed_head",
                  "an HTTP/1.1 request needs exactly one Host header field");
  if (s.nte && http10)
    return refuse(v, 400, "invalid_argument", "transfer_encoding",
                  "Transfer-Encoding is not allowed in an HTTP/1.0 request");
  if (s.nte && s.ncl)
    return refuse(v, 400, "invalid_argument", "content_length",
                  "a request must not have both Content-Length and Transfer-Encoding");
  if (s.nte > 1)
    return refuse(v, 400, "invalid_argument", "transfer_encoding",
                  "more than one Transfer-Encoding header field");
  if (s.nte) {
    unsigned st = guard_transfer_encoding_status(s.te);
    if (st == 501)
      return refuse(v, 501, "not_implemented", "transfer_encoding",
                    "only the chunked transfer coding is supported");
    if (st)
      return refuse(v, 400, "invalid_argument", "transfer_encoding",
                    "unsupported Transfer-Encoding: only \"chunked\" is accepted");
  }
  if (s.ncl > 1)
    return refuse(v, 400, "invalid_argument", "content_length",
                  s.cl_differs ? "conflicting Content-Length header fields"
                               : "repeated Content-Length header field");
  return false;
}

/* ---- life cycle ----------------------------------------------------------- */

/* Raises the soft limit on open files so the connection limit can be
 * reached (containers often start with 1024). */
static void raise_nofile(rlim_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
    return;
  rlim_t to = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
  rl.rlim_cur = to;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || to < want)
    q_log_warn("the open-file limit is below what QUARRY_HTTP_MAX_CONNECTIONS needs",
               "{s:I,s:I}", "limit", (json_int_t)to, "wanted", (json_int_t)want);
}

guard_t *guard_new(const gw_cfg_t *cfg, MHD_AccessHandlerCallback access,
                   void *access_cls, MHD_RequestCompletedCallback completed,
                   void *completed_cls) {
  metrics_init();
  guard_t *g = calloc(1, sizeof *g);
  if (!g)
    goto oom;
  g->cfg = cfg;
  g->access = access;
  g->access_cls = access_cls;
  g->completed = completed;
  g->completed_cls = completed_cls;
  /* libmicrohttpd's own limit stays above the guard's, so the guard's
   * accept check (which counts) is what refuses; libmicrohttpd splits its
   * limit between its threads and would otherwise stop accepting quietly
   * when the share of one thread is full. */
  size_t mhd_limit = cfg->max_connections ? 2 * (size_t)cfg->max_connections : 4096;
  g->nents = mhd_limit;
  g->nbuckets = mhd_limit;
  g->nthreads = (size_t)cfg->http_threads + 2;
  g->buckets = malloc(g->nbuckets * sizeof *g->buckets);
  g->ents = calloc(g->nents, sizeof *g->ents);
  g->threads = calloc(g->nthreads, sizeof *g->threads);
  if (!g->buckets || !g->ents || !g->threads)
    goto oom;
  for (size_t i = 0; i < g->nbuckets; i++)
    g->buckets[i] = NO_ENTRY;
  for (size_t i = 0; i < g->nents; i++)
    g->ents[i].next = i + 1 < g->nents ? (int)(i + 1) : NO_ENTRY;
  g->free_ent = 0;
  pthread_mutex_init(&g->mu, NULL);
  q_cond_init_monotonic(&g->cv);

  int64_t tick = SWEEP_MAX_MS;
  if (cfg->header_timeout_ms && cfg->header_timeout_ms / 4 < tick)
    tick = cfg->header_timeout_ms / 4;
  if (cfg->body_timeout_ms && cfg->body_timeout_ms / 4 < tick)
    tick = cfg->body_timeout_ms / 4;
  g->tick_ms = tick < SWEEP_MIN_MS ? SWEEP_MIN_MS : tick;

  g->layout_check = strcmp(MHD_get_version(), LAYOUT_VERSION) == 0;
  if (!g->layout_check)
    q_log_warn("libmicrohttpd is not the version the raw request head check was "
               "written for: bare LF line ends, NUL bytes in header fields and folded "
               "lines are not refused",
               "{s:s,s:s}", "version", MHD_get_version(), "expected", LAYOUT_VERSION);
  raise_nofile((rlim_t)mhd_limit + 512);

  /* MHD's idle timeout is in whole seconds: rounded up. */
  unsigned idle_s =
      cfg->idle_timeout_ms ? (unsigned)((cfg->idle_timeout_ms + 999) / 1000) : 60u;
  struct MHD_OptionItem *o = g->opts;
  *o++ = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)mhd_limit, NULL};
  size_t pool = cfg->conn_memory_bytes ? (size_t)cfg->conn_memory_bytes
                                       : (size_t)CONN_MEMORY_DEFAULT;
  if (cfg->max_header_bytes && pool < (size_t)cfg->max_header_bytes + CONN_MEMORY_SLACK)
    pool = (size_t)cfg->max_header_bytes + CONN_MEMORY_SLACK;
  *o++ =
      (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)pool, NULL};
  *o++ = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)idle_s, NULL};
  *o++ =
      (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)notify_conn_cb, g};
  *o++ = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, g};
  *o++ = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_cb, g};
  *o++ = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  return g;
oom:
  q_log_error("out of memory", NULL);
  if (g) {
    free(g->buckets);
    free(g->ents);
    free(g->threads);
    free(g);
  }
  return NULL;
}

const struct MHD_OptionItem *guard_mhd_options(guard_t *g) {
  return g->opts;
}

q_err_t guard_start(guard_t *g) {
  if (pthread_create(&g->sweeper, NULL, sweeper_main, g) != 0) {
    q_log_error("cannot start the HTTP deadline sweeper", NULL);
    return Q_EINTERNAL;
  }
  g->started = true;
  return Q_OK;
}

void guard_free(guard_t *g) {
  if (!g)
    return;
  if (g->started) {
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->sweeper, NULL);
  }
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g->buckets);
  free(g->ents);
  free(g->threads);
  free(g);
}
