/* claim_bench.c - ingestion's job claim (docstore_claim_batch) on a large
 * queue: its plan and its latency, and whether it stays fair.
 *
 * A private PostgreSQL (tests/unit/support/pgtest.h) gets ingestion's
 * migrations and a queue of --jobs queued jobs (one document each) across
 * --tenants tenants, filled with generate_series in the database. Half of
 * the jobs belong to the first tenant and are the oldest (a bulk load that
 * came first); the other half are spread over every tenant.
 * As many finished jobs (one earlier run of each document) sit beside
 * them, as a queue with a history does. Then:
 *
 *   1. EXPLAIN (ANALYZE, BUFFERS) of docstore_claim_sql claiming one job,
 *      inside a transaction that is rolled back (the plan is printed);
 *   2. --claims claims of one job by one worker, each finished at once
 *      (docstore_finish), timed: median, p90, p99, max;
 *   3. fairness: the tenants of the first --tenants claims of step 2 must
 *      be --tenants distinct tenants (every tenant's first job before any
 *      tenant's second); the run fails when they are not;
 *   4. --claims / 8 batch claims of 8 jobs (docstore_claim_batch), timed.
 *
 * Not part of make test:  make bench-claim [CLAIM_BENCH_ARGS="--jobs 100000"]
 * Figures are recorded in docs/benchmarks.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "docstore.h"
#include "pgtest.h"

#include "quarry/pg.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p) {
  int i = (int)(p * (n - 1) + 0.5);
  return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static int run_sql(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok)
    fprintf(stderr, "claim_bench: %s\n  in: %.200s\n", PQerrorMessage(c), sql);
  PQclear(r);
  return ok ? 0 : 1;
}

static void report(const char *what, double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  printf("%-28s n=%d median %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", what, n,
         pct(v, n, 0.5), pct(v, n, 0.9), pct(v, n, 0.99), v[n - 1]);
}

int main(int argc, char **argv) {
  int jobs = 100000, tenants = 50, claims = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--jobs") == 0)
      jobs = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--tenants") == 0)
      tenants = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--claims") == 0)
      claims = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: claim_bench [--jobs N] [--tenants T] [--claims K]\n");
      return 2;
    }
  }
  if (jobs < 2 * tenants || tenants < 1 || claims < tenants) {
    fprintf(stderr, "claim_bench: need jobs >= 2 * tenants and claims >= tenants\n");
    return 2;
  }
  pgtest_t pg;
  char err[1024] = "", dsn[256];
  if (pgtest_start(&pg, err, sizeof err) != 0) {
    fprintf(stderr, "claim_bench: no PostgreSQL: %s\n", err);
    pgtest_remove(&pg);
    return 1;
  }
  int fail = 1;
  pgtest_dsn(&pg, "postgres", dsn, sizeof dsn);
  q_pg_pool_t *pool = q_pg_pool_new(dsn, 2);
  PGconn *c = pool ? q_pg_acquire(pool, 5000, err, sizeof err) : NULL;
  if (!c || q_pg_migrate(c, "ingestion", docstore_migrations, docstore_nmigrations, err,
                         sizeof err)) {
    fprintf(stderr, "claim_bench: %s\n", err);
    goto out;
  }
  /* Job i: the first half all tenant t0000 (the oldest), the second half
   * round robin over every tenant; created_at one millisecond apart. */
  char sql[2048];
  snprintf(sql, sizeof sql,
           "CREATE TEMP TABLE fill AS SELECT i, gen_random_uuid() AS doc,"
           "  gen_random_uuid() AS job,"
           "  'bench' || lpad((CASE WHEN i < %d THEN 0 ELSE i %% %d END)::text, 4, '0')"
           "    AS tenant,"
           "  now() - make_interval(secs => (%d - i) / 1000.0) AS at"
           "  FROM generate_series(0, %d) AS i",
           jobs / 2, tenants, jobs, jobs - 1);
  double t0 = now_ms();
  if (run_sql(c, sql) ||
      run_sql(c, "INSERT INTO documents (id, tenant_id, title, content_type, version,"
                 "  sha256, size_bytes, status, job_id, created_at, updated_at)"
                 "  SELECT doc, tenant, 'doc ' || i, 'text/plain', 1, md5(i::text), 1000,"
                 "  'queued', job, at, at FROM fill") ||
      run_sql(c, "INSERT INTO jobs (id, document_id, tenant_id, version, status,"
                 "  created_at, updated_at, run_after)"
                 "  SELECT job, doc, tenant, 1, 'queued', at, at, at FROM fill") ||
      run_sql(c, "DROP TABLE fill") ||
      /* History: as many finished jobs as queued ones, which a claim must
       * not read either. */
      run_sql(c, "INSERT INTO jobs (id, document_id, tenant_id, version, status,"
                 "  created_at, updated_at, run_after, claimed_by, claimed_at)"
                 "  SELECT gen_random_uuid(), document_id, tenant_id, 1, 'done',"
                 "  created_at - interval '1 day', created_at - interval '1 day',"
                 "  created_at - interval '1 day', 'old:1',"
                 "  created_at - interval '1 day' FROM jobs") ||
      run_sql(c, "VACUUM ANALYZE jobs") || run_sql(c, "VACUUM ANALYZE documents"))
    goto out;
  printf("queue: %d queued and %d done jobs across %d tenants (filled in %.1f s)\n\n",
         jobs, jobs, tenants, (now_ms() - t0) / 1e3);

  /* 1. The plan of one claim. */
  char explain[16384];
  snprintf(explain, sizeof explain, "EXPLAIN (ANALYZE, BUFFERS) %s", docstore_claim_sql);
  const char *params[3] = {"bench:1", "1", "0"};
  if (run_sql(c, "BEGIN"))
    goto out;
  PGresult *r = PQexecParams(c, explain, 3, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "claim_bench: EXPLAIN: %s\n", PQerrorMessage(c));
    PQclear(r);
    goto out;
  }
  printf("EXPLAIN (ANALYZE, BUFFERS) of one claim:\n");
  for (int i = 0; i < PQntuples(r); i++)
    printf("  %s\n", PQgetvalue(r, i, 0));
  PQclear(r);
  if (run_sql(c, "ROLLBACK"))
    goto out;
  q_pg_release(pool, c);
  c = NULL;

  /* 2, 3. One job at a time. */
  double *lat = calloc((size_t)claims, sizeof *lat);
  char(*seen)[Q_LIMIT_TENANT_ID_BYTES + 1] = calloc((size_t)tenants, sizeof *seen);
  int distinct = 0;
  for (int i = 0; i < claims; i++) {
    job_t j;
    double a = now_ms();
    q_err_t rc = docstore_claim(pool, "bench:1", &j, err, sizeof err);
    lat[i] = now_ms() - a;
    if (rc) {
      fprintf(stderr, "claim_bench: claim %d: %s (%d)\n", i, err, rc);
      goto out;
    }
    if (i < tenants) {
      int k = 0;
      while (k < distinct && strcmp(seen[k], j.tenant_id) != 0)
        k++;
      if (k == distinct)
        snprintf(seen[distinct++], sizeof seen[0], "%s", j.tenant_id);
    }
    if (docstore_finish(pool, "bench:1", &j, 1, 1, "", NULL, err, sizeof err)) {
      fprintf(stderr, "claim_bench: finish: %s\n", err);
      goto out;
    }
  }
  printf("\n");
  report("claim of 1 job", lat, claims);
  printf("fairness: the first %d claims served %d distinct tenants (want %d)\n", tenants,
         distinct, tenants);

  /* 4. Batches of 8. */
  int nb = claims / 8 > 0 ? claims / 8 : 1;
  for (int i = 0; i < nb; i++) {
    job_t batch[8];
    int n = 0;
    double a = now_ms();
    if (docstore_claim_batch(pool, "bench:1", batch, 8, 0, &n, err, sizeof err) ||
        n != 8) {
      fprintf(stderr, "claim_bench: batch claim %d: %s (%d jobs)\n", i, err, n);
      goto out;
    }
    lat[i] = now_ms() - a;
    for (int k = 0; k < n; k++)
      docstore_finish(pool, "bench:1", &batch[k], 1, 1, "", NULL, err, sizeof err);
  }
  report("claim of a batch of 8", lat, nb);
  free(lat);
  free(seen);
  fail = distinct != tenants;
out:
  if (c)
    q_pg_release(pool, c);
  q_pg_pool_free(pool);
  pgtest_remove(&pg);
  return fail;
}
