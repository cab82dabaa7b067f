/* handlers.c - Authenticate and CreateApiKey (quarry.v1.Auth).
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

const q_grpc_method_t auth_methods[] = {
    {"Authenticate", Q_GRPC_UNARY, authenticate_cb},
    {"CreateApiKey", Q_GRPC_UNARY, create_api_key_cb},
};
const size_t auth_nmethods = sizeof auth_methods / sizeof auth_methods[0];
