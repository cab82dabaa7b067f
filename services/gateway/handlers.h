/* handlers.h - the handlers the route table points at, grouped by the module
 * that implements them. Every handler replies exactly once through
 * http_util.h; none returns anything. */
#ifndef QUARRY_GW_HANDLERS_H
#define QUARRY_GW_HANDLERS_H

#include "gateway.h"
#include "router.h"
#include "quarry/error.h"

/* query.c: POST /v1/query, the retrieval-augmented answer pipeline
 * (pipeline.h) answered as JSON or as Server-Sent Events. The handler
 * suspends the connection and the pipeline runs on a worker (pool.h). */
void query_post(gw_req_t *r);

/* Starts admission control and the hang-up watcher, sized by cfg (which
 * must outlive them). 0, or Q_ENOMEM / Q_EINTERNAL (logged). Call before
 * serving; one server at a time. */
q_err_t query_start(const gw_cfg_t *cfg);

/* Refuses new queries (503) and ends those in flight: their pipelines are
 * cancelled and their suspended connections resumed, to be closed. Call
 * before MHD_stop_daemon, which must not meet a suspended connection. */
void query_quiesce(void);

/* Joins the workers and stops the watcher; after the HTTP server has
 * stopped. Safe without query_start. */
void query_stop(void);

/* chat.c: the OpenAI-compatible API - POST /v1/chat/completions, the
 * pipeline answered as a chat.completion or its chunks (sink_openai.c),
 * and GET /v1/models. */
void chat_completions_post(gw_req_t *r);
void models_get(gw_req_t *r);

/* documents.c: reads through ingestion, feedback through the feedback
 * service. */
void documents_list(gw_req_t *r);   /* GET /v1/documents */
void documents_get(gw_req_t *r);    /* GET /v1/documents/{id} (with its versions) */
void documents_delete(gw_req_t *r); /* DELETE /v1/documents/{id}: writer or admin */
void jobs_list(gw_req_t *r);        /* GET /v1/jobs */
void jobs_get(gw_req_t *r);         /* GET /v1/jobs/{id} */
void feedback_post(gw_req_t *r);    /* POST /v1/feedback */

/* keys.c: who the caller is and the tenant's API keys (admin only). */
void me_get(gw_req_t *r);      /* GET /v1/me */
void keys_list(gw_req_t *r);   /* GET /v1/keys */
void keys_create(gw_req_t *r); /* POST /v1/keys */
void keys_revoke(gw_req_t *r); /* DELETE /v1/keys/{id} */

/* upload.c: POST /v1/documents, streamed to ingestion's Upload. */
extern const stream_ops_t upload_ops;

/* batch.c: POST /v1/documents/batch, NDJSON or multipart documents sent to
 * ingestion's UploadBatch in one call (batch.h). */
extern const stream_ops_t batch_ops;

/* probes.c: GET /healthz, /readyz, /metrics. */
void probes_healthz(gw_req_t *r);
void probes_readyz(gw_req_t *r);
void probes_metrics(gw_req_t *r);

/* Readiness of the gateway's critical dependencies (auth, retriever,
 * llm-gateway) by grpc.health.v1.Health/Check, which each answers from its
 * own readiness (auth's: PostgreSQL answers). 0 when all serve, else
 * Q_EUNAVAIL with the ones that do not named in why. From the last round
 * of background checks (depwatch.h, shared with GET /readyz): never waits.
 * Thread-safe. */
q_err_t probes_ready(const gw_cfg_t *cfg, char *why, size_t whylen);

/* static.c: the web app's files, GET and HEAD "/" (index.html) and
 * "/app/{id}" (one file of the folder). */
void static_index(gw_req_t *r);
void static_file(gw_req_t *r);

/* Opens the web app's folder: dir (QUARRY_WEB_DIR), or when empty the first
 * of <binary's folder>/../share/quarry/web and <binary's folder>/../../web
 * that holds index.html (none found: logged, and "/" answers 404). Q_EINVAL
 * when dir is given and cannot be opened. Call once before serving. */
q_err_t static_init(const char *dir);

#endif
