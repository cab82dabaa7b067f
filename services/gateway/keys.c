/* keys.c - GET /v1/me (who the credential is) and the tenant's API keys:
 * GET and POST /v1/keys, DELETE /v1/keys/{id}, for the admin role only.
 * The tenant is always the caller's; auth answers another tenant's key as
 * NOT_FOUND, so the routes cannot tell one from an unknown key.
 *
 * Revocation takes effect at once on this gateway: after auth revoked the
 * key (and dropped it from its own cache), keys_revoke drops it from the
 * principal cache (authn.h). Another gateway instance keeps a principal it
 * cached for at most AUTHN_TTL_MS (docs/operations.md). */
#include <jansson.h>
#include <limits.h>
#include <string.h>

#include "quarry/v1/auth.pb-c.h"

#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/stubs.h"

#include "authn.h"
#include "handlers.h"
#include "http_util.h"
#include "params.h"

static json_t *text_json(const char *s) {
  return http_json_text(s ? s : "", s ? strlen(s) : 0);
}

/* Options of a call for r: all the time r has left. 0, or Q_ETIMEDOUT
 * once replied because none is left. */
static q_err_t call_opts(gw_req_t *r, int idempotent, q_grpc_call_opts_t *opts) {
  int64_t left = gw_ms_left(r);
  if (left <= 0) {
    http_reply_error(r, Q_ETIMEDOUT, "request deadline exceeded");
    return Q_ETIMEDOUT;
  }
  *opts = (q_grpc_call_opts_t){.timeout_ms = left > INT_MAX ? INT_MAX : (int)left,
                               .idempotent = idempotent};
  return 0;
}

static json_t *roles_json(char **roles, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++)
    json_array_append_new(a, text_json(roles[i]));
  return a;
}

static json_t *key_json(const Quarry__V1__ApiKey *k) {
  return json_pack(
      "{s:o,s:o,s:o,s:o,s:b,s:o}", "id", text_json(k->id), "name", text_json(k->name),
      "roles", roles_json(k->roles, k->n_roles), "created_at", text_json(k->created_at),
      "revoked", k->revoked ? 1 : 0, "revoked_at",
      k->revoked_at && *k->revoked_at ? text_json(k->revoked_at) : json_null());
}

static void reply_auth_error(gw_req_t *r, int rc, const char *err) {
  if (rc == Q_ENOTFOUND || rc == Q_EINVAL)
    http_reply_error(r, Q_ENOTFOUND, "api key \"%s\" not found", r->param);
  else
    http_reply_downstream(r, "auth", rc, err);
}

void me_get(gw_req_t *r) {
  static const char *const none[] = {NULL};
  if (params_only(r, none))
    return;
  json_t *roles = json_array();
  for (unsigned bit = GW_ROLE_ADMIN; roles && bit <= GW_ROLE_READER; bit <<= 1)
    if (r->principal.roles & bit)
      json_array_append_new(roles, json_string(params_role_name(bit)));
  /* The key's name is auth's: ask for it, but the principal alone answers
   * who the caller is, so a failure leaves the name null rather than
   * failing the sign-in. */
  const char *name = NULL;
  q_grpc_call_opts_t opts;
  if (r->principal.key_id[0]) {
    if (call_opts(r, 1, &opts)) {
      json_decref(roles);
      return;
    }
    Quarry__V1__GetApiKeyRequest req = QUARRY__V1__GET_API_KEY_REQUEST__INIT;
    req.tenant_id = r->principal.tenant_id;
    req.key_id = r->principal.key_id;
    Quarry__V1__ApiKey *k = NULL;
    char err[256] = "";
    if (q_rpc_auth_get_api_key(q_grpc_channel(r->cfg->auth_addr), &req, &k, r->arena,
                               &opts, err, sizeof err) == 0 &&
        k)
      name = k->name;
  }
  json_t *body = roles ? json_pack("{s:o,s:o,s:o,s:o,s:o}", "tenant_id",
                                   text_json(r->principal.tenant_id), "key_id",
                                   text_json(r->principal.key_id), "key_name",
                                   name ? text_json(name) : json_null(), "user_id",
                                   text_json(r->principal.user_id), "roles", roles)
                       : NULL;
  if (!body)
    http_reply_error(r, Q_ENOMEM, "out of memory");
  else
    http_reply_json(r, 200, body);
}

void keys_list(gw_req_t *r) {
  static const char *const allowed[] = {"limit", "cursor", NULL};
  int limit;
  const char *cursor;
  if (params_only(r, allowed) ||
      params_int(r, "limit", Q_LIMIT_LIST_ITEMS_DEFAULT, 1, Q_LIMIT_LIST_ITEMS_MAX,
                 &limit) ||
      params_text(r, "cursor", Q_LIMIT_CURSOR_BYTES, &cursor))
    return;
  q_grpc_call_opts_t opts;
  if (call_opts(r, 1, &opts))
    return;
  Quarry__V1__ListApiKeysRequest req = QUARRY__V1__LIST_API_KEYS_REQUEST__INIT;
  req.tenant_id = r->principal.tenant_id;
  req.limit = limit;
  req.cursor = (char *)cursor;
  Quarry__V1__ListApiKeysResponse *resp = NULL;
  char err[256] = "";
  int rc = q_rpc_auth_list_api_keys(q_grpc_channel(r->cfg->auth_addr), &req, &resp,
                                    r->arena, &opts, err, sizeof err);
  if (rc == 0 && !resp)
    rc = Q_EINTERNAL;
  if (rc == Q_EINVAL) {
    http_reply_error(r, Q_EINVAL, "parameter %s", err);
    return;
  }
  if (rc) {
    http_reply_downstream(r, "auth", rc, err);
    return;
  }
  json_t *items = json_array();
  for (size_t i = 0; items && i < resp->n_keys; i++)
    json_array_append_new(items, key_json(resp->keys[i]));
  json_t *body = items ? json_pack("{s:o,s:o}", "keys", items, "next_cursor",
                                   resp->next_cursor && *resp->next_cursor
                                       ? json_string(resp->next_cursor)
                                       : json_null())
                       : NULL;
  if (!body)
    http_reply_error(r, Q_ENOMEM, "out of memory");
  else
    http_reply_json(r, 200, body);
}

void keys_create(gw_req_t *r) {
  static const char *const keys[] = {"name", "roles", NULL};
  json_t *body = NULL;
  const char *name;
  if (http_parse_json_object(r, &body) || http_json_only_keys(r, body, keys) ||
      http_json_string(r, body, "name", 1, 1, Q_LIMIT_API_KEY_NAME_BYTES, &name))
    goto done;
  json_t *roles = json_object_get(body, "roles");
  if (!json_is_array(roles) || json_array_size(roles) < 1 || json_array_size(roles) > 3) {
    http_reply_error(
        r, Q_EINVAL,
        "field \"roles\" must be an array of 1 to 3 of \"admin\", \"writer\", "
        "\"reader\"");
    goto done;
  }
  char *role_names[3];
  unsigned seen = 0;
  for (size_t i = 0; i < json_array_size(roles); i++) {
    const char *v = json_string_value(json_array_get(roles, i));
    unsigned bit = 0;
    for (unsigned b = GW_ROLE_ADMIN; v && b <= GW_ROLE_READER; b <<= 1)
      if (strcmp(v, params_role_name(b)) == 0)
        bit = b;
    if (!bit || (seen & bit)) {
      http_reply_error(r, Q_EINVAL,
                       "field \"roles\"[%zu] must be one of \"admin\", \"writer\", "
                       "\"reader\", each at most once",
                       i);
      goto done;
    }
    seen |= bit;
    role_names[i] = (char *)params_role_name(bit);
  }
  /* Not retried: a retry after a lost reply would make a second key. */
  q_grpc_call_opts_t opts;
  if (call_opts(r, 0, &opts))
    goto done;
  Quarry__V1__CreateApiKeyRequest req = QUARRY__V1__CREATE_API_KEY_REQUEST__INIT;
  req.tenant_id = r->principal.tenant_id;
  req.name = (char *)name;
  req.roles = role_names;
  req.n_roles = json_array_size(roles);
  Quarry__V1__CreateApiKeyResponse *resp = NULL;
  char err[256] = "";
  int rc = q_rpc_auth_create_api_key(q_grpc_channel(r->cfg->auth_addr), &req, &resp,
                                     r->arena, &opts, err, sizeof err);
  if (rc == 0 && (!resp || !resp->api_key || !resp->key_id))
    rc = Q_EINTERNAL;
  if (rc == Q_EINVAL) {
    http_reply_error(r, Q_EINVAL, "%s", err);
    goto done;
  }
  if (rc) {
    http_reply_downstream(r, "auth", rc, err);
    goto done;
  }
  json_t *out =
      json_pack("{s:o,s:o,s:o,s:o}", "id", text_json(resp->key_id), "name",
                text_json(name), "roles", roles_json(role_names, json_array_size(roles)),
                "api_key", text_json(resp->api_key));
  if (!out)
    http_reply_error(r, Q_ENOMEM, "out of memory");
  else
    http_reply_json(r, 201, out);
done:
  json_decref(body);
}

void keys_revoke(gw_req_t *r) {
  /* Not retried: a retry after a lost reply would find the key revoked
   * and say 404. */
  q_grpc_call_opts_t opts;
  if (call_opts(r, 0, &opts))
    return;
  Quarry__V1__RevokeApiKeyRequest req = QUARRY__V1__REVOKE_API_KEY_REQUEST__INIT;
  req.tenant_id = r->principal.tenant_id;
  req.key_id = r->param;
  req.revoked_by = r->principal.user_id;
  Quarry__V1__RevokeApiKeyResponse *resp = NULL;
  char err[256] = "";
  int rc = q_rpc_auth_revoke_api_key(q_grpc_channel(r->cfg->auth_addr), &req, &resp,
                                     r->arena, &opts, err, sizeof err);
  if (rc) {
    reply_auth_error(r, rc, err);
    return;
  }
  authn_cache_forget_key(r->param);
  http_reply_raw(r, 204, NULL, NULL, 0);
}
