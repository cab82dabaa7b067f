/* handlers.c - Authenticate, CreateApiKey, ListApiKeys, GetApiKey and
 * RevokeApiKey (quarry.v1.Auth). Key management is scoped by the tenant in
 * the request (the gateway fills it from the caller's principal): another
 * tenant's key is NOT_FOUND, exactly like an unknown one.
 *
 * Every authentication failure gets the same status and message, whatever
 * the cause, so a caller cannot probe which part of a key was right; the
 * cause goes to the log (never the credential itself). A database failure
 * is UNAVAILABLE, not UNAUTHENTICATED: clients must not treat an outage as
 * a bad key. */
#include "handlers.h"

#include <string.h>

#include "keystore.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/validate.h"
#include "quarry/v1/auth.pb-c.h"

static q_err_t authenticate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                               ProtobufCMessage **out, void *ud) {
  keystore_t *ks = ud;
  const Quarry__V1__AuthenticateRequest *req =
      (const Quarry__V1__AuthenticateRequest *)in;
  q_arena_t *a = q_grpc_ctx_arena(ctx);

  key_principal_t p;
  const char *reason = "";
  char err[256] = "";
  const char *cred = req->credential ? req->credential : "";
  int rc = keystore_authenticate(ks, cred, strlen(cred), &p, &reason, err, sizeof err);
  if (rc == Q_EUNAUTH) {
    q_log_info("authentication failed", "{s:s}", "reason", reason);
    q_grpc_ctx_errorf(ctx, "invalid or revoked API key");
    return rc;
  }
  if (rc) {
    q_log_error("authentication unavailable", "{s:s}", "reason", err);
    q_grpc_ctx_errorf(ctx, "credential store unavailable");
    return rc == Q_EUNAVAIL ? Q_EUNAVAIL : Q_EINTERNAL;
  }

  Quarry__V1__Principal *pr = q_arena_alloc(a, sizeof *pr);
  Quarry__V1__AuthenticateResponse *resp = q_arena_alloc(a, sizeof *resp);
  char **roles = q_arena_alloc(a, 3 * sizeof *roles);
  if (!pr || !resp || !roles)
    return Q_ENOMEM;
  quarry__v1__principal__init(pr);
  quarry__v1__authenticate_response__init(resp);
  pr->tenant_id = q_arena_strdup(a, p.tenant_id);
  pr->key_id = q_arena_strdup(a, p.key_id);
  pr->user_id = q_arena_printf(a, "key:%s", p.key_id);
  for (int bit = ROLE_ADMIN; bit <= ROLE_READER; bit <<= 1)
    if (p.roles & bit)
      roles[pr->n_roles++] = (char *)keys_role_name(bit);
  pr->roles = roles;
  if (!pr->tenant_id || !pr->key_id || !pr->user_id)
    return Q_ENOMEM;
  resp->principal = pr;
  *out = &resp->base;
  return Q_OK;
}

static q_err_t create_api_key_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                                 ProtobufCMessage **out, void *ud) {
  keystore_t *ks = ud;
  const Quarry__V1__CreateApiKeyRequest *req =
      (const Quarry__V1__CreateApiKeyRequest *)in;
  q_arena_t *a = q_grpc_ctx_arena(ctx);

  if (!q_valid_tenant_id(req->tenant_id)) {
    q_grpc_ctx_errorf(ctx,
                      "tenant_id: required, 1..%d characters of [A-Za-z0-9._-] "
                      "starting with a letter or digit",
                      Q_LIMIT_TENANT_ID_BYTES);
    return Q_EINVAL;
  }
  if (!keys_name_valid(req->name)) {
    q_grpc_ctx_errorf(ctx,
                      "name: required, 1..%d bytes of UTF-8 without control "
                      "characters",
                      Q_LIMIT_API_KEY_NAME_BYTES);
    return Q_EINVAL;
  }
  if (req->n_roles == 0 || req->n_roles > 16) {
    q_grpc_ctx_errorf(ctx, "roles: between 1 and 3 of admin, writer, reader");
    return Q_EINVAL;
  }
  int roles = 0;
  for (size_t i = 0; i < req->n_roles; i++) {
    int bit = keys_role_bit(req->roles[i] ? req->roles[i] : "");
    if (!bit) {
      q_grpc_ctx_errorf(ctx,
                        "roles[%zu]: unknown role \"%.32s\" (admin, writer or reader)", i,
                        req->roles[i] ? req->roles[i] : "");
      return Q_EINVAL;
    }
    roles |= bit;
  }

  char key[KEY_MAX_LEN + 1], id[KEY_ID_LEN + 1], err[256] = "";
  int rc = keystore_create(ks, req->tenant_id, req->name, roles, key, sizeof key, id, err,
                           sizeof err);
  if (rc) {
    q_log_error("creating api key failed", "{s:s}", "reason", err);
    q_grpc_ctx_errorf(ctx, "could not create the key: credential store unavailable");
    return rc == Q_EUNAVAIL ? Q_EUNAVAIL : Q_EINTERNAL;
  }
  q_log_info("api key created", "{s:s,s:s}", "tenant_id", req->tenant_id, "key_id", id);

  Quarry__V1__CreateApiKeyResponse *resp = q_arena_alloc(a, sizeof *resp);
  if (!resp)
    return Q_ENOMEM;
  quarry__v1__create_api_key_response__init(resp);
  resp->key_id = q_arena_strdup(a, id);
  resp->api_key = q_arena_strdup(a, key);
  memset(key, 0, sizeof key);
  if (!resp->key_id || !resp->api_key)
    return Q_ENOMEM;
  *out = &resp->base;
  return Q_OK;
}

/* A failed key-store call: NOT_FOUND stays, the rest is logged and
 * reported as the store being unavailable. */
static q_err_t store_failed(q_grpc_ctx_t *ctx, int rc, const char *what,
                            const char *err) {
  if (rc == Q_ENOTFOUND) {
    q_grpc_ctx_errorf(ctx, "api key not found");
    return rc;
  }
  q_log_error("key store failed", "{s:s,s:s}", "what", what, "reason", err);
  q_grpc_ctx_errorf(ctx, "credential store unavailable");
  return rc == Q_EUNAVAIL ? Q_EUNAVAIL : rc == Q_ENOMEM ? Q_ENOMEM : Q_EINTERNAL;
}

static q_err_t check_tenant(q_grpc_ctx_t *ctx, const char *tenant) {
  if (q_valid_tenant_id(tenant))
    return Q_OK;
  q_grpc_ctx_errorf(ctx, "tenant_id: required, 1..%d characters of [A-Za-z0-9._-]",
                    Q_LIMIT_TENANT_ID_BYTES);
  return Q_EINVAL;
}

static q_err_t check_key_id(q_grpc_ctx_t *ctx, const char *id) {
  if (keystore_key_id_valid(id))
    return Q_OK;
  q_grpc_ctx_errorf(ctx, "key_id: must be %d lower-case hex digits", KEY_ID_LEN);
  return Q_EINVAL;
}

static q_err_t list_api_keys_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                                ProtobufCMessage **out, void *ud) {
  keystore_t *ks = ud;
  const Quarry__V1__ListApiKeysRequest *req = (const Quarry__V1__ListApiKeysRequest *)in;
  q_err_t rc = check_tenant(ctx, req->tenant_id);
  if (rc)
    return rc;
  if (req->limit < 0 || req->limit > Q_LIMIT_LIST_ITEMS_MAX) {
    q_grpc_ctx_errorf(ctx, "limit: must be 1..%d", Q_LIMIT_LIST_ITEMS_MAX);
    return Q_EINVAL;
  }
  keystore_pos_t pos;
  const keystore_pos_t *after = NULL;
  if (req->cursor && *req->cursor) {
    if (keystore_cursor_decode(req->cursor, &pos)) {
      q_grpc_ctx_errorf(ctx, "cursor: not a cursor this list returned");
      return Q_EINVAL;
    }
    after = &pos;
  }
  char err[256] = "";
  Quarry__V1__ListApiKeysResponse *resp;
  rc = keystore_list(ks, req->tenant_id, after,
                     req->limit ? req->limit : Q_LIMIT_LIST_ITEMS_DEFAULT,
                     q_grpc_ctx_arena(ctx), &resp, err, sizeof err);
  if (rc)
    return store_failed(ctx, rc, "listing keys", err);
  *out = &resp->base;
  return Q_OK;
}

static q_err_t get_api_key_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                              ProtobufCMessage **out, void *ud) {
  keystore_t *ks = ud;
  const Quarry__V1__GetApiKeyRequest *req = (const Quarry__V1__GetApiKeyRequest *)in;
  q_err_t rc = check_tenant(ctx, req->tenant_id);
  if (!rc)
    rc = check_key_id(ctx, req->key_id);
  if (rc)
    return rc;
  char err[256] = "";
  Quarry__V1__ApiKey *k;
  rc = keystore_get(ks, req->tenant_id, req->key_id, q_grpc_ctx_arena(ctx), &k, err,
                    sizeof err);
  if (rc)
    return store_failed(ctx, rc, "reading a key", err);
  *out = &k->base;
  return Q_OK;
}

static q_err_t revoke_api_key_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                                 ProtobufCMessage **out, void *ud) {
  keystore_t *ks = ud;
  const Quarry__V1__RevokeApiKeyRequest *req =
      (const Quarry__V1__RevokeApiKeyRequest *)in;
  q_err_t rc = check_tenant(ctx, req->tenant_id);
  if (!rc)
    rc = check_key_id(ctx, req->key_id);
  if (rc)
    return rc;
  const char *by = req->revoked_by ? req->revoked_by : "";
  if (strlen(by) > Q_LIMIT_USER_ID_BYTES || !q_valid_utf8(by, strlen(by))) {
    q_grpc_ctx_errorf(ctx, "revoked_by: at most %d bytes of UTF-8",
                      Q_LIMIT_USER_ID_BYTES);
    return Q_EINVAL;
  }
  char err[256] = "", at[64] = "";
  rc = keystore_revoke(ks, req->tenant_id, req->key_id, by, at, sizeof at, err,
                       sizeof err);
  if (rc)
    return store_failed(ctx, rc, "revoking a key", err);
  q_log_info("api key revoked", "{s:s,s:s,s:s}", "tenant_id", req->tenant_id, "key_id",
             req->key_id, "revoked_by", by);
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__RevokeApiKeyResponse *resp = q_arena_alloc(a, sizeof *resp);
  if (!resp)
    return Q_ENOMEM;
  quarry__v1__revoke_api_key_response__init(resp);
  if (!(resp->revoked_at = q_arena_strdup(a, at)))
    return Q_ENOMEM;
  *out = &resp->base;
  return Q_OK;
}

const q_grpc_method_t auth_methods[] = {
    {"Authenticate", Q_GRPC_UNARY, authenticate_cb},
    {"CreateApiKey", Q_GRPC_UNARY, create_api_key_cb},
    {"ListApiKeys", Q_GRPC_UNARY, list_api_keys_cb},
    {"GetApiKey", Q_GRPC_UNARY, get_api_key_cb},
    {"RevokeApiKey", Q_GRPC_UNARY, revoke_api_key_cb},
};
const size_t auth_nmethods = sizeof auth_methods / sizeof auth_methods[0];
