/* gwfake.h - fake downstream services for the gateway's query tests: Auth,
 * Retriever, Reranker, LlmGateway (Embed, Generate) and Feedback
 * (RecordQuery) on one loopback gRPC server, with switches to make each
 * fail, freeze or go slowly, and counters of what they saw.
 *
 * Behaviour: the key "good-key" is tenant t1, "other-key" tenant t2.
 * Search returns npassages passages (passage i: chunk c<i>, document d<i>,
 * "Title <i>", page i); Rerank reverses the candidates and keeps top_n;
 * Generate streams `answer` in pieces of piece_bytes, sleeping piece_ms
 * before each piece, then a last message with gen_provider, gen_model,
 * gen_fallback, "answer.v2" and usage {11, 7} (the llm-gateway's). */
#ifndef QUARRY_TEST_GWFAKE_H
#define QUARRY_TEST_GWFAKE_H

#include <stdatomic.h>

#include "quarry/grpc.h"

typedef struct gwfake {
  /* behaviour: set before the calls (answer must outlive them) */
  atomic_int embed_fail, retriever_fail, rerank_fail, gen_fail, record_fail;
  atomic_int freeze_search; /* Search waits while set (until its deadline) */
  atomic_int piece_ms;      /* Generate's pause before each piece */
  int piece_bytes;          /* default 5 */
  int npassages;            /* default 10 */
  const char *answer;
  const char *gen_provider; /* default "fake-0" */
  const char *gen_model;    /* default "fake-model" */
  atomic_int gen_fallback;  /* the last message says the built-in answered */
  atomic_int gen_dropped;   /* passages_dropped of every message (the prompt
                               left the last ones out), 0 none */

  /* what they saw */
  atomic_int searches;         /* Search calls started */
  atomic_int searches_t2;      /* ... of tenant t2 */
  atomic_int search_cancelled; /* frozen Search calls whose client cancelled */
  atomic_int generates;        /* Generate calls started */
  atomic_int gen_pieces;       /* pieces sent */
  atomic_int gen_cancelled;    /* Generate calls that found their client gone */
  _Atomic double gen_stop_s;   /* q_now_s() when the last one noticed */
  atomic_int records;
  atomic_int embeds; /* Embed calls */
  /* The last Search's mode, embed_model and embedding size (read them once
   * the reply is in). */
  char last_mode[32], last_embed_model[64];
  atomic_int last_dim;

  q_grpc_server_t *srv;
  char addr[64]; /* "127.0.0.1:<port>" */
} gwfake_t;

/* Resets f to the defaults and serves the fakes on a free loopback port
 * with 16 threads. Fails the test when the server cannot start. */
void gwfake_start(gwfake_t *f);

/* Stops the server (after letting calls in progress end for up to 1 s). */
void gwfake_stop(gwfake_t *f);

/* Waits until *v >= want or ms have passed; whether it got there. */
int gwfake_wait(atomic_int *v, int want, int ms);

#endif
