/* index.c - per-tenant BM25F inverted index plus an HNSW graph (see index.h).
 *
 * Layout of a shard (one per tenant):
 *  - slots[]: the chunks, addressed by slot number. Postings refer to slots.
 *    lens[] holds each slot's field lengths apart, densely, for the search
 *    loop.
 *  - terms[]: the term dictionary; each term has its live document frequency
 *    and its postings (slot, tf in text, tf in title), block-compressed
 *    (postings.h). A hash table maps term text to term number.
 *  - docs[]: each document's live chunk slots (for replace_doc_id), with a
 *    hash table from doc_id; another maps chunk_id to slot.
 *
 * Retiring a chunk is immediate for everything a search reads (slot
 * emptied, df, N and total length updated, maps updated), but its postings
 * stay behind as tombstones: searches skip postings whose slot is empty. A
 * retired slot is not reused until compaction has removed its postings, so a
 * tombstone can never be mistaken for a newer chunk. Compaction runs after
 * an upsert once a quarter of all postings are dead; it also frees the terms
 * no live chunk uses.
 *
 * Scoring: BM25F with one k1 and b (Lucene's idf, the classic (k1 + 1)
 * numerator), the title's occurrences weighted by w in tf and length:
 *   tf         = tf_text + w * tf_title,  dl = len_text + w * len_title
 *   idf(t)     = ln(1 + (N - df + 0.5) / (df + 0.5))
 *   score(d,q) = sum over distinct query terms t in d of
 *                idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
 * with N the tenant's live chunks, lengths counted after stopword removal
 * and avgdl the mean dl. Duplicate query terms count once. The top k comes
 * from block-max MaxScore (maxscore() below), which gives exactly what an
 * exhaustive evaluation gives.
 *
 * Dense: each shard's vectors live in one HNSW graph (engine/hnsw.h; cosine, or inner
 * product), labelled by the chunk's stable sequence number (retriever_chunks.seq); a
 * label map finds the chunk of a label. A shard with at most exact_max
 * vectors is scanned exactly (HNSW_PLAN_EXACT), a larger one walked. A
 * retired chunk's vector is deleted from the graph (a tombstone the walk
 * still passes through) and unlinked later by index_compact_vectors. Graph
 * inserts are the slow part of an upsert, so they run after the write lock
 * is released, with only the upsert mutex held: searches go on meanwhile,
 * and a label the map no longer knows is skipped, so a search never returns
 * a retired chunk. */
#include "index.h"

#include "engine/hnsw.h"
#include "postings.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/text.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- allocation: out of memory aborts (see index.h) ---------------------- */

static void oom(void) {
  q_log_error("retriever index: out of memory; aborting (the index is rebuilt "
              "from PostgreSQL at restart)",
              NULL);
  abort();
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    oom();
  return p;
}

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p)
    oom();
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static char *xstrdup(const char *s) {
  return xstrndup(s ? s : "", s ? strlen(s) : 0);
}

/* Makes room for need elements in *arr (capacity *cap, elements of sz). */
static void grow(void *arr, size_t *cap, size_t need, size_t sz) {
  if (need <= *cap)
    return;
  size_t c = *cap ? *cap : 8;
  while (c < need)
    c *= 2;
  void *p = realloc(*(void **)arr, c * sz);
  if (!p)
    oom();
  *(void **)arr = p;
  *cap = c;
}

/* ---- hashing ------------------------------------------------------------ */

/* SipHash with a per-index random key, so crafted documents cannot aim for
 * collisions in the term dictionary. */
static uint64_t hash_bytes(const unsigned char *key, const char *s, size_t n) {
  unsigned char out[crypto_shorthash_BYTES];
  crypto_shorthash(out, (const unsigned char *)s, n, key);
  uint64_t h;
  memcpy(&h, out, sizeof h);
  return h;
}

/* An open-addressing (linear probing) table from strings to uint32 values.
 * The strings live in the objects the values name; key_fn fetches them. */
typedef struct strmap_ent {
  uint64_t hash;
  uint32_t val1; /* value + 1; 0 means empty */
} strmap_ent_t;

typedef struct strmap {
  strmap_ent_t *ents;
  size_t cap; /* power of two */
  size_t n;
} strmap_t;

typedef const char *(*key_fn)(const void *ctx, uint32_t val, size_t *len);

/* Position of key in the table, or of the empty entry where it would go. */
static size_t strmap_find(const strmap_t *m, const char *key, size_t len, uint64_t h,
                          key_fn kf, const void *ctx) {
  size_t mask = m->cap - 1, i = h & mask;
  for (;;) {
    const strmap_ent_t *e = &m->ents[i];
    if (!e->val1)
      return i;
    if (e->hash == h) {
      size_t klen;
      const char *k = kf(ctx, e->val1 - 1, &klen);
      if (klen == len && memcmp(k, key, len) == 0)
        return i;
    }
    i = (i + 1) & mask;
  }
}

/* What strmap_get returns for a key it does not hold. */
#define STRMAP_NONE (-1)

/* The value stored for key, or STRMAP_NONE. */
static int64_t strmap_get(const strmap_t *m, const char *key, size_t len, uint64_t h,
                          key_fn kf, const void *ctx) {
  if (!m->cap)
    return STRMAP_NONE;
  size_t i = strmap_find(m, key, len, h, kf, ctx);
  return m->ents[i].val1 ? (int64_t)m->ents[i].val1 - 1 : STRMAP_NONE;
}

static void strmap_put_new(strmap_t *m, uint64_t h, uint32_t val);

static void strmap_rehash(strmap_t *m, size_t cap) {
  strmap_t old = *m;
  m->ents = xcalloc(cap, sizeof *m->ents);
  m->cap = cap;
  m->n = 0;
  for (size_t i = 0; i < old.cap; i++)
    if (old.ents[i].val1)
      strmap_put_new(m, old.ents[i].hash, old.ents[i].val1 - 1);
  free(old.ents);
}

/* Inserts a key known to be absent (its hash h) with value val. */
static void strmap_put_new(strmap_t *m, uint64_t h, uint32_t val) {
  if ((m->n + 1) * 4 > m->cap * 3) /* keep the load under 3/4 */
    strmap_rehash(m, m->cap ? m->cap * 2 : 16);
  size_t mask = m->cap - 1, i = h & mask;
  while (m->ents[i].val1)
    i = (i + 1) & mask;
  m->ents[i].hash = h;
  m->ents[i].val1 = val + 1;
  m->n++;
}

/* Removes the entry holding val for key (backward-shift deletion, so no
 * tombstones are needed in the table). */
static void strmap_del(strmap_t *m, const char *key, size_t len, uint64_t h, key_fn kf,
                       const void *ctx) {
  if (!m->cap)
    return;
  size_t mask = m->cap - 1;
  size_t i = strmap_find(m, key, len, h, kf, ctx);
  if (!m->ents[i].val1)
    return;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!m->ents[j].val1)
      break;
    size_t home = m->ents[j].hash & mask;
    /* Move j back into the hole at i unless its home lies in (i, j]. */
    int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      m->ents[i] = m->ents[j];
      i = j;
    }
  }
  m->ents[i].val1 = 0;
  m->n--;
}

/* ---- the shard ---------------------------------------------------------- */

typedef struct term {
  char *text; /* NULL when the term number is free */
  uint32_t len;
  uint32_t df;     /* live chunks containing the term */
  postings_t post; /* (slot, tf in text, tf in title), compressed */
} term_t;

typedef struct chunk {
  /* Point into the chunk's own allocation, after the struct. */
  char *chunk_id, *doc_id, *title, *text;
  int32_t version, ordinal, page;
  engine_offsets_t at;          /* carried for search hits */
  uint32_t len_text, len_title; /* kept terms of each field */
  uint32_t nterms;              /* distinct terms */
  uint8_t *terms; /* their numbers, for df bookkeeping at retirement: ascending,
                     as varints of their differences */
  float *vec;     /* a copy of the vector until insert() hands it to the
                     graph's queue; NULL afterwards */
  size_t dim;     /* its dimension, 0 without a vector */
  int has_vec;    /* its vector is in shard->hnsw under label */
  uint64_t label; /* stable number: the vector's label in the graph */
  uint32_t doc;   /* number of its document */
} chunk_t;

typedef struct doc {
  char *doc_id; /* NULL when the document number is free */
  uint32_t *slots;
  size_t n, cap;
  /* What filters look at, kept once per document rather than per chunk
   * (the chunk's title is the document's): set by the latest chunk
   * inserted, since every chunk of a version carries the same. */
  char *content_type; /* NULL: unknown */
  char *author;       /* NULL: none */
  char *language;     /* NULL: unknown */
  int64_t created_at; /* unix seconds, 0 unknown */
  json_t *meta;       /* user metadata object, NULL none */
} doc_t;

/* A slot's field lengths, kept apart from its chunk in one dense array so
 * the search loop, which reads them for every candidate in slot order, walks
 * memory in order instead of chasing a pointer per candidate. A free or
 * retired slot has text == DEAD_LEN. */
typedef struct slotlen {
  uint32_t text, title;
} slotlen_t;

#define DEAD_LEN UINT32_MAX

typedef struct shard {
  char *tenant;
  chunk_t **slots;
  size_t nslots, capslots;
  slotlen_t *lens; /* per slot, capacity caplens */
  size_t caplens;
  uint32_t *free_slots, *dead_slots;
  size_t nfree, capfree, ndead, capdead;

  term_t *terms;
  size_t nterms, capterms; /* nterms: high-water mark of term numbers */
  uint32_t *free_terms;
  size_t nfree_terms, capfree_terms;
  size_t live_terms; /* terms with df > 0 */

  doc_t *docs;
  size_t ndocs, capdocs;
  uint32_t *free_docs;
  size_t nfree_docs, capfree_docs;
  size_t live_docs;

  strmap_t term_map, chunk_map, doc_map;
  size_t live;                      /* live chunks: N */
  uint64_t total_text, total_title; /* sums of live chunks' field lengths */
  uint64_t npostings, dead_postings;
  size_t dim;         /* dimension of the vectors here, 0 when there are none */
  size_t nvec;        /* live chunks with a vector */
  hnsw_t *hnsw;       /* their graph (NULL until the first vector); replaced
                         only under the write lock and the upsert mutex */
  strmap_t label_map; /* label (8 bytes) -> slot of the live chunks with a
                         vector */
} shard_t;

struct index {
  pthread_rwlock_t lock;
  pthread_mutex_t wmu; /* one upsert at a time, graph inserts included */
  unsigned char key[crypto_shorthash_KEYBYTES];
  size_t fixed_dim;
  index_params_t params;
  double k1, b, wtitle; /* BM25F */
  uint64_t next_label;  /* labels for chunks that come without a seq */
  /* Graphs replaced when a shard's vectors changed dimension: freed with the
   * index, since a background compaction may still be working on one. */
  hnsw_t **old_graphs;
  size_t nold, capold;
  shard_t **shards;
  size_t nshards, capshards;
  strmap_t shard_map;
  int64_t chunks; /* live chunks over all shards, read without the lock */
};

static const char *label_key(const void *ctx, uint32_t v, size_t *len) {
  const chunk_t *c = ((const shard_t *)ctx)->slots[v];
  *len = sizeof c->label;
  return (const char *)&c->label;
}

/* The slot of the live chunk whose vector has label, or STRMAP_NONE. */
static int64_t label_slot(const index_t *idx, const shard_t *s, uint64_t label);

static const char *term_key(const void *ctx, uint32_t v, size_t *len) {
  const term_t *t = &((const shard_t *)ctx)->terms[v];
  *len = t->len;
  return t->text;
}

static const char *chunk_key(const void *ctx, uint32_t v, size_t *len) {
  const chunk_t *c = ((const shard_t *)ctx)->slots[v];
  *len = strlen(c->chunk_id);
  return c->chunk_id;
}

static const char *doc_key(const void *ctx, uint32_t v, size_t *len) {
  const doc_t *d = &((const shard_t *)ctx)->docs[v];
  *len = strlen(d->doc_id);
  return d->doc_id;
}

static const char *shard_key(const void *ctx, uint32_t v, size_t *len) {
  const shard_t *s = ((const index_t *)ctx)->shards[v];
  *len = strlen(s->tenant);
  return s->tenant;
}

static shard_t *find_shard(const index_t *idx, const char *tenant) {
  size_t len = strlen(tenant);
  int64_t v = strmap_get(&idx->shard_map, tenant, len, hash_bytes(idx->key, tenant, len),
                         shard_key, idx);
  return v < 0 ? NULL : idx->shards[v];
}

static shard_t *get_shard(index_t *idx, const char *tenant) {
  shard_t *s = find_shard(idx, tenant);
  if (s)
    return s;
  s = xcalloc(1, sizeof *s);
  s->tenant = xstrdup(tenant);
  grow(&idx->shards, &idx->capshards, idx->nshards + 1, sizeof *idx->shards);
  idx->shards[idx->nshards] = s;
  size_t len = strlen(tenant);
  strmap_put_new(&idx->shard_map, hash_bytes(idx->key, tenant, len),
                 (uint32_t)idx->nshards);
  idx->nshards++;
  return s;
}

/* postings.h callbacks: a slot's field lengths, whether it is live. */
static void slot_lens(const void *ctx, uint32_t slot, uint32_t *len_text,
                      uint32_t *len_title) {
  const shard_t *s = ctx;
  bool live = slot < s->nslots && s->lens[slot].text != DEAD_LEN;
  *len_text = live ? s->lens[slot].text : 0;
  *len_title = live ? s->lens[slot].title : 0;
}

static bool slot_live(const void *ctx, uint32_t slot) {
  const shard_t *s = ctx;
  return slot < s->nslots && s->slots[slot];
}

static void chunk_free(chunk_t *c) {
  if (!c)
    return;
  free(c->terms);
  free(c->vec);
  free(c);
}

/* A new chunk with copies of its strings in the same allocation (one
 * malloc instead of five: the strings are never changed). */
static chunk_t *chunk_new(const char *chunk_id, const char *doc_id, const char *title,
                          const char *text) {
  const char *src[4] = {chunk_id, doc_id, title, text};
  size_t len[4], total = 0;
  for (int i = 0; i < 4; i++) {
    len[i] = src[i] ? strlen(src[i]) : 0;
    total += len[i] + 1;
  }
  chunk_t *c = xmalloc(sizeof *c + total);
  memset(c, 0, sizeof *c);
  char *at = (char *)(c + 1);
  char **dst[4] = {&c->chunk_id, &c->doc_id, &c->title, &c->text};
  for (int i = 0; i < 4; i++) {
    *dst[i] = at;
    if (len[i])
      memcpy(at, src[i], len[i]);
    at[len[i]] = '\0';
    at += len[i] + 1;
  }
  return c;
}

/* Encodes ids[0..n) (sorted ascending) as varints of their differences
 * into a new exact-size array. */
static uint8_t *encode_ids(const uint32_t *ids, size_t n) {
  /* Sized exactly first: shrinking a larger buffer would leave a hole
   * behind every chunk's list in the heap. */
  size_t size = 0;
  for (size_t i = 0; i < n; i++)
    for (uint32_t v = i ? ids[i] - ids[i - 1] : ids[i];; v >>= 7) {
      size++;
      if (v < 0x80)
        break;
    }
  uint8_t *o = xmalloc(size ? size : 1);
  size_t w = 0;
  uint32_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t v = ids[i] - prev;
    prev = ids[i];
    while (v >= 0x80) {
      o[w++] = (uint8_t)(v | 0x80);
      v >>= 7;
    }
    o[w++] = (uint8_t)v;
  }
  return o;
}

/* The next id of an encode_ids array at *at (after prev). */
static uint32_t next_id(const uint8_t **at, uint32_t prev) {
  uint32_t v = 0;
  for (int shift = 0;; shift += 7) {
    uint8_t b = *(*at)++;
    v |= (uint32_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return prev + v;
  }
}

static int u32_cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void shard_free(shard_t *s) {
  for (size_t i = 0; i < s->nslots; i++)
    chunk_free(s->slots[i]);
  for (size_t i = 0; i < s->nterms; i++) {
    free(s->terms[i].text);
    postings_cleanup(&s->terms[i].post);
  }
  for (size_t i = 0; i < s->ndocs; i++) {
    free(s->docs[i].doc_id);
    free(s->docs[i].slots);
    free(s->docs[i].content_type);
    free(s->docs[i].author);
    free(s->docs[i].language);
    json_decref(s->docs[i].meta);
  }
  hnsw_free(s->hnsw);
  free(s->label_map.ents);
  free(s->slots);
  free(s->lens);
  free(s->free_slots);
  free(s->dead_slots);
  free(s->terms);
  free(s->free_terms);
  free(s->docs);
  free(s->free_docs);
  free(s->term_map.ents);
  free(s->chunk_map.ents);
  free(s->doc_map.ents);
  free(s->tenant);
  free(s);
}

index_t *index_new(const index_params_t *params) {
  index_params_t p = params ? *params : (index_params_t){0};
  if (sodium_init() < 0 || p.fixed_dim > Q_INDEX_MAX_DIM || p.m > HNSW_MAX_M ||
      (p.m && p.m < 2) || p.ef_construction > HNSW_MAX_EF || p.ef_search > HNSW_MAX_EF)
    return NULL;
  if (p.bm25 && !(p.k1 >= 0 && p.k1 <= 1000 && p.b >= 0 && p.b <= 1 &&
                  p.title_weight >= 0 && p.title_weight <= 1000))
    return NULL;
  index_t *idx = calloc(1, sizeof *idx);
  if (!idx)
    return NULL;
  if (pthread_mutex_init(&idx->wmu, NULL) != 0) {
    free(idx);
    return NULL;
  }
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* Upserts must not starve behind a steady stream of searches. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  int rc = pthread_rwlock_init(&idx->lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  if (rc) {
    pthread_mutex_destroy(&idx->wmu);
    free(idx);
    return NULL;
  }
  crypto_shorthash_keygen(idx->key);
  idx->fixed_dim = p.fixed_dim;
  idx->params = p;
  idx->k1 = p.bm25 ? p.k1 : INDEX_BM25_K1;
  idx->b = p.bm25 ? p.b : INDEX_BM25_B;
  idx->wtitle = p.bm25 ? p.title_weight : INDEX_TITLE_WEIGHT;
  /* Labels of chunks without a seq sit far above any PostgreSQL sequence. */
  idx->next_label = UINT64_C(1) << 62;
  return idx;
}

void index_free(index_t *idx) {
  if (!idx)
    return;
  for (size_t i = 0; i < idx->nshards; i++)
    shard_free(idx->shards[i]);
  free(idx->shards);
  free(idx->shard_map.ents);
  for (size_t i = 0; i < idx->nold; i++)
    hnsw_free(idx->old_graphs[i]);
  free(idx->old_graphs);
  pthread_rwlock_destroy(&idx->lock);
  pthread_mutex_destroy(&idx->wmu);
  free(idx);
}

int64_t index_chunk_count(const index_t *idx) {
  return idx ? __atomic_load_n(&idx->chunks, __ATOMIC_RELAXED) : 0;
}

/* ---- distinct terms of a text (outside the lock) ------------------------- */

/* A bag of terms: distinct terms with their counts, in order of first
 * appearance. */
typedef struct bag_ent {
  uint64_t hash;
  uint32_t off, len, tf, tf_title;
} bag_ent_t;

typedef struct bag {
  const unsigned char *key;
  bag_ent_t *ents;
  size_t n, cap;
  uint32_t *table; /* entry number + 1, 0 empty */
  size_t tcap;
  char *pool; /* term texts, each NUL-terminated */
  size_t plen, pcap;
  uint32_t total, total_title; /* terms added, with repetitions (in text,
                                  in title) */
  bool title;                  /* terms being added are the title's */
} bag_t;

static void bag_free(bag_t *b) {
  free(b->ents);
  free(b->table);
  free(b->pool);
}

static void bag_rehash(bag_t *b, size_t tcap) {
  free(b->table);
  b->table = xcalloc(tcap, sizeof *b->table);
  b->tcap = tcap;
  for (size_t i = 0; i < b->n; i++) {
    size_t j = b->ents[i].hash & (tcap - 1);
    while (b->table[j])
      j = (j + 1) & (tcap - 1);
    b->table[j] = (uint32_t)i + 1;
  }
}

static int bag_add_cb(const char *term, size_t len, size_t pos, void *ud) {
  bag_t *b = ud;
  uint64_t h = hash_bytes(b->key, term, len);
  if ((b->n + 1) * 2 > b->tcap)
    bag_rehash(b, b->tcap ? b->tcap * 2 : 64);
  size_t mask = b->tcap - 1, j = h & mask;
  while (b->table[j]) {
    bag_ent_t *e = &b->ents[b->table[j] - 1];
    if (e->hash == h && e->len == len && memcmp(b->pool + e->off, term, len) == 0) {
      if (b->title) {
        e->tf_title++;
        b->total_title++;
      } else {
        e->tf++;
        b->total++;
      }
      return 0;
    }
    j = (j + 1) & mask;
  }
  grow(&b->pool, &b->pcap, b->plen + len + 1, 1);
  memcpy(b->pool + b->plen, term, len + 1);
  grow(&b->ents, &b->cap, b->n + 1, sizeof *b->ents);
  b->ents[b->n] = (bag_ent_t){h, (uint32_t)b->plen, (uint32_t)len, b->title ? 0 : 1,
                              b->title ? 1 : 0};
  b->plen += len + 1;
  b->table[j] = (uint32_t)++b->n;
  if (b->title)
    b->total_title++;
  else
    b->total++;
  return 0;
}

static void bag_text(const index_t *idx, bag_t *b, const char *s, bool title) {
  b->title = title;
  if (s && *s)
    q_text_terms_stop(s, strlen(s), idx->params.stopwords, bag_add_cb, b);
}

/* ---- upsert ------------------------------------------------------------- */

/* A chunk prepared outside the lock: owned copy plus its terms (whose
 * hashes are reused for the dictionary). */
typedef struct prep {
  chunk_t *chunk;
  bag_t bag;
  bool in_graph; /* its vector was added to the shard's graph */
  /* The document's filter fields, handed to its doc_t by insert(). */
  char *content_type;
  char *author, *language;
  int64_t created_at;
  json_t *meta;
} prep_t;

static q_err_t check_vector(const float *v, size_t dim, size_t want, size_t i, char *err,
                            size_t errlen) {
  if (dim > Q_INDEX_MAX_DIM) {
    snprintf(err, errlen, "chunks[%zu].embedding has %zu dimensions (at most %d)", i, dim,
             Q_INDEX_MAX_DIM);
    return Q_EINVAL;
  }
  if (want && dim != want) {
    snprintf(err, errlen,
             "chunks[%zu].embedding has %zu dimensions; the index holds "
             "%zu-dimensional vectors",
             i, dim, want);
    return Q_EINVAL;
  }
  double norm = 0.0;
  for (size_t k = 0; k < dim; k++) {
    if (!isfinite(v[k])) {
      snprintf(err, errlen, "chunks[%zu].embedding[%zu] is not a finite number", i, k);
      return Q_EINVAL;
    }
    norm += (double)v[k] * v[k];
  }
  if (!(norm > 0.0)) {
    snprintf(err, errlen, "chunks[%zu].embedding is all zeros", i);
    return Q_EINVAL;
  }
  return 0;
}

/* Check under (at least) the read lock. */
static q_err_t check_locked(index_t *idx, const char *tenant, const index_chunk_t *chunks,
                            size_t n, char *err, size_t errlen) {
  const shard_t *s = find_shard(idx, tenant);
  size_t want = idx->fixed_dim ? idx->fixed_dim : s && s->nvec ? s->dim : 0;
  for (size_t i = 0; i < n; i++) {
    const index_chunk_t *c = &chunks[i];
    if (!c->chunk_id || !*c->chunk_id || !c->doc_id || !*c->doc_id) {
      snprintf(err, errlen, "chunks[%zu] needs a chunk_id and a doc_id", i);
      return Q_EINVAL;
    }
    if (!c->dim)
      continue;
    if (!c->embedding) {
      snprintf(err, errlen, "chunks[%zu].embedding is missing", i);
      return Q_EINVAL;
    }
    int rc = check_vector(c->embedding, c->dim, want, i, err, errlen);
    if (rc)
      return rc;
    want = c->dim; /* every vector of the batch must agree with the first */
  }
  return 0;
}

q_err_t index_check(index_t *idx, const char *tenant, const index_chunk_t *chunks,
                    size_t n, char *err, size_t errlen) {
  pthread_rwlock_rdlock(&idx->lock);
  int rc = check_locked(idx, tenant, chunks, n, err, errlen);
  pthread_rwlock_unlock(&idx->lock);
  return rc;
}

static void prep_chunk(index_t *idx, const index_chunk_t *in, prep_t *p) {
  chunk_t *c = chunk_new(in->chunk_id, in->doc_id, in->title, in->text);
  c->version = in->version;
  c->ordinal = in->ordinal;
  c->page = in->page;
  c->at = in->at;
  /* Under the upsert mutex: next_label has one writer. */
  c->label = in->seq ? in->seq : idx->next_label++;
  if (in->dim) {
    /* The graph normalises it under cosine. */
    c->vec = xmalloc(in->dim * sizeof *c->vec);
    memcpy(c->vec, in->embedding, in->dim * sizeof *c->vec);
    c->dim = in->dim;
  }
  memset(&p->bag, 0, sizeof p->bag);
  p->bag.key = idx->key;
  /* The title is a field of its own (BM25F): a title word matches every
   * chunk of the document, weighted by the title weight at search time. */
  bag_text(idx, &p->bag, in->title, true);
  bag_text(idx, &p->bag, in->text, false);
  c->len_text = p->bag.total;
  c->len_title = p->bag.total_title;
  c->nterms = (uint32_t)p->bag.n;
  p->chunk = c;
  p->content_type =
      in->content_type && *in->content_type ? xstrdup(in->content_type) : NULL;
  p->author = in->author && *in->author ? xstrdup(in->author) : NULL;
  p->language = in->language && *in->language ? xstrdup(in->language) : NULL;
  p->created_at = in->created_at;
  /* The caller checked it (q_meta_check); text that does not parse is
   * dropped rather than refused here, where nothing may fail. */
  p->meta = in->metadata && *in->metadata ? json_loads(in->metadata, 0, NULL) : NULL;
  if (p->meta && !json_is_object(p->meta)) {
    json_decref(p->meta);
    p->meta = NULL;
  }
}

/* Vectors an upsert deletes from a graph after releasing the write lock. */
typedef struct vecop {
  hnsw_t *graph;
  uint64_t label;
} vecop_t;

typedef struct vecops {
  vecop_t *ops;
  size_t n, cap;
} vecops_t;

static void vecops_push(vecops_t *v, hnsw_t *graph, uint64_t label) {
  grow(&v->ops, &v->cap, v->n + 1, sizeof *v->ops);
  v->ops[v->n++] = (vecop_t){graph, label};
}

static int64_t label_slot(const index_t *idx, const shard_t *s, uint64_t label) {
  return strmap_get(&s->label_map, (const char *)&label, sizeof label,
                    hash_bytes(idx->key, (const char *)&label, sizeof label), label_key,
                    s);
}

/* Retires the chunk in slot (under the write lock); its vector's deletion
 * from the graph is queued on ops. */
static void retire(index_t *idx, shard_t *s, uint32_t slot, vecops_t *ops) {
  chunk_t *c = s->slots[slot];
  if (c->has_vec) {
    strmap_del(&s->label_map, (const char *)&c->label, sizeof c->label,
               hash_bytes(idx->key, (const char *)&c->label, sizeof c->label), label_key,
               s);
    vecops_push(ops, s->hnsw, c->label);
  }
  const uint8_t *at = c->terms;
  for (uint32_t i = 0, id = 0; i < c->nterms; i++) {
    id = next_id(&at, id);
    term_t *t = &s->terms[id];
    if (--t->df == 0)
      s->live_terms--;
  }
  s->dead_postings += c->nterms;
  s->total_text -= c->len_text;
  s->total_title -= c->len_title;
  s->live--;
  if (c->has_vec && --s->nvec == 0)
    s->dim = 0; /* the next vector may bring another dimension */

  size_t len = strlen(c->chunk_id);
  strmap_del(&s->chunk_map, c->chunk_id, len, hash_bytes(idx->key, c->chunk_id, len),
             chunk_key, s);

  doc_t *d = &s->docs[c->doc];
  for (size_t i = 0; i < d->n; i++)
    if (d->slots[i] == slot) {
      d->slots[i] = d->slots[--d->n];
      break;
    }
  if (d->n == 0) {
    len = strlen(d->doc_id);
    strmap_del(&s->doc_map, d->doc_id, len, hash_bytes(idx->key, d->doc_id, len), doc_key,
               s);
    free(d->doc_id);
    free(d->slots);
    free(d->content_type);
    free(d->author);
    free(d->language);
    json_decref(d->meta);
    memset(d, 0, sizeof *d);
    grow(&s->free_docs, &s->capfree_docs, s->nfree_docs + 1, sizeof *s->free_docs);
    s->free_docs[s->nfree_docs++] = c->doc;
    s->live_docs--;
  }

  s->slots[slot] = NULL;
  s->lens[slot] = (slotlen_t){DEAD_LEN, 0};
  grow(&s->dead_slots, &s->capdead, s->ndead + 1, sizeof *s->dead_slots);
  s->dead_slots[s->ndead++] = slot;
  chunk_free(c);
  __atomic_sub_fetch(&idx->chunks, 1, __ATOMIC_RELAXED);
}

static uint32_t term_number(shard_t *s, const char *text, size_t len, uint64_t h) {
  int64_t v = strmap_get(&s->term_map, text, len, h, term_key, s);
  if (v >= 0)
    return (uint32_t)v;
  uint32_t id;
  if (s->nfree_terms) {
    id = s->free_terms[--s->nfree_terms];
  } else {
    grow(&s->terms, &s->capterms, s->nterms + 1, sizeof *s->terms);
    id = (uint32_t)s->nterms++;
  }
  term_t *t = &s->terms[id];
  memset(t, 0, sizeof *t);
  t->text = xstrndup(text, len);
  t->len = (uint32_t)len;
  strmap_put_new(&s->term_map, h, id);
  return id;
}

static size_t graph_dim(const hnsw_t *g) {
  hnsw_params_t p;
  hnsw_params_get(g, &p);
  return p.dim;
}

/* A new, empty graph for vectors of dimension dim. */
static hnsw_t *new_graph(index_t *idx, size_t dim) {
  hnsw_params_t hp = {
      .dim = dim,
      .metric = idx->params.inner_product ? HNSW_INNER_PRODUCT : HNSW_COSINE,
      .storage = idx->params.int8_vectors ? HNSW_INT8 : HNSW_FLOAT,
      .m = idx->params.m,
      .ef_construction = idx->params.ef_construction,
      .ef_search = idx->params.ef_search,
  };
  hnsw_t *g = NULL;
  char why[256];
  q_err_t rc = hnsw_new(&hp, &g, why, sizeof why);
  if (rc == Q_ENOMEM)
    oom();
  if (rc) { /* the parameters were checked by index_new */
    q_log_error("retriever index: cannot create a vector graph", "{s:s}", "reason", why);
    abort();
  }
  return g;
}

/* Makes g the shard's graph (under the write lock); the old one, empty of
 * live vectors, is kept until index_free (a compaction may still hold it). */
static void attach_graph(index_t *idx, shard_t *s, hnsw_t *g) {
  if (s->hnsw) {
    grow(&idx->old_graphs, &idx->capold, idx->nold + 1, sizeof *idx->old_graphs);
    idx->old_graphs[idx->nold++] = s->hnsw;
  }
  s->hnsw = g;
}

/* Adds a prepared chunk (under the write lock); takes ownership of it. Its
 * vector, if it has one, is already in the shard's graph under its label;
 * the label map makes it findable from here on. */
static void link_chunk(index_t *idx, shard_t *s, uint32_t slot, prep_t *p);

static void insert(index_t *idx, shard_t *s, prep_t *p) {
  chunk_t *c = p->chunk;
  uint32_t slot;
  if (s->nfree) {
    slot = s->free_slots[--s->nfree];
  } else {
    grow(&s->slots, &s->capslots, s->nslots + 1, sizeof *s->slots);
    grow(&s->lens, &s->caplens, s->nslots + 1, sizeof *s->lens);
    slot = (uint32_t)s->nslots++;
  }
  s->slots[slot] = c;
  s->lens[slot] = (slotlen_t){c->len_text, c->len_title};

  uint32_t *ids = xmalloc((p->bag.n ? p->bag.n : 1) * sizeof *ids);
  for (size_t i = 0; i < p->bag.n; i++) {
    const bag_ent_t *e = &p->bag.ents[i];
    uint32_t id = term_number(s, p->bag.pool + e->off, e->len, e->hash);
    term_t *t = &s->terms[id];
    postings_add(&t->post, (posting_t){slot, e->tf, e->tf_title}, slot_lens, s);
    if (t->df++ == 0)
      s->live_terms++;
    ids[i] = id;
  }
  qsort(ids, p->bag.n, sizeof *ids, u32_cmp);
  free(c->terms);
  c->terms = encode_ids(ids, p->bag.n);
  free(ids);
  s->npostings += p->bag.n;
  link_chunk(idx, s, slot, p);
}

/* Makes the chunk in slot (its postings added) findable: chunk and
 * document maps, the document's filter fields, counts, label map. Takes
 * p's chunk and filter fields. */
static void link_chunk(index_t *idx, shard_t *s, uint32_t slot, prep_t *p) {
  chunk_t *c = p->chunk;
  size_t len = strlen(c->chunk_id);
  strmap_put_new(&s->chunk_map, hash_bytes(idx->key, c->chunk_id, len), slot);

  len = strlen(c->doc_id);
  uint64_t h = hash_bytes(idx->key, c->doc_id, len);
  int64_t dv = strmap_get(&s->doc_map, c->doc_id, len, h, doc_key, s);
  if (dv < 0) {
    if (s->nfree_docs) {
      dv = s->free_docs[--s->nfree_docs];
    } else {
      grow(&s->docs, &s->capdocs, s->ndocs + 1, sizeof *s->docs);
      dv = (int64_t)s->ndocs++;
    }
    doc_t *d = &s->docs[dv];
    memset(d, 0, sizeof *d);
    d->doc_id = xstrdup(c->doc_id);
    strmap_put_new(&s->doc_map, h, (uint32_t)dv);
    s->live_docs++;
  }
  doc_t *d = &s->docs[dv];
  grow(&d->slots, &d->cap, d->n + 1, sizeof *d->slots);
  d->slots[d->n++] = slot;
  c->doc = (uint32_t)dv;
  free(d->content_type);
  d->content_type = p->content_type;
  p->content_type = NULL;
  free(d->author);
  d->author = p->author;
  p->author = NULL;
  free(d->language);
  d->language = p->language;
  p->language = NULL;
  d->created_at = p->created_at;
  json_decref(d->meta);
  d->meta = p->meta;
  p->meta = NULL;

  s->live++;
  s->total_text += c->len_text;
  s->total_title += c->len_title;
  if (p->in_graph) {
    s->dim = c->dim; /* the first vector of a shard (again) sets it */
    strmap_put_new(&s->label_map,
                   hash_bytes(idx->key, (const char *)&c->label, sizeof c->label), slot);
    c->has_vec = 1;
    s->nvec++;
  }
  __atomic_add_fetch(&idx->chunks, 1, __ATOMIC_RELAXED);
  p->chunk = NULL;
}

/* Drops tombstoned postings and unused terms; frees dead slots for reuse. */
static void compact_shard(index_t *idx, shard_t *s) {
  if (!s->ndead)
    return;
  for (size_t i = 0; i < s->nterms; i++) {
    term_t *t = &s->terms[i];
    if (!t->text)
      continue;
    if (t->df == 0) { /* no live chunk has it: free the term number */
      strmap_del(&s->term_map, t->text, t->len, hash_bytes(idx->key, t->text, t->len),
                 term_key, s);
      free(t->text);
      postings_cleanup(&t->post);
      memset(t, 0, sizeof *t);
      grow(&s->free_terms, &s->capfree_terms, s->nfree_terms + 1, sizeof *s->free_terms);
      s->free_terms[s->nfree_terms++] = (uint32_t)i;
    } else if (t->df < postings_count(&t->post)) {
      postings_rebuild(&t->post, slot_live, s, NULL, slot_lens, s);
    }
  }
  s->npostings -= s->dead_postings;
  s->dead_postings = 0;
  grow(&s->free_slots, &s->capfree, s->nfree + s->ndead, sizeof *s->free_slots);
  memcpy(s->free_slots + s->nfree, s->dead_slots, s->ndead * sizeof *s->dead_slots);
  s->nfree += s->ndead;
  s->ndead = 0;
}

void index_compact(index_t *idx) {
  pthread_rwlock_wrlock(&idx->lock);
  for (size_t i = 0; i < idx->nshards; i++)
    compact_shard(idx, idx->shards[i]);
  pthread_rwlock_unlock(&idx->lock);
}

static int str_ptr_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int u64_cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

q_err_t index_upsert(index_t *idx, const char *tenant, const index_chunk_t *chunks,
                     size_t n, const char *replace_doc_id, size_t *retired, char *err,
                     size_t errlen) {
  if (retired)
    *retired = 0;
  if (!tenant || !*tenant) {
    snprintf(err, errlen, "tenant_id is required");
    return Q_EINVAL;
  }
  vecops_t ops = {0};
  hnsw_t *graph = NULL, *fresh = NULL;
  uint64_t *added = NULL;
  size_t nadded = 0;
  /* Writers are serialised, so the shard cannot change under this thread
   * except by this call; searches only read. */
  pthread_mutex_lock(&idx->wmu);
  int rc = index_check(idx, tenant, chunks, n, err, errlen);
  if (rc) {
    pthread_mutex_unlock(&idx->wmu);
    return rc;
  }
  /* Tokenise before taking the write lock. */
  prep_t *preps = xcalloc(n, sizeof *preps);
  const char **ids = xcalloc(n, sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    prep_chunk(idx, &chunks[i], &preps[i]);
    ids[i] = chunks[i].chunk_id;
  }
  qsort(ids, n, sizeof *ids, str_ptr_cmp);

  /* Vectors go into the graph first, beside searches: a new label is not
   * in the label map until the write lock publishes the batch, so searches
   * skip it until then and the replace stays atomic for dense search too. */
  size_t vdim = 0;
  for (size_t i = 0; i < n && !vdim; i++)
    vdim = preps[i].chunk->dim;
  if (vdim) {
    const shard_t *s0 = find_shard(idx, tenant);
    if (s0 && s0->hnsw && (s0->nvec || graph_dim(s0->hnsw) == vdim))
      graph = s0->hnsw; /* index_check made the dimensions agree */
    else
      graph = fresh = new_graph(idx, vdim);
    added = xmalloc(n * sizeof *added);
    for (size_t i = 0; i < n; i++) {
      chunk_t *c = preps[i].chunk;
      if (!c->vec)
        continue;
      char why[256];
      q_err_t vrc = hnsw_add(graph, c->label, c->vec, why, sizeof why);
      if (vrc == Q_ENOMEM)
        oom();
      if (vrc) { /* checked vectors: only a full graph (2^31 nodes) gets here */
        q_log_error("retriever index: vector not indexed; the chunk is lexical only",
                    "{s:s,s:s,s:s}", "tenant_id", tenant, "chunk_id", c->chunk_id,
                    "reason", why);
      } else {
        preps[i].in_graph = true;
        added[nadded++] = c->label;
      }
      free(c->vec);
      c->vec = NULL;
    }
    qsort(added, nadded, sizeof *added, u64_cmp);
  }

  pthread_rwlock_wrlock(&idx->lock);
  shard_t *s = get_shard(idx, tenant);
  if (fresh)
    attach_graph(idx, s, fresh);

  if (replace_doc_id && *replace_doc_id) {
    size_t len = strlen(replace_doc_id);
    int64_t dv = strmap_get(&s->doc_map, replace_doc_id, len,
                            hash_bytes(idx->key, replace_doc_id, len), doc_key, s);
    if (dv >= 0) {
      /* retire() edits the document's slot list (and may free it): walk a
       * copy. */
      doc_t *d = &s->docs[dv];
      size_t nd = d->n;
      uint32_t *slots = xmalloc(nd * sizeof *slots);
      memcpy(slots, d->slots, nd * sizeof *slots);
      for (size_t i = 0; i < nd; i++) {
        const char *cid = s->slots[slots[i]]->chunk_id;
        if (!bsearch(&cid, ids, n, sizeof *ids, str_ptr_cmp)) {
          retire(idx, s, slots[i], &ops);
          if (retired)
            (*retired)++;
        }
      }
      free(slots);
    }
  }

  for (size_t i = 0; i < n; i++) {
    chunk_t *c = preps[i].chunk;
    size_t len = strlen(c->chunk_id);
    int64_t old = strmap_get(&s->chunk_map, c->chunk_id, len,
                             hash_bytes(idx->key, c->chunk_id, len), chunk_key, s);
    if (old >= 0)
      retire(idx, s, (uint32_t)old, &ops);
    insert(idx, s, &preps[i]);
  }

  if (s->dead_postings > 1024 && s->dead_postings * 4 > s->npostings)
    compact_shard(idx, s);
  pthread_rwlock_unlock(&idx->lock);
  /* Retired vectors leave the graph now (no search can map them to a chunk
   * any more), except a label this batch has just added again: a chunk
   * rewritten in place keeps its label, and hnsw_add replaced its vector. */
  for (size_t i = 0; i < ops.n; i++) {
    vecop_t *o = &ops.ops[i];
    if (o->graph == graph && bsearch(&o->label, added, nadded, sizeof *added, u64_cmp))
      continue;
    hnsw_delete(o->graph, o->label);
  }
  pthread_mutex_unlock(&idx->wmu);
  free(ops.ops);
  free(added);
  for (size_t i = 0; i < n; i++) {
    chunk_free(preps[i].chunk); /* NULL unless not inserted */
    bag_free(&preps[i].bag);
    free(preps[i].content_type);
    free(preps[i].author);
    free(preps[i].language);
    json_decref(preps[i].meta);
  }
  free(preps);
  free(ids);
  return rc;
}

/* ---- search ------------------------------------------------------------- */

typedef struct scored {
  double score;
  uint32_t slot;
  const chunk_t *c;
} scored_t;

/* 1 when a ranks before b: higher score, then smaller chunk_id. */
static bool better(const scored_t *a, const scored_t *b) {
  if (a->score != b->score)
    return a->score > b->score;
  return strcmp(a->c->chunk_id, b->c->chunk_id) < 0;
}

/* A bounded min-heap keeping the k best entries seen (root: the worst). */
typedef struct topk {
  scored_t *h;
  size_t n, k;
} topk_t;

static void topk_push(topk_t *t, scored_t e) {
  if (t->n < t->k) {
    size_t i = t->n++;
    while (i > 0) {
      size_t p = (i - 1) / 2;
      if (!better(&t->h[p], &e))
        break;
      t->h[i] = t->h[p];
      i = p;
    }
    t->h[i] = e;
    return;
  }
  if (!better(&e, &t->h[0]))
    return;
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const scored_t *worst = &e;
    if (l < t->n && better(worst, &t->h[l])) {
      m = l;
      worst = &t->h[l];
    }
    if (r < t->n && better(worst, &t->h[r]))
      m = r;
    if (m == i)
      break;
    t->h[i] = t->h[m];
    i = m;
  }
  t->h[i] = e;
}

static int scored_cmp(const void *pa, const void *pb) {
  const scored_t *a = pa, *b = pb;
  return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* Whether the chunk's document passes filter f (NULL: every one does). */
static bool passes(const shard_t *s, const chunk_t *c, const q_filter_t *f) {
  if (!f)
    return true;
  const doc_t *d = &s->docs[c->doc];
  q_filter_doc_t fd = {
      .doc_id = c->doc_id,
      .title = c->title,
      .content_type = d->content_type,
      .author = d->author,
      .language = d->language,
      .created_at = d->created_at,
      .meta = d->meta,
  };
  return q_filter_match(f, &fd);
}

/* Copies the chunk into an arena candidate. */
static q_err_t cand_fill(q_arena_t *arena, const chunk_t *c, double score,
                         engine_cand_t *out, char *err, size_t errlen) {
  out->chunk_id = q_arena_strdup(arena, c->chunk_id);
  out->doc_id = q_arena_strdup(arena, c->doc_id);
  out->title = q_arena_strdup(arena, c->title);
  out->text = q_arena_strdup(arena, c->text);
  if (!out->chunk_id || !out->doc_id || !out->title || !out->text) {
    snprintf(err, errlen, "result too large for the request's memory");
    return Q_ENOMEM;
  }
  out->version = c->version;
  out->ordinal = c->ordinal;
  out->page = c->page;
  out->at = c->at;
  out->score = score;
  return 0;
}

/* Copies sorted scored entries into a new arena array. */
static q_err_t cands_out(q_arena_t *arena, const scored_t *h, size_t nh,
                         engine_cand_t **out, size_t *n, char *err, size_t errlen) {
  if (!nh)
    return 0;
  engine_cand_t *o = q_arena_alloc(arena, nh * sizeof *o);
  if (!o) {
    snprintf(err, errlen, "result too large for the request's memory");
    return Q_ENOMEM;
  }
  for (size_t i = 0; i < nh; i++) {
    q_err_t rc = cand_fill(arena, h[i].c, h[i].score, &o[i], err, errlen);
    if (rc)
      return rc;
  }
  *out = o;
  *n = nh;
  return 0;
}

/* BM25F contribution of one term: tf and dl are the weighted sums over the
 * fields (tf_text + w * tf_title, len_text + w * len_title). */
static inline double bm25f(const index_t *idx, double idf, double tf, double dl,
                           double avgdl) {
  if (tf <= 0.0)
    return 0.0;
  return idf * tf * (idx->k1 + 1.0) /
         (tf + idx->k1 * (1.0 - idx->b + idx->b * dl / avgdl));
}

/* One query term during a search. */
typedef struct qterm {
  const term_t *t;
  double idf;
  double ub;       /* largest contribution any of its postings can make */
  double tail_ub;  /* largest contribution of a posting in its tail */
  double contrib;  /* its contribution to the chunk being scored */
  bool hit;        /* the chunk being scored has it */
  uint32_t bb_blk; /* the block whose bound bb holds (UINT32_MAX: none) */
  double bb;
  pcursor_t cur;
} qterm_t;

/* The largest contribution a posting of block b of q can make. */
static double block_bound(const index_t *idx, const qterm_t *q, uint32_t b,
                          double avgdl) {
  const pblock_t *bl = &q->t->post.blocks[b];
  double w = idx->wtitle;
  return bm25f(idx, q->idf, bl->max_tf_text + w * bl->max_tf_title,
               bl->min_len_text + w * bl->min_len_title, avgdl);
}

static int qterm_ub_cmp(const void *a, const void *b) {
  double x = (*(qterm_t *const *)a)->ub, y = (*(qterm_t *const *)b)->ub;
  return x < y ? -1 : x > y;
}

/* Top k by block-max MaxScore (Turtle & Flood's MaxScore, with the block
 * bounds of the non-essential terms checked before their postings are
 * decoded). Terms are ordered by their largest contribution (ub); those
 * whose ubs sum below the k-th best score so far (theta) are non-essential:
 * a chunk that has only them cannot enter the top k, so candidates come
 * from the essential terms' cursors alone, and a candidate is dropped as
 * soon as its score so far plus the bounds of the terms not yet looked at
 * falls below theta. The filter and the liveness of a slot are checked
 * only for a chunk that would enter the top k. Scores are summed in query
 * order whatever the pruning did, so they equal an exhaustive evaluation
 * to the bit (index_params_t.exhaustive turns the pruning off). */
static void maxscore(const index_t *idx, const shard_t *s, qterm_t *qt, size_t nq,
                     double avgdl, const q_filter_t *filter, topk_t *lt) {
  bool prune = !idx->params.exhaustive;
  qterm_t **ord = xmalloc(nq * sizeof *ord);
  double *prefix = xmalloc(nq * sizeof *prefix);
  for (size_t i = 0; i < nq; i++)
    ord[i] = &qt[i];
  qsort(ord, nq, sizeof *ord, qterm_ub_cmp);
  double acc = 0.0;
  for (size_t i = 0; i < nq; i++) {
    acc += ord[i]->ub;
    /* A margin for rounding: bounds are summed in another order than
     * scores, and a chunk that ties theta may still win on its chunk id. */
    prefix[i] = acc * (1.0 + 1e-9);
  }
  double theta = -INFINITY;
  size_t ess = 0; /* ord[0..ess) are non-essential */
  double w = idx->wtitle;
  for (;;) {
    uint32_t d = POSTINGS_END;
    for (size_t j = ess; j < nq; j++)
      if (ord[j]->cur.cur.slot < d)
        d = ord[j]->cur.cur.slot;
    if (d == POSTINGS_END)
      break;
    if (prune && lt->n == lt->k) {
      /* Block-max skip: every chunk from d up to the end of the nearest
       * current block of an essential term is bounded by the sum of those
       * blocks' bounds (and the tails') plus the non-essential terms' ubs;
       * when that is below theta, none of them can enter: jump past. */
      double ubsum = ess ? prefix[ess - 1] : 0.0;
      uint32_t skip_to = POSTINGS_END;
      for (size_t j = ess; j < nq; j++) {
        qterm_t *q = ord[j];
        if (q->cur.cur.slot == POSTINGS_END)
          continue;
        double bnd = q->tail_ub;
        uint32_t b = q->cur.blk;
        if (b < q->t->post.nblocks) {
          if (q->bb_blk != b) {
            q->bb_blk = b;
            q->bb = block_bound(idx, q, b, avgdl);
          }
          if (q->bb > bnd)
            bnd = q->bb;
          uint32_t last = q->t->post.blocks[b].last;
          if (last < skip_to)
            skip_to = last + 1; /* last < POSTINGS_END - 1: slots are below it */
        }
        ubsum += bnd;
      }
      if (ubsum * (1.0 + 1e-9) < theta) {
        if (skip_to == POSTINGS_END)
          break; /* nothing left can enter */
        for (size_t j = ess; j < nq; j++)
          pcursor_seek(&ord[j]->cur, skip_to);
        continue;
      }
    }
    slotlen_t sl = s->lens[d];
    if (sl.text == DEAD_LEN) { /* a tombstone */
      for (size_t j = ess; j < nq; j++)
        if (ord[j]->cur.cur.slot == d)
          pcursor_next(&ord[j]->cur);
      continue;
    }
    double dl = sl.text + w * sl.title;
    double sc = 0.0;
    for (size_t j = 0; j < nq; j++)
      ord[j]->hit = false;
    for (size_t j = ess; j < nq; j++) {
      qterm_t *q = ord[j];
      if (q->cur.cur.slot != d)
        continue;
      q->contrib =
          bm25f(idx, q->idf, q->cur.cur.tf_text + w * q->cur.cur.tf_title, dl, avgdl);
      q->hit = true;
      sc += q->contrib;
      pcursor_next(&q->cur);
    }
    bool full = lt->n == lt->k;
    bool pruned = false;
    for (size_t j = ess; j-- > 0;) {
      qterm_t *q = ord[j];
      double rest = j ? prefix[j - 1] : 0.0;
      if (prune && full) {
        if (sc + q->ub + rest < theta) {
          pruned = true;
          break;
        }
        uint32_t b = pcursor_block_at(&q->cur, d);
        double bb = q->tail_ub;
        if (b < q->t->post.nblocks) {
          double x = block_bound(idx, q, b, avgdl);
          if (x > bb)
            bb = x;
        }
        if (sc + bb * (1.0 + 1e-9) + rest < theta) {
          pruned = true;
          break;
        }
      }
      pcursor_seek(&q->cur, d);
      if (q->cur.cur.slot == d) {
        q->contrib =
            bm25f(idx, q->idf, q->cur.cur.tf_text + w * q->cur.cur.tf_title, dl, avgdl);
        q->hit = true;
        sc += q->contrib;
      }
    }
    if (pruned || sc <= 0.0 || (prune && full && sc * (1.0 + 1e-9) < theta))
      continue;
    /* The filter decides here, before the top k: a document that does not
     * pass never takes a place another could have had. */
    const chunk_t *c = s->slots[d];
    if (!passes(s, c, filter))
      continue;
    double score = 0.0; /* in query order: the same sum whatever was pruned */
    for (size_t i = 0; i < nq; i++)
      if (qt[i].hit)
        score += qt[i].contrib;
    topk_push(lt, (scored_t){score, d, c});
    if (prune && lt->n == lt->k) {
      theta = lt->h[0].score;
      while (ess < nq && prefix[ess] < theta)
        ess++;
    }
  }
  free(ord);
  free(prefix);
}

q_err_t index_lexical(index_t *idx, const char *tenant, const char *text, size_t text_len,
                      size_t top_k, const q_filter_t *filter, q_arena_t *arena,
                      engine_cand_t **out, size_t *n, char *err, size_t errlen) {
  q_err_t rc = 0;
  *out = NULL;
  *n = 0;
  size_t k = top_k ? top_k : 1;
  bag_t bag = {.key = idx->key};
  if (text && text_len)
    q_text_terms_stop(text, text_len, idx->params.stopwords, bag_add_cb, &bag);
  if (!bag.n) {
    bag_free(&bag);
    return 0;
  }
  topk_t lt = {xmalloc(k * sizeof(scored_t)), 0, k};
  qterm_t *qt = NULL;

  pthread_rwlock_rdlock(&idx->lock);
  shard_t *s = find_shard(idx, tenant ? tenant : "");
  if (!s || !s->live)
    goto unlock;
  double w = idx->wtitle;
  double avgdl = ((double)s->total_text + w * (double)s->total_title) / (double)s->live;
  if (!(avgdl > 0.0))
    avgdl = 1.0;
  double N = (double)s->live;
  qt = xmalloc(bag.n * sizeof *qt);
  size_t nq = 0;
  /* Distinct query terms in query order (a repeated term counts once). */
  for (size_t i = 0; i < bag.n; i++) {
    const bag_ent_t *e = &bag.ents[i];
    int64_t id =
        strmap_get(&s->term_map, bag.pool + e->off, e->len, e->hash, term_key, s);
    if (id < 0 || s->terms[id].df == 0)
      continue;
    qterm_t *q = &qt[nq++];
    q->t = &s->terms[id];
    double df = q->t->df;
    q->idf = log(1.0 + (N - df + 0.5) / (df + 0.5));
    q->ub = q->tail_ub = 0.0;
    q->bb_blk = UINT32_MAX;
    const postings_t *p = &q->t->post;
    for (uint32_t b = 0; b < p->nblocks; b++) {
      double x = block_bound(idx, q, b, avgdl);
      if (x > q->ub)
        q->ub = x;
    }
    for (uint32_t j = 0; j < p->ntail; j++) {
      slotlen_t sl = s->lens[p->tail[j].slot];
      if (sl.text == DEAD_LEN)
        continue;
      double x = bm25f(idx, q->idf, p->tail[j].tf_text + w * p->tail[j].tf_title,
                       sl.text + w * sl.title, avgdl);
      if (x > q->tail_ub)
        q->tail_ub = x;
    }
    if (q->tail_ub > q->ub)
      q->ub = q->tail_ub;
    pcursor_init(&q->cur, p);
  }
  if (nq)
    maxscore(idx, s, qt, nq, avgdl, filter, &lt);
  qsort(lt.h, lt.n, sizeof *lt.h, scored_cmp);
  rc = cands_out(arena, lt.h, lt.n, out, n, err, errlen);
unlock:
  pthread_rwlock_unlock(&idx->lock);
  free(qt);
  free(lt.h);
  bag_free(&bag);
  return rc;
}

q_err_t index_check_query(const index_t *idx, const float *vec, size_t dim, char *err,
                          size_t errlen) {
  if (!dim || !vec || dim > Q_INDEX_MAX_DIM ||
      (idx->fixed_dim && dim != idx->fixed_dim)) {
    snprintf(err, errlen, "query_embedding has %zu dimensions; expected %zu", dim,
             idx->fixed_dim ? idx->fixed_dim : (size_t)Q_INDEX_MAX_DIM);
    return Q_EINVAL;
  }
  double norm = 0.0;
  for (size_t i = 0; i < dim; i++) {
    if (!isfinite(vec[i])) {
      snprintf(err, errlen, "query_embedding[%zu] is not a finite number", i);
      return Q_EINVAL;
    }
    norm += (double)vec[i] * vec[i];
  }
  if (!(norm > 0.0)) {
    snprintf(err, errlen, "query_embedding is all zeros");
    return Q_EINVAL;
  }
  return 0;
}

/* The graph's filter callback: the label's chunk is live and its document
 * passes. Runs under the index's read lock (the searching thread's). */
typedef struct dense_filter {
  const index_t *idx;
  const shard_t *s;
  const q_filter_t *f;
} dense_filter_t;

static bool dense_filter_cb(uint64_t label, void *ud) {
  const dense_filter_t *df = ud;
  int64_t slot = label_slot(df->idx, df->s, label);
  return slot >= 0 && passes(df->s, df->s->slots[slot], df->f);
}

q_err_t index_dense(index_t *idx, const char *tenant, const float *vec, size_t dim,
                    size_t top_k, const q_filter_t *filter, q_arena_t *arena,
                    engine_cand_t **out, size_t *n, bool *used, bool *exact, char *err,
                    size_t errlen) {
  *out = NULL;
  *n = 0;
  *used = false;
  *exact = false;
  q_err_t rc = index_check_query(idx, vec, dim, err, errlen);
  if (rc)
    return rc;
  size_t k = top_k ? top_k : 1;
  if (k > HNSW_MAX_K)
    k = HNSW_MAX_K;
  hnsw_hit_t *hits = NULL;
  scored_t *sc = NULL;

  pthread_rwlock_rdlock(&idx->lock);
  shard_t *s = find_shard(idx, tenant ? tenant : "");
  if (!s || !s->nvec || !s->hnsw)
    goto unlock;
  if (s->dim != dim) {
    snprintf(err, errlen,
             "query_embedding has %zu dimensions; this tenant's chunks have %zu", dim,
             s->dim);
    rc = Q_EINVAL;
    goto unlock;
  }
  *used = true;
  hits = xmalloc(k * sizeof *hits);
  /* With a filter, documents that do not pass are walked through but not
   * returned, and the walk goes on until k that pass are found (hnsw.h);
   * when the graph estimates that few pass, it scans those exactly. */
  dense_filter_t df = {idx, s, filter};
  hnsw_query_t hq = {
      .vec = vec,
      .k = k,
      .plan = s->nvec <= idx->params.exact_max ? HNSW_PLAN_EXACT : HNSW_PLAN_AUTO,
      .filter = filter ? dense_filter_cb : NULL,
      .filter_ud = filter ? &df : NULL,
  };
  hnsw_search_info_t info = {0};
  int got = hnsw_search(s->hnsw, &hq, hits, &info);
  if (got < 0) {
    rc = got;
    snprintf(err, errlen, "vector search failed: %s", q_strerror(rc));
    goto unlock;
  }
  *exact = info.exact;
  /* Labels whose chunk was retired a moment ago (their deletion from the
   * graph follows the index's update) are skipped. */
  sc = xmalloc(((size_t)got + 1) * sizeof *sc);
  size_t ns = 0;
  for (int i = 0; i < got; i++) {
    int64_t slot = label_slot(idx, s, hits[i].label);
    if (slot < 0)
      continue;
    sc[ns++] = (scored_t){hits[i].score, (uint32_t)slot, s->slots[slot]};
  }
  qsort(sc, ns, sizeof *sc, scored_cmp); /* equal scores: by chunk_id */
  rc = cands_out(arena, sc, ns, out, n, err, errlen);
unlock:
  pthread_rwlock_unlock(&idx->lock);
  free(hits);
  free(sc);
  return rc;
}

size_t index_compact_vectors(index_t *idx, bool force) {
  size_t purged = 0;
  pthread_rwlock_rdlock(&idx->lock);
  size_t ns = idx->nshards;
  hnsw_t **graphs = xcalloc(ns, sizeof *graphs);
  for (size_t i = 0; i < ns; i++)
    graphs[i] = idx->shards[i]->hnsw;
  pthread_rwlock_unlock(&idx->lock);
  /* Graphs are never freed before the index, so they outlive the lock. */
  for (size_t i = 0; i < ns; i++) {
    if (!graphs[i])
      continue;
    hnsw_stats_t st;
    hnsw_stats(graphs[i], &st);
    if (!(force ? st.deleted > 0 : hnsw_compaction_due(graphs[i])))
      continue;
    hnsw_compact_stats_t cs = {0};
    if (hnsw_compact(graphs[i], &cs) == Q_ENOMEM)
      q_log_warn("retriever index: vector compaction ran out of memory; retried later",
                 NULL);
    purged += cs.purged;
  }
  free(graphs);
  return purged;
}

/* ---- stats -------------------------------------------------------------- */

void index_stats(index_t *idx, const char *tenant, index_stats_t *out) {
  memset(out, 0, sizeof *out);
  pthread_rwlock_rdlock(&idx->lock);
  for (size_t i = 0; i < idx->nshards; i++) {
    const shard_t *s = idx->shards[i];
    if (tenant && *tenant && strcmp(s->tenant, tenant) != 0)
      continue;
    out->chunks += (int64_t)s->live;
    out->documents += (int64_t)s->live_docs;
    out->terms += (int64_t)s->live_terms;
    out->vectors += (int64_t)s->nvec;
  }
  pthread_rwlock_unlock(&idx->lock);
}

/* ---- snapshots ------------------------------------------------------------ */

/* A postings.h length callback for encodings whose block bounds are not
 * kept (snapshot export). */
static void no_lens(const void *ctx, uint32_t slot, uint32_t *len_text,
                    uint32_t *len_title) {
  (void)ctx;
  (void)slot;
  *len_text = *len_title = 0;
}

/* Hands out shard s's live terms, their postings renumbered by map (old
 * slot -> rank among live chunks). */
static q_err_t visit_terms(const shard_t *s, const uint32_t *map,
                           const index_visitor_t *v, void *ud) {
  q_err_t rc = v->terms(ud, s->live_terms);
  uint8_t *counts = NULL;
  size_t capcounts = 0;
  for (size_t i = 0; i < s->nterms && !rc; i++) {
    const term_t *t = &s->terms[i];
    if (!t->text || !t->df)
      continue;
    postings_t cp = {0};
    postings_copy(&cp, &t->post);
    postings_rebuild(&cp, slot_live, s, map, no_lens, NULL);
    grow(&counts, &capcounts, cp.nblocks, sizeof *counts);
    for (uint32_t b = 0; b < cp.nblocks; b++)
      counts[b] = (uint8_t)cp.blocks[b].n;
    index_term_data_t td = {t->text, t->len, counts, cp.nblocks, cp.data, cp.nbytes};
    rc = v->term(ud, &td);
    postings_cleanup(&cp);
  }
  free(counts);
  return rc;
}

q_err_t index_visit(index_t *idx, const index_visitor_t *v, void *ud) {
  q_err_t rc = 0;
  /* No upsert runs meanwhile (wmu); searches do (read lock). */
  pthread_mutex_lock(&idx->wmu);
  pthread_rwlock_rdlock(&idx->lock);
  for (size_t i = 0; i < idx->nshards && !rc; i++) {
    shard_t *s = idx->shards[i];
    rc = v->shard(ud, s->tenant, s->nvec ? s->hnsw : NULL, s->dim, s->live);
    /* Live chunks are numbered in slot order, live terms in term order;
     * postings and chunks' term lists follow. */
    uint32_t *map = xmalloc((s->nslots ? s->nslots : 1) * sizeof *map);
    uint32_t rank = 0;
    uint32_t *trank = xmalloc((s->nterms ? s->nterms : 1) * sizeof *trank);
    for (size_t t = 0, r = 0; t < s->nterms; t++)
      trank[t] = s->terms[t].text && s->terms[t].df ? (uint32_t)r++ : UINT32_MAX;
    uint32_t *ids = NULL;
    size_t capids = 0;
    /* The document's filter fields travel with each of its chunks, as they
     * arrive in an upsert; its metadata is serialised once per run of its
     * chunks (a document's chunks mostly sit in neighbouring slots). */
    char *meta = NULL;
    uint32_t meta_doc = UINT32_MAX;
    for (size_t k = 0; k < s->nslots && !rc; k++) {
      const chunk_t *c = s->slots[k];
      if (!c) /* a retired slot */
        continue;
      map[k] = rank++;
      const doc_t *d = &s->docs[c->doc];
      if (c->doc != meta_doc) {
        free(meta);
        meta = d->meta ? json_dumps(d->meta, JSON_COMPACT) : NULL;
        meta_doc = c->doc;
        if (d->meta && !meta) {
          rc = Q_ENOMEM;
          break;
        }
      }
      engine_chunk_t out = {
          .chunk_id = c->chunk_id,
          .doc_id = c->doc_id,
          .title = c->title,
          .text = c->text,
          .version = c->version,
          .ordinal = c->ordinal,
          .page = c->page,
          .at = c->at,
          .dim = c->has_vec ? s->dim : 0,
          .seq = c->label,
          .content_type = d->content_type,
          .author = d->author,
          .language = d->language,
          .created_at = d->created_at,
          .metadata = meta,
      };
      grow(&ids, &capids, c->nterms, sizeof *ids);
      const uint8_t *at = c->terms;
      for (uint32_t t = 0, id = 0; t < c->nterms; t++) {
        id = next_id(&at, id);
        ids[t] = trank[id]; /* ranks keep the order of numbers */
      }
      uint8_t *enc = encode_ids(ids, c->nterms);
      size_t enclen = 0;
      for (uint32_t t = 0; t < c->nterms; t++)
        for (uint32_t v = t ? ids[t] - ids[t - 1] : ids[t];; v >>= 7) {
          enclen++;
          if (v < 0x80)
            break;
        }
      index_chunk_lex_t lex = {c->len_text, c->len_title, c->nterms, enc,
                               (uint32_t)enclen};
      rc = v->chunk(ud, &out, &lex);
      free(enc);
    }
    free(meta);
    free(ids);
    free(trank);
    if (!rc)
      rc = visit_terms(s, map, v, ud);
    free(map);
  }
  pthread_rwlock_unlock(&idx->lock);
  pthread_mutex_unlock(&idx->wmu);
  return rc;
}

uint64_t index_lexical_fingerprint(const index_t *idx) {
  return q_text_stopwords_fingerprint(idx->params.stopwords);
}

/* Checks a chunk's term list from a snapshot (nterms ascending numbers
 * below nterms_all, every byte used) and counts each number in uses[]. */
static bool check_term_list(const uint8_t *p, uint32_t len, uint32_t nterms,
                            uint32_t nterms_all, uint32_t *uses) {
  const uint8_t *end = p + len;
  uint32_t prev = 0;
  for (uint32_t i = 0; i < nterms; i++) {
    uint32_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (p == end || shift > 28)
        return false;
      uint8_t b = *p++;
      v |= (uint32_t)(b & 0x7f) << shift;
      if (!(b & 0x80))
        break;
    }
    if ((i && v == 0) || v >= nterms_all - prev)
      return false;
    prev += v;
    uses[prev]++;
  }
  return p == end;
}

q_err_t index_restore_shard(index_t *idx, const char *tenant, hnsw_t *graph,
                            const engine_chunk_t *chunks, const index_chunk_lex_t *lex,
                            size_t n, const index_term_data_t *terms, size_t nterms,
                            char *err, size_t errlen) {
  if (!tenant || !*tenant) {
    snprintf(err, errlen, "a shard without a tenant");
    hnsw_free(graph);
    return Q_EINVAL;
  }
  if (n >= UINT32_MAX) {
    snprintf(err, errlen, "tenant %.64s: too many chunks", tenant);
    hnsw_free(graph);
    return Q_EINVAL;
  }
  size_t gdim = graph ? graph_dim(graph) : 0;
  for (size_t i = 0; i < n; i++) {
    if (!chunks[i].seq) {
      snprintf(err, errlen, "tenant %.64s: chunk %.128s has no label", tenant,
               chunks[i].chunk_id);
      hnsw_free(graph);
      return Q_EINVAL;
    }
    if (chunks[i].dim &&
        (chunks[i].dim != gdim || !hnsw_contains(graph, chunks[i].seq))) {
      snprintf(err, errlen, "tenant %.64s: chunk %.128s has no vector %llu in the graph",
               tenant, chunks[i].chunk_id, (unsigned long long)chunks[i].seq);
      hnsw_free(graph);
      return Q_EINVAL;
    }
    if (chunks[i].seq >= idx->next_label) /* never: labels from seq are small */
      idx->next_label = chunks[i].seq + 1;
  }
  pthread_mutex_lock(&idx->wmu);
  if (find_shard(idx, tenant)) {
    pthread_mutex_unlock(&idx->wmu);
    snprintf(err, errlen, "tenant %.64s appears twice", tenant);
    hnsw_free(graph);
    return Q_EINVAL;
  }
  q_err_t rc = 0;
  /* How many chunks list each term: each term's postings must agree. */
  uint32_t *uses = xcalloc(nterms ? nterms : 1, sizeof *uses);
  /* Nothing is tokenised: chunks become slots 0..n-1 as they come, and the
   * postings are taken in their encoded form (postings_adopt checks them). */
  pthread_rwlock_wrlock(&idx->lock);
  shard_t *s = get_shard(idx, tenant);
  if (graph)
    attach_graph(idx, s, graph);
  s->slots = xmalloc((n ? n : 1) * sizeof *s->slots);
  s->lens = xmalloc((n ? n : 1) * sizeof *s->lens);
  s->caplens = n ? n : 1;
  s->capslots = n ? n : 1;
  const char *prev_meta = NULL, *prev_doc = NULL;
  for (size_t i = 0; i < n; i++) {
    const engine_chunk_t *in = &chunks[i];
    chunk_t *c = chunk_new(in->chunk_id, in->doc_id, in->title, in->text);
    c->version = in->version;
    c->ordinal = in->ordinal;
    c->page = in->page;
    c->at = in->at;
    c->label = in->seq;
    c->dim = in->dim;
    c->len_text = lex[i].len_text;
    c->len_title = lex[i].len_title;
    c->nterms = lex[i].nterms;
    if (nterms >= UINT32_MAX || !check_term_list(lex[i].terms, lex[i].terms_len,
                                                 c->nterms, (uint32_t)nterms, uses)) {
      snprintf(err, errlen, "tenant %.64s: chunk %.128s has a malformed term list",
               tenant, c->chunk_id);
      s->slots[i] = NULL;
      s->nslots = i;
      chunk_free(c);
      rc = Q_EINVAL;
      goto unlock;
    }
    c->terms = xmalloc(lex[i].terms_len ? lex[i].terms_len : 1);
    memcpy(c->terms, lex[i].terms, lex[i].terms_len);
    s->slots[i] = c;
    s->lens[i] = (slotlen_t){c->len_text, c->len_title};
    s->nslots = i + 1;
    prep_t p = {.chunk = c, .in_graph = in->dim > 0, .created_at = in->created_at};
    p.content_type =
        in->content_type && *in->content_type ? xstrdup(in->content_type) : NULL;
    p.author = in->author && *in->author ? xstrdup(in->author) : NULL;
    p.language = in->language && *in->language ? xstrdup(in->language) : NULL;
    /* A document's chunks carry the same metadata: parsed once per run. */
    bool same = prev_doc && strcmp(prev_doc, in->doc_id) == 0 && prev_meta &&
                in->metadata && strcmp(prev_meta, in->metadata) == 0;
    if (same) {
      int64_t dv =
          strmap_get(&s->doc_map, in->doc_id, strlen(in->doc_id),
                     hash_bytes(idx->key, in->doc_id, strlen(in->doc_id)), doc_key, s);
      p.meta = dv >= 0 && s->docs[dv].meta ? json_incref(s->docs[dv].meta) : NULL;
    } else {
      p.meta = in->metadata && *in->metadata ? json_loads(in->metadata, 0, NULL) : NULL;
      if (p.meta && !json_is_object(p.meta)) {
        json_decref(p.meta);
        p.meta = NULL;
      }
    }
    prev_doc = in->doc_id;
    prev_meta = in->metadata;
    size_t len = strlen(c->chunk_id);
    if (strmap_get(&s->chunk_map, c->chunk_id, len,
                   hash_bytes(idx->key, c->chunk_id, len), chunk_key, s) >= 0) {
      snprintf(err, errlen, "tenant %.64s: chunk %.128s appears twice", tenant,
               c->chunk_id);
      s->slots[i] = NULL;
      s->nslots = i;
      chunk_free(c);
      free(p.content_type);
      free(p.author);
      free(p.language);
      json_decref(p.meta);
      rc = Q_EINVAL;
      goto unlock;
    }
    link_chunk(idx, s, (uint32_t)i, &p);
  }
  for (size_t i = 0; i < nterms && !rc; i++) {
    const index_term_data_t *td = &terms[i];
    uint64_t h = hash_bytes(idx->key, td->text, td->len);
    if (!td->len || td->len > Q_TEXT_MAX_TERM ||
        strmap_get(&s->term_map, td->text, td->len, h, term_key, s) >= 0) {
      snprintf(err, errlen, "tenant %.64s: term %zu is empty, too long or twice", tenant,
               i);
      rc = Q_EINVAL;
      break;
    }
    uint32_t id = term_number(s, td->text, td->len, h);
    term_t *t = &s->terms[id];
    if (!postings_adopt(&t->post, td->counts, td->nblocks, td->data, td->nbytes,
                        (uint32_t)n, slot_lens, s, NULL, NULL) ||
        postings_count(&t->post) != uses[i] || id != i) {
      snprintf(err, errlen, "tenant %.64s: malformed postings of term %zu", tenant, i);
      rc = Q_EINVAL;
      break;
    }
    t->df = (uint32_t)postings_count(&t->post);
    s->live_terms++;
    s->npostings += t->df;
  }
unlock:
  pthread_rwlock_unlock(&idx->lock);
  pthread_mutex_unlock(&idx->wmu);
  free(uses);
  return rc;
}
