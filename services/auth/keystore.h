/* keystore.h - API keys and tenants in PostgreSQL, with a small cache of
 * positive authentication results.
 *
 * Tables (migrations of service "auth"): tenants(id, name, created_at) and
 * api_keys(id = key id, tenant_id, name, roles, secret_hash, created_at,
 * last_used_at, revoked_at). Only SHA-256 of a key's secret is stored (see
 * keys.h for why that hash). */
#ifndef QUARRY_AUTH_KEYSTORE_H
#define QUARRY_AUTH_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "quarry/pg.h"
#include "quarry/validate.h"
#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/v1/auth.pb-c.h"

typedef struct keystore keystore_t;

/* Who a key belongs to, as established by keystore_authenticate. */
typedef struct key_principal {
  char tenant_id[Q_LIMIT_TENANT_ID_BYTES + 1];
  char key_id[KEY_ID_LEN + 1];
  int roles; /* ROLE_* bits */
} key_principal_t;

/* The migrations of service "auth", for q_pg_migrate / q_pg_wait_migrate. */
extern const q_pg_migration_t keystore_migrations[];
extern const size_t keystore_nmigrations;

/* Creates a store over pool (borrowed; must outlive the store). Positive
 * authentication results are cached for cache_ms (0 disables the cache), so
 * a revoked key keeps working for at most that long. NULL when out of
 * memory. */
keystore_t *keystore_new(q_pg_pool_t *pool, int64_t cache_ms);
void keystore_free(keystore_t *ks);

/* Checks a credential (bare key or "Bearer <key>"). 0 with *out filled;
 * Q_EUNAUTH when the credential is malformed, unknown, revoked or wrong
 * (the caller must not tell these apart to the client; *reason gets a
 * static word for logs: "malformed", "unknown", "revoked", "mismatch");
 * Q_EUNAVAIL / Q_EINTERNAL when the database fails (err says why).
 * Thread-safe. */
q_err_t keystore_authenticate(keystore_t *ks, const char *credential, size_t len,
                              key_principal_t *out, const char **reason, char *err,
                              size_t errlen);

/* Creates a key for tenant (the tenant is created if missing, named after
 * its id) with a name and roles (ROLE_* bits, non-zero). Writes the
 * plaintext key into key (keylen >= KEY_MAX_LEN + 1) and its id into id.
 * Inputs must already be validated (q_valid_tenant_id, keys_name_valid).
 * 0, or Q_EUNAVAIL / Q_EINTERNAL with err. Works on a raw connection so the
 * command-line tool can use it too. */
q_err_t keystore_create_key(PGconn *c, const char *tenant, const char *name, int roles,
                            char *key, size_t keylen, char id[KEY_ID_LEN + 1], char *err,
                            size_t errlen);

/* Pool-based convenience wrapper around keystore_create_key. */
q_err_t keystore_create(keystore_t *ks, const char *tenant, const char *name, int roles,
                        char *key, size_t keylen, char id[KEY_ID_LEN + 1], char *err,
                        size_t errlen);

/* A position in a tenant's newest-first key list: created_at in
 * microseconds since the epoch and the key id. */
typedef struct keystore_pos {
  int64_t micros;
  char id[KEY_ID_LEN + 1];
} keystore_pos_t;

/* Length of an encoded key cursor: "k1", 16 hex digits of micros, the key
 * id (16 hex digits). */
#define KEYSTORE_CURSOR_LEN (2 + 16 + KEY_ID_LEN)

/* Whether id has the form of a key id (16 lower-case hex digits). */
bool keystore_key_id_valid(const char *id);

/* Writes pos as a cursor into out (outlen > KEYSTORE_CURSOR_LEN); Q_EINVAL
 * for a bad position. */
q_err_t keystore_cursor_encode(const keystore_pos_t *pos, char *out, size_t outlen);

/* Reads a cursor keystore_cursor_encode wrote; Q_EINVAL for anything else
 * (it comes from clients). */
q_err_t keystore_cursor_decode(const char *s, keystore_pos_t *pos);

/* One page of tenant's keys after *after (NULL: the newest first), at most
 * limit, into a reply allocated from a (never a secret or its hash). 0, or
 * Q_EUNAVAIL / Q_EINTERNAL / Q_ENOMEM with err. */
q_err_t keystore_list(keystore_t *ks, const char *tenant, const keystore_pos_t *after,
                      int limit, q_arena_t *a, Quarry__V1__ListApiKeysResponse **out,
                      char *err, size_t errlen);

/* One key of tenant. 0, Q_ENOTFOUND (unknown or another tenant's), or
 * Q_EUNAVAIL / Q_EINTERNAL / Q_ENOMEM with err. */
q_err_t keystore_get(keystore_t *ks, const char *tenant, const char *key_id, q_arena_t *a,
                     Quarry__V1__ApiKey **out, char *err, size_t errlen);

/* Revokes a working key of tenant, recording by and the time (written
 * into revoked_at as RFC 3339); this instance's cache forgets the key at
 * once (another auth instance's within its cache_ms). 0, Q_ENOTFOUND
 * (unknown, another tenant's or already revoked), or Q_EUNAVAIL /
 * Q_EINTERNAL with err. */
q_err_t keystore_revoke(keystore_t *ks, const char *tenant, const char *key_id,
                        const char *by, char *revoked_at, size_t revoked_at_len,
                        char *err, size_t errlen);

/* Whether the database answers (readiness); when not, why says why. */
bool keystore_ping(keystore_t *ks, char *why, size_t whylen);

#endif
