/* hnsw.c - HNSW graph index (see hnsw.h; docs/retrieval.md has the algorithm).
 *
 * Threading model. Two locks:
 *  - wmu (a mutex) serialises the mutating calls: add, delete, compact, save
 *    and reserve. Only its holder ever changes the graph.
 *  - rw (a writer-preferring rwlock) separates searches (read side) from the
 *    moment a mutating call publishes its changes (write side).
 * A mutating call first works out everything it will change while holding
 * wmu only: an insert walks the graph to find the new node's neighbours and
 * computes the neighbours' pruned link lists; compaction computes repaired
 * lists. That is safe beside searches because searches never write the graph
 * and no other writer can run. Then it takes rw for writing and copies the
 * prepared lists in, which takes microseconds. Growing the arrays (realloc)
 * also happens under the write lock. A search holds the read lock for its
 * whole walk, so it sees the graph of one moment. Search scratch space
 * (visited marks, heaps) comes from a pool guarded by its own mutex, so
 * searches share nothing else and never block one another.
 *
 * Layout. Nodes are slots 0..nslots); per slot: label, top layer, state,
 * layer-0 links (a count then up to m0 = 2m ids, in one flat array, so the
 * walk on layer 0 reads each node's list in one contiguous run), a pointer to
 * the upper layers' links (m per layer, allocated only for the ~1/m nodes
 * that have any), and the vector as float32 and/or int8 codes with a scale.
 *
 * Deletes set the slot's state to DELETED: searches walk through it but never
 * return it. Compaction marks the current tombstones PURGE, repairs every
 * node that links to one, then frees their slots (state FREE) for reuse.
 * Nothing ever links to a FREE slot, and inserts only ever link to LIVE
 * nodes, which is what lets compaction release the writer lock between
 * batches. */
#include "engine/hnsw.h"

#include "engine/vecdist.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hnsw snapshots are written in the host's byte order, which must be little-endian"
#endif

enum { ST_FREE = 0, ST_LIVE = 1, ST_DELETED = 2, ST_PURGE = 3 };

/* A slot number that names no node (empty graph, missing label). */
#define NO_NODE UINT32_MAX
/* Highest layer a node can get: the chance of exceeding it is m^-31. */
#define MAX_LEVEL 31
/* How many nodes one compaction batch repairs before letting writers in. */
#define COMPACT_BATCH 512
/* Slots sampled to estimate how many items a filter passes. */
#define FILTER_SAMPLE 256

/* ---- small pieces --------------------------------------------------------- */

typedef struct hitem {
  float d; /* distance: minus the similarity, so smaller is closer */
  uint32_t id;
} hitem_t;

/* A binary max-heap on d. Candidates are pushed with -d to get a min-heap. */
typedef struct heap {
  hitem_t *a;
  size_t n, cap;
} heap_t;

static bool heap_grow(heap_t *hp, size_t need) {
  if (need <= hp->cap)
    return true;
  size_t c = hp->cap ? hp->cap * 2 : 256;
  while (c < need)
    c *= 2;
  hitem_t *a = realloc(hp->a, c * sizeof *a);
  if (!a)
    return false;
  hp->a = a;
  hp->cap = c;
  return true;
}

/* Pushes (d, id); false when out of memory (the item is dropped). */
static bool heap_push(heap_t *hp, float d, uint32_t id) {
  if (hp->n == hp->cap && !heap_grow(hp, hp->n + 1))
    return false;
  size_t i = hp->n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (hp->a[p].d >= d)
      break;
    hp->a[i] = hp->a[p];
    i = p;
  }
  hp->a[i] = (hitem_t){d, id};
  return true;
}

static void heap_pop(heap_t *hp) {
  hitem_t last = hp->a[--hp->n];
  size_t i = 0, n = hp->n;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    float md = last.d;
    if (l < n && hp->a[l].d > md) {
      m = l;
      md = hp->a[l].d;
    }
    if (r < n && hp->a[r].d > md)
      m = r;
    if (m == i)
      break;
    hp->a[i] = hp->a[m];
    i = m;
  }
  if (n)
    hp->a[i] = last;
}

static int hitem_cmp(const void *pa, const void *pb) {
  const hitem_t *a = pa, *b = pb;
  if (a->d != b->d)
    return a->d < b->d ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

/* splitmix64: the label map's hash and the layer generator. */
static uint64_t mix64(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* ---- search scratch ------------------------------------------------------- */

/* Per-search scratch, pooled: visited marks (an epoch per slot, so clearing is
 * one increment), the two heaps and the prepared query. */
typedef struct sctx {
  uint16_t *tags;
  size_t ntags;
  uint16_t epoch;
  heap_t cand, res;
  float *qf;
  int8_t *qc;
  hitem_t *tmp; /* results sorted, and compaction candidates */
  size_t tmpcap;
  bool oom;
  struct sctx *next;
} sctx_t;

/* ---- the index ------------------------------------------------------------ */

/* A vector to measure distances from: floats, or int8 codes with a scale. */
typedef struct qv {
  const float *f;
  const int8_t *c;
  float s;
  bool codes;
} qv_t;

typedef struct lment {
  uint64_t label;
  uint32_t id1; /* slot + 1; 0 empty */
} lment_t;

struct hnsw {
  hnsw_params_t p;
  uint32_t m0;    /* links on layer 0 */
  size_t stride0; /* m0 + 1: a count, then the ids */
  double ml;      /* layer multiplier 1 / ln(m) */
  bool has_f32, has_i8;
  const vecdist_kernels_t *k;

  pthread_mutex_t wmu; /* one mutating call at a time */
  pthread_mutex_t cmu; /* one compaction at a time */
  pthread_rwlock_t rw; /* searches vs publishing */
  pthread_mutex_t pool_mu;
  sctx_t *pool;

  size_t nslots, cap;
  uint64_t *labels;
  uint8_t *levels, *state;
  uint32_t *links0;
  uint32_t **upper;
  float *vecs;
  int8_t *codes;
  float *scales;
  size_t upper_bytes;

  uint32_t *free_slots;
  size_t nfree, capfree;

  lment_t *map;
  size_t mapcap, mapn;
  uint64_t mapkey;

  uint32_t entry;
  int max_level;
  size_t live, deleted;
  uint64_t rng;

  /* Link lists prepared by the writer (under wmu), applied under rw:
   * records of [node, level, count, ids...], each ustride uint32s. */
  uint32_t *upd;
  size_t nupd, capupd, ustride;
};

static inline const float *vec_f(const hnsw_t *h, uint32_t id) {
  return h->vecs + (size_t)id * h->p.dim;
}

static inline const int8_t *vec_c(const hnsw_t *h, uint32_t id) {
  return h->codes + (size_t)id * h->p.dim;
}

static inline uint32_t *links_at(const hnsw_t *h, uint32_t id, int level) {
  if (level == 0)
    return h->links0 + (size_t)id * h->stride0;
  return h->upper[id] + (size_t)(level - 1) * (h->p.m + 1);
}

/* The stored vector of node id as a distance origin. */
static qv_t node_qv(const hnsw_t *h, uint32_t id, bool codes) {
  if (codes)
    return (qv_t){NULL, vec_c(h, id), h->scales[id], true};
  return (qv_t){vec_f(h, id), NULL, 0.0f, false};
}

/* The distance from q to node id: minus their dot product (of the unit
 * vectors under cosine), so the heuristic's comparisons and the scores
 * returned (-d) need no conversion. */
static inline float dist(const hnsw_t *h, const qv_t *q, uint32_t id) {
  if (q->codes)
    return -(q->s * h->scales[id]) * (float)h->k->dot_i8(q->c, vec_c(h, id), h->p.dim);
  return -h->k->dot_f32(q->f, vec_f(h, id), h->p.dim);
}

static inline void prefetch_vec(const hnsw_t *h, uint32_t id, bool codes) {
  if (codes)
    __builtin_prefetch(vec_c(h, id));
  else
    __builtin_prefetch(vec_f(h, id));
}

/* Whether the graph is built on the int8 codes (only when there are no
 * floats) and whether searches walk on them (whenever they exist). */
static bool build_on_codes(const hnsw_t *h) {
  return !h->has_f32;
}

/* Writes the int8 codes of x (dim floats) and returns the scale. */
static float quantise(const float *x, size_t dim, int8_t *out) {
  float mx = 0.0f;
  for (size_t i = 0; i < dim; i++)
    mx = fmaxf(mx, fabsf(x[i]));
  if (mx == 0.0f) {
    memset(out, 0, dim);
    return 0.0f;
  }
  float s = mx / 127.0f, inv = 127.0f / mx;
  for (size_t i = 0; i < dim; i++) {
    long v = lrintf(x[i] * inv);
    out[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
  }
  return s;
}

/* ---- label map: open addressing, linear probing, backward-shift delete ---- */

static size_t map_slot(const hnsw_t *h, uint64_t label) {
  size_t mask = h->mapcap - 1, i = mix64(label ^ h->mapkey) & mask;
  while (h->map[i].id1 && h->map[i].label != label)
    i = (i + 1) & mask;
  return i;
}

static uint32_t map_get(const hnsw_t *h, uint64_t label) {
  if (!h->mapcap)
    return NO_NODE;
  const lment_t *e = &h->map[map_slot(h, label)];
  return e->id1 ? e->id1 - 1 : NO_NODE;
}

/* Makes room for one more label; call before map_put, outside nothing. */
static q_err_t map_reserve(hnsw_t *h, size_t n) {
  if (n * 4 <= h->mapcap * 3)
    return Q_OK;
  size_t cap = h->mapcap ? h->mapcap : 64;
  while (n * 4 > cap * 3)
    cap *= 2;
  lment_t *m = calloc(cap, sizeof *m);
  if (!m)
    return Q_ENOMEM;
  lment_t *old = h->map;
  size_t oldcap = h->mapcap;
  h->map = m;
  h->mapcap = cap;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].id1)
      h->map[map_slot(h, old[i].label)] = old[i];
  free(old);
  return Q_OK;
}

/* Sets label -> id; room must have been reserved. */
static void map_put(hnsw_t *h, uint64_t label, uint32_t id) {
  lment_t *e = &h->map[map_slot(h, label)];
  if (!e->id1)
    h->mapn++;
  e->label = label;
  e->id1 = id + 1;
}

static void map_del(hnsw_t *h, uint64_t label) {
  if (!h->mapcap)
    return;
  size_t mask = h->mapcap - 1, i = map_slot(h, label);
  if (!h->map[i].id1)
    return;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!h->map[j].id1)
      break;
    size_t home = mix64(h->map[j].label ^ h->mapkey) & mask;
    bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      h->map[i] = h->map[j];
      i = j;
    }
  }
  h->map[i].id1 = 0;
  h->mapn--;
}

/* ---- creation ------------------------------------------------------------- */

void hnsw_params_resolve(const hnsw_params_t *in, hnsw_params_t *out) {
  *out = *in;
  if (!out->m)
    out->m = HNSW_DEFAULT_M;
  if (!out->ef_construction)
    out->ef_construction = HNSW_DEFAULT_EF_CONSTRUCTION;
  if (out->ef_construction < out->m)
    out->ef_construction = out->m;
  if (!out->ef_search)
    out->ef_search = HNSW_DEFAULT_EF_SEARCH;
  if (!out->seed)
    out->seed = UINT64_C(0x5eed0f4a2c3d1b07);
}

static q_err_t check_params(const hnsw_params_t *p, char *err, size_t errlen) {
  if (p->dim < 1 || p->dim > HNSW_MAX_DIM) {
    snprintf(err, errlen, "hnsw: dim %zu is outside 1..%d", p->dim, HNSW_MAX_DIM);
    return Q_EINVAL;
  }
  if (p->metric != HNSW_COSINE && p->metric != HNSW_INNER_PRODUCT) {
    snprintf(err, errlen, "hnsw: unknown metric %d", (int)p->metric);
    return Q_EINVAL;
  }
  if (p->storage != HNSW_FLOAT && p->storage != HNSW_INT8 &&
      p->storage != HNSW_INT8_RERANK) {
    snprintf(err, errlen, "hnsw: unknown storage %d", (int)p->storage);
    return Q_EINVAL;
  }
  if (p->m < 2 || p->m > HNSW_MAX_M) {
    snprintf(err, errlen, "hnsw: m %u is outside 2..%d", p->m, HNSW_MAX_M);
    return Q_EINVAL;
  }
  if (p->ef_construction > HNSW_MAX_EF || p->ef_search > HNSW_MAX_EF) {
    snprintf(err, errlen, "hnsw: ef_construction and ef_search must be at most %d",
             HNSW_MAX_EF);
    return Q_EINVAL;
  }
  return Q_OK;
}

q_err_t hnsw_new(const hnsw_params_t *params, hnsw_t **out, char *err, size_t errlen) {
  *out = NULL;
  hnsw_params_t p;
  hnsw_params_resolve(params, &p);
  q_err_t rc = check_params(&p, err, errlen);
  if (rc)
    return rc;
  if (sodium_init() < 0) {
    snprintf(err, errlen, "hnsw: libsodium failed to initialise");
    return Q_EINTERNAL;
  }
  hnsw_t *h = calloc(1, sizeof *h);
  if (!h)
    goto nomem;
  h->p = p;
  h->m0 = 2 * p.m;
  h->stride0 = h->m0 + 1;
  h->ustride = 3 + h->m0;
  h->ml = 1.0 / log((double)p.m);
  h->has_f32 = p.storage != HNSW_INT8;
  h->has_i8 = p.storage != HNSW_FLOAT;
  h->k = vecdist_select(p.portable_kernels);
  h->entry = NO_NODE;
  h->max_level = -1;
  h->rng = p.seed;
  randombytes_buf(&h->mapkey, sizeof h->mapkey);

  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* Publishing must not starve behind a steady stream of searches. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  int prc = pthread_rwlock_init(&h->rw, &attr);
  pthread_rwlockattr_destroy(&attr);
  if (prc) {
    free(h);
    goto nomem;
  }
  pthread_mutex_init(&h->wmu, NULL);
  pthread_mutex_init(&h->cmu, NULL);
  pthread_mutex_init(&h->pool_mu, NULL);
  *out = h;
  return Q_OK;
nomem:
  snprintf(err, errlen, "hnsw: out of memory");
  return Q_ENOMEM;
}

static void sctx_free(sctx_t *c) {
  free(c->tags);
  free(c->cand.a);
  free(c->res.a);
  free(c->qf);
  free(c->qc);
  free(c->tmp);
  free(c);
}

void hnsw_free(hnsw_t *h) {
  if (!h)
    return;
  for (size_t i = 0; i < h->nslots; i++)
    free(h->upper[i]);
  free(h->labels);
  free(h->levels);
  free(h->state);
  free(h->links0);
  free(h->upper);
  free(h->vecs);
  free(h->codes);
  free(h->scales);
  free(h->free_slots);
  free(h->map);
  free(h->upd);
  while (h->pool) {
    sctx_t *c = h->pool;
    h->pool = c->next;
    sctx_free(c);
  }
  pthread_rwlock_destroy(&h->rw);
  pthread_mutex_destroy(&h->wmu);
  pthread_mutex_destroy(&h->cmu);
  pthread_mutex_destroy(&h->pool_mu);
  free(h);
}

void hnsw_params_get(const hnsw_t *h, hnsw_params_t *out) {
  *out = h->p;
}

const char *hnsw_kernels(const hnsw_t *h) {
  return h->k->name;
}

/* Grows the slot arrays to hold n slots (exactly n when exact, else the next
 * doubling, so adds cost amortised O(1)). Caller holds wmu and the write
 * lock. On failure the arrays that did grow stay grown; cap is unchanged. */
static q_err_t grow_slots(hnsw_t *h, size_t n, bool exact) {
  if (n <= h->cap)
    return Q_OK;
  if (n > HNSW_MAX_NODES)
    return Q_ERESOURCE;
  size_t c = h->cap ? h->cap : 1024;
  while (c < n)
    c = c * 2 > HNSW_MAX_NODES ? HNSW_MAX_NODES : c * 2;
  if (exact)
    c = n;
  size_t dim = h->p.dim;
#define GROW(field, per)                                                                 \
  do {                                                                                   \
    void *np = realloc(h->field, c * (per));                                             \
    if (!np)                                                                             \
      return Q_ENOMEM;                                                                   \
    h->field = np;                                                                       \
  } while (0)
  GROW(labels, sizeof(uint64_t));
  GROW(levels, 1);
  GROW(state, 1);
  GROW(links0, h->stride0 * sizeof(uint32_t));
  GROW(upper, sizeof(uint32_t *));
  if (h->has_f32)
    GROW(vecs, dim * sizeof(float));
  if (h->has_i8) {
    GROW(codes, dim);
    GROW(scales, sizeof(float));
  }
#undef GROW
  memset(h->levels + h->cap, 0, c - h->cap);
  memset(h->state + h->cap, ST_FREE, c - h->cap);
  memset(h->upper + h->cap, 0, (c - h->cap) * sizeof *h->upper);
  /* Zeroed so that a snapshot never writes uninitialised link slots. */
  memset(h->links0 + h->cap * h->stride0, 0,
         (c - h->cap) * h->stride0 * sizeof(uint32_t));
  h->cap = c;
  return Q_OK;
}

q_err_t hnsw_reserve(hnsw_t *h, size_t n) {
  if (n > HNSW_MAX_NODES)
    return Q_EINVAL;
  pthread_mutex_lock(&h->wmu);
  pthread_rwlock_wrlock(&h->rw);
  q_err_t rc = grow_slots(h, n, true);
  if (!rc)
    rc = map_reserve(h, n);
  pthread_rwlock_unlock(&h->rw);
  pthread_mutex_unlock(&h->wmu);
  return rc;
}

/* ---- scratch pool --------------------------------------------------------- */

/* A scratch context with visited marks for every slot below h->cap. Called
 * with the read lock or wmu held (cap cannot change). NULL when out of
 * memory. */
static sctx_t *sctx_get(hnsw_t *h) {
  pthread_mutex_lock(&h->pool_mu);
  sctx_t *c = h->pool;
  if (c)
    h->pool = c->next;
  pthread_mutex_unlock(&h->pool_mu);
  if (!c) {
    c = calloc(1, sizeof *c);
    if (!c)
      return NULL;
    c->qf = malloc(h->p.dim * sizeof *c->qf);
    c->qc = malloc(h->p.dim);
    if (!c->qf || !c->qc) {
      sctx_free(c);
      return NULL;
    }
  }
  if (c->ntags < h->cap) {
    uint16_t *t = realloc(c->tags, h->cap * sizeof *t);
    if (!t) {
      pthread_mutex_lock(&h->pool_mu);
      c->next = h->pool;
      h->pool = c;
      pthread_mutex_unlock(&h->pool_mu);
      return NULL;
    }
    memset(t + c->ntags, 0, (h->cap - c->ntags) * sizeof *t);
    c->tags = t;
    c->ntags = h->cap;
  }
  c->oom = false;
  return c;
}

static void sctx_put(hnsw_t *h, sctx_t *c) {
  if (!c)
    return;
  pthread_mutex_lock(&h->pool_mu);
  c->next = h->pool;
  h->pool = c;
  pthread_mutex_unlock(&h->pool_mu);
}

static void new_epoch(sctx_t *c) {
  if (++c->epoch == 0) {
    memset(c->tags, 0, c->ntags * sizeof *c->tags);
    c->epoch = 1;
  }
}

/* Marks id visited; false when it already was in this epoch. */
static inline bool visit(sctx_t *c, uint32_t id) {
  if (c->tags[id] == c->epoch)
    return false;
  c->tags[id] = c->epoch;
  return true;
}

static bool tmp_reserve(sctx_t *c, size_t n) {
  if (n <= c->tmpcap)
    return true;
  size_t cap = c->tmpcap ? c->tmpcap : 256;
  while (cap < n)
    cap *= 2;
  hitem_t *t = realloc(c->tmp, cap * sizeof *t);
  if (!t)
    return false;
  c->tmp = t;
  c->tmpcap = cap;
  return true;
}

/* ---- the walk ------------------------------------------------------------- */

/* Which nodes a walk may return. */
typedef struct accept {
  uint32_t exclude; /* a node being replaced, or NO_NODE */
  hnsw_filter_cb filter;
  void *ud;
} accept_t;

static inline bool accepted(const hnsw_t *h, const accept_t *a, uint32_t id) {
  if (h->state[id] != ST_LIVE || id == a->exclude)
    return false;
  return !a->filter || a->filter(h->labels[id], a->ud);
}

/* Greedy descent on one upper layer: moves to the closest neighbour while
 * that gets closer (ef = 1). Walks through tombstones too. */
static uint32_t greedy(const hnsw_t *h, const qv_t *q, uint32_t cur, float *curd,
                       int level, size_t *ndist) {
  bool changed = true;
  while (changed) {
    changed = false;
    const uint32_t *l = links_at(h, cur, level);
    uint32_t n = l[0];
    for (uint32_t j = 0; j < n; j++) {
      float d = dist(h, q, l[1 + j]);
      (*ndist)++;
      if (d < *curd) {
        *curd = d;
        cur = l[1 + j];
        changed = true;
      }
    }
  }
  return cur;
}

/* Algorithm 2 of the paper: the ef accepted nodes closest to q on one layer,
 * starting from eps[0..neps), left in c->res (a max-heap: worst on top).
 * Nodes that are not accepted (tombstones, filtered out) are still walked
 * through; the walk only stops once ef accepted nodes are found and no
 * candidate can improve them, so a tombstone or a filter costs time, not
 * results. */
static void search_layer(const hnsw_t *h, sctx_t *c, const qv_t *q, const uint32_t *eps,
                         size_t neps, size_t ef, int level, const accept_t *acc,
                         size_t *ndist) {
  new_epoch(c);
  c->cand.n = c->res.n = 0;
  float lower = INFINITY;
  for (size_t i = 0; i < neps; i++) {
    uint32_t ep = eps[i];
    if (!visit(c, ep))
      continue;
    float d = dist(h, q, ep);
    (*ndist)++;
    c->oom |= !heap_push(&c->cand, -d, ep);
    if (accepted(h, acc, ep)) {
      c->oom |= !heap_push(&c->res, d, ep);
      if (c->res.n > ef)
        heap_pop(&c->res);
      lower = c->res.a[0].d;
    }
  }
  bool codes = q->codes;
  while (c->cand.n) {
    hitem_t cur = c->cand.a[0];
    if (-cur.d > lower && c->res.n >= ef)
      break;
    heap_pop(&c->cand);
    const uint32_t *l = links_at(h, cur.id, level);
    uint32_t n = l[0];
    for (uint32_t j = 0; j < n; j++) {
      uint32_t nb = l[1 + j];
      if (j + 1 < n)
        prefetch_vec(h, l[2 + j], codes);
      if (!visit(c, nb))
        continue;
      float d = dist(h, q, nb);
      (*ndist)++;
      if (c->res.n < ef || d < lower) {
        c->oom |= !heap_push(&c->cand, -d, nb);
        if (accepted(h, acc, nb)) {
          c->oom |= !heap_push(&c->res, d, nb);
          if (c->res.n > ef)
            heap_pop(&c->res);
        }
        if (c->res.n)
          lower = c->res.a[0].d;
      }
    }
  }
}

/* Moves c->res into c->tmp sorted closest first; returns the count. */
static size_t drain_sorted(sctx_t *c) {
  size_t n = c->res.n;
  if (!tmp_reserve(c, n)) {
    c->oom = true;
    return 0;
  }
  memcpy(c->tmp, c->res.a, n * sizeof *c->tmp);
  qsort(c->tmp, n, sizeof *c->tmp, hitem_cmp);
  c->res.n = 0;
  return n;
}

/* Algorithm 4 of the paper (without extending or keeping pruned candidates,
 * as hnswlib does): from cands[0..n) sorted by distance to the base node,
 * keeps a candidate only if it is closer to the base than to every one kept
 * so far, up to mmax. This spreads links over directions instead of bunching
 * them in the densest one, which is what keeps clustered data navigable.
 * Writes ids to out; returns how many. */
static size_t select_neighbours(const hnsw_t *h, const hitem_t *cands, size_t n,
                                size_t mmax, bool codes, uint32_t *out) {
  size_t nout = 0;
  if (n <= mmax) {
    for (size_t i = 0; i < n; i++)
      out[i] = cands[i].id;
    return n;
  }
  for (size_t i = 0; i < n && nout < mmax; i++) {
    qv_t cq = node_qv(h, cands[i].id, codes);
    bool good = true;
    for (size_t j = 0; j < nout; j++)
      if (dist(h, &cq, out[j]) < cands[i].d) {
        good = false;
        break;
      }
    if (good)
      out[nout++] = cands[i].id;
  }
  return nout;
}

/* ---- prepared link updates (writer only) ---------------------------------- */

static uint32_t *upd_push(hnsw_t *h, uint32_t node, int level) {
  if (h->nupd == h->capupd) {
    size_t cap = h->capupd ? h->capupd * 2 : 64;
    uint32_t *u = realloc(h->upd, cap * h->ustride * sizeof *u);
    if (!u)
      return NULL;
    h->upd = u;
    h->capupd = cap;
  }
  uint32_t *r = h->upd + h->nupd++ * h->ustride;
  r[0] = node;
  r[1] = (uint32_t)level;
  r[2] = 0;
  return r;
}

/* Copies every prepared list into the graph. Caller holds the write lock. */
static void upd_apply(hnsw_t *h) {
  for (size_t i = 0; i < h->nupd; i++) {
    const uint32_t *r = h->upd + i * h->ustride;
    uint32_t *l = links_at(h, r[0], (int)r[1]);
    memcpy(l, r + 2, (r[2] + 1) * sizeof *l);
  }
  h->nupd = 0;
}

/* Prepares nb's list on level after linking it to node (distance d apart):
 * appended when there is room, else the heuristic picks among the old links
 * and node. */
static q_err_t link_back(hnsw_t *h, sctx_t *c, uint32_t nb, uint32_t node, float d,
                         int level) {
  size_t mmax = level ? h->p.m : h->m0;
  const uint32_t *cur = links_at(h, nb, level);
  uint32_t n = cur[0];
  uint32_t *r = upd_push(h, nb, level);
  if (!r)
    return Q_ENOMEM;
  if (n < mmax) {
    memcpy(r + 3, cur + 1, n * sizeof *r);
    r[3 + n] = node;
    r[2] = n + 1;
    return Q_OK;
  }
  if (!tmp_reserve(c, n + 1))
    return Q_ENOMEM;
  bool codes = build_on_codes(h);
  qv_t q = node_qv(h, nb, codes);
  for (uint32_t j = 0; j < n; j++)
    c->tmp[j] = (hitem_t){dist(h, &q, cur[1 + j]), cur[1 + j]};
  c->tmp[n] = (hitem_t){d, node};
  qsort(c->tmp, n + 1, sizeof *c->tmp, hitem_cmp);
  r[2] = (uint32_t)select_neighbours(h, c->tmp, n + 1, mmax, codes, r + 3);
  return Q_OK;
}

/* ---- add ------------------------------------------------------------------ */

static int random_level(hnsw_t *h) {
  h->rng = mix64(h->rng);
  double u = (double)((h->rng >> 11) + 1) * 0x1p-53; /* (0, 1] */
  double l = floor(-log(u) * h->ml);
  return l > MAX_LEVEL ? MAX_LEVEL : (int)l;
}

/* Checks a vector and writes its prepared form (normalised under cosine) to
 * out. */
static q_err_t prep_vector(const hnsw_t *h, const float *v, float *out, char *err,
                           size_t errlen) {
  double norm = 0.0;
  for (size_t i = 0; i < h->p.dim; i++) {
    if (!isfinite(v[i])) {
      snprintf(err, errlen, "vector[%zu] is not a finite number", i);
      return Q_EINVAL;
    }
    norm += (double)v[i] * v[i];
  }
  if (h->p.metric == HNSW_COSINE) {
    if (!(norm > 0.0)) {
      snprintf(err, errlen, "vector is all zeros (no direction for cosine)");
      return Q_EINVAL;
    }
    double inv = 1.0 / sqrt(norm);
    for (size_t i = 0; i < h->p.dim; i++)
      out[i] = (float)(v[i] * inv);
  } else {
    memcpy(out, v, h->p.dim * sizeof *out);
  }
  return Q_OK;
}

q_err_t hnsw_add(hnsw_t *h, uint64_t label, const float *vec, char *err, size_t errlen) {
  q_err_t rc = Q_OK;
  sctx_t *c = NULL;
  uint32_t *upper = NULL, *eps = NULL;
  float *pv = malloc(h->p.dim * sizeof *pv);
  if (!pv)
    return Q_ENOMEM;
  rc = prep_vector(h, vec, pv, err, errlen);
  if (rc) {
    free(pv);
    return rc;
  }

  pthread_mutex_lock(&h->wmu);
  uint64_t rng_before = h->rng;
  uint32_t old = map_get(h, label);
  uint32_t slot = h->nfree ? h->free_slots[h->nfree - 1] : (uint32_t)h->nslots;
  if (!h->nfree && h->nslots >= HNSW_MAX_NODES) {
    snprintf(err, errlen, "hnsw: the index is full (%zu nodes)", h->nslots);
    rc = Q_ERESOURCE;
    goto out;
  }
  if (slot >= h->cap || (h->mapn + 1) * 4 > h->mapcap * 3) {
    pthread_rwlock_wrlock(&h->rw);
    rc = grow_slots(h, (size_t)slot + 1, false);
    if (!rc)
      rc = map_reserve(h, h->mapn + 1);
    pthread_rwlock_unlock(&h->rw);
    if (rc)
      goto nomem;
  }
  /* The slot is FREE: no search reads it until it is published. */
  if (h->has_f32)
    memcpy(h->vecs + (size_t)slot * h->p.dim, pv, h->p.dim * sizeof *pv);
  if (h->has_i8)
    h->scales[slot] = quantise(pv, h->p.dim, h->codes + (size_t)slot * h->p.dim);

  int level = random_level(h);
  if (level > 0) {
    upper = calloc((size_t)level * (h->p.m + 1), sizeof *upper);
    if (!upper)
      goto nomem;
  }
  h->nupd = 0;
  bool linked = false; /* found a live node to link to */
  if (h->entry != NO_NODE) {
    c = sctx_get(h);
    eps = malloc(h->p.ef_construction * sizeof *eps);
    uint32_t *sel = malloc(h->p.m * sizeof *sel);
    if (!c || !eps || !sel) {
      free(sel);
      goto nomem;
    }
    bool codes = build_on_codes(h);
    qv_t q = node_qv(h, slot, codes);
    size_t ndist = 0;
    uint32_t cur = h->entry;
    float curd = dist(h, &q, cur);
    for (int l = h->max_level; l > level; l--)
      cur = greedy(h, &q, cur, &curd, l, &ndist);
    eps[0] = cur;
    size_t neps = 1;
    accept_t acc = {old, NULL, NULL};
    /* The new node's lists wait in upper/links until publication; its
     * layer-0 list goes through the update records. */
    for (int l = level < h->max_level ? level : h->max_level; l >= 0; l--) {
      search_layer(h, c, &q, eps, neps, h->p.ef_construction, l, &acc, &ndist);
      size_t nw = drain_sorted(c);
      if (c->oom) {
        free(sel);
        goto nomem;
      }
      if (!nw)
        continue; /* nothing live here: keep the entry points */
      linked = true;
      size_t nsel = select_neighbours(h, c->tmp, nw, h->p.m, codes, sel);
      for (size_t i = 0; i < nw; i++)
        eps[i] = c->tmp[i].id;
      neps = nw;
      uint32_t *mine;
      if (l == 0) {
        mine = upd_push(h, slot, 0);
        if (!mine) {
          free(sel);
          goto nomem;
        }
        mine += 2;
      } else {
        mine = upper + (size_t)(l - 1) * (h->p.m + 1);
      }
      mine[0] = (uint32_t)nsel;
      memcpy(mine + 1, sel, nsel * sizeof *sel);
      for (size_t i = 0; i < nsel; i++) {
        /* c->tmp is reused by link_back: find the distance first. */
        float d = dist(h, &q, sel[i]);
        rc = link_back(h, c, sel[i], slot, d, l);
        if (rc) {
          free(sel);
          goto nomem;
        }
      }
    }
    free(sel);
  }

  /* Publish. */
  pthread_rwlock_wrlock(&h->rw);
  h->labels[slot] = label;
  h->levels[slot] = (uint8_t)level;
  h->links0[(size_t)slot * h->stride0] = 0;
  h->upper[slot] = upper;
  h->upper_bytes += (size_t)level * (h->p.m + 1) * sizeof *upper;
  upper = NULL;
  upd_apply(h);
  if (old != NO_NODE) {
    h->state[old] = ST_DELETED;
    h->live--;
    h->deleted++;
  }
  map_put(h, label, slot);
  h->state[slot] = ST_LIVE;
  h->live++;
  if (h->nfree)
    h->nfree--;
  else
    h->nslots++;
  if (level > h->max_level || !linked) {
    /* A node that found nothing live to link to (first node, or every
     * reachable node deleted) must be the entry point, or no search would
     * reach it; the dead nodes above it are left to compaction. */
    h->max_level = level;
    h->entry = slot;
  }
  pthread_rwlock_unlock(&h->rw);
  goto out;

nomem:
  h->nupd = 0;
  h->rng = rng_before;
  snprintf(err, errlen, "hnsw: out of memory");
  rc = Q_ENOMEM;
out:
  sctx_put(h, c);
  pthread_mutex_unlock(&h->wmu);
  free(upper);
  free(eps);
  free(pv);
  return rc;
}

q_err_t hnsw_delete(hnsw_t *h, uint64_t label) {
  pthread_mutex_lock(&h->wmu);
  uint32_t id = map_get(h, label);
  if (id != NO_NODE) {
    pthread_rwlock_wrlock(&h->rw);
    h->state[id] = ST_DELETED;
    map_del(h, label);
    h->live--;
    h->deleted++;
    pthread_rwlock_unlock(&h->rw);
  }
  pthread_mutex_unlock(&h->wmu);
  return id == NO_NODE ? Q_ENOTFOUND : Q_OK;
}

bool hnsw_contains(hnsw_t *h, uint64_t label) {
  pthread_rwlock_rdlock(&h->rw);
  bool found = map_get(h, label) != NO_NODE;
  pthread_rwlock_unlock(&h->rw);
  return found;
}

/* ---- search --------------------------------------------------------------- */

/* Prepares q->vec in c: c->qf (normalised under cosine), and the int8 codes
 * when the index has them. *walk is what the graph walk compares with, *exact
 * what final scores come from. */
static q_err_t prep_query(const hnsw_t *h, const float *vec, sctx_t *c, qv_t *walk,
                          qv_t *exact) {
  char e[96];
  q_err_t rc = prep_vector(h, vec, c->qf, e, sizeof e);
  if (rc)
    return rc;
  qv_t f = {c->qf, NULL, 0.0f, false}, i8 = f;
  if (h->has_i8) {
    i8.s = quantise(c->qf, h->p.dim, c->qc);
    i8.c = c->qc;
    i8.codes = true;
  }
  *walk = h->has_i8 ? i8 : f;
  *exact = h->has_f32 ? f : i8;
  return Q_OK;
}

/* The k best of c->tmp[0..n) (sorted) into out as hits. */
static int emit(const hnsw_t *h, const sctx_t *c, size_t n, size_t k, hnsw_hit_t *out) {
  size_t m = n < k ? n : k;
  for (size_t i = 0; i < m; i++)
    out[i] = (hnsw_hit_t){h->labels[c->tmp[i].id], -c->tmp[i].d};
  return (int)m;
}

/* Every live, accepted node compared with q: exact (on the floats when the
 * index has them). The filter runs before the distance, so a selective
 * filter makes this cheap. */
static int exact_scan(const hnsw_t *h, sctx_t *c, const qv_t *q, const accept_t *acc,
                      size_t k, hnsw_hit_t *out, size_t *ndist) {
  c->res.n = 0;
  for (size_t i = 0; i < h->nslots; i++) {
    if (!accepted(h, acc, (uint32_t)i))
      continue;
    float d = dist(h, q, (uint32_t)i);
    (*ndist)++;
    if (c->res.n < k) {
      c->oom |= !heap_push(&c->res, d, (uint32_t)i);
    } else if (d < c->res.a[0].d) {
      heap_pop(&c->res);
      heap_push(&c->res, d, (uint32_t)i); /* cannot fail: the heap just shrank */
    }
  }
  return emit(h, c, drain_sorted(c), k, out);
}

static int graph_search(const hnsw_t *h, sctx_t *c, const qv_t *walk, const qv_t *exact,
                        const accept_t *acc, size_t ef, size_t k, hnsw_hit_t *out,
                        size_t *ndist) {
  uint32_t cur = h->entry;
  float curd = dist(h, walk, cur);
  (*ndist)++;
  for (int l = h->max_level; l > 0; l--)
    cur = greedy(h, walk, cur, &curd, l, ndist);
  search_layer(h, c, walk, &cur, 1, ef, 0, acc, ndist);
  size_t n = drain_sorted(c);
  if (walk->codes && !exact->codes) {
    /* Re-rank the ef candidates found on the codes with the floats. */
    for (size_t i = 0; i < n; i++)
      c->tmp[i].d = dist(h, exact, c->tmp[i].id);
    *ndist += n;
    qsort(c->tmp, n, sizeof *c->tmp, hitem_cmp);
  }
  return emit(h, c, n, k, out);
}

/* How many live items the filter passes, from a fixed sample of slots (the
 * same slots every time, so the plan is deterministic). */
static size_t estimate_filter(const hnsw_t *h, hnsw_filter_cb filter, void *ud) {
  size_t step = h->nslots / FILTER_SAMPLE ? h->nslots / FILTER_SAMPLE : 1;
  size_t seen = 0, pass = 0;
  for (size_t i = step / 2; i < h->nslots; i += step) {
    if (h->state[i] != ST_LIVE)
      continue;
    seen++;
    pass += filter(h->labels[i], ud);
  }
  if (!seen)
    return h->live;
  return (size_t)((double)pass / (double)seen * (double)h->live + 0.5);
}

/* Whether scanning the `pass` items a filter lets through costs less than
 * walking the graph for them. The walk must visit about ef / (pass / live)
 * nodes to find ef that pass, at some 25 distance computations for each
 * (measured: about 1,500 * live / pass at ef 64, a cache miss each); the scan
 * computes pass distances, streaming, plus a predicate call per slot, about
 * a thirty-second of a distance at dim 128. So the scan wins while
 *     pass^2 + pass * live / 32 <= 24 * ef * live,
 * about 5,000 items of 20,000, 11,000 of 100,000 and 27,000 of a million at
 * ef 64, which is where bench/hnsw_bench puts the crossover on this machine
 * (docs/benchmarks.md). exact_max replaces the model with a fixed count. */
static bool exact_cheaper(const hnsw_t *h, size_t pass, size_t ef) {
  if (h->p.exact_max)
    return pass <= h->p.exact_max;
  double p = (double)pass, n = (double)h->live;
  return p * p + p * n / 32.0 <= 24.0 * (double)ef * n;
}

int hnsw_search(hnsw_t *h, const hnsw_query_t *q, hnsw_hit_t *out,
                hnsw_search_info_t *info) {
  hnsw_search_info_t unused;
  if (!info)
    info = &unused;
  memset(info, 0, sizeof *info);
  if (!q || !q->vec || q->k < 1 || q->k > HNSW_MAX_K || q->ef > HNSW_MAX_EF)
    return Q_EINVAL;
  size_t ef = q->ef ? q->ef : h->p.ef_search;
  if (ef < q->k)
    ef = q->k;
  int n = 0;
  sctx_t *c = NULL;
  pthread_rwlock_rdlock(&h->rw);
  if (!h->live)
    goto unlock;
  c = sctx_get(h);
  if (!c) {
    n = Q_ENOMEM;
    goto unlock;
  }
  qv_t walk, exact;
  n = prep_query(h, q->vec, c, &walk, &exact);
  if (n)
    goto unlock;
  accept_t acc = {NO_NODE, q->filter, q->filter_ud};
  bool use_exact = q->plan == HNSW_PLAN_EXACT;
  if (q->plan == HNSW_PLAN_AUTO && q->filter) {
    info->estimate = q->filter_estimate ? q->filter_estimate
                                        : estimate_filter(h, q->filter, q->filter_ud);
    use_exact = exact_cheaper(h, info->estimate, ef);
  }
  info->exact = use_exact;
  if (use_exact)
    n = exact_scan(h, c, &exact, &acc, q->k, out, &info->distances);
  else
    n = graph_search(h, c, &walk, &exact, &acc, ef, q->k, out, &info->distances);
  if (c->oom)
    n = Q_ENOMEM;
unlock:
  pthread_rwlock_unlock(&h->rw);
  sctx_put(h, c);
  return n;
}

int hnsw_search_labels(hnsw_t *h, const float *vec, size_t k, const uint64_t *labels,
                       size_t nlabels, hnsw_hit_t *out) {
  if (!vec || k < 1 || k > HNSW_MAX_K || (nlabels && !labels))
    return Q_EINVAL;
  int n = 0;
  sctx_t *c = NULL;
  pthread_rwlock_rdlock(&h->rw);
  if (!h->live || !nlabels)
    goto unlock;
  c = sctx_get(h);
  if (!c) {
    n = Q_ENOMEM;
    goto unlock;
  }
  qv_t walk, exact;
  n = prep_query(h, vec, c, &walk, &exact);
  if (n)
    goto unlock;
  new_epoch(c);
  c->res.n = 0;
  for (size_t i = 0; i < nlabels; i++) {
    uint32_t id = map_get(h, labels[i]);
    if (id == NO_NODE || !visit(c, id)) /* absent, or listed twice */
      continue;
    float d = dist(h, &exact, id);
    if (c->res.n < k) {
      c->oom |= !heap_push(&c->res, d, id);
    } else if (d < c->res.a[0].d) {
      heap_pop(&c->res);
      heap_push(&c->res, d, id);
    }
  }
  n = emit(h, c, drain_sorted(c), k, out);
  if (c->oom)
    n = Q_ENOMEM;
unlock:
  pthread_rwlock_unlock(&h->rw);
  sctx_put(h, c);
  return n;
}

/* ---- compaction ----------------------------------------------------------- */

/* Prepares a new list for x on level if it links to a node that is not live:
 * the candidates are its live neighbours and the live neighbours of its dead
 * ones (and, while that gives fewer than the list holds, of their dead
 * neighbours in turn); the closest 2 * mmax go through the same heuristic as
 * an insert. When nothing live is within reach, x is linked as a fresh
 * insert on that level would be. Caller holds wmu. */
static q_err_t repair(hnsw_t *h, sctx_t *c, uint32_t x, int level, bool *changed) {
  size_t mmax = level ? h->p.m : h->m0;
  const uint32_t *l = links_at(h, x, level);
  uint32_t n = l[0];
  bool dirty = false;
  for (uint32_t j = 0; j < n && !dirty; j++)
    dirty = h->state[l[1 + j]] != ST_LIVE;
  *changed = dirty;
  if (!dirty)
    return Q_OK;
  bool codes = build_on_codes(h);
  qv_t q = node_qv(h, x, codes);
  uint32_t dead[2 * 2 * HNSW_MAX_M];
  size_t ndead = 0, maxdead = 2 * mmax, nc = 0;
  new_epoch(c);
  visit(c, x);
  if (!tmp_reserve(c, n + 2 * mmax * mmax))
    return Q_ENOMEM;
  for (uint32_t j = 0; j < n; j++) {
    uint32_t nb = l[1 + j];
    if (!visit(c, nb))
      continue;
    if (h->state[nb] == ST_LIVE)
      c->tmp[nc++] = (hitem_t){dist(h, &q, nb), nb};
    else if (ndead < maxdead)
      dead[ndead++] = nb;
  }
  size_t first_ring = ndead;
  for (size_t i = 0; i < ndead; i++) {
    if (i == first_ring && nc >= mmax)
      break; /* the dead neighbours' own dead neighbours only when short */
    const uint32_t *dl = links_at(h, dead[i], level);
    for (uint32_t j = 0; j < dl[0]; j++) {
      uint32_t z = dl[1 + j];
      if (!visit(c, z))
        continue;
      if (h->state[z] == ST_LIVE) {
        if (!tmp_reserve(c, nc + 1))
          return Q_ENOMEM;
        c->tmp[nc++] = (hitem_t){dist(h, &q, z), z};
      } else if (ndead < maxdead) {
        dead[ndead++] = z;
      }
    }
  }
  if (!nc && h->entry != NO_NODE && level <= h->max_level) {
    /* Cut off: search for neighbours from the top, as an insert would. */
    size_t ndist = 0;
    uint32_t cur = h->entry;
    float curd = dist(h, &q, cur);
    for (int lv = h->max_level; lv > level; lv--)
      cur = greedy(h, &q, cur, &curd, lv, &ndist);
    accept_t acc = {x, NULL, NULL};
    search_layer(h, c, &q, &cur, 1, h->p.ef_construction, level, &acc, &ndist);
    nc = drain_sorted(c);
    if (c->oom)
      return Q_ENOMEM;
  } else {
    qsort(c->tmp, nc, sizeof *c->tmp, hitem_cmp);
  }
  if (nc > 2 * mmax)
    nc = 2 * mmax;
  uint32_t *r = upd_push(h, x, level);
  if (!r)
    return Q_ENOMEM;
  r[2] = (uint32_t)select_neighbours(h, c->tmp, nc, mmax, codes, r + 3);
  return Q_OK;
}

/* Repairs nodes aff[0..n): prepares their lists, then publishes them. */
static q_err_t repair_batch(hnsw_t *h, const uint32_t *aff, size_t n, size_t *repaired) {
  q_err_t rc = Q_OK;
  pthread_mutex_lock(&h->wmu);
  sctx_t *c = sctx_get(h);
  if (!c) {
    rc = Q_ENOMEM;
    goto out;
  }
  h->nupd = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    bool any = false;
    for (int l = 0; l <= h->levels[aff[i]] && !rc; l++) {
      bool changed = false;
      rc = repair(h, c, aff[i], l, &changed);
      any |= changed;
    }
    *repaired += any;
  }
  if (rc) {
    h->nupd = 0;
    goto out;
  }
  pthread_rwlock_wrlock(&h->rw);
  upd_apply(h);
  pthread_rwlock_unlock(&h->rw);
out:
  sctx_put(h, c);
  pthread_mutex_unlock(&h->wmu);
  return rc;
}

q_err_t hnsw_compact(hnsw_t *h, hnsw_compact_stats_t *stats) {
  hnsw_compact_stats_t unused;
  if (!stats)
    stats = &unused;
  memset(stats, 0, sizeof *stats);
  q_err_t rc = Q_OK;
  uint32_t *aff = NULL;
  size_t naff = 0, npurge = 0;
  pthread_mutex_lock(&h->cmu);

  /* 1. The tombstones of this moment become PURGE (a previous compaction that
   * ran out of memory may have left some). */
  pthread_mutex_lock(&h->wmu);
  pthread_rwlock_wrlock(&h->rw);
  for (size_t i = 0; i < h->nslots; i++)
    if (h->state[i] == ST_DELETED || h->state[i] == ST_PURGE) {
      h->state[i] = ST_PURGE;
      npurge++;
    }
  pthread_rwlock_unlock(&h->rw);
  /* 2. Every other node that links to one of them. Later inserts never link
   * to a tombstone, so this set cannot grow while the batches run. */
  if (npurge)
    aff = malloc(h->nslots * sizeof *aff);
  if (npurge && !aff) {
    pthread_mutex_unlock(&h->wmu);
    rc = Q_ENOMEM;
    goto out;
  }
  for (size_t i = 0; npurge && i < h->nslots; i++) {
    if (h->state[i] == ST_FREE || h->state[i] == ST_PURGE)
      continue;
    bool hit = false;
    for (int l = 0; l <= h->levels[i] && !hit; l++) {
      const uint32_t *ls = links_at(h, (uint32_t)i, l);
      for (uint32_t j = 0; j < ls[0] && !hit; j++)
        hit = h->state[ls[1 + j]] == ST_PURGE;
    }
    if (hit)
      aff[naff++] = (uint32_t)i;
  }
  pthread_mutex_unlock(&h->wmu);
  if (!npurge)
    goto out;

  /* 3. Repair them in batches; adds, deletes and searches run in between. */
  for (size_t b = 0; b < naff; b += COMPACT_BATCH) {
    size_t n = naff - b < COMPACT_BATCH ? naff - b : COMPACT_BATCH;
    rc = repair_batch(h, aff + b, n, &stats->repaired);
    if (rc)
      goto out;
  }

  /* 4. Nothing links to the PURGE nodes any more: free their slots. */
  pthread_mutex_lock(&h->wmu);
  uint32_t entry = h->entry;
  int max_level = h->max_level;
  if (entry != NO_NODE && h->state[entry] == ST_PURGE) {
    /* The highest remaining node becomes the entry point (a live one when
     * there is a choice). */
    entry = NO_NODE;
    max_level = -1;
    for (size_t i = 0; i < h->nslots; i++) {
      uint8_t s = h->state[i];
      if (s == ST_FREE || s == ST_PURGE)
        continue;
      int lv = h->levels[i];
      if (lv > max_level || (lv == max_level && s == ST_LIVE && entry != NO_NODE &&
                             h->state[entry] != ST_LIVE)) {
        entry = (uint32_t)i;
        max_level = lv;
      }
    }
  }
  pthread_rwlock_wrlock(&h->rw);
  if (h->nfree + npurge > h->capfree) {
    uint32_t *fs = realloc(h->free_slots, (h->nfree + npurge) * sizeof *fs);
    if (!fs) {
      pthread_rwlock_unlock(&h->rw);
      pthread_mutex_unlock(&h->wmu);
      rc = Q_ENOMEM;
      goto out;
    }
    h->free_slots = fs;
    h->capfree = h->nfree + npurge;
  }
  for (size_t i = 0; i < h->nslots; i++) {
    if (h->state[i] != ST_PURGE)
      continue;
    h->upper_bytes -= (size_t)h->levels[i] * (h->p.m + 1) * sizeof(uint32_t);
    free(h->upper[i]);
    h->upper[i] = NULL;
    h->levels[i] = 0;
    h->links0[i * h->stride0] = 0;
    h->state[i] = ST_FREE;
    h->free_slots[h->nfree++] = (uint32_t)i;
    h->deleted--;
    stats->purged++;
  }
  h->entry = entry;
  h->max_level = max_level;
  pthread_rwlock_unlock(&h->rw);
  pthread_mutex_unlock(&h->wmu);
out:
  pthread_mutex_unlock(&h->cmu);
  free(aff);
  return rc;
}

bool hnsw_compaction_due(hnsw_t *h) {
  pthread_rwlock_rdlock(&h->rw);
  bool due = h->deleted >= 64 && h->deleted * 10 > h->live + h->deleted;
  pthread_rwlock_unlock(&h->rw);
  return due;
}

/* ---- stats ---------------------------------------------------------------- */

static size_t bytes_per_slot(const hnsw_t *h) {
  size_t b = sizeof(uint64_t) + 2 + h->stride0 * sizeof(uint32_t) + sizeof(uint32_t *);
  if (h->has_f32)
    b += h->p.dim * sizeof(float);
  if (h->has_i8)
    b += h->p.dim + sizeof(float);
  return b;
}

void hnsw_stats(hnsw_t *h, hnsw_stats_t *out) {
  pthread_rwlock_rdlock(&h->rw);
  out->live = h->live;
  out->deleted = h->deleted;
  out->free = h->nfree;
  out->slots = h->nslots;
  out->bytes = h->cap * bytes_per_slot(h) + h->upper_bytes + h->mapcap * sizeof(lment_t) +
               h->capfree * sizeof(uint32_t);
  out->max_level = h->max_level;
  out->dim = h->p.dim;
  pthread_rwlock_unlock(&h->rw);
}

/* ---- snapshots ------------------------------------------------------------ */

/* File layout, version 1, every integer little-endian:
 *   header, HEADER_BYTES:
 *     0 magic "QHNSWIDX"     8 u32 version        12 u32 header bytes
 *    16 u32 dim             20 u32 metric        24 u32 storage
 *    28 u32 m               32 u32 ef_construction 36 u32 ef_search
 *    40 u32 exact_max       44 u32 entry (or ~0) 48 i32 max_level
 *    52 u32 zero            56 u64 slots         64 u64 live
 *    72 u64 deleted         80 u64 free          88 u64 seed
 *    96 u64 rng state     104 u64 caller's tag  112..127 zero
 *   labels   u64 per slot
 *   levels   u8 per slot
 *   states   u8 per slot (0 free, 1 live, 2 deleted; 3, a tombstone that a
 *            running compaction was unlinking, loads as 2)
 *   layer 0  (2m + 1) u32 per slot: a count, then the ids
 *   upper    for each slot with level > 0, level * (m + 1) u32
 *   free     u32 per free slot, in reuse order
 *   floats   dim f32 per slot (storage float, int8_rerank)
 *   codes    dim i8 per slot, then a f32 scale per slot (int8, int8_rerank)
 *   checksum 32-byte BLAKE2b (crypto_generichash) of everything above */
#define SNAP_MAGIC "QHNSWIDX"
#define SNAP_VERSION 1
#define HEADER_BYTES 128
#define SUM_BYTES 32

static void put32(unsigned char *b, uint32_t v) {
  memcpy(b, &v, 4);
}

static void put64(unsigned char *b, uint64_t v) {
  memcpy(b, &v, 8);
}

static uint32_t get32(const unsigned char *b) {
  uint32_t v;
  memcpy(&v, b, 4);
  return v;
}

static uint64_t get64(const unsigned char *b) {
  uint64_t v;
  memcpy(&v, b, 8);
  return v;
}

static bool wr(FILE *f, crypto_generichash_state *st, const void *p, size_t n) {
  if (!n)
    return true;
  crypto_generichash_update(st, p, n);
  return fwrite(p, 1, n, f) == n;
}

q_err_t hnsw_save(hnsw_t *h, const char *path, uint64_t tag, char *err, size_t errlen) {
  char tmp[4096];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
    snprintf(err, errlen, "snapshot path too long");
    return Q_EINVAL;
  }
  q_err_t rc = Q_OK;
  pthread_mutex_lock(&h->wmu);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    pthread_mutex_unlock(&h->wmu);
    return Q_EIO;
  }
  setvbuf(f, NULL, _IOFBF, 1 << 20);
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, SUM_BYTES);
  unsigned char hd[HEADER_BYTES] = {0};
  memcpy(hd, SNAP_MAGIC, 8);
  put32(hd + 8, SNAP_VERSION);
  put32(hd + 12, HEADER_BYTES);
  put32(hd + 16, (uint32_t)h->p.dim);
  put32(hd + 20, (uint32_t)h->p.metric);
  put32(hd + 24, (uint32_t)h->p.storage);
  put32(hd + 28, h->p.m);
  put32(hd + 32, h->p.ef_construction);
  put32(hd + 36, h->p.ef_search);
  put32(hd + 40, h->p.exact_max);
  put32(hd + 44, h->entry);
  put32(hd + 48, (uint32_t)h->max_level);
  put64(hd + 56, h->nslots);
  put64(hd + 64, h->live);
  put64(hd + 72, h->deleted);
  put64(hd + 80, h->nfree);
  put64(hd + 88, h->p.seed);
  put64(hd + 96, h->rng);
  put64(hd + 104, tag);
  size_t n = h->nslots, dim = h->p.dim;
  bool ok = wr(f, &st, hd, sizeof hd) && wr(f, &st, h->labels, n * sizeof *h->labels) &&
            wr(f, &st, h->levels, n) && wr(f, &st, h->state, n) &&
            wr(f, &st, h->links0, n * h->stride0 * sizeof *h->links0);
  for (size_t i = 0; ok && i < n; i++)
    if (h->levels[i])
      ok =
          wr(f, &st, h->upper[i], (size_t)h->levels[i] * (h->p.m + 1) * sizeof(uint32_t));
  ok = ok && wr(f, &st, h->free_slots, h->nfree * sizeof *h->free_slots);
  if (h->has_f32)
    ok = ok && wr(f, &st, h->vecs, n * dim * sizeof *h->vecs);
  if (h->has_i8)
    ok = ok && wr(f, &st, h->codes, n * dim) &&
         wr(f, &st, h->scales, n * sizeof *h->scales);
  unsigned char sum[SUM_BYTES];
  crypto_generichash_final(&st, sum, sizeof sum);
  ok = ok && fwrite(sum, 1, sizeof sum, f) == sizeof sum;
  ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
  int saved = errno;
  if (fclose(f) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (!ok) {
    snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(saved));
    unlink(tmp);
    rc = Q_EIO;
    goto out;
  }
  if (rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    unlink(tmp);
    rc = Q_EIO;
    goto out;
  }
  /* Make the rename itself durable. */
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *(slash == dir ? slash + 1 : slash) = '\0';
  else
    snprintf(dir, sizeof dir, ".");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
out:
  pthread_mutex_unlock(&h->wmu);
  return rc;
}

/* Reading side: every read goes through the checksum. */
typedef struct reader {
  FILE *f;
  crypto_generichash_state st;
  const char *path;
  char *err;
  size_t errlen;
} reader_t;

static q_err_t rd(reader_t *r, void *p, size_t n) {
  if (!n)
    return Q_OK;
  if (fread(p, 1, n, r->f) != n) {
    if (ferror(r->f)) {
      snprintf(r->err, r->errlen, "snapshot %s: read failed: %s", r->path,
               strerror(errno));
      return Q_EIO;
    }
    snprintf(r->err, r->errlen, "snapshot %s: truncated (the file ends early)", r->path);
    return Q_EINVAL;
  }
  crypto_generichash_update(&r->st, p, n);
  return Q_OK;
}

/* Checks the graph read from a snapshot (whose checksum matched, so this
 * catches files written by a buggy or hostile writer rather than bit rot)
 * and builds the label map and the free list's invariants. */
static q_err_t check_graph(hnsw_t *h, size_t live, size_t deleted, const char *path,
                           char *err, size_t errlen) {
#define BAD(...)                                                                         \
  do {                                                                                   \
    int o_ = snprintf(err, errlen, "snapshot %s: ", path);                               \
    if (o_ >= 0 && (size_t)o_ < errlen)                                                  \
      snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__);                              \
    return Q_EINVAL;                                                                     \
  } while (0)
  size_t nl = 0, nd = 0, nf = 0;
  for (size_t i = 0; i < h->nslots; i++) {
    uint8_t s = h->state[i];
    if (s == ST_PURGE)
      s = h->state[i] = ST_DELETED;
    if (s > ST_DELETED)
      BAD("slot %zu has an unknown state %u", i, s);
    if (h->levels[i] > MAX_LEVEL)
      BAD("slot %zu has level %u (at most %d)", i, h->levels[i], MAX_LEVEL);
    if (s == ST_FREE) {
      nf++;
      if (h->levels[i] || h->links0[i * h->stride0])
        BAD("free slot %zu has links", i);
      continue;
    }
    s == ST_LIVE ? nl++ : nd++;
    for (int l = 0; l <= h->levels[i]; l++) {
      const uint32_t *ls = links_at(h, (uint32_t)i, l);
      if (ls[0] > (l ? h->p.m : h->m0))
        BAD("slot %zu has %u links on layer %d", i, ls[0], l);
      for (uint32_t j = 0; j < ls[0]; j++)
        if (ls[1 + j] >= h->nslots || h->state[ls[1 + j]] == ST_FREE ||
            h->levels[ls[1 + j]] < l)
          BAD("slot %zu links to %u, which is not a node of layer %d", i, ls[1 + j], l);
    }
    if (s == ST_LIVE) {
      if (nl > live) /* the map has room for the header's count only */
        BAD("more live slots than the header's %zu", live);
      if (map_get(h, h->labels[i]) != NO_NODE)
        BAD("label %llu is live twice", (unsigned long long)h->labels[i]);
      map_put(h, h->labels[i], (uint32_t)i);
    }
  }
  if (nl != live || nd != deleted || nf != h->nfree)
    BAD("counts in the header (%zu live, %zu deleted, %zu free) differ from the slots "
        "(%zu, %zu, %zu)",
        live, deleted, h->nfree, nl, nd, nf);
  for (size_t i = 0; i < h->nfree; i++) {
    uint32_t s = h->free_slots[i];
    if (s >= h->nslots || h->state[s] != ST_FREE)
      BAD("free list names slot %u, which is not free", s);
    h->state[s] = ST_PURGE; /* marks it seen; restored below */
  }
  for (size_t i = 0; i < h->nfree; i++)
    h->state[h->free_slots[i]] = ST_FREE;
  for (size_t i = 0; i < h->nslots; i++)
    if (h->state[i] == ST_PURGE)
      BAD("free list names slot %zu twice", i);
  if (nl + nd == 0 ? h->entry != NO_NODE || h->max_level != -1
                   : h->entry >= h->nslots || h->state[h->entry] == ST_FREE ||
                         h->levels[h->entry] != h->max_level)
    BAD("entry point %u at level %d is not a node of that level", h->entry, h->max_level);
  return Q_OK;
#undef BAD
}

q_err_t hnsw_load(const char *path, bool portable_kernels, hnsw_t **out, uint64_t *tag,
                  char *err, size_t errlen) {
  *out = NULL;
  hnsw_t *h = NULL;
  q_err_t rc = Q_OK;
  reader_t r = {.path = path, .err = err, .errlen = errlen};
  r.f = fopen(path, "rb");
  if (!r.f) {
    snprintf(err, errlen, "cannot open snapshot %s: %s", path, strerror(errno));
    return Q_EIO;
  }
  setvbuf(r.f, NULL, _IOFBF, 1 << 20);
  struct stat sb;
  if (fstat(fileno(r.f), &sb) != 0) {
    snprintf(err, errlen, "cannot stat snapshot %s: %s", path, strerror(errno));
    fclose(r.f);
    return Q_EIO;
  }
  crypto_generichash_init(&r.st, NULL, 0, SUM_BYTES);
  unsigned char hd[HEADER_BYTES];
  rc = rd(&r, hd, sizeof hd);
  if (rc)
    goto fail;
  rc = Q_EINVAL;
  if (memcmp(hd, SNAP_MAGIC, 8) != 0) {
    snprintf(err, errlen, "%s is not an HNSW snapshot (bad magic)", path);
    goto fail;
  }
  if (get32(hd + 8) != SNAP_VERSION || get32(hd + 12) != HEADER_BYTES) {
    snprintf(err, errlen, "snapshot %s has version %u; this build reads version %d", path,
             get32(hd + 8), SNAP_VERSION);
    goto fail;
  }
  hnsw_params_t p = {
      .dim = get32(hd + 16),
      .metric = (hnsw_metric_t)get32(hd + 20),
      .storage = (hnsw_storage_t)get32(hd + 24),
      .m = get32(hd + 28),
      .ef_construction = get32(hd + 32),
      .ef_search = get32(hd + 36),
      .exact_max = get32(hd + 40),
      .seed = get64(hd + 88),
      .portable_kernels = portable_kernels,
  };
  char perr[160];
  if (check_params(&p, perr, sizeof perr) || !p.ef_construction || !p.ef_search ||
      !p.seed) {
    snprintf(err, errlen, "snapshot %s: bad parameters in the header", path);
    goto fail;
  }
  uint64_t nslots = get64(hd + 56), live = get64(hd + 64), deleted = get64(hd + 72),
           nfree = get64(hd + 80);
  /* Bound the allocations by the file's size before trusting the header. */
  uint64_t per_slot = 8 + 2 + (2 * (uint64_t)p.m + 1) * 4 +
                      (p.storage != HNSW_INT8 ? p.dim * 4 : 0) +
                      (p.storage != HNSW_FLOAT ? p.dim + 4 : 0);
  uint64_t body = (uint64_t)sb.st_size - HEADER_BYTES - SUM_BYTES;
  if ((uint64_t)sb.st_size < HEADER_BYTES + SUM_BYTES || nslots > HNSW_MAX_NODES ||
      nslots * per_slot > body || nfree > nslots) {
    snprintf(
        err, errlen,
        "snapshot %s: truncated or inconsistent (%llu slots do not fit in %lld bytes)",
        path, (unsigned long long)nslots, (long long)sb.st_size);
    goto fail;
  }
  rc = hnsw_new(&p, &h, err, errlen);
  if (rc)
    goto fail;
  pthread_rwlock_wrlock(&h->rw);
  rc = grow_slots(h, nslots, true);
  if (!rc)
    rc = map_reserve(h, live);
  pthread_rwlock_unlock(&h->rw);
  if (rc) {
    snprintf(err, errlen, "snapshot %s: out of memory", path);
    goto fail;
  }
  h->nslots = nslots;
  h->entry = get32(hd + 44);
  h->max_level = (int32_t)get32(hd + 48);
  h->rng = get64(hd + 96);
  size_t n = nslots, dim = p.dim;
  if ((rc = rd(&r, h->labels, n * sizeof *h->labels)) || (rc = rd(&r, h->levels, n)) ||
      (rc = rd(&r, h->state, n)) ||
      (rc = rd(&r, h->links0, n * h->stride0 * sizeof *h->links0)))
    goto fail;
  for (size_t i = 0; i < n; i++) {
    if (!h->levels[i])
      continue;
    if (h->levels[i] > MAX_LEVEL) {
      snprintf(err, errlen, "snapshot %s: slot %zu has level %u", path, i, h->levels[i]);
      rc = Q_EINVAL;
      goto fail;
    }
    size_t nb = (size_t)h->levels[i] * (h->p.m + 1) * sizeof(uint32_t);
    if (!(h->upper[i] = malloc(nb))) {
      rc = Q_ENOMEM;
      snprintf(err, errlen, "snapshot %s: out of memory", path);
      goto fail;
    }
    h->upper_bytes += nb;
    if ((rc = rd(&r, h->upper[i], nb)))
      goto fail;
  }
  if (nfree) {
    h->free_slots = malloc(nfree * sizeof *h->free_slots);
    if (!h->free_slots) {
      rc = Q_ENOMEM;
      snprintf(err, errlen, "snapshot %s: out of memory", path);
      goto fail;
    }
    h->nfree = h->capfree = nfree;
    if ((rc = rd(&r, h->free_slots, nfree * sizeof *h->free_slots)))
      goto fail;
  }
  if (h->has_f32 && (rc = rd(&r, h->vecs, n * dim * sizeof *h->vecs)))
    goto fail;
  if (h->has_i8 && ((rc = rd(&r, h->codes, n * dim)) ||
                    (rc = rd(&r, h->scales, n * sizeof *h->scales))))
    goto fail;
  unsigned char want[SUM_BYTES], got[SUM_BYTES];
  crypto_generichash_final(&r.st, want, sizeof want);
  if (fread(got, 1, sizeof got, r.f) != sizeof got) {
    snprintf(err, errlen, "snapshot %s: truncated (no checksum)", path);
    rc = Q_EINVAL;
    goto fail;
  }
  if (sodium_memcmp(want, got, sizeof want) != 0) {
    snprintf(err, errlen, "snapshot %s: checksum mismatch (the file is corrupt)", path);
    rc = Q_EINVAL;
    goto fail;
  }
  if (fgetc(r.f) != EOF) {
    snprintf(err, errlen, "snapshot %s: unexpected bytes after the checksum", path);
    rc = Q_EINVAL;
    goto fail;
  }
  h->live = live;
  h->deleted = deleted;
  rc = check_graph(h, live, deleted, path, err, errlen);
  if (rc)
    goto fail;
  fclose(r.f);
  *out = h;
  if (tag)
    *tag = get64(hd + 104);
  return Q_OK;
fail:
  fclose(r.f);
  hnsw_free(h);
  return rc;
}
