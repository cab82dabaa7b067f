/* main.c - quarry-reranker: reorders retrieved passages for a query with
 * one of the methods of method.h, chosen by QUARRY_RERANK_METHOD; loads the
 * feature model's weights file and, when QUARRY_PROVIDERS_FILE lists rerank
 * APIs, the clients of the remote method (remote.h). Stateless: no
 * database. */
#include "handlers.h"
#include "method.h"
#include "remote.h"

#include "quarry/log.h"
#include "quarry/providers.h"
#include "quarry/service.h"
#include "quarry/v1/reranker.pb-c.h"

#include <stdio.h>
#include <string.h>

static q_common_cfg_t common;
static const char *method_name, *model_path, *providers_file;

static q_err_t validate_method(const char *v, char *err, size_t errlen) {
  if (!v[0] || method_find(v, strlen(v)))
    return 0;
  size_t off = (size_t)snprintf(err, errlen, "unknown method; one of:");
  for (size_t i = 0; i < methods_n && off < errlen; i++)
    off += (size_t)snprintf(err + off, errlen - off, " %s", methods[i].name);
  return Q_EINVAL;
}

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7004", "127.0.0.1:9104"),
    /* Empty picks remote when rerank APIs are configured, else none: on
     * held-out SciFact queries the feature model's gain is within noise
     * (docs/retrieval.md, "Measured"). */
    {"QUARRY_RERANK_METHOD", Q_CFG_STRING, "", 0, 0, validate_method,
     "How Rerank orders passages when the request names no method: none (the "
     "retrieval order), features (the feature model of QUARRY_RERANK_MODEL) or "
     "remote (the rerank APIs of QUARRY_PROVIDERS_FILE, falling back to the "
     "retrieval order when all fail). Empty: remote when the providers file lists "
     "rerank APIs, else none.",
     0, &method_name},
    {"QUARRY_RERANK_MODEL", Q_CFG_STRING, "services/reranker/models/features.v1.json", 0,
     0, NULL,
     "Weights file of the feature model (docs/retrieval.md); loaded at start, "
     "a missing or malformed file stops the service.",
     0, &model_path},
    {"QUARRY_PROVIDERS_FILE", Q_CFG_STRING, "", 0, 0, NULL,
     "JSON file of model providers (docs/providers.md); its \"rerank\" list is what "
     "the remote method calls, in order. Empty: no remote method.",
     0, &providers_file},
};

int main(int argc, char **argv) {
  q_service_t svc;
  reranker_t r;
  q_providers_t providers;
  char err[1024];
  int rc =
      q_service_init(&svc, "quarry-reranker", "Reorders retrieved passages for a query.",
                     cfg, Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;
  memset(&r, 0, sizeof r);
  q_providers_init(&providers);
  if (model_load(model_path, &r.model, err, sizeof err)) {
    fprintf(stderr, "quarry-reranker: QUARRY_RERANK_MODEL: %s\n", err);
    rc = 2;
    goto done;
  }
  if (providers_file[0]) {
    if (q_providers_load(&providers, providers_file, 1, err, sizeof err)) {
      fprintf(stderr, "quarry-reranker: QUARRY_PROVIDERS_FILE: %s\n", err);
      rc = 2;
      goto done;
    }
    if (providers.n[Q_CAP_RERANK] && !(r.remote = remote_new(&providers))) {
      q_log_error("out of memory while starting", NULL);
      rc = 1;
      goto done;
    }
    for (size_t i = 0; i < providers.n[Q_CAP_RERANK]; i++) {
      const q_provider_cfg_t *c = &providers.list[Q_CAP_RERANK][i];
      q_log_info("rerank provider", "{s:i,s:s,s:s,s:s,s:s,s:s}", "position", (int)i + 1,
                 "name", c->name, "kind", c->kind_name, "url", c->base_url, "model",
                 c->model, "key", c->key_source);
    }
  }
  if (!method_name[0])
    method_name = r.remote ? "remote" : "none";
  r.method = method_find(method_name, strlen(method_name));
  if (strcmp(r.method->name, "remote") == 0 && !r.remote) {
    fprintf(stderr, "quarry-reranker: QUARRY_RERANK_METHOD: remote needs rerank APIs in "
                    "QUARRY_PROVIDERS_FILE (docs/providers.md)\n");
    rc = 2;
    goto done;
  }
  q_log_info("reranker ready", "{s:s,s:s,s:i}", "method", r.method->name, "model",
             r.model.name, "rerank_providers", (int)providers.n[Q_CAP_RERANK]);
  if (q_service_start(&svc, &quarry__v1__reranker__descriptor, reranker_methods,
                      reranker_nmethods, &r, NULL, NULL)) {
    rc = 1;
    goto done;
  }
  q_service_wait(&svc);
  rc = 0;
done:
  remote_free(r.remote);
  q_providers_cleanup(&providers);
  q_service_cleanup(&svc);
  return rc;
}
