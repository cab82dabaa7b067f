/* main.c - quarry-reranker: reorders retrieved passages for a query with a
 * deterministic lexical scorer (scorer.c). Stateless: no database. */
#include "handlers.h"

#include "quarry/service.h"
#include "quarry/v1/reranker.pb-c.h"

static q_common_cfg_t common;

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7004", "127.0.0.1:9104"),
};

int main(int argc, char **argv) {
  q_service_t svc;
  int rc =
      q_service_init(&svc, "quarry-reranker", "Reorders retrieved passages for a query.",
                     cfg, Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;
  if (q_service_start(&svc, &quarry__v1__reranker__descriptor, reranker_methods,
                      reranker_nmethods, NULL, NULL, NULL)) {
    q_service_cleanup(&svc);
    return 1;
  }
  q_service_wait(&svc);
  q_service_cleanup(&svc);
  return 0;
}
