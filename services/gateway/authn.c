/* authn.c - credential extraction, auth.Authenticate and the principal
 * cache (see authn.h). */
#include "authn.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quarry/v1/auth.pb-c.h"

#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/log.h"
#include "quarry/stubs.h"
#include "quarry/trace.h"
#include "quarry/util.h"

/* A direct-mapped table: the slot is chosen by the leading hash bits, so a
 * lookup is one comparison and a new entry simply evicts whatever shared
 * its slot. */
typedef struct slot {
  char hash[65]; /* SHA-256 hex of the key; "" when empty */
  int64_t expires_ms;
  gw_principal_t principal;
} slot_t;

static slot_t cache[AUTHN_CACHE_SLOTS];
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(const char *hash) {
  /* The leading 8 hex digits of a SHA-256 are uniformly distributed. */
  size_t v = 0;
  for (int i = 0; i < 8; i++) {
    char c = hash[i];
    v = v * 16 + (size_t)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
  }
  return v % AUTHN_CACHE_SLOTS;
}

static int cache_get(const char *hash, gw_principal_t *out) {
  int hit = 0;
  slot_t *s = &cache[slot_of(hash)];
  pthread_mutex_lock(&cache_mu);
  if (strcmp(s->hash, hash) == 0 && s->expires_ms > q_now_ms()) {
    *out = s->principal;
    hit = 1;
  }
  pthread_mutex_unlock(&cache_mu);
  return hit;
}

static void cache_put(const char *hash, const gw_principal_t *p) {
  slot_t *s = &cache[slot_of(hash)];
  pthread_mutex_lock(&cache_mu);
  memcpy(s->hash, hash, sizeof s->hash);
  s->expires_ms = q_now_ms() + AUTHN_TTL_MS;
  s->principal = *p;
  pthread_mutex_unlock(&cache_mu);
}

void authn_cache_clear(void) {
  pthread_mutex_lock(&cache_mu);
  memset(cache, 0, sizeof cache);
  pthread_mutex_unlock(&cache_mu);
}

void authn_cache_forget_key(const char *key_id) {
  pthread_mutex_lock(&cache_mu);
  for (size_t i = 0; i < AUTHN_CACHE_SLOTS; i++)
    if (cache[i].hash[0] && strcmp(cache[i].principal.key_id, key_id) == 0)
      memset(&cache[i], 0, sizeof cache[i]);
  pthread_mutex_unlock(&cache_mu);
}

static q_err_t key_ok(const char *k, size_t n, char *err, size_t errlen) {
  if (n == 0) {
    snprintf(err, errlen, "empty API key");
    return Q_EUNAUTH;
  }
  if (n > Q_LIMIT_CREDENTIAL_BYTES) {
    snprintf(err, errlen, "API key longer than %d bytes", Q_LIMIT_CREDENTIAL_BYTES);
    return Q_EUNAUTH;
  }
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] == 0x7f) {
      snprintf(err, errlen, "API key contains white space or control characters");
      return Q_EUNAUTH;
    }
  return 0;
}

static const char *skip_ws(const char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  return s;
}

q_err_t authn_extract(const char *authorization, const char *api_key, const char **key,
                      size_t *len, char *err, size_t errlen) {
  const char *k;
  if (authorization) {
    const char *a = skip_ws(authorization);
    if (strncasecmp(a, "Bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t')) {
      snprintf(err, errlen, "unsupported Authorization scheme: use \"Bearer <api key>\"");
      return Q_EUNAUTH;
    }
    k = skip_ws(a + 6);
  } else if (api_key) {
    k = skip_ws(api_key);
  } else {
    snprintf(err, errlen,
             "missing credential: send \"Authorization: Bearer <api key>\" or "
             "\"X-API-Key: <api key>\"");
    return Q_EUNAUTH;
  }
  size_t n = strnlen(k, Q_LIMIT_CREDENTIAL_BYTES + 1);
  while (n > 0 && (k[n - 1] == ' ' || k[n - 1] == '\t'))
    n--;
  int rc = key_ok(k, n, err, errlen);
  if (rc)
    return rc;
  *key = k;
  *len = n;
  return 0;
}

static q_err_t copy_id(char *dst, size_t max, const char *src, const char *what,
                       char *err, size_t errlen) {
  size_t n = src ? strlen(src) : 0;
  if (n > max) {
    snprintf(err, errlen, "auth returned a %s longer than %zu bytes", what, max);
    return Q_EINTERNAL;
  }
  memcpy(dst, src ? src : "", n + 1);
  return 0;
}

/* What auth answered, as authn_principal returns it: 0 with *out set (and
 * cached under hash), or the error with err describing it. */
static q_err_t principal_of(const char *hash, q_err_t rc, const char *cerr,
                            const Quarry__V1__AuthenticateResponse *resp,
                            gw_principal_t *out, char *err, size_t errlen) {
  if (rc) {
    if (rc == Q_EUNAUTH || rc == Q_EPERM)
      snprintf(err, errlen, "invalid API key%s%s", cerr[0] ? ": " : "", cerr);
    else
      snprintf(err, errlen, "%s", cerr[0] ? cerr : q_strerror(rc));
    return rc == Q_EPERM ? Q_EUNAUTH : rc;
  }
  if (!resp || !resp->principal || !resp->principal->tenant_id ||
      !resp->principal->tenant_id[0]) {
    snprintf(err, errlen, "auth returned no tenant for the key");
    return Q_EINTERNAL;
  }
  gw_principal_t p;
  memset(&p, 0, sizeof p);
  const Quarry__V1__Principal *pr = resp->principal;
  if ((rc = copy_id(p.tenant_id, Q_LIMIT_TENANT_ID_BYTES, pr->tenant_id, "tenant id", err,
                    errlen)) ||
      (rc = copy_id(p.user_id, Q_LIMIT_USER_ID_BYTES, pr->user_id, "user id", err,
                    errlen)) ||
      (rc = copy_id(p.key_id, Q_LIMIT_KEY_ID_BYTES, pr->key_id, "key id", err, errlen)))
    return rc;
  for (size_t i = 0; i < pr->n_roles; i++) {
    const char *role = pr->roles[i] ? pr->roles[i] : "";
    p.roles |= strcmp(role, "admin") == 0    ? GW_ROLE_ADMIN
               : strcmp(role, "writer") == 0 ? GW_ROLE_WRITER
               : strcmp(role, "reader") == 0 ? GW_ROLE_READER
                                             : 0u;
  }
  cache_put(hash, &p);
  *out = p;
  return 0;
}

bool authn_cached(const char *key, size_t len, gw_principal_t *out) {
  char hash[65];
  q_sha256_hex(key, len, hash);
  return cache_get(hash, out);
}

q_err_t authn_principal(const char *addr, const char *key, size_t len, int timeout_ms,
                        gw_principal_t *out, int *cached, char *err, size_t errlen) {
  char hash[65];
  q_sha256_hex(key, len, hash);
  *cached = 0;
  if (cache_get(hash, out)) {
    *cached = 1;
    return 0;
  }

  q_arena_t *arena = q_arena_new(1 << 20);
  if (!arena) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  char *cred = q_arena_strndup(arena, key, len);
  Quarry__V1__AuthenticateRequest req = QUARRY__V1__AUTHENTICATE_REQUEST__INIT;
  req.credential = cred;
  Quarry__V1__AuthenticateResponse *resp = NULL;
  q_grpc_call_opts_t opts = {.timeout_ms = timeout_ms, .idempotent = 1};
  char cerr[256] = "";
  q_err_t rc = q_rpc_auth_authenticate(q_grpc_channel(addr), &req, &resp, arena, &opts,
                                       cerr, sizeof cerr);
  rc = principal_of(hash, rc, cerr, resp, out, err, errlen);
  q_arena_free(arena);
  return rc;
}

/* One asynchronous Authenticate, in its own arena. */
typedef struct pending {
  q_arena_t *arena;
  char hash[65];
  authn_cb cb;
  void *ud;
} pending_t;

static void authenticate_done(void *ud, q_err_t rc,
                              Quarry__V1__AuthenticateResponse *resp,
                              const char *status_message) {
  pending_t *pd = ud;
  gw_principal_t p;
  char err[512] = "";
  rc = principal_of(pd->hash, rc, status_message ? status_message : "", resp, &p, err,
                    sizeof err);
  pd->cb(pd->ud, rc, rc ? NULL : &p, err);
  q_arena_free(pd->arena);
}

q_err_t authn_principal_async(const char *addr, const char *key, size_t len,
                              int timeout_ms, int64_t deadline_ms, const char *trace_id,
                              authn_cb cb, void *ud, char *err, size_t errlen) {
  q_arena_t *arena = q_arena_new(1 << 20);
  pending_t *pd = arena ? q_arena_alloc(arena, sizeof *pd) : NULL;
  if (!pd) {
    q_arena_free(arena);
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  pd->arena = arena;
  pd->cb = cb;
  pd->ud = ud;
  q_sha256_hex(key, len, pd->hash);
  Quarry__V1__AuthenticateRequest req = QUARRY__V1__AUTHENTICATE_REQUEST__INIT;
  req.credential = q_arena_strndup(arena, key, len);
  q_grpc_call_opts_t opts = {.timeout_ms = timeout_ms,
                             .idempotent = 1,
                             .deadline_ms = deadline_ms,
                             .trace_id = trace_id};
  q_err_t rc = q_rpc_auth_authenticate_async(q_grpc_channel(addr), &req, arena, &opts,
                                             authenticate_done, pd, NULL);
  if (rc) {
    snprintf(err, errlen, "cannot call auth: %s", q_strerror(rc));
    q_arena_free(arena);
  }
  return rc;
}
