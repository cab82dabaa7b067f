/* routes.c - the gateway's REST API: one row per route, pointing at the
 * handler module that serves it. The matching lives in router.c, which knows
 * nothing of the handlers. */
#include "routes.h"

#include "handlers.h"

#define WRITERS (GW_ROLE_WRITER | GW_ROLE_ADMIN)
#define ADMINS GW_ROLE_ADMIN

const route_t gw_routes[] = {
    {"POST", "/v1/documents", BODY_STREAM, 0, NULL, &upload_ops, WRITERS,
     "uploading documents"},
    {"GET", "/v1/documents", BODY_NONE, 0, documents_list, NULL, 0, NULL},
    {"POST", "/v1/documents/batch", BODY_STREAM, 0, NULL, &batch_ops, WRITERS,
     "uploading documents"},
    {"GET", "/v1/documents/{id}", BODY_NONE, 0, documents_get, NULL, 0, NULL},
    {"DELETE", "/v1/documents/{id}", BODY_NONE, 0, documents_delete, NULL, WRITERS,
     "deleting a document"},
    {"GET", "/v1/jobs", BODY_NONE, 0, jobs_list, NULL, 0, NULL},
    {"GET", "/v1/jobs/{id}", BODY_NONE, 0, jobs_get, NULL, 0, NULL},
    {"GET", "/v1/me", BODY_NONE, 0, me_get, NULL, 0, NULL},
    {"GET", "/v1/keys", BODY_NONE, 0, keys_list, NULL, ADMINS, "managing API keys"},
    {"POST", "/v1/keys", BODY_JSON, 0, keys_create, NULL, ADMINS, "managing API keys"},
    {"DELETE", "/v1/keys/{id}", BODY_NONE, 0, keys_revoke, NULL, ADMINS,
     "managing API keys"},
    {"POST", "/v1/query", BODY_JSON, 0, query_post, NULL, 0, NULL},
    {"POST", "/v1/chat/completions", BODY_JSON, 0, chat_completions_post, NULL, 0, NULL},
    {"GET", "/v1/models", BODY_NONE, 0, models_get, NULL, 0, NULL},
    {"POST", "/v1/feedback", BODY_JSON, 0, feedback_post, NULL, 0, NULL},
    {"GET", "/healthz", BODY_NONE, 1, probes_healthz, NULL, 0, NULL},
    {"GET", "/readyz", BODY_NONE, 1, probes_readyz, NULL, 0, NULL},
    {"GET", "/metrics", BODY_NONE, 1, probes_metrics, NULL, 0, NULL},
    /* The web app: public, since its files hold no data. */
    {"GET", "/", BODY_NONE, 1, static_index, NULL, 0, NULL},
    {"HEAD", "/", BODY_NONE, 1, static_index, NULL, 0, NULL},
    {"GET", "/app/{id}", BODY_NONE, 1, static_file, NULL, 0, NULL},
    {"HEAD", "/app/{id}", BODY_NONE, 1, static_file, NULL, 0, NULL},
};
const size_t gw_nroutes = sizeof gw_routes / sizeof gw_routes[0];
