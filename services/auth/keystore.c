/* keystore.c - API keys in PostgreSQL plus a cache of positive results
 * (see keystore.h).
 *
 * The cache is direct-mapped on the key id: a fixed array, so its memory is
 * bounded whatever the traffic, and a colliding key simply evicts the older
 * entry. Only successful authentications are cached; every failure goes to
 * the database, which is what an attacker guessing keys would pay for
 * anyway (the gateway's rate limit sits in front). */
#include "keystore.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#define CACHE_SLOTS 1024 /* power of two */
#define ACQUIRE_MS 2000

const q_pg_migration_t keystore_migrations[] = {
    {1, "tenants and api keys",
     "CREATE TABLE IF NOT EXISTS tenants (\n"
     "  id text PRIMARY KEY,\n"
     "  name text NOT NULL,\n"
     "  created_at timestamptz NOT NULL DEFAULT now()\n"
     ");\n"
     "CREATE TABLE IF NOT EXISTS api_keys (\n"
     "  id text PRIMARY KEY,\n"
     "  tenant_id text NOT NULL REFERENCES tenants (id),\n"
     "  name text NOT NULL,\n"
     "  roles text[] NOT NULL,\n"
     "  secret_hash text NOT NULL,\n"
     "  created_at timestamptz NOT NULL DEFAULT now(),\n"
     "  last_used_at timestamptz,\n"
     "  revoked_at timestamptz\n"
     ");\n"
     "CREATE INDEX IF NOT EXISTS api_keys_tenant_idx ON api_keys (tenant_id);\n"},
    /* Key management (ListApiKeys, RevokeApiKey): who revoked a key, and a
     * keyset index for the newest-first list of a tenant's keys. */
    {2, "api keys: revoked_by, list index",
     "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS revoked_by text NOT NULL DEFAULT "
     "'';\n"
     "CREATE INDEX IF NOT EXISTS api_keys_tenant_list_idx ON api_keys (tenant_id, "
     "created_at, id);\n"},
};
const size_t keystore_nmigrations =
    sizeof keystore_migrations / sizeof keystore_migrations[0];

typedef struct cache_entry {
  int64_t expires_ms; /* 0: empty slot */
  char hash[KEY_HASH_LEN + 1];
  key_principal_t principal;
} cache_entry_t;

struct keystore {
  q_pg_pool_t *pool;
  int64_t cache_ms;
  pthread_mutex_t mu;
  cache_entry_t *cache; /* CACHE_SLOTS entries, NULL when disabled */
};

keystore_t *keystore_new(q_pg_pool_t *pool, int64_t cache_ms) {
  keystore_t *ks = calloc(1, sizeof *ks);
  if (!ks)
    return NULL;
  ks->pool = pool;
  ks->cache_ms = cache_ms > 0 ? cache_ms : 0;
  if (ks->cache_ms && !(ks->cache = calloc(CACHE_SLOTS, sizeof *ks->cache))) {
    free(ks);
    return NULL;
  }
  pthread_mutex_init(&ks->mu, NULL);
  return ks;
}

void keystore_free(keystore_t *ks) {
  if (!ks)
    return;
  pthread_mutex_destroy(&ks->mu);
  free(ks->cache);
  free(ks);
}

/* Key ids are random hex, so their first characters spread evenly. */
static size_t cache_slot(const char *key_id) {
  size_t h = 0;
  for (int i = 0; i < 8; i++) {
    char c = key_id[i];
    h = h << 4 | (size_t)(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return h & (CACHE_SLOTS - 1);
}

/* 1: hit with *out filled, -1: the key is cached with another secret,
 * 0: not cached. */
static int cache_get(keystore_t *ks, const key_parts_t *k, const char *hash,
                     key_principal_t *out) {
  if (!ks->cache)
    return 0;
  int res = 0;
  pthread_mutex_lock(&ks->mu);
  cache_entry_t *e = &ks->cache[cache_slot(k->id)];
  if (e->expires_ms > q_now_ms() && strcmp(e->principal.key_id, k->id) == 0) {
    if (q_ct_equal(e->hash, hash, KEY_HASH_LEN)) {
      *out = e->principal;
      res = 1;
    } else {
      res = -1;
    }
  }
  pthread_mutex_unlock(&ks->mu);
  return res;
}

static void cache_put(keystore_t *ks, const char *hash, const key_principal_t *p) {
  if (!ks->cache)
    return;
  pthread_mutex_lock(&ks->mu);
  cache_entry_t *e = &ks->cache[cache_slot(p->key_id)];
  e->expires_ms = q_now_ms() + ks->cache_ms;
  memcpy(e->hash, hash, sizeof e->hash);
  e->principal = *p;
  pthread_mutex_unlock(&ks->mu);
}

static int roles_from_list(const char *list) {
  int mask = 0;
  const char *p = list;
  while (p && *p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    char name[16];
    if (n < sizeof name) {
      memcpy(name, p, n);
      name[n] = '\0';
      mask |= keys_role_bit(name); /* names we do not know grant nothing */
    }
    p = comma ? comma + 1 : NULL;
  }
  return mask;
}

/* Looks the key up and compares the stored hash. */
static q_err_t lookup(keystore_t *ks, const key_parts_t *k, const char *hash,
                      key_principal_t *out, const char **reason, char *err,
                      size_t errlen) {
  PGconn *c = q_pg_acquire(ks->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = Q_OK;
  const char *params[1] = {k->id};
  PGresult *r = q_pg_query(c,
                           "SELECT tenant_id, array_to_string(roles, ','), secret_hash, "
                           "revoked_at IS NOT NULL FROM api_keys WHERE id = $1",
                           1, params, "looking up api key", &rc, err, errlen);
  if (!r)
    goto done;
  if (PQntuples(r) != 1) {
    *reason = "unknown";
    rc = Q_EUNAUTH;
    goto done;
  }
  const char *stored = PQgetvalue(r, 0, 2);
  if (strlen(stored) != KEY_HASH_LEN || !q_ct_equal(stored, hash, KEY_HASH_LEN)) {
    *reason = "mismatch";
    rc = Q_EUNAUTH;
    goto done;
  }
  if (strcmp(PQgetvalue(r, 0, 3), "t") == 0) {
    *reason = "revoked";
    rc = Q_EUNAUTH;
    goto done;
  }
  memset(out, 0, sizeof *out);
  snprintf(out->tenant_id, sizeof out->tenant_id, "%s", PQgetvalue(r, 0, 0));
  snprintf(out->key_id, sizeof out->key_id, "%s", k->id);
  out->roles = roles_from_list(PQgetvalue(r, 0, 1));
  PQclear(r);
  r = NULL;

  /* Best effort and throttled to once a minute per key, so a busy key does
   * not turn every request into a write. */
  char why[256];
  if (q_pg_exec(c,
                "UPDATE api_keys SET last_used_at = now() WHERE id = $1 AND "
                "(last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')",
                1, params, "updating last_used_at", NULL, why, sizeof why))
    q_log_warn("could not record key use", "{s:s,s:s}", "key_id", k->id, "reason", why);
done:
  PQclear(r);
  q_pg_release(ks->pool, c);
  return rc;
}

q_err_t keystore_authenticate(keystore_t *ks, const char *credential, size_t len,
                              key_principal_t *out, const char **reason, char *err,
                              size_t errlen) {
  key_parts_t k;
  *reason = "";
  if (keys_parse(credential, len, &k)) {
    *reason = "malformed";
    return Q_EUNAUTH;
  }
  char hash[KEY_HASH_LEN + 1];
  keys_hash_secret(&k, hash);
  memset(k.secret, 0, sizeof k.secret);

  int hit = cache_get(ks, &k, hash, out);
  if (hit > 0)
    return Q_OK;
  if (hit < 0) {
    *reason = "mismatch";
    return Q_EUNAUTH;
  }
  int rc = lookup(ks, &k, hash, out, reason, err, errlen);
  if (rc == Q_OK)
    cache_put(ks, hash, out);
  return rc;
}

static void roles_to_list(int roles, char *out, size_t outlen) {
  size_t used = 0;
  out[0] = '\0';
  for (int bit = 1; bit <= ROLE_READER; bit <<= 1) {
    if (!(roles & bit))
      continue;
    int n =
        snprintf(out + used, outlen - used, "%s%s", used ? "," : "", keys_role_name(bit));
    if (n < 0 || (size_t)n >= outlen - used)
      break;
    used += (size_t)n;
  }
}

q_err_t keystore_create_key(PGconn *c, const char *tenant, const char *name, int roles,
                            char *key, size_t keylen, char id[KEY_ID_LEN + 1], char *err,
                            size_t errlen) {
  char hash[KEY_HASH_LEN + 1], role_list[64];
  int rc = keys_generate(key, keylen, id, hash);
  if (rc) {
    snprintf(err, errlen, "key buffer too small");
    return rc;
  }
  roles_to_list(roles, role_list, sizeof role_list);

  rc = q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, errlen);
  if (rc)
    goto fail;
  const char *tp[1] = {tenant};
  rc = q_pg_exec(
      c, "INSERT INTO tenants (id, name) VALUES ($1, $1) ON CONFLICT (id) DO NOTHING", 1,
      tp, "creating tenant", NULL, err, errlen);
  if (rc)
    goto rollback;
  const char *kp[5] = {id, tenant, name, role_list, hash};
  rc = q_pg_exec(c,
                 "INSERT INTO api_keys (id, tenant_id, name, roles, secret_hash) "
                 "VALUES ($1, $2, $3, string_to_array($4, ','), $5)",
                 5, kp, "creating api key", NULL, err, errlen);
  if (rc)
    goto rollback;
  rc = q_pg_exec(c, "COMMIT", 0, NULL, "commit", NULL, err, errlen);
  if (rc)
    goto fail;
  return Q_OK;
rollback:
  PQclear(PQexec(c, "ROLLBACK"));
fail:
  memset(key, 0, keylen);
  return rc;
}

q_err_t keystore_create(keystore_t *ks, const char *tenant, const char *name, int roles,
                        char *key, size_t keylen, char id[KEY_ID_LEN + 1], char *err,
                        size_t errlen) {
  PGconn *c = q_pg_acquire(ks->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  int rc = keystore_create_key(c, tenant, name, roles, key, keylen, id, err, errlen);
  q_pg_release(ks->pool, c);
  return rc;
}

bool keystore_ping(keystore_t *ks, char *why, size_t whylen) {
  return q_pg_ping(ks->pool, why, whylen);
}

/* ---- key management ------------------------------------------------------ */

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static bool hex_lower(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return 0;
  return 1;
}

bool keystore_key_id_valid(const char *id) {
  return id && strlen(id) == KEY_ID_LEN && hex_lower(id, KEY_ID_LEN);
}

q_err_t keystore_cursor_encode(const keystore_pos_t *pos, char *out, size_t outlen) {
  if (pos->micros < 0 || !keystore_key_id_valid(pos->id) || outlen <= KEYSTORE_CURSOR_LEN)
    return Q_EINVAL;
  snprintf(out, outlen, "k1%016llx%s", (unsigned long long)pos->micros, pos->id);
  return Q_OK;
}

q_err_t keystore_cursor_decode(const char *s, keystore_pos_t *pos) {
  if (!s || strlen(s) != KEYSTORE_CURSOR_LEN || s[0] != 'k' || s[1] != '1' ||
      !hex_lower(s + 2, KEYSTORE_CURSOR_LEN - 2))
    return Q_EINVAL;
  uint64_t v = 0;
  for (int i = 2; i < 18; i++)
    v = v << 4 | (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
  if (v > (uint64_t)INT64_MAX)
    return Q_EINVAL;
  pos->micros = (int64_t)v;
  memcpy(pos->id, s + 18, KEY_ID_LEN);
  pos->id[KEY_ID_LEN] = '\0';
  return Q_OK;
}

/* Fills an ApiKey message from row i of r (columns of KEY_COLS). */
static q_err_t key_of_row(q_arena_t *a, PGresult *r, int i, Quarry__V1__ApiKey **out) {
  Quarry__V1__ApiKey *k = q_arena_alloc(a, sizeof *k);
  char **roles = q_arena_alloc(a, 3 * sizeof *roles);
  if (!k || !roles)
    return Q_ENOMEM;
  quarry__v1__api_key__init(k);
  k->id = q_arena_strdup(a, PQgetvalue(r, i, 0));
  k->tenant_id = q_arena_strdup(a, PQgetvalue(r, i, 1));
  k->name = q_arena_strdup(a, PQgetvalue(r, i, 2));
  int mask = roles_from_list(PQgetvalue(r, i, 3));
  for (int bit = ROLE_ADMIN; bit <= ROLE_READER; bit <<= 1)
    if (mask & bit)
      roles[k->n_roles++] = (char *)keys_role_name(bit);
  k->roles = roles;
  k->created_at = q_arena_strdup(a, PQgetvalue(r, i, 4));
  k->revoked = !PQgetisnull(r, i, 5);
  k->revoked_at = q_arena_strdup(a, PQgetisnull(r, i, 5) ? "" : PQgetvalue(r, i, 5));
  if (!k->id || !k->tenant_id || !k->name || !k->created_at || !k->revoked_at)
    return Q_ENOMEM;
  *out = k;
  return Q_OK;
}

// clang-format off
#define KEY_COLS                                                                    \
  "SELECT id, tenant_id, name, array_to_string(roles, ','), " TS("created_at")      \
  ", CASE WHEN revoked_at IS NULL THEN NULL ELSE " TS("revoked_at") " END, "        \
  "floor(extract(epoch FROM created_at) * 1000000)::bigint FROM api_keys "
// clang-format on

q_err_t keystore_list(keystore_t *ks, const char *tenant, const keystore_pos_t *after,
                      int limit, q_arena_t *a, Quarry__V1__ListApiKeysResponse **out,
                      char *err, size_t errlen) {
  char micros[24], lim[16];
  snprintf(micros, sizeof micros, "%lld", after ? (long long)after->micros : 0LL);
  snprintf(lim, sizeof lim, "%d", limit + 1);
  const char *params[4] = {tenant, lim, micros, after ? after->id : ""};
  PGconn *c = q_pg_acquire(ks->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = Q_OK;
  PGresult *r = q_pg_query(
      c,
      after ? KEY_COLS
          "WHERE tenant_id = $1 AND (created_at, id) < ('epoch'::timestamptz "
          "+ $3::bigint * interval '1 microsecond', $4) "
          "ORDER BY created_at DESC, id DESC LIMIT $2::int"
            : KEY_COLS "WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC "
                       "LIMIT $2::int",
      after ? 4 : 2, params, "listing api keys", &rc, err, errlen);
  q_pg_release(ks->pool, c);
  if (!r)
    return rc;
  int n = PQntuples(r) < limit ? PQntuples(r) : limit;
  Quarry__V1__ListApiKeysResponse *resp = q_arena_alloc(a, sizeof *resp);
  Quarry__V1__ApiKey **keys = q_arena_alloc(a, ((size_t)n + 1) * sizeof *keys);
  if (!resp || !keys) {
    PQclear(r);
    return Q_ENOMEM;
  }
  quarry__v1__list_api_keys_response__init(resp);
  resp->keys = keys;
  resp->next_cursor = "";
  for (int i = 0; i < n && !rc; i++)
    rc = key_of_row(a, r, i, &keys[resp->n_keys++]);
  if (!rc && PQntuples(r) > limit) {
    keystore_pos_t pos;
    pos.micros = strtoll(PQgetvalue(r, limit - 1, 6), NULL, 10);
    snprintf(pos.id, sizeof pos.id, "%s", PQgetvalue(r, limit - 1, 0));
    char buf[KEYSTORE_CURSOR_LEN + 1];
    rc = keystore_cursor_encode(&pos, buf, sizeof buf) ? Q_EINTERNAL : Q_OK;
    if (!rc && !(resp->next_cursor = q_arena_strdup(a, buf)))
      rc = Q_ENOMEM;
  }
  PQclear(r);
  if (rc)
    return rc;
  *out = resp;
  return Q_OK;
}

q_err_t keystore_get(keystore_t *ks, const char *tenant, const char *key_id, q_arena_t *a,
                     Quarry__V1__ApiKey **out, char *err, size_t errlen) {
  const char *params[2] = {tenant, key_id};
  PGconn *c = q_pg_acquire(ks->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = Q_OK;
  PGresult *r = q_pg_query(c, KEY_COLS "WHERE tenant_id = $1 AND id = $2", 2, params,
                           "reading api key", &rc, err, errlen);
  q_pg_release(ks->pool, c);
  if (!r)
    return rc;
  rc = PQntuples(r) == 1 ? key_of_row(a, r, 0, out) : Q_ENOTFOUND;
  PQclear(r);
  return rc;
}

/* Drops the cached result of key_id, so this instance refuses it at once. */
static void cache_forget(keystore_t *ks, const char *key_id) {
  if (!ks->cache)
    return;
  pthread_mutex_lock(&ks->mu);
  cache_entry_t *e = &ks->cache[cache_slot(key_id)];
  if (strcmp(e->principal.key_id, key_id) == 0)
    memset(e, 0, sizeof *e);
  pthread_mutex_unlock(&ks->mu);
}

q_err_t keystore_revoke(keystore_t *ks, const char *tenant, const char *key_id,
                        const char *by, char *revoked_at, size_t revoked_at_len,
                        char *err, size_t errlen) {
  const char *params[3] = {tenant, key_id, by ? by : ""};
  PGconn *c = q_pg_acquire(ks->pool, ACQUIRE_MS, err, errlen);
  if (!c)
    return Q_EUNAVAIL;
  q_err_t rc = Q_OK;
  PGresult *r = q_pg_query(c,
                           "UPDATE api_keys SET revoked_at = now(), revoked_by = $3 "
                           "WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL "
                           "RETURNING " TS("revoked_at"),
                           3, params, "revoking api key", &rc, err, errlen);
  q_pg_release(ks->pool, c);
  if (!r)
    return rc;
  rc = PQntuples(r) == 1 ? Q_OK : Q_ENOTFOUND;
  if (!rc)
    snprintf(revoked_at, revoked_at_len, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  cache_forget(ks, key_id);
  return rc;
}
