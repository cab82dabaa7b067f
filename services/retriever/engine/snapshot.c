/* snapshot.c - writes and reads the embedded engine's snapshot files (see
 * snapshot.h for what they hold and docs/retrieval.md for the layout).
 *
 * Integers are little-endian; strings are a u32 length and their bytes.
 * index.snap is streamed while index_visit walks the index: each section's
 * length and CRC are written as placeholders and patched when the section
 * ends, so memory stays flat however big a tenant is. Reading takes one
 * section at a time into memory, checks its CRC before parsing, and hands
 * its chunks and its terms' encoded postings (pointing into the section)
 * to index_restore_shard, which takes the postings as they are: a start
 * from a snapshot tokenises nothing (format 3; format 2 held only the
 * chunks, and the load re-tokenised every one). */
#include "engine/snapshot.h"
#include "engine/hnsw.h"

#include "quarry/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC "QRYIDX01"
#define INDEX_FILE "index.snap"
/* magic 8, version 4, flags 4, pos 8, fixed_dim 8, nshards 4, db_id 16,
 * lexical fingerprint 8, crc 4 */
#define HEADER_LEN 64
#define HEADER_LEXFP 52
#define HEADER_CRC (HEADER_LEN - 4)
#define SECTION_HEAD 12 /* length u64, crc u32 */
/* Largest string a section may hold: chunk text is at most 64 KiB, ids and
 * titles far less. */
#define STR_MAX (1u << 20)

/* ---- little-endian helpers ------------------------------------------------ */

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static void graph_path(char *out, size_t len, const char *dir, int64_t pos, size_t k) {
  snprintf(out, len, "%s/graph-%lld-%zu.hnsw", dir, (long long)pos, k);
}

/* ---- writing --------------------------------------------------------------- */

typedef struct writer {
  FILE *f;
  const char *dir;
  int64_t pos;
  long section_at; /* offset of the open section's head, -1: none */
  uint64_t section_len;
  uLong crc;
  size_t shards, chunks, expect, total;
  uint64_t graph_bytes;
  bool failed;
  char *err;
  size_t errlen;
} writer_t;

static void wbytes(writer_t *w, const void *p, size_t n) {
  if (w->failed)
    return;
  if (n && fwrite(p, 1, n, w->f) != n) {
    w->failed = true;
    snprintf(w->err, w->errlen, "writing %s/%s: %s", w->dir, INDEX_FILE, strerror(errno));
    return;
  }
  w->crc = crc32(w->crc, p, (uInt)n);
  w->section_len += n;
}

static void wu32(writer_t *w, uint32_t v) {
  unsigned char b[4];
  put_u32(b, v);
  wbytes(w, b, 4);
}

static void wu64(writer_t *w, uint64_t v) {
  unsigned char b[8];
  put_u64(b, v);
  wbytes(w, b, 8);
}

static void wstr(writer_t *w, const char *s) {
  size_t n = s ? strlen(s) : 0;
  wu32(w, (uint32_t)n);
  wbytes(w, s, n);
}

/* Patches the open section's length and CRC. */
static void end_section(writer_t *w) {
  if (w->section_at < 0 || w->failed)
    return;
  if (w->chunks != w->expect) {
    w->failed = true;
    snprintf(w->err, w->errlen, "a shard changed while it was written");
    return;
  }
  long end = ftell(w->f);
  unsigned char head[SECTION_HEAD];
  put_u64(head, w->section_len);
  put_u32(head + 8, (uint32_t)w->crc);
  if (end < 0 || fseek(w->f, w->section_at, SEEK_SET) != 0 ||
      fwrite(head, 1, sizeof head, w->f) != sizeof head ||
      fseek(w->f, end, SEEK_SET) != 0) {
    w->failed = true;
    snprintf(w->err, w->errlen, "writing %s/%s: %s", w->dir, INDEX_FILE, strerror(errno));
  }
  w->section_at = -1;
}

static q_err_t shard_cb(void *ud, const char *tenant, hnsw_t *graph, size_t dim,
                        size_t live) {
  writer_t *w = ud;
  end_section(w);
  if (w->failed)
    return Q_EIO;
  unsigned char head[SECTION_HEAD] = {0};
  w->section_at = ftell(w->f);
  if (w->section_at < 0 || fwrite(head, 1, sizeof head, w->f) != sizeof head) {
    snprintf(w->err, w->errlen, "writing %s/%s: %s", w->dir, INDEX_FILE, strerror(errno));
    w->failed = true;
    return Q_EIO;
  }
  w->section_len = 0;
  w->crc = crc32(0L, Z_NULL, 0);
  w->chunks = 0;
  w->expect = live;
  if (graph) {
    char path[4096];
    graph_path(path, sizeof path, w->dir, w->pos, w->shards);
    q_err_t rc = hnsw_save(graph, path, (uint64_t)w->pos, w->err, w->errlen);
    if (rc) {
      w->failed = true;
      return rc;
    }
    struct stat sb;
    if (stat(path, &sb) == 0)
      w->graph_bytes += (uint64_t)sb.st_size;
  }
  wstr(w, tenant);
  wu64(w, dim);
  wu32(w, graph ? 1 : 0);
  wu64(w, live);
  w->shards++;
  return w->failed ? Q_EIO : 0;
}

static q_err_t chunk_cb(void *ud, const engine_chunk_t *c, const index_chunk_lex_t *lex) {
  writer_t *w = ud;
  wstr(w, c->chunk_id);
  wstr(w, c->doc_id);
  wstr(w, c->title);
  wstr(w, c->text);
  wu32(w, (uint32_t)c->version);
  wu32(w, (uint32_t)c->ordinal);
  wu32(w, (uint32_t)c->page);
  wu32(w, (uint32_t)c->at.start);
  wu32(w, (uint32_t)c->at.end);
  wu32(w, (uint32_t)c->at.text);
  wu64(w, c->seq);
  wu32(w, (uint32_t)c->dim);
  wstr(w, c->content_type ? c->content_type : "");
  wu64(w, (uint64_t)c->created_at);
  wstr(w, c->metadata ? c->metadata : "");
  wstr(w, c->author ? c->author : "");
  wstr(w, c->language ? c->language : "");
  wu32(w, lex->len_text);
  wu32(w, lex->len_title);
  wu32(w, lex->nterms);
  wu32(w, lex->terms_len);
  wbytes(w, lex->terms, lex->terms_len);
  w->chunks++;
  w->total++;
  return w->failed ? Q_EIO : 0;
}

static q_err_t terms_cb(void *ud, size_t nterms) {
  writer_t *w = ud;
  wu64(w, nterms);
  return w->failed ? Q_EIO : 0;
}

static q_err_t term_cb(void *ud, const index_term_data_t *t) {
  writer_t *w = ud;
  wu32(w, (uint32_t)t->len);
  wbytes(w, t->text, t->len);
  wu32(w, t->nblocks);
  wbytes(w, t->counts, t->nblocks);
  wu64(w, t->nbytes);
  wbytes(w, t->data, t->nbytes);
  return w->failed ? Q_EIO : 0;
}

/* Removes graph files that are not of position keep (older snapshots, or
 * what a failed write left). */
static void remove_stale(const char *dir, int64_t keep) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  char prefix[64];
  snprintf(prefix, sizeof prefix, "graph-%lld-", (long long)keep);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    bool graph = strncmp(de->d_name, "graph-", 6) == 0;
    bool tmp = strstr(de->d_name, ".tmp") != NULL;
    if ((graph && strncmp(de->d_name, prefix, strlen(prefix)) != 0) || tmp) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
      unlink(path);
    }
  }
  closedir(d);
}

static q_err_t sync_dir(const char *dir, char *err, size_t errlen) {
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd < 0 || fsync(dfd) != 0) {
    snprintf(err, errlen, "fsync %s: %s", dir, strerror(errno));
    if (dfd >= 0)
      close(dfd);
    return Q_EIO;
  }
  close(dfd);
  return 0;
}

/* mkdir -p. */
static q_err_t make_dirs(const char *dir, char *err, size_t errlen) {
  char p[4096];
  if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
    snprintf(err, errlen, "directory name too long");
    return Q_EINVAL;
  }
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "cannot create %s: %s", p, strerror(errno));
      return Q_EIO;
    }
    *s = '/';
  }
  if (mkdir(p, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create %s: %s", p, strerror(errno));
    return Q_EIO;
  }
  return 0;
}

q_err_t snapshot_write(index_t *idx, const char *dir, int64_t pos,
                       const snapshot_meta_t *meta, snapshot_info_t *info, char *err,
                       size_t errlen) {
  q_err_t mrc = make_dirs(dir, err, errlen);
  if (mrc)
    return mrc;
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/%s", dir, INDEX_FILE);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  writer_t w = {.dir = dir, .pos = pos, .section_at = -1, .err = err, .errlen = errlen};
  w.f = fopen(tmp, "wb");
  if (!w.f) {
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    return Q_EIO;
  }
  /* The header's shard count is patched at the end, with its CRC. */
  unsigned char head[HEADER_LEN] = {0};
  if (fwrite(head, 1, sizeof head, w.f) != sizeof head) {
    snprintf(err, errlen, "writing %s: %s", tmp, strerror(errno));
    w.failed = true;
  }
  index_visitor_t v = {shard_cb, chunk_cb, terms_cb, term_cb};
  q_err_t rc = w.failed ? Q_EIO : index_visit(idx, &v, &w);
  if (!rc)
    end_section(&w);
  if (!rc && !w.failed) {
    memcpy(head, MAGIC, 8);
    put_u32(head + 8, SNAPSHOT_FORMAT);
    put_u32(head + 12, meta->inner_product ? 1 : 0);
    put_u64(head + 16, (uint64_t)pos);
    put_u64(head + 24, meta->fixed_dim);
    put_u32(head + 32, (uint32_t)w.shards);
    memcpy(head + 36, meta->db_id, sizeof meta->db_id);
    put_u64(head + HEADER_LEXFP, index_lexical_fingerprint(idx));
    put_u32(head + HEADER_CRC, (uint32_t)crc32(0L, head, HEADER_CRC));
    if (fseek(w.f, 0, SEEK_SET) != 0 || fwrite(head, 1, sizeof head, w.f) != sizeof head)
      w.failed = true;
  }
  long size = w.failed ? -1 : (fseek(w.f, 0, SEEK_END) == 0 ? ftell(w.f) : -1);
  bool ok = !rc && !w.failed && size >= 0 && fflush(w.f) == 0 && fsync(fileno(w.f)) == 0;
  if (fclose(w.f) != 0)
    ok = false;
  if (!ok) {
    if (!rc && !w.failed)
      snprintf(err, errlen, "writing %s: %s", tmp, strerror(errno));
    unlink(tmp);
    return rc ? rc : Q_EIO;
  }
  if (rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    unlink(tmp);
    return Q_EIO;
  }
  rc = sync_dir(dir, err, errlen);
  if (rc)
    return rc;
  remove_stale(dir, pos);
  if (info)
    *info = (snapshot_info_t){pos, w.shards, w.total, (uint64_t)size + w.graph_bytes};
  return 0;
}

/* ---- reading --------------------------------------------------------------- */

typedef struct cursor {
  const unsigned char *p, *end;
  char *pool, *pool_end; /* where rstr copies strings */
  bool bad;
} cursor_t;

static uint32_t ru32(cursor_t *c) {
  if (c->bad || c->end - c->p < 4) {
    c->bad = true;
    return 0;
  }
  uint32_t v = get_u32(c->p);
  c->p += 4;
  return v;
}

static uint64_t ru64(cursor_t *c) {
  if (c->bad || c->end - c->p < 8) {
    c->bad = true;
    return 0;
  }
  uint64_t v = get_u64(c->p);
  c->p += 8;
  return v;
}

/* A string of the section, copied NUL-terminated into the section's string
 * pool (one allocation for all of them, freed in one go); NULL and c->bad
 * when malformed. */
static char *rstr(cursor_t *c) {
  uint32_t n = ru32(c);
  if (c->bad || n > STR_MAX || (size_t)(c->end - c->p) < n ||
      (size_t)(c->pool_end - c->pool) < (size_t)n + 1) {
    c->bad = true;
    return NULL;
  }
  char *s = c->pool;
  memcpy(s, c->p, n);
  s[n] = '\0';
  c->pool += n + 1;
  c->p += n;
  return s;
}

/* Reads, checks and applies the k-th section of f. */
static q_err_t read_section(index_t *idx, FILE *f, long fsize, const char *dir,
                            int64_t pos, size_t k, const snapshot_meta_t *want,
                            size_t *nchunks, char *err, size_t errlen) {
  unsigned char head[SECTION_HEAD];
  long at = ftell(f);
  if (fread(head, 1, sizeof head, f) != sizeof head) {
    snprintf(err, errlen, "truncated: section %zu has no head", k);
    return Q_EINVAL;
  }
  uint64_t len = get_u64(head);
  if (at < 0 || len > (uint64_t)(fsize - at - SECTION_HEAD)) {
    snprintf(err, errlen, "truncated: section %zu claims %llu bytes, the file has fewer",
             k, (unsigned long long)len);
    return Q_EINVAL;
  }
  unsigned char *buf = malloc(len ? len : 1);
  if (!buf) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  if (fread(buf, 1, len, f) != len) {
    free(buf);
    snprintf(err, errlen, "cannot read section %zu: %s", k, strerror(errno));
    return Q_EIO;
  }
  if ((uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)len) != get_u32(head + 8)) {
    free(buf);
    snprintf(err, errlen, "checksum mismatch in section %zu", k);
    return Q_EINVAL;
  }
  /* Every string is a u32 length and its bytes, so len bytes hold at most
   * len / 4 strings: the pool has room for all of them and their NULs. */
  char *pool = malloc(len + len / 4 + 1);
  if (!pool) {
    free(buf);
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  cursor_t c = {buf, buf + len, pool, pool + len + len / 4 + 1, false};
  q_err_t rc = 0;
  char *tenant = rstr(&c);
  uint64_t dim = ru64(&c);
  uint32_t has_graph = ru32(&c);
  uint64_t n = ru64(&c);
  engine_chunk_t *ch = NULL;
  index_chunk_lex_t *lex = NULL;
  index_term_data_t *terms = NULL;
  size_t got = 0;
  uint64_t nterms = 0;
  hnsw_t *graph = NULL;
  if (c.bad || n > len / 36 + 1 || dim > HNSW_MAX_DIM || has_graph > 1) {
    snprintf(err, errlen, "section %zu: malformed shard head", k);
    rc = Q_EINVAL;
    goto done;
  }
  ch = calloc(n ? n : 1, sizeof *ch);
  lex = calloc(n ? n : 1, sizeof *lex);
  if (!ch || !lex) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  for (; got < n && !c.bad; got++) {
    engine_chunk_t *x = &ch[got];
    x->chunk_id = rstr(&c);
    x->doc_id = rstr(&c);
    x->title = rstr(&c);
    x->text = rstr(&c);
    x->version = (int32_t)ru32(&c);
    x->ordinal = (int32_t)ru32(&c);
    x->page = (int32_t)ru32(&c);
    x->at.start = (int32_t)ru32(&c);
    x->at.end = (int32_t)ru32(&c);
    x->at.text = (int32_t)ru32(&c);
    x->seq = ru64(&c);
    x->dim = ru32(&c);
    x->content_type = rstr(&c);
    x->created_at = (int64_t)ru64(&c);
    x->metadata = rstr(&c);
    x->author = rstr(&c);
    x->language = rstr(&c);
    lex[got].len_text = ru32(&c);
    lex[got].len_title = ru32(&c);
    lex[got].nterms = ru32(&c);
    lex[got].terms_len = ru32(&c);
    if (c.bad || lex[got].terms_len > (size_t)(c.end - c.p)) {
      c.bad = true;
      break;
    }
    lex[got].terms = c.p;
    c.p += lex[got].terms_len;
    if (x->dim && (x->dim != dim || !has_graph))
      c.bad = true;
  }
  if (c.bad) {
    snprintf(err, errlen, "section %zu: malformed chunk records", k);
    rc = Q_EINVAL;
    goto done;
  }
  /* Terms: text, block counts, encoded postings (checked by the index). */
  nterms = ru64(&c);
  if (c.bad || nterms > (uint64_t)(c.end - c.p) / 16) {
    snprintf(err, errlen, "section %zu: malformed term count", k);
    rc = Q_EINVAL;
    goto done;
  }
  terms = calloc(nterms ? nterms : 1, sizeof *terms);
  if (!terms) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  for (uint64_t t = 0; t < nterms && !c.bad; t++) {
    index_term_data_t *td = &terms[t];
    td->len = ru32(&c);
    if (c.bad || td->len > (size_t)(c.end - c.p)) {
      c.bad = true;
      break;
    }
    td->text = (const char *)c.p;
    c.p += td->len;
    td->nblocks = ru32(&c);
    if (c.bad || td->nblocks > (size_t)(c.end - c.p)) {
      c.bad = true;
      break;
    }
    td->counts = c.p;
    c.p += td->nblocks;
    uint64_t nb = ru64(&c);
    if (c.bad || nb > (uint64_t)(c.end - c.p)) {
      c.bad = true;
      break;
    }
    td->data = c.p;
    td->nbytes = (size_t)nb;
    c.p += nb;
  }
  if (c.bad || c.p != c.end) {
    snprintf(err, errlen, "section %zu: malformed term records", k);
    rc = Q_EINVAL;
    goto done;
  }
  if (has_graph) {
    char path[4096];
    uint64_t tag = 0;
    graph_path(path, sizeof path, dir, pos, k);
    rc = hnsw_load(path, false, &graph, &tag, err, errlen);
    if (rc == Q_EIO)
      rc = Q_EINVAL; /* a missing graph makes the snapshot unusable */
    if (!rc && tag != (uint64_t)pos) {
      snprintf(err, errlen, "%s is of position %llu, not %lld", path,
               (unsigned long long)tag, (long long)pos);
      rc = Q_EINVAL;
    }
    if (!rc) {
      hnsw_params_t hp;
      hnsw_params_get(graph, &hp);
      if ((hp.metric == HNSW_INNER_PRODUCT) != want->inner_product) {
        snprintf(err, errlen, "%s was built with another similarity", path);
        rc = Q_EINVAL;
      } else if ((hp.storage == HNSW_INT8) != want->int8_vectors ||
                 hp.storage == HNSW_INT8_RERANK) {
        snprintf(err, errlen,
                 "%s holds %s vectors, QUARRY_RETRIEVER_VECTOR_TYPE asks for %s", path,
                 hp.storage == HNSW_FLOAT ? "float32" : "int8",
                 want->int8_vectors ? "int8" : "float32");
        rc = Q_EINVAL;
      }
    }
    if (rc)
      goto done;
  }
  rc = index_restore_shard(idx, tenant, graph, ch, lex, got, terms, nterms, err, errlen);
  graph = NULL; /* the index took it */
  if (!rc)
    *nchunks += got;
done:
  hnsw_free(graph);
  free(terms);
  free(lex);
  free(ch);
  free(pool);
  free(buf);
  return rc;
}

q_err_t snapshot_read(index_t *idx, const char *dir, const snapshot_meta_t *want,
                      snapshot_info_t *info, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, INDEX_FILE);
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return errno == ENOENT ? Q_ENOTFOUND : Q_EIO;
  }
  q_err_t rc = 0;
  unsigned char head[HEADER_LEN];
  long fsize = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
  if (fsize < HEADER_LEN || fseek(f, 0, SEEK_SET) != 0 ||
      fread(head, 1, sizeof head, f) != sizeof head) {
    snprintf(err, errlen, "%s: truncated header", path);
    rc = Q_EINVAL;
    goto done;
  }
  if (memcmp(head, MAGIC, 8) != 0) {
    snprintf(err, errlen, "%s: not a snapshot (bad magic)", path);
    rc = Q_EINVAL;
    goto done;
  }
  if (get_u32(head + 8) != SNAPSHOT_FORMAT) {
    snprintf(err, errlen, "%s: format version %u, this build reads %d", path,
             get_u32(head + 8), SNAPSHOT_FORMAT);
    rc = Q_EINVAL;
    goto done;
  }
  if (get_u32(head + HEADER_CRC) != (uint32_t)crc32(0L, head, HEADER_CRC)) {
    snprintf(err, errlen, "%s: header checksum mismatch", path);
    rc = Q_EINVAL;
    goto done;
  }
  if (get_u64(head + HEADER_LEXFP) != index_lexical_fingerprint(idx)) {
    snprintf(err, errlen, "%s: made with another stopword list", path);
    rc = Q_EINVAL;
    goto done;
  }
  if ((get_u32(head + 12) & 1) != (want->inner_product ? 1u : 0u) ||
      get_u64(head + 24) != want->fixed_dim) {
    snprintf(err, errlen, "%s: made with other settings (metric or QUARRY_EMBED_DIM)",
             path);
    rc = Q_EINVAL;
    goto done;
  }
  if (memcmp(head + 36, want->db_id, sizeof want->db_id) != 0) {
    snprintf(err, errlen, "%s: made from another database (its identity differs)", path);
    rc = Q_EINVAL;
    goto done;
  }
  int64_t pos = (int64_t)get_u64(head + 16);
  uint32_t nshards = get_u32(head + 32);
  size_t chunks = 0;
  for (uint32_t k = 0; k < nshards && !rc; k++)
    rc = read_section(idx, f, fsize, dir, pos, k, want, &chunks, err, errlen);
  if (!rc && ftell(f) != fsize) {
    snprintf(err, errlen, "%s: bytes after the last section", path);
    rc = Q_EINVAL;
  }
  if (!rc && info)
    *info = (snapshot_info_t){pos, nshards, chunks, (uint64_t)fsize};
done:
  fclose(f);
  return rc;
}
