/* pgtest.c - a private PostgreSQL server for unit tests (see pgtest.h). */
#include "pgtest.h"

#include "loopback.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <glob.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define DIR_PREFIX "/tmp/quarry-pgtest-"
#define ENV_BASE "QUARRY_TEST_PG_BASE"
#define ENV_ERROR "QUARRY_TEST_PG_ERROR"

static int find_bindir(char *out, size_t n) {
  glob_t g;
  if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
    return -1;
  /* The last match is the newest major version. */
  const char *path = g.gl_pathv[g.gl_pathc - 1];
  snprintf(out, n, "%.*s", (int)(strlen(path) - strlen("/initdb")), path);
  globfree(&g);
  return 0;
}

/* Runs argv (as the postgres user when we are root), output appended to
 * log; returns the exit status or -1. */
static int run(const char *log, char *const argv[]) {
  char *full[32];
  int n = 0;
  if (geteuid() == 0) {
    full[n++] = "runuser";
    full[n++] = "-u";
    full[n++] = "postgres";
    full[n++] = "--";
  }
  for (int i = 0; argv[i] && n < 31; i++)
    full[n++] = argv[i];
  full[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  int rc = posix_spawnp(&pid, full[0], &fa, NULL, full, environ);
  posix_spawn_file_actions_destroy(&fa);
  int st;
  if (rc != 0 || waitpid(pid, &st, 0) < 0)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int pgtest_start(pgtest_t *pg, char *err, size_t errlen) {
  char initdb[160], pg_ctl[160], log[192], cmdlog[192], opts[512];
  memset(pg, 0, sizeof *pg);
  if (find_bindir(pg->bin, sizeof pg->bin) != 0) {
    snprintf(err, errlen, "PostgreSQL server not installed (make deps)");
    return PGTEST_ABSENT;
  }
  struct passwd *pw = NULL;
  if (geteuid() == 0 && !(pw = getpwnam("postgres"))) {
    snprintf(err, errlen, "running as root without a postgres user to run the server as");
    return PGTEST_ABSENT;
  }
  snprintf(pg->dir, sizeof pg->dir, DIR_PREFIX "XXXXXX");
  if (!mkdtemp(pg->dir)) {
    pg->dir[0] = '\0';
    snprintf(err, errlen, "mkdtemp failed");
    return -1;
  }
  if (pw && chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
    snprintf(err, errlen, "cannot hand %s to the postgres user", pg->dir);
    return -1;
  }
  snprintf(pg->data, sizeof pg->data, "%s/data", pg->dir);
  snprintf(initdb, sizeof initdb, "%s/initdb", pg->bin);
  snprintf(pg_ctl, sizeof pg_ctl, "%s/pg_ctl", pg->bin);
  snprintf(log, sizeof log, "%s/log", pg->dir);
  snprintf(cmdlog, sizeof cmdlog, "%s/cmd.log", pg->dir);
  char *init_argv[] = {initdb, "-D", pg->data, "-A", "trust", "-U", "quarry", "-N", NULL};
  if (run(cmdlog, init_argv) != 0) {
    snprintf(err, errlen, "initdb failed, see %s", cmdlog);
    return -1;
  }
  for (int attempt = 0; attempt < 3; attempt++) { /* the port may get taken */
    pg->port = loopback_free_port();
    snprintf(opts, sizeof opts,
             "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "
             "-c synchronous_commit=off -c full_page_writes=off",
             pg->port, pg->data);
    char *start_argv[] = {pg_ctl, "-D", pg->data, "-o", opts,    "-l",
                          log,    "-w", "-t",     "30", "start", NULL};
    if (run(cmdlog, start_argv) == 0) {
      pg->running = 1;
      return 0;
    }
  }
  snprintf(err, errlen, "pg_ctl start failed, see %s and %s", cmdlog, log);
  return -1;
}

void pgtest_stop(pgtest_t *pg) {
  if (!pg->running)
    return;
  char pg_ctl[160], cmdlog[192];
  snprintf(pg_ctl, sizeof pg_ctl, "%s/pg_ctl", pg->bin);
  snprintf(cmdlog, sizeof cmdlog, "%s/cmd.log", pg->dir);
  char *stop_argv[] = {pg_ctl, "-D", pg->data, "-m", "fast", "-w", "stop", NULL};
  run(cmdlog, stop_argv);
  pg->running = 0;
}

void pgtest_remove(pgtest_t *pg) {
  pgtest_stop(pg);
  /* Only ever a directory pgtest_start made. */
  if (strncmp(pg->dir, DIR_PREFIX, strlen(DIR_PREFIX)) != 0)
    return;
  pid_t pid;
  char *argv[] = {"rm", "-rf", pg->dir, NULL};
  if (posix_spawnp(&pid, "rm", NULL, NULL, argv, environ) == 0)
    waitpid(pid, NULL, 0);
  pg->dir[0] = '\0';
}

const char *pgtest_dsn(const pgtest_t *pg, const char *dbname, char *out, size_t outlen) {
  snprintf(out, outlen, "host=127.0.0.1 port=%d user=quarry dbname=%s", pg->port, dbname);
  return out;
}

/* ---- the server shared by a test binary ------------------------------------ */

void pgtest_share(pgtest_t *pg) {
  char why[512] = "", base[128];
  if (pgtest_start(pg, why, sizeof why) != 0) {
    setenv(ENV_ERROR, why, 1);
    return;
  }
  snprintf(base, sizeof base, "host=127.0.0.1 port=%d user=quarry", pg->port);
  setenv(ENV_BASE, base, 1);
  fprintf(stderr, "test postgres on port %d (%s)\n", pg->port, pg->dir);
}

void pgtest_shared_dsn(const char *dbname, char *out, size_t outlen) {
  const char *base = getenv(ENV_BASE);
  if (!base)
    cr_assert_fail("no test PostgreSQL: %s",
                   getenv(ENV_ERROR) ? getenv(ENV_ERROR) : "not started");
  snprintf(out, outlen, "%s dbname=%s", base, dbname);
}

void pgtest_shared_fresh_db(char *out, size_t outlen) {
  static int made; /* databases this worker has created */
  char admin[192], db[48], sql[80];
  pgtest_shared_dsn("postgres", admin, sizeof admin);
  /* The time as well, in case a later worker gets a finished one's pid. */
  snprintf(db, sizeof db, "pgt_%d_%ld_%d", (int)getpid(), (long)time(NULL), ++made);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
  PGconn *c = PQconnectdb(admin);
  cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
  PGresult *r = PQexec(c, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
  pgtest_shared_dsn(db, out, outlen);
}
