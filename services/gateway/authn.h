/* authn.h - who is calling: the credential of a request, checked by the
 * auth service, with recent answers cached in the process.
 *
 * The credential is "Authorization: Bearer <key>" or "X-API-Key: <key>".
 * Principals the auth service vouched for are cached for AUTHN_TTL_MS,
 * keyed by the SHA-256 of the key (the key itself is never kept), in a
 * fixed-size table so the cache cannot grow without bound. Rejections are
 * not cached, so a key created a moment ago works at once. A key revoked
 * through this gateway stops at once (authn_cache_forget_key); through
 * another instance, it keeps working here for at most AUTHN_TTL_MS. */
#ifndef QUARRY_GW_AUTHN_H
#define QUARRY_GW_AUTHN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway.h"
#include "quarry/error.h"

#define AUTHN_TTL_MS 30000
#define AUTHN_CACHE_SLOTS 4096

/* Extracts the key from an Authorization header value and/or an X-API-Key
 * value (either may be NULL; Authorization wins). 0 with *key and *len set, or
 * Q_EUNAUTH with the reason in err (missing, wrong scheme, empty, longer than
 * Q_LIMIT_CREDENTIAL_BYTES, control characters). *key points into one of the
 * inputs. */
q_err_t authn_extract(const char *authorization, const char *api_key, const char **key,
                      size_t *len, char *err, size_t errlen);

/* Establishes the principal of a key: from the cache, else by
 * auth.Authenticate at addr (timeout_ms, capped by the thread's deadline).
 * 0, Q_EUNAUTH for a key the auth service refuses, or the error of the
 * call (Q_EUNAVAIL, Q_ETIMEDOUT, ...) with err describing it.
 * *cached says whether the cache answered. Thread-safe. */
q_err_t authn_principal(const char *addr, const char *key, size_t len, int timeout_ms,
                        gw_principal_t *out, int *cached, char *err, size_t errlen);

/* The final callback of authn_principal_async, on a gRPC loop thread: rc
 * and err as authn_principal returns them, p the principal when rc is 0
 * (valid during the callback). Must not block. */
typedef void (*authn_cb)(void *ud, q_err_t rc, const gw_principal_t *p, const char *err);

/* Looks the key up in the cache only: true with *out set on a hit. */
bool authn_cached(const char *key, size_t len, gw_principal_t *out);

/* Asks auth.Authenticate at addr for the principal of a key without
 * blocking (asynchronous stub, the loop threads of quarry/grpc.h) and
 * caches the answer as authn_principal does. timeout_ms per attempt,
 * capped by deadline_ms (absolute, q_now_ms() time, 0: none); trace_id
 * travels with the call (NULL: none). 0: cb runs exactly once, possibly
 * before this returns. An error (Q_ENOMEM, or the start's): cb never runs,
 * err says why. Thread-safe. */
q_err_t authn_principal_async(const char *addr, const char *key, size_t len,
                              int timeout_ms, int64_t deadline_ms, const char *trace_id,
                              authn_cb cb, void *ud, char *err, size_t errlen);

/* Empties the cache (tests). */
void authn_cache_clear(void);

/* Drops every cached principal of API key key_id: DELETE /v1/keys/{id}
 * calls it once auth has revoked the key, so this gateway refuses the key
 * from its next request on. Other gateway instances forget it within
 * AUTHN_TTL_MS (docs/operations.md). Thread-safe. */
void authn_cache_forget_key(const char *key_id);

#endif
