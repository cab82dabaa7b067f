/* pg.c - the libpq connection pool and versioned migrations of pg.h.
 *
 * The pool is a stack of idle connections plus a count of open ones, guarded
 * by a mutex; borrowers wait on a condition variable (monotonic clock) when
 * every connection is out. Connecting happens outside the lock, so a slow or
 * unreachable server never blocks other borrowers for longer than their own
 * timeout. Connections come back only when they are healthy and idle (not
 * inside a transaction); anything else is closed and reopened lazily. */
#include "quarry/pg.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 256
#define PING_TIMEOUT_MS 1000

struct q_pg_pool {
  char *conninfo;
  int size;
  int open; /* connections in existence: idle + borrowed + being opened */
  int nidle;
  PGconn **idle;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

/* Copies a libpq message into err without its trailing newline. */
static void set_err(char *err, size_t errlen, const char *prefix, const char *msg) {
  if (!err || !errlen)
    return;
  snprintf(err, errlen, "%s%s", prefix, msg && *msg ? msg : "unknown error");
  size_t n = strlen(err);
  while (n && (err[n - 1] == '\n' || err[n - 1] == '\r' || err[n - 1] == ' '))
    err[--n] = '\0';
}

q_pg_pool_t *q_pg_pool_new(const char *conninfo, int size) {
  if (!conninfo)
    return NULL;
  if (size < 1)
    size = 1;
  if (size > POOL_MAX)
    size = POOL_MAX;
  q_pg_pool_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->conninfo = strdup(conninfo);
  p->idle = calloc((size_t)size, sizeof *p->idle);
  if (!p->conninfo || !p->idle) {
    free(p->conninfo);
    free(p->idle);
    free(p);
    return NULL;
  }
  p->size = size;
  pthread_mutex_init(&p->mu, NULL);
  q_cond_init_monotonic(&p->cv);
  return p;
}

/* Server notices ("... does not exist, skipping", a FATAL sent before the
 * server closes a session) would otherwise go to stderr as bare text,
 * breaking the one-JSON-object-per-line log. */
static void notice_cb(void *arg, const char *message) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", message ? message : "");
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
    msg[--n] = '\0';
  q_log_debug("postgres notice", "{s:s}", "notice", msg);
}

/* Opens a connection. conninfo may be a keyword string or a URI; it is
 * expanded as dbname, and the keywords placed before it are defaults that
 * its own settings override (libpq: later entries win). */
static PGconn *pg_connect(const q_pg_pool_t *p, char *err, size_t errlen) {
  const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                              NULL};
  const char *const vals[] = {"5", "quarry", p->conninfo, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c) {
    set_err(err, errlen, "postgres: ", "out of memory");
    return NULL;
  }
  if (PQstatus(c) != CONNECTION_OK) {
    set_err(err, errlen, "postgres: ", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  PQsetNoticeProcessor(c, notice_cb, NULL);
  return c;
}

/* An idle connection whose server went away (restart, idle timeout,
 * pg_terminate_backend) looks fine until it is used. The server closes the
 * socket when it ends a session, which poll reports as POLLRDHUP; any other
 * pending input (notices) is consumed so it cannot confuse the next query. */
static int still_alive(PGconn *c) {
  if (PQstatus(c) != CONNECTION_OK)
    return 0;
  struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN | POLLRDHUP};
  if (pfd.fd < 0)
    return 0;
  if (poll(&pfd, 1, 0) > 0) {
    if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
      return 0;
    if ((pfd.revents & POLLIN) && !PQconsumeInput(c))
      return 0;
  }
  return PQstatus(c) == CONNECTION_OK;
}

/* Opens a connection for a slot already counted in p->open. When that
 * fails the slot is given back and a waiter woken: it may try in turn. */
static PGconn *connect_slot(q_pg_pool_t *p, char *err, size_t errlen) {
  PGconn *c = pg_connect(p, err, errlen);
  if (!c) {
    pthread_mutex_lock(&p->mu);
    p->open--;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  return c;
}

PGconn *q_pg_acquire(q_pg_pool_t *p, int timeout_ms, char *err, size_t errlen) {
  if (!p) {
    set_err(err, errlen, "postgres: ", "no pool");
    return NULL;
  }
  struct timespec deadline;
  q_cond_deadline(&deadline, timeout_ms > 0 ? timeout_ms : 0);

  pthread_mutex_lock(&p->mu);
  for (;;) {
    if (p->nidle > 0) {
      PGconn *c = p->idle[--p->nidle];
      pthread_mutex_unlock(&p->mu);
      if (still_alive(c))
        return c;
      /* Stale: replace it by a fresh connection in the same slot. */
      PQfinish(c);
      return connect_slot(p, err, errlen);
    }
    if (p->open < p->size) {
      p->open++;
      pthread_mutex_unlock(&p->mu);
      return connect_slot(p, err, errlen);
    }
    int rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
    if (rc == ETIMEDOUT && p->nidle == 0 && p->open >= p->size) {
      pthread_mutex_unlock(&p->mu);
      char msg[96];
      snprintf(msg, sizeof msg, "all %d connections busy for %d ms", p->size, timeout_ms);
      set_err(err, errlen, "postgres: ", msg);
      return NULL;
    }
  }
}

void q_pg_release(q_pg_pool_t *p, PGconn *c) {
  if (!p || !c)
    return;
  int keep = 0;
  if (PQstatus(c) == CONNECTION_OK) {
    PGTransactionStatusType ts = PQtransactionStatus(c);
    keep = ts == PQTRANS_IDLE;
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR || ts == PQTRANS_ACTIVE)
      q_log_warn("postgres: connection released mid-transaction; closing it", NULL);
  }
  if (!keep)
    PQfinish(c);
  pthread_mutex_lock(&p->mu);
  if (keep && p->nidle < p->size)
    p->idle[p->nidle++] = c;
  else {
    if (keep) /* more releases than acquires: not ours to keep */
      PQfinish(c);
    p->open--;
  }
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

void q_pg_pool_free(q_pg_pool_t *p) {
  if (!p)
    return;
  for (int i = 0; i < p->nidle; i++)
    PQfinish(p->idle[i]);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->idle);
  free(p->conninfo);
  free(p);
}

bool q_pg_ping(q_pg_pool_t *p, char *err, size_t errlen) {
  PGconn *c = q_pg_acquire(p, PING_TIMEOUT_MS, err, errlen);
  if (!c)
    return false;
  PGresult *r = q_pg_query(c, "SELECT 1", 0, NULL, "postgres", NULL, err, errlen);
  bool ok = r && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "1") == 0;
  if (r && !ok)
    set_err(err, errlen, "postgres: ", "unexpected answer to SELECT 1");
  PQclear(r);
  q_pg_release(p, c);
  return ok;
}

/* ---- statements -------------------------------------------------------------- */

q_err_t q_pg_fail(PGconn *c, const PGresult *r, const char *what, char *err,
                  size_t errlen) {
  /* The primary message alone: no "ERROR:" severity, DETAIL or HINT lines. */
  const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s: ", what);
  set_err(err, errlen, prefix, msg ? msg : PQerrorMessage(c));
  return PQstatus(c) == CONNECTION_OK ? Q_EINTERNAL : Q_EUNAVAIL;
}

/* Sends a statement; NULL (out of memory, no connection) reads as a failed
 * result. Without parameters the simple protocol is used, so sql may hold
 * several statements (migrations do). */
static PGresult *run(PGconn *c, const char *sql, int n, const char *const *values) {
  if (n > 0)
    return PQexecParams(c, sql, n, NULL, values, NULL, NULL, 0);
  return PQexec(c, sql);
}

static bool succeeded(const PGresult *r) {
  ExecStatusType st = PQresultStatus(r);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

q_err_t q_pg_exec(PGconn *c, const char *sql, int n, const char *const *values,
                  const char *what, int64_t *rows, char *err, size_t errlen) {
  PGresult *r = run(c, sql, n, values);
  q_err_t rc = Q_OK;
  if (!succeeded(r))
    rc = q_pg_fail(c, r, what, err, errlen);
  else if (rows) /* "" for commands without a count */
    *rows = strtoll(PQcmdTuples(r), NULL, 10);
  PQclear(r);
  return rc;
}

PGresult *q_pg_query(PGconn *c, const char *sql, int n, const char *const *values,
                     const char *what, q_err_t *rc, char *err, size_t errlen) {
  PGresult *r = run(c, sql, n, values);
  q_err_t code = Q_OK;
  if (!succeeded(r)) {
    code = q_pg_fail(c, r, what, err, errlen);
    PQclear(r);
    r = NULL;
  }
  if (rc)
    *rc = code;
  return r;
}

/* ---- migrations -------------------------------------------------------------- */

static q_err_t applied_versions(PGconn *c, const char *service, int **out, int *n,
                                char *err, size_t errlen) {
  const char *params[1] = {service};
  q_err_t rc;
  *out = NULL;
  *n = 0;
  PGresult *r = q_pg_query(c,
                           "SELECT version FROM schema_migrations "
                           "WHERE service = $1 ORDER BY version",
                           1, params, "reading schema_migrations", &rc, err, errlen);
  if (!r)
    return rc;
  int rows = PQntuples(r);
  *out = malloc(((size_t)rows + 1) * sizeof **out);
  if (!*out) {
    PQclear(r);
    set_err(err, errlen, "", "out of memory");
    return Q_ENOMEM;
  }
  for (int i = 0; i < rows; i++)
    (*out)[i] = atoi(PQgetvalue(r, i, 0));
  *n = rows;
  PQclear(r);
  return Q_OK;
}

static q_err_t apply_one(PGconn *c, const char *service, const q_pg_migration_t *m,
                         char *err, size_t errlen) {
  char what[200];
  snprintf(what, sizeof what, "migration %s v%d (%.100s)", service, m->version,
           m->name ? m->name : "");
  q_err_t rc = q_pg_exec(c, "BEGIN", 0, NULL, what, NULL, err, errlen);
  if (rc)
    return rc;
  rc = q_pg_exec(c, m->sql, 0, NULL, what, NULL, err, errlen);
  if (!rc) {
    char version[16], recording[220];
    snprintf(version, sizeof version, "%d", m->version);
    snprintf(recording, sizeof recording, "%s: recording", what);
    const char *params[3] = {service, version, m->name ? m->name : ""};
    rc = q_pg_exec(c,
                   "INSERT INTO schema_migrations(service, version, name) "
                   "VALUES ($1, $2::int, $3)",
                   3, params, recording, NULL, err, errlen);
  }
  if (!rc)
    return q_pg_exec(c, "COMMIT", 0, NULL, what, NULL, err, errlen);
  /* Keep the first error; the rollback's own outcome only matters for the
   * connection state, which the caller's release checks. */
  PQclear(PQexec(c, "ROLLBACK"));
  return rc;
}

q_err_t q_pg_migrate(PGconn *c, const char *service, const q_pg_migration_t *m, size_t n,
                     char *err, size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!c || !service || !*service || (n && !m)) {
    set_err(err, errlen, "", "migrate: missing connection, service or list");
    return Q_EINVAL;
  }
  for (size_t i = 0; i < n; i++)
    if (m[i].version < 1 || !m[i].sql || (i && m[i].version <= m[i - 1].version)) {
      set_err(err, errlen, "",
              "migrate: versions must start at 1 and grow, each with SQL");
      return Q_EINVAL;
    }
  if (PQstatus(c) != CONNECTION_OK) {
    set_err(err, errlen, "postgres: ", PQerrorMessage(c));
    return Q_EUNAVAIL;
  }
  /* Each migration commits on its own; inside a caller's transaction that
   * COMMIT would end the caller's work too. */
  if (PQtransactionStatus(c) != PQTRANS_IDLE) {
    set_err(err, errlen, "", "migrate: connection is inside a transaction");
    return Q_EINVAL;
  }

  /* The lock comes first: even CREATE TABLE IF NOT EXISTS races with itself
   * across sessions. It is session-level, so it spans the per-migration
   * transactions and must be released on every path. */
  q_err_t rc = q_pg_exec(c, "SELECT pg_advisory_lock(hashtext('quarry-migrate'))", 0,
                         NULL, "migrate: taking the lock", NULL, err, errlen);
  if (rc)
    return rc;
  int *done = NULL, ndone = 0;
  /* Checked first so the usual case does not draw an "already exists"
   * notice; under the lock nobody can create it in between. */
  PGresult *r = PQexec(c, "SELECT to_regclass('schema_migrations') IS NULL");
  int missing = PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
                strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  if (missing)
    rc = q_pg_exec(c,
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   " service text NOT NULL,"
                   " version int NOT NULL,"
                   " name text NOT NULL DEFAULT '',"
                   " applied_at timestamptz NOT NULL DEFAULT now(),"
                   " PRIMARY KEY (service, version))",
                   0, NULL, "migrate: creating schema_migrations", NULL, err, errlen);
  if (!rc)
    rc = applied_versions(c, service, &done, &ndone, err, errlen);
  for (size_t i = 0; !rc && i < n; i++) {
    int seen = 0;
    for (int j = 0; j < ndone && !seen; j++)
      seen = done[j] == m[i].version;
    if (seen)
      continue;
    rc = apply_one(c, service, &m[i], err, errlen);
    if (!rc)
      q_log_info("migration applied", "{s:s,s:i,s:s}", "owner", service, "version",
                 m[i].version, "name", m[i].name ? m[i].name : "");
  }
  free(done);
  if (PQstatus(c) == CONNECTION_OK) {
    char ignore[8];
    q_err_t urc = q_pg_exec(c, "SELECT pg_advisory_unlock(hashtext('quarry-migrate'))", 0,
                            NULL, "migrate: releasing the lock", NULL, rc ? ignore : err,
                            rc ? sizeof ignore : errlen);
    if (!rc)
      rc = urc;
  }
  if (rc)
    q_log_error("migration failed", "{s:s,s:s}", "owner", service, "error",
                err ? err : "");
  return rc;
}
