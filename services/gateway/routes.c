/* routes.c - the gateway's REST API: one row per route, pointing at the
 * handler module that serves it. The matching lives in router.c, which knows
 * nothing of the handlers. */
#include "routes.h"

#include "handlers.h"

const route_t gw_routes[] = {
    {"POST", "/v1/documents", BODY_STREAM, 0, NULL, &upload_ops},
    {"GET", "/v1/documents", BODY_NONE, 0, documents_list, NULL},
    {"POST", "/v1/documents/batch", BODY_STREAM, 0, NULL, &batch_ops},
    {"GET", "/v1/documents/{id}", BODY_NONE, 0, documents_get, NULL},
    {"DELETE", "/v1/documents/{id}", BODY_NONE, 0, documents_delete, NULL},
    {"GET", "/v1/jobs", BODY_NONE, 0, jobs_list, NULL},
    {"GET", "/v1/jobs/{id}", BODY_NONE, 0, jobs_get, NULL},
    {"GET", "/v1/me", BODY_NONE, 0, me_get, NULL},
    {"GET", "/v1/keys", BODY_NONE, 0, keys_list, NULL},
    {"POST", "/v1/keys", BODY_JSON, 0, keys_create, NULL},
    {"DELETE", "/v1/keys/{id}", BODY_NONE, 0, keys_revoke, NULL},
    {"POST", "/v1/query", BODY_JSON, 0, query_post, NULL},
    {"POST", "/v1/chat/completions", BODY_JSON, 0, chat_completions_post, NULL},
    {"GET", "/v1/models", BODY_NONE, 0, models_get, NULL},
    {"POST", "/v1/feedback", BODY_JSON, 0, feedback_post, NULL},
    {"GET", "/healthz", BODY_NONE, 1, probes_healthz, NULL},
    {"GET", "/readyz", BODY_NONE, 1, probes_readyz, NULL},
    {"GET", "/metrics", BODY_NONE, 1, probes_metrics, NULL},
    /* The web app: public, since its files hold no data. */
    {"GET", "/", BODY_NONE, 1, static_index, NULL},
    {"HEAD", "/", BODY_NONE, 1, static_index, NULL},
    {"GET", "/app/{id}", BODY_NONE, 1, static_file, NULL},
    {"HEAD", "/app/{id}", BODY_NONE, 1, static_file, NULL},
};
const size_t gw_nroutes = sizeof gw_routes / sizeof gw_routes[0];
