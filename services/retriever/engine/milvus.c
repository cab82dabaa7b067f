/* milvus.c - the Milvus engine (see engine.h): every tenant's chunks in one
 * Milvus collection (tenant_id its partition key), reached through the REST
 * v2 client of milvus_client.h. Milvus is the durable copy; this engine keeps
 * no state of its own but the client and a cached chunk count.
 *
 * What differs from the embedded engine (docs/milvus.md, docs/retrieval.md):
 *  - Replace is "new before old": upsert writes the new chunks, then one
 *    delete retires the document's chunks not in the batch. Milvus has no
 *    transaction across the two requests, so a search between them sees both
 *    versions of the document (each whole: each request is applied as a
 *    unit), never neither. The embedded engine shows exactly one.
 *  - BM25 statistics (document count, frequencies, average length) are
 *    Milvus's, kept per collection or partition, shared by the tenants there:
 *    one tenant's text shifts another's scores, never what it can see.
 *  - One dimension for everyone: the collection's (QUARRY_EMBED_DIM, required),
 *    and every chunk needs a vector (the schema's dense field is required).
 *  - Dense similarity is cosine (the collection's HNSW index metric).
 *  - BM25 reads one field, so the stored text is the title, a blank line,
 *    then the chunk's text (the embedded engine scores both too); the title
 *    is taken off again in every candidate.
 *  - Ties are broken by chunk id within the lists Milvus returned; a tie
 *    across the top_k cut is Milvus's choice.
 *  - Filters (engine.h) become Milvus expressions (milvus_expr.h) over the
 *    document fields each chunk row carries (content_type, created_ms = the
 *    document's creation time, metadata with dates also as numbers), run by
 *    Milvus during both searches.
 *
 * search is two requests, BM25 and dense, each list scored on its own; the
 * optional hybrid op (engine.h) is one hybrid_search request in which Milvus
 * fuses both by RRF or weighted scores, when search.c's fusion rule is one
 * Milvus can express and QUARRY_MILVUS_HYBRID_SEARCH is on (else Q_EUNIMPL
 * and search.c fuses the two lists itself).
 *
 * Writes (upsert, remove) are serialised by a mutex so the count of what a
 * replace retires, taken just before its delete, is exact. Searches, stats
 * and readiness run beside them. */
#include "engine/engine.h"
#include "engine/milvus_client.h"
#include "engine/milvus_expr.h"

#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/validate.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest a readiness probe or the chunk gauge may take: they must answer
 * even when Milvus does not. */
#define PROBE_MS 2000
/* How long the chunk gauge reuses its last count. */
#define COUNT_CACHE_MS 10000
/* Between the title and the text in the stored text field (milvus_client.c
 * leaves room for it). */
#define TITLE_SEP "\n\n"
/* Longest Milvus expression a filter becomes: Q_LIMIT_FILTER_BYTES of JSON
 * grows by its quoting and the extra conjuncts of milvus_expr.h. */
#define MILVUS_EXPR_MAX (16 * Q_LIMIT_FILTER_BYTES)

typedef struct milvus_engine {
  milvus_client_t *cli;
  size_t dim;
  bool hybrid; /* fuse in Milvus (hybrid_search) when search.c asks */
  char url[256];
  pthread_mutex_t write_mu;
  /* The collection has been made sure of (created, checked, loaded). Until
   * it has, every call tries again first. */
  pthread_mutex_t ensure_mu;
  bool ensured;
  /* The chunk gauge's cache. */
  pthread_mutex_t count_mu;
  int64_t count, count_at;
} milvus_engine_t;

/* Runs with a deadline of ms from now on this thread unless it has an
 * earlier one; restore with the returned previous deadline. */
static int64_t bound_thread(int64_t ms, char *saved_id, size_t saved_len) {
  int64_t prev = q_trace_deadline();
  const char *id = q_trace_id();
  snprintf(saved_id, saved_len, "%s", id ? id : "");
  int64_t until = q_now_ms() + ms;
  if (prev <= 0 || prev > until)
    q_trace_set(saved_id[0] ? saved_id : NULL, until);
  return prev;
}

static void unbound_thread(int64_t prev, const char *saved_id) {
  q_trace_set(saved_id[0] ? saved_id : NULL, prev);
}

/* Makes sure of the collection once; later calls return at once. */
static q_err_t ensure(milvus_engine_t *e, char *err, size_t errlen) {
  if (__atomic_load_n(&e->ensured, __ATOMIC_ACQUIRE))
    return 0;
  pthread_mutex_lock(&e->ensure_mu);
  q_err_t rc = 0;
  if (!e->ensured) {
    rc = milvus_ensure_collection(e->cli, err, errlen);
    if (!rc)
      __atomic_store_n(&e->ensured, true, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&e->ensure_mu);
  return rc;
}

/* What a failure of Milvus is to the retriever's caller: the dependency is
 * unavailable. A refused token, a rate limit or a missing collection are
 * the operator's business, not the end user's (who would otherwise see 401,
 * 429 or 404 for them); a missing collection is made again on the next
 * call. Q_EINVAL, Q_ECONFLICT and Q_ETIMEDOUT pass as they are. */
static q_err_t served(milvus_engine_t *e, q_err_t rc) {
  switch (rc) {
  case Q_ENOTFOUND:
    __atomic_store_n(&e->ensured, false, __ATOMIC_RELEASE);
    return Q_EUNAVAIL;
  case Q_EUNAUTH:
  case Q_EPERM:
  case Q_ERESOURCE:
  case Q_ETOOBIG: return Q_EUNAVAIL;
  default: return rc;
  }
}

static void milvus_close(void *st) {
  milvus_engine_t *e = st;
  if (!e)
    return;
  milvus_client_free(e->cli);
  pthread_mutex_destroy(&e->write_mu);
  pthread_mutex_destroy(&e->ensure_mu);
  pthread_mutex_destroy(&e->count_mu);
  free(e);
}

static q_err_t milvus_open(const engine_config_t *cfg, void **out, char *err,
                           size_t errlen) {
  const milvus_cfg_t *mc = cfg->milvus;
  if (!mc || !mc->url || !*mc->url) {
    snprintf(err, errlen, "the milvus engine needs QUARRY_MILVUS_URL");
    return Q_EINVAL;
  }
  if (cfg->fixed_dim == 0) {
    snprintf(err, errlen,
             "the milvus engine needs QUARRY_EMBED_DIM: the collection has one "
             "vector dimension");
    return Q_EINVAL;
  }
  if (cfg->inner_product) {
    snprintf(err, errlen,
             "the milvus engine's collection uses COSINE: set "
             "QUARRY_RETRIEVER_METRIC=cosine");
    return Q_EINVAL;
  }
  milvus_engine_t *e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  pthread_mutex_init(&e->write_mu, NULL);
  pthread_mutex_init(&e->ensure_mu, NULL);
  pthread_mutex_init(&e->count_mu, NULL);
  e->dim = cfg->fixed_dim;
  e->hybrid = !mc->no_hybrid;
  e->count = -1;
  snprintf(e->url, sizeof e->url, "%s", mc->url);
  milvus_cfg_t c = *mc;
  c.dim = (int)cfg->fixed_dim;
  q_err_t rc = milvus_client_new(&c, &e->cli, err, errlen);
  if (rc)
    goto fail;
  /* A Milvus that is down now may come up later: the service starts not
   * ready and tries again. A collection made by something else, a refused
   * token or a bad setting stop it. */
  rc = ensure(e, err, errlen);
  if (rc == Q_EUNAVAIL || rc == Q_ETIMEDOUT || rc == Q_ERESOURCE) {
    q_log_warn("milvus: collection not ready yet; will try again", "{s:s,s:s}", "url",
               e->url, "reason", err);
    rc = 0;
  }
  if (rc)
    goto fail;
  *out = e;
  return 0;
fail:
  milvus_close(e);
  return rc;
}

/* A usable vector of the collection's dimension: finite and not all zero. */
static q_err_t check_vector(const milvus_engine_t *e, const float *v, size_t dim,
                            const char *what, char *err, size_t errlen) {
  if (!v || dim != e->dim) {
    snprintf(err, errlen, "%s has %zu dimensions; the milvus collection's have %zu", what,
             v ? dim : 0, e->dim);
    return Q_EINVAL;
  }
  bool nonzero = false;
  for (size_t i = 0; i < dim; i++) {
    if (!isfinite(v[i])) {
      snprintf(err, errlen, "%s[%zu] is not finite", what, i);
      return Q_EINVAL;
    }
    nonzero = nonzero || v[i] != 0;
  }
  if (!nonzero) {
    snprintf(err, errlen, "%s is all zeros (no direction to compare)", what);
    return Q_EINVAL;
  }
  return 0;
}

/* Chunks of doc_id that a replace keeps: those of the batch. */
static q_err_t replace_keep(const engine_chunk_t *chunks, size_t n, const char ***ids,
                            milvus_keep_t *keep) {
  *ids = n ? malloc(n * sizeof **ids) : NULL;
  if (n && !*ids)
    return Q_ENOMEM;
  for (size_t i = 0; i < n; i++)
    (*ids)[i] = chunks[i].chunk_id;
  *keep = (milvus_keep_t){.chunk_ids = *ids, .n_chunk_ids = n};
  return 0;
}

static q_err_t milvus_eng_upsert(void *st, const char *tenant,
                                 const engine_chunk_t *chunks, size_t n,
                                 const char *replace_doc_id, size_t *retired, char *err,
                                 size_t errlen) {
  milvus_engine_t *e = st;
  *retired = 0;
  char what[64 + Q_LIMIT_CHUNK_ID_BYTES];
  for (size_t i = 0; i < n; i++) {
    snprintf(what, sizeof what, "chunk %s's vector",
             chunks[i].chunk_id ? chunks[i].chunk_id : "(no id)");
    if (check_vector(e, chunks[i].embedding, chunks[i].dim, what, err, errlen))
      return Q_EINVAL;
  }
  bool replace = replace_doc_id && *replace_doc_id;
  milvus_chunk_t *rows = n ? calloc(n, sizeof *rows) : NULL;
  const char **keep_ids = NULL;
  milvus_keep_t keep = {0};
  if (n && !rows) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  /* BM25 reads the text field only; the embedded engine scores title and
   * text, so the title goes in front of the text (TITLE_SEP between), and
   * comes off again when a candidate is read (to_cands). The joined texts
   * and each row's metadata as stored (milvus_meta_stored: dates also as
   * numbers) live in the arena texts until the call returns. */
  q_arena_t *texts = q_arena_new(0);
  if (!texts) {
    free(rows);
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    const char *text = chunks[i].text ? chunks[i].text : "";
    if (chunks[i].title && *chunks[i].title) {
      size_t tl = strlen(chunks[i].title), xl = strlen(text);
      char *joined = q_arena_alloc(texts, tl + sizeof TITLE_SEP - 1 + xl + 1);
      if (!joined) {
        q_arena_free(texts);
        free(rows);
        snprintf(err, errlen, "out of memory");
        return Q_ENOMEM;
      }
      memcpy(joined, chunks[i].title, tl);
      memcpy(joined + tl, TITLE_SEP, sizeof TITLE_SEP - 1);
      memcpy(joined + tl + sizeof TITLE_SEP - 1, text, xl + 1);
      text = joined;
    }
    char *meta = NULL;
    const char *stored = NULL;
    if (milvus_meta_stored(chunks[i].metadata, &meta) == 0) {
      stored = q_arena_strdup(texts, meta);
      free(meta);
    } else {
      free(meta);
      q_arena_free(texts);
      free(rows);
      snprintf(err, errlen, "chunk %s: metadata is not a JSON object",
               chunks[i].chunk_id ? chunks[i].chunk_id : "(no id)");
      return Q_EINVAL;
    }
    if (!stored) {
      q_arena_free(texts);
      free(rows);
      snprintf(err, errlen, "out of memory");
      return Q_ENOMEM;
    }
    rows[i] = (milvus_chunk_t){
        .chunk_id = chunks[i].chunk_id,
        .doc_id = chunks[i].doc_id,
        .tenant_id = tenant,
        .title = chunks[i].title,
        .text = text,
        .page = chunks[i].page,
        .ordinal = chunks[i].ordinal,
        .version = chunks[i].version,
        /* The document's creation time: what a created_at filter reads. */
        .created_ms = milvus_created_ms(chunks[i].created_at),
        .content_type = chunks[i].content_type,
        .metadata_json = stored,
        .access_groups = chunks[i].access_groups,
        .n_access_groups = chunks[i].naccess_groups,
        .dense = chunks[i].embedding,
    };
  }
  /* Every chunk id of the batch, for the ownership check and the replace. */
  q_err_t rc = replace_keep(chunks, n, &keep_ids, &keep);
  if (rc) {
    q_arena_free(texts);
    free(rows);
    snprintf(err, errlen, "out of memory");
    return rc;
  }
  pthread_mutex_lock(&e->write_mu);
  rc = ensure(e, err, errlen);
  if (rc)
    goto unlock;
  /* A chunk id belongs to one tenant for good (engine.h): Milvus's primary
   * key is the collection's, so an upsert would move another tenant's row. */
  const char *foreign = NULL;
  rc = milvus_foreign_chunk(e->cli, tenant, keep_ids, n, texts, &foreign, err, errlen);
  if (rc)
    goto unlock;
  if (foreign) {
    snprintf(err, errlen, "chunk_id %.256s belongs to another tenant", foreign);
    rc = Q_ECONFLICT;
    goto unlock;
  }
  /* What the replace will retire, counted before anything changes (writes
   * are serialised here, so nothing else changes the document meanwhile). */
  int64_t old = 0;
  if (replace) {
    old = milvus_count_where(e->cli, tenant, replace_doc_id, &keep, err, errlen);
    if (old < 0) {
      rc = (q_err_t)old;
      goto unlock;
    }
  }
  /* New first, then the old ones go: a search in between sees both
   * versions, never neither. */
  for (size_t off = 0; off < n; off += Q_LIMIT_UPSERT_CHUNKS) {
    size_t m = n - off < Q_LIMIT_UPSERT_CHUNKS ? n - off : Q_LIMIT_UPSERT_CHUNKS;
    rc = milvus_upsert(e->cli, rows + off, m, err, errlen);
    if (rc)
      goto unlock;
  }
  if (replace && old > 0) {
    rc = milvus_delete_where(e->cli, tenant, replace_doc_id, &keep, err, errlen);
    if (rc)
      goto unlock;
  }
  *retired = (size_t)old;
unlock:
  pthread_mutex_unlock(&e->write_mu);
  q_arena_free(texts);
  free(rows);
  free(keep_ids);
  return served(e, rc);
}

static q_err_t milvus_eng_remove(void *st, const char *tenant, const char *doc_id,
                                 size_t *retired, char *err, size_t errlen) {
  return milvus_eng_upsert(st, tenant, NULL, 0, doc_id, retired, err, errlen);
}

/* Best first; equal scores by the smaller chunk id (engine.h). */
static int cand_cmp(const void *a, const void *b) {
  const engine_cand_t *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  return strcmp(x->chunk_id, y->chunk_id);
}

static q_err_t to_cands(const milvus_hit_t *h, size_t n, q_arena_t *arena,
                        engine_cand_t **out, size_t *nout) {
  *out = NULL;
  *nout = 0;
  if (!n)
    return 0;
  engine_cand_t *c = q_arena_alloc(arena, n * sizeof *c);
  if (!c)
    return Q_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    /* The stored text is "<title>" TITLE_SEP "<text>" when there is a title
     * (upsert): the candidate's text is the chunk's own. */
    const char *text = h[i].text ? h[i].text : "";
    size_t tl = h[i].title ? strlen(h[i].title) : 0;
    if (tl && strncmp(text, h[i].title, tl) == 0 &&
        strncmp(text + tl, TITLE_SEP, sizeof TITLE_SEP - 1) == 0)
      text += tl + sizeof TITLE_SEP - 1;
    c[i] = (engine_cand_t){
        .chunk_id = h[i].chunk_id,
        .doc_id = h[i].doc_id,
        .title = h[i].title,
        .text = text,
        .version = (int32_t)h[i].version,
        .ordinal = (int32_t)h[i].ordinal,
        .page = (int32_t)h[i].page,
        .score = h[i].score,
    };
  }
  qsort(c, n, sizeof *c, cand_cmp);
  *out = c;
  *nout = n;
  return 0;
}

/* The filter of q as a Milvus expression in mf (in arena), translated once
 * for every search of the query, so Milvus applies it while it searches
 * (engine.h). */
static q_err_t filter_of(const engine_query_t *q, q_arena_t *arena, milvus_filter_t *mf,
                         char *err, size_t errlen) {
  *mf = (milvus_filter_t){0};
  if (!q->filter)
    return 0;
  q_buf_t b;
  q_buf_init(&b, MILVUS_EXPR_MAX);
  q_err_t rc = milvus_filter_expr(q->filter, &b, err, errlen);
  mf->expr = rc ? NULL : q_arena_strndup(arena, b.data ? b.data : "", b.len);
  q_buf_cleanup(&b);
  if (rc)
    return rc;
  return mf->expr ? 0 : Q_ENOMEM;
}

static q_err_t search_lists(milvus_engine_t *e, const engine_query_t *q, q_arena_t *arena,
                            engine_result_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  bool dense = (q->lists & ENGINE_DENSE) && q->embedding && q->dim;
  if (dense && check_vector(e, q->embedding, q->dim, "the query vector", err, errlen))
    return Q_EINVAL;
  if (!q->top_k) {
    snprintf(err, errlen, "top_k must be positive");
    return Q_EINVAL;
  }
  /* Milvus's largest limit; the retriever's own maximum is usually lower. */
  int top_k = q->top_k > MILVUS_TOP_K_MAX ? MILVUS_TOP_K_MAX : (int)q->top_k;
  q_err_t rc = ensure(e, err, errlen);
  if (rc)
    return rc;
  milvus_filter_t mf = {0};
  if ((rc = filter_of(q, arena, &mf, err, errlen)) != 0)
    return rc;
  milvus_query_t mq = {.tenant = q->tenant,
                       .filter = q->filter ? &mf : NULL,
                       .dense = q->embedding,
                       .top_k = top_k};
  milvus_hit_t *hits;
  size_t nhits;
  if (dense) {
    rc = milvus_search_dense(e->cli, &mq, arena, &hits, &nhits, err, errlen);
    if (!rc)
      rc = to_cands(hits, nhits, arena, &out->dense, &out->ndense);
    if (rc)
      return rc;
    /* Every chunk has a vector: the tenant has vectors when it has chunks. */
    out->dense_used = out->ndense > 0;
    out->dense_exact = false; /* HNSW */
  }
  if ((q->lists & ENGINE_LEXICAL) && q->text && !q_is_blank(q->text, q->text_len)) {
    mq.text = q_arena_strndup(arena, q->text, q->text_len);
    if (!mq.text)
      return Q_ENOMEM;
    rc = milvus_search_text(e->cli, &mq, arena, &hits, &nhits, err, errlen);
    if (!rc)
      rc = to_cands(hits, nhits, arena, &out->lexical, &out->nlexical);
  }
  return rc;
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static q_err_t count_stats(milvus_engine_t *e, const char *tenant, engine_stats_t *out,
                           char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  q_err_t rc = ensure(e, err, errlen);
  if (rc)
    return rc;
  bool all = !tenant || !*tenant;
  int64_t chunks =
      milvus_count_where(e->cli, all ? NULL : tenant, NULL, NULL, err, errlen);
  if (chunks < 0)
    return (q_err_t)chunks;
  int64_t docs = 0;
  if (!all && chunks > 0 && chunks <= MILVUS_TOP_K_MAX) {
    /* Distinct doc_ids of the tenant's chunks: exact. */
    q_arena_t *a = q_arena_new(0);
    const char **ids = NULL;
    size_t n = 0;
    rc = a ? milvus_doc_ids(e->cli, tenant, (int)chunks, a, &ids, &n, err, errlen)
           : Q_ENOMEM;
    if (!rc) {
      qsort(ids, n, sizeof *ids, str_cmp);
      for (size_t i = 0; i < n; i++)
        docs += i == 0 || strcmp(ids[i], ids[i - 1]) != 0;
    }
    q_arena_free(a);
    if (rc)
      return rc;
  } else if (chunks > 0) {
    /* More chunks than one query may return (or every tenant): documents
     * counted by their first chunk, which ingestion numbers 0. */
    milvus_keep_t first = {.first_chunks = true};
    docs = milvus_count_where(e->cli, all ? NULL : tenant, NULL, &first, err, errlen);
    if (docs < 0)
      return (q_err_t)docs;
  }
  *out = (engine_stats_t){
      .chunks = chunks, .documents = docs, .terms = 0, .vectors = chunks};
  return 0;
}

static q_err_t milvus_eng_search(void *st, const engine_query_t *q, q_arena_t *arena,
                                 engine_result_t *out, char *err, size_t errlen) {
  milvus_engine_t *e = st;
  return served(e, search_lists(e, q, arena, out, err, errlen));
}

/* One hybrid_search: Milvus fuses the BM25 and the dense list. */
static q_err_t milvus_eng_hybrid(void *st, const engine_query_t *q,
                                 const engine_fusion_t *how, q_arena_t *arena,
                                 engine_cand_t **out, size_t *n, char *err,
                                 size_t errlen) {
  milvus_engine_t *e = st;
  *out = NULL;
  *n = 0;
  if (!e->hybrid) {
    snprintf(err, errlen, "QUARRY_MILVUS_HYBRID_SEARCH is off");
    return Q_EUNIMPL;
  }
  if (!q->text || q_is_blank(q->text, q->text_len) || !q->embedding || !q->dim) {
    snprintf(err, errlen, "a hybrid search needs a query text and a vector");
    return Q_EINVAL;
  }
  if (check_vector(e, q->embedding, q->dim, "the query vector", err, errlen))
    return Q_EINVAL;
  if (!q->top_k) {
    snprintf(err, errlen, "top_k must be positive");
    return Q_EINVAL;
  }
  milvus_rank_t rank = {.kind = how->weighted ? MILVUS_RANK_WEIGHTED : MILVUS_RANK_RRF,
                        .rrf_k = (int)how->rrf_k,
                        .dense_w = how->w_dense,
                        .lexical_w = how->w_lex};
  q_err_t rc = ensure(e, err, errlen);
  milvus_filter_t mf;
  if (!rc)
    rc = filter_of(q, arena, &mf, err, errlen);
  if (rc)
    return served(e, rc);
  milvus_query_t mq = {
      .tenant = q->tenant,
      .filter = q->filter ? &mf : NULL,
      .text = q_arena_strndup(arena, q->text, q->text_len),
      .dense = q->embedding,
      .top_k = q->top_k > MILVUS_TOP_K_MAX ? MILVUS_TOP_K_MAX : (int)q->top_k,
  };
  if (!mq.text)
    return Q_ENOMEM;
  milvus_hit_t *hits;
  size_t nhits;
  rc = milvus_hybrid_search(e->cli, &mq, &rank, arena, &hits, &nhits, err, errlen);
  if (!rc)
    rc = to_cands(hits, nhits, arena, out, n);
  return served(e, rc);
}

static q_err_t milvus_eng_stats(void *st, const char *tenant, engine_stats_t *out,
                                char *err, size_t errlen) {
  milvus_engine_t *e = st;
  return served(e, count_stats(e, tenant, out, err, errlen));
}

/* The quarry_index_chunks gauge: a count over every tenant at most every
 * COUNT_CACHE_MS, within PROBE_MS; the last count (or -1) when Milvus does
 * not answer. */
static int64_t milvus_eng_chunk_count(void *st) {
  milvus_engine_t *e = st;
  pthread_mutex_lock(&e->count_mu);
  int64_t now = q_now_ms();
  if (e->count_at == 0 || now - e->count_at >= COUNT_CACHE_MS) {
    char id[Q_LIMIT_REQUEST_ID_BYTES + 1], why[256];
    int64_t prev = bound_thread(PROBE_MS, id, sizeof id);
    int64_t n = __atomic_load_n(&e->ensured, __ATOMIC_ACQUIRE)
                    ? milvus_count_where(e->cli, NULL, NULL, NULL, why, sizeof why)
                    : -1;
    unbound_thread(prev, id);
    if (n >= 0)
      e->count = n;
    e->count_at = now;
  }
  int64_t n = e->count;
  pthread_mutex_unlock(&e->count_mu);
  return n;
}

static q_err_t milvus_eng_snapshot(void *st, const char *dir, char *err, size_t errlen) {
  (void)st;
  (void)dir;
  snprintf(err, errlen,
           "the milvus engine keeps no state of its own to snapshot: Milvus is the "
           "durable copy");
  return Q_EUNIMPL;
}

static bool milvus_eng_ready(void *st, char *why, size_t whylen) {
  milvus_engine_t *e = st;
  char id[Q_LIMIT_REQUEST_ID_BYTES + 1], err[384] = "";
  int64_t prev = bound_thread(PROBE_MS, id, sizeof id);
  bool ok = ensure(e, err, sizeof err) == 0;
  if (!ok)
    snprintf(why, whylen, "milvus at %s: %s", e->url, err);
  else if (!(ok = milvus_ready(e->cli)))
    snprintf(why, whylen, "milvus at %s: collection %s not loaded or not answering",
             e->url, milvus_collection(e->cli));
  unbound_thread(prev, id);
  return ok;
}

static int64_t milvus_eng_lag_ms(void *st) {
  (void)st;
  /* Searches read at Strong consistency (milvus_client.c): an acknowledged
   * write is searchable. */
  return 0;
}

const engine_ops_t engine_milvus_ops = {
    .name = "milvus",
    .open = milvus_open,
    .close = milvus_close,
    .upsert = milvus_eng_upsert,
    .remove = milvus_eng_remove,
    .search = milvus_eng_search,
    .hybrid = milvus_eng_hybrid,
    .stats = milvus_eng_stats,
    .chunk_count = milvus_eng_chunk_count,
    .snapshot = milvus_eng_snapshot,
    .restore = milvus_eng_snapshot,
    .ready = milvus_eng_ready,
    .lag_ms = milvus_eng_lag_ms,
};
