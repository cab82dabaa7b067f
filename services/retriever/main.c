/* main.c - quarry-retriever: hybrid BM25 + dense retrieval per tenant.
 *
 * Waits for PostgreSQL and migrates retriever_chunks, rebuilds the
 * in-memory index from it, then serves quarry.v1.Retriever (handlers.c). */
#include "handlers.h"
#include "index.h"
#include "store.h"

#include "quarry/log.h"
#include "quarry/pg.h"
#include "quarry/service.h"
#include "quarry/trace.h"
#include "quarry/v1/retriever.pb-c.h"

#include <jansson.h>

static q_common_cfg_t common;
static q_pg_cfg_t pg;
static int64_t default_top_k, max_top_k, embed_dim, dense_weight_pct;

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7003", "127.0.0.1:9103"),
    Q_CFG_PG_ENTRIES(pg),
    {"QUARRY_RETRIEVER_DEFAULT_TOP_K", Q_CFG_INT, "50", 1, 100000, NULL,
     "Passages returned by Search when the request sets no top_k.", 0, &default_top_k},
    {"QUARRY_RETRIEVER_MAX_TOP_K", Q_CFG_INT, "1000", 1, 100000, NULL,
     "Largest top_k a Search may ask for (larger is refused).", 0, &max_top_k},
    {"QUARRY_EMBED_DIM", Q_CFG_INT, "0", 0, Q_INDEX_MAX_DIM, NULL,
     "Dimensions every stored and query embedding must have; 0 lets each "
     "tenant's first stored vector decide.",
     0, &embed_dim},
    {"QUARRY_RETRIEVER_DENSE_WEIGHT_PCT", Q_CFG_INT, "5", 1, 1000, NULL,
     "Weight of the dense (embedding) list in the rank fusion, in percent of "
     "BM25's weight. The default suits the built-in hashed embedder, which is "
     "weaker than BM25; raise it to 100 or more with a semantic embedding model.",
     0, &dense_weight_pct},
};

int main(int argc, char **argv) {
  q_service_t svc;
  index_t *index = NULL;
  store_t *store = NULL;
  retriever_t r;
  int r_ok = 0;
  char err[512] = "";
  int rc = q_service_init(&svc, "quarry-retriever",
                          "Hybrid BM25 + dense retrieval over each tenant's chunks.", cfg,
                          Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;
  if (default_top_k > max_top_k) {
    q_log_error("QUARRY_RETRIEVER_DEFAULT_TOP_K exceeds QUARRY_RETRIEVER_MAX_TOP_K",
                NULL);
    rc = 2;
    goto done;
  }

  store = store_new(&pg, err, sizeof err);
  if (!store) {
    q_log_error("cannot use the database; exiting", "{s:s,s:I}", "reason", err,
                "waited_ms", (json_int_t)pg.wait_ms);
    rc = 1;
    goto done;
  }
  index = index_new((size_t)embed_dim);
  if (!index) {
    q_log_error("out of memory while starting", NULL);
    rc = 1;
    goto done;
  }
  int64_t t0 = q_now_ms();
  size_t loaded = 0;
  if (store_load(store, index, &loaded, err, sizeof err) != 0) {
    q_log_error("cannot rebuild the index from the database; exiting", "{s:s}", "reason",
                err);
    rc = 1;
    goto done;
  }
  q_log_info("index rebuilt", "{s:I,s:I}", "chunks", (json_int_t)loaded, "ms",
             (json_int_t)(q_now_ms() - t0));

  if (retriever_init(&r, index, store, default_top_k, max_top_k) != 0) {
    rc = 1;
    goto done;
  }
  r_ok = 1;
  r.dense_weight = (double)dense_weight_pct / 100.0;
  if (q_service_start(&svc, &quarry__v1__retriever__descriptor, retriever_methods,
                      retriever_nmethods, &r, retriever_ready_cb, &r)) {
    rc = 1;
    goto done;
  }
  q_service_wait(&svc);
  rc = 0;
done:
  /* The side port (whose /metrics reads the index) stops first. */
  q_service_cleanup(&svc);
  if (r_ok)
    retriever_cleanup(&r);
  index_free(index);
  store_free(store);
  return rc;
}
