/* main.c - quarry-reranker: reorders retrieved passages for a query with
 * one of the methods of method.h, chosen by QUARRY_RERANK_METHOD; loads the
 * feature model's weights file. Stateless: no database. */
#include "handlers.h"
#include "method.h"

#include "quarry/log.h"
#include "quarry/service.h"
#include "quarry/v1/reranker.pb-c.h"

#include <stdio.h>
#include <string.h>

static q_common_cfg_t common;
static const char *method_name, *model_path;

static q_err_t validate_method(const char *v, char *err, size_t errlen) {
  if (method_find(v, strlen(v)))
    return 0;
  size_t off = (size_t)snprintf(err, errlen, "unknown method; one of:");
  for (size_t i = 0; i < methods_n && off < errlen; i++)
    off += (size_t)snprintf(err + off, errlen - off, " %s", methods[i].name);
  return Q_EINVAL;
}

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7004", "127.0.0.1:9104"),
    /* none by default: on held-out SciFact queries the feature model's gain
     * is within noise (docs/retrieval.md, "Measured"). */
    {"QUARRY_RERANK_METHOD", Q_CFG_STRING, "none", 0, 0, validate_method,
     "How Rerank orders passages when the request names no method: none (the "
     "retrieval order) or features (the feature model of QUARRY_RERANK_MODEL).",
     0, &method_name},
    {"QUARRY_RERANK_MODEL", Q_CFG_STRING, "services/reranker/models/features.v1.json", 0,
     0, NULL,
     "Weights file of the feature model (docs/retrieval.md); loaded at start, "
     "a missing or malformed file stops the service.",
     0, &model_path},
};

int main(int argc, char **argv) {
  q_service_t svc;
  reranker_t r;
  char err[512];
  int rc =
      q_service_init(&svc, "quarry-reranker", "Reorders retrieved passages for a query.",
                     cfg, Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;
  memset(&r, 0, sizeof r);
  r.method = method_find(method_name, strlen(method_name));
  if (model_load(model_path, &r.model, err, sizeof err)) {
    fprintf(stderr, "quarry-reranker: QUARRY_RERANK_MODEL: %s\n", err);
    q_service_cleanup(&svc);
    return 2;
  }
  q_log_info("reranker ready", "{s:s,s:s}", "method", r.method->name, "model",
             r.model.name);
  if (q_service_start(&svc, &quarry__v1__reranker__descriptor, reranker_methods,
                      reranker_nmethods, &r, NULL, NULL)) {
    q_service_cleanup(&svc);
    return 1;
  }
  q_service_wait(&svc);
  q_service_cleanup(&svc);
  return 0;
}
