/* main.c - quarry-auth: API key authentication for the other services.
 *
 * Also a small admin tool: `quarry-auth create-key --tenant T --name N
 * --roles admin[,writer]` creates a key directly in the database (used by
 * the local launcher to bootstrap the first key) and prints only the key. */
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "keys.h"
#include "keystore.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/pg.h"
#include "quarry/pg_wait.h"
#include "quarry/service.h"
#include "quarry/validate.h"
#include "quarry/v1/auth.pb-c.h"

static q_common_cfg_t common;
static q_pg_cfg_t pg;
static int64_t cache_ms;

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7001", "127.0.0.1:9101"),
    Q_CFG_PG_ENTRIES(pg),
    {"QUARRY_AUTH_CACHE_MS", Q_CFG_INT, "30000", 0, 3600000, NULL,
     "How long a successful key check is cached in memory (0: no cache). A revoked "
     "key keeps working for at most this long.",
     0, &cache_ms},
};

/* create-key opens a single connection: no pool size. */
static q_cfg_entry_t cli_cfg[] = {Q_CFG_PG_DSN_ENTRY(pg), Q_CFG_PG_WAIT_ENTRY(pg)};

static int create_key_usage(FILE *f) {
  fprintf(f, "usage: quarry-auth create-key --tenant TENANT --name NAME "
             "--roles ROLE[,ROLE...]\n"
             "  Creates an API key (and the tenant if missing) in QUARRY_PG_DSN,\n"
             "  applying the auth migrations first, and prints only the key.\n"
             "  Roles: admin, writer, reader.\n");
  return f == stdout ? 0 : 1;
}

/* Takes "--opt value" or "--opt=value"; returns the value or NULL. */
static const char *option(int argc, char **argv, int *i, const char *opt) {
  size_t n = strlen(opt);
  if (strncmp(argv[*i], opt, n) != 0)
    return NULL;
  if (argv[*i][n] == '=')
    return argv[*i] + n + 1;
  if (argv[*i][n] == '\0' && *i + 1 < argc)
    return argv[++*i];
  return NULL;
}

static int create_key_main(int argc, char **argv) {
  const char *tenant = NULL, *name = NULL, *role_list = NULL;
  for (int i = 2; i < argc; i++) {
    const char *v;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
      return create_key_usage(stdout);
    if ((v = option(argc, argv, &i, "--tenant")))
      tenant = v;
    else if ((v = option(argc, argv, &i, "--name")))
      name = v;
    else if ((v = option(argc, argv, &i, "--roles")))
      role_list = v;
    else {
      fprintf(stderr, "quarry-auth create-key: unexpected argument \"%s\"\n", argv[i]);
      return create_key_usage(stderr);
    }
  }
  if (!tenant || !name || !role_list) {
    fprintf(stderr,
            "quarry-auth create-key: --tenant, --name and --roles are required\n");
    return create_key_usage(stderr);
  }
  int roles;
  char err[512];
  if (!q_valid_tenant_id(tenant)) {
    fprintf(stderr,
            "quarry-auth create-key: --tenant: 1..%d characters of "
            "[A-Za-z0-9._-] starting with a letter or digit\n",
            Q_LIMIT_TENANT_ID_BYTES);
    return 1;
  }
  if (!keys_name_valid(name)) {
    fprintf(stderr,
            "quarry-auth create-key: --name: 1..%d bytes of UTF-8 without "
            "control characters\n",
            Q_LIMIT_API_KEY_NAME_BYTES);
    return 1;
  }
  if (keys_roles_parse(role_list, &roles, err, sizeof err)) {
    fprintf(stderr, "quarry-auth create-key: --%s\n", err);
    return 1;
  }
  char *cfg_argv[] = {argv[0], NULL};
  if (q_cfg_load("quarry-auth", "Creates an API key.", cli_cfg, Q_NELEM(cli_cfg), 1,
                 cfg_argv))
    return 1;
  q_log_init("auth", Q_LOG_WARN);

  int rc = 1;
  q_pg_pool_t *pool = q_pg_pool_new(pg.dsn, 1);
  if (!pool) {
    fprintf(stderr, "quarry-auth create-key: out of memory\n");
    return 1;
  }
  if (q_pg_wait_migrate(pool, "auth", keystore_migrations, keystore_nmigrations,
                        pg.wait_ms, err, sizeof err)) {
    fprintf(stderr, "quarry-auth create-key: %s\n", err);
    goto done;
  }
  PGconn *c = q_pg_acquire(pool, 5000, err, sizeof err);
  if (!c) {
    fprintf(stderr, "quarry-auth create-key: %s\n", err);
    goto done;
  }
  char key[KEY_MAX_LEN + 1], id[KEY_ID_LEN + 1];
  int crc =
      keystore_create_key(c, tenant, name, roles, key, sizeof key, id, err, sizeof err);
  q_pg_release(pool, c);
  if (crc) {
    fprintf(stderr, "quarry-auth create-key: %s\n", err);
    goto done;
  }
  if (printf("%s\n", key) < 0 || fflush(stdout) != 0) {
    fprintf(stderr, "quarry-auth create-key: cannot write the key to stdout\n");
    goto done;
  }
  rc = 0;
done:
  q_pg_pool_free(pool);
  return rc;
}

static q_err_t ready_cb(void *ud, char *why, size_t whylen) {
  return keystore_ping(ud, why, whylen) ? 0 : Q_EUNAVAIL;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "create-key") == 0)
    return create_key_main(argc, argv);

  q_service_t svc;
  int rc = q_service_init(&svc, "quarry-auth", "Authenticates API keys and creates them.",
                          cfg, Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;

  char err[512];
  q_pg_pool_t *pool = q_pg_pool_new(pg.dsn, (int)pg.pool);
  keystore_t *ks = pool ? keystore_new(pool, cache_ms) : NULL;
  if (!ks) {
    q_log_error("out of memory", NULL);
    return 1;
  }
  if (q_pg_wait_migrate(pool, "auth", keystore_migrations, keystore_nmigrations,
                        pg.wait_ms, err, sizeof err)) {
    q_log_error("database unavailable at start, exiting", "{s:s,s:i}", "reason", err,
                "waited_ms", (int)pg.wait_ms);
    keystore_free(ks);
    q_pg_pool_free(pool);
    return 1;
  }
  if (q_service_start(&svc, &quarry__v1__auth__descriptor, auth_methods, auth_nmethods,
                      ks, ready_cb, ks)) {
    q_service_cleanup(&svc);
    keystore_free(ks);
    q_pg_pool_free(pool);
    return 1;
  }
  q_service_wait(&svc);
  keystore_free(ks);
  q_pg_pool_free(pool);
  q_service_cleanup(&svc);
  return 0;
}
