/* main.c - quarry-reranker: reorders retrieved passages for a query with a
 * deterministic lexical scorer (scorer.c), or with the rerank APIs of the
 * providers file when it lists some (remote.c). Stateless: no database. */
#include "handlers.h"
#include "remote.h"

#include "quarry/log.h"
#include "quarry/providers.h"

#include <stdio.h>

#include "quarry/service.h"
#include "quarry/v1/reranker.pb-c.h"

static q_common_cfg_t common;
static const char *providers_file;

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7004", "127.0.0.1:9104"),
    {"QUARRY_PROVIDERS_FILE", Q_CFG_STRING, "", 0, 0, NULL,
     "JSON file of model providers (docs/providers.md); its \"rerank\" list, when "
     "present, ranks passages before the built-in scorer, which remains the fallback. "
     "Empty: built-in scorer only.",
     0, &providers_file},
};

int main(int argc, char **argv) {
  q_service_t svc;
  int rc =
      q_service_init(&svc, "quarry-reranker", "Reorders retrieved passages for a query.",
                     cfg, Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;
  q_providers_t providers;
  remote_t *remote = NULL;
  char err[1024];
  q_providers_init(&providers);
  if (providers_file[0]) {
    if (q_providers_load(&providers, providers_file, 1, err, sizeof err)) {
      fprintf(stderr, "quarry-reranker: QUARRY_PROVIDERS_FILE: %s\n", err);
      rc = 2;
      goto done;
    }
    if (providers.n[Q_CAP_RERANK] && !(remote = remote_new(&providers))) {
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
  if (q_service_start(&svc, &quarry__v1__reranker__descriptor, reranker_methods,
                      reranker_nmethods, remote, NULL, NULL)) {
    rc = 1;
    goto done;
  }
  q_service_wait(&svc);
  rc = 0;
done:
  remote_free(remote);
  q_providers_cleanup(&providers);
  q_service_cleanup(&svc);
  return rc;
}
