/* pg_wait.c - wait for the database at start, then migrate (see pg_wait.h). */
#include "quarry/pg_wait.h"

#include <stdio.h>
#include <time.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"

static void sleep_ms(int64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

q_err_t q_pg_wait_migrate(q_pg_pool_t *p, const char *service, const q_pg_migration_t *m,
                          size_t n, int64_t wait_ms, char *err, size_t errlen) {
  int64_t give_up = q_now_ms() + (wait_ms > 0 ? wait_ms : 0);
  int64_t backoff = 100;
  for (int attempt = 1;; attempt++) {
    char why[256] = "";
    int rc;
    PGconn *c = q_pg_acquire(p, 5000, why, sizeof why);
    if (!c) {
      rc = Q_EUNAVAIL;
    } else {
      rc = q_pg_migrate(c, service, m, n, why, sizeof why);
      q_pg_release(p, c);
      if (rc == Q_OK)
        return Q_OK;
    }
    snprintf(err, errlen, "%s", why[0] ? why : q_strerror(rc));
    if (rc != Q_EUNAVAIL)
      return rc;
    int64_t now = q_now_ms();
    if (now >= give_up) {
      snprintf(err, errlen, "database unreachable after %d attempt%s: %s", attempt,
               attempt == 1 ? "" : "s", why[0] ? why : q_strerror(rc));
      return Q_EUNAVAIL;
    }
    q_log_warn("database not ready, retrying", "{s:s,s:i,s:i}", "reason", err, "attempt",
               attempt, "retry_in_ms", (int)backoff);
    sleep_ms(backoff < give_up - now ? backoff : give_up - now);
    backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
  }
}
