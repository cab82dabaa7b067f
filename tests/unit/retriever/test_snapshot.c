/* test_snapshot.c - the embedded engine's snapshot files (engine/snapshot.h):
 * a round trip gives an index that answers exactly as the original, and a
 * damaged snapshot (a flipped byte anywhere, a truncated file, a missing or
 * foreign graph file, another format version or other settings) is refused,
 * never loaded. */
#include "engine/hnsw.h"
#include "engine/snapshot.h"
#include "index.h"

#include "quarry/arena.h"
#include "quarry/error.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char dir[256];
static q_arena_t *arena;
static const snapshot_meta_t meta = {.fixed_dim = 0};

static void rm_rf(const char *d) {
  DIR *dd = opendir(d);
  if (!dd)
    return;
  struct dirent *de;
  while ((de = readdir(dd)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d, de->d_name);
    unlink(p);
  }
  closedir(dd);
  rmdir(d);
}

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/quarry-snap-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  arena = q_arena_new(0);
}

static void teardown(void) {
  rm_rf(dir);
  q_arena_free(arena);
}

TestSuite(snapshot, .init = setup, .fini = teardown);

enum { N = 300, DIM = 8 };

/* Two tenants: "t" with vectors (N chunks, a few replaced and retired), "u"
 * lexical only. */
static index_t *build_with(const index_params_t *params) {
  index_t *idx = index_new(params);
  static char ids[N][32], docs[N][16], text[N][64];
  static float vec[N][DIM];
  engine_chunk_t c[N];
  for (int i = 0; i < N; i++) {
    snprintf(docs[i], sizeof docs[i], "d%d", i / 3);
    snprintf(ids[i], sizeof ids[i], "d%d:1:%d", i / 3, i % 3);
    snprintf(text[i], sizeof text[i], "river %s stone %d", i % 2 ? "delta" : "mouth",
             i % 17);
    for (int k = 0; k < DIM; k++)
      vec[i][k] = (float)((i * 7 + k * 13) % 23) - 11.0f + 0.5f;
    c[i] = (engine_chunk_t){.chunk_id = ids[i],
                            .doc_id = docs[i],
                            .title = i % 5 ? "" : "Title",
                            .text = text[i],
                            .version = 1,
                            .ordinal = i % 3,
                            .page = i % 4,
                            .at = {i * 100, i * 100 + 40 + i, i % 3},
                            .embedding = vec[i],
                            .dim = DIM,
                            .seq = (uint64_t)i + 1};
  }
  char err[256];
  cr_assert_eq(index_upsert(idx, "t", c, N, NULL, NULL, err, sizeof err), 0, "%s", err);
  engine_chunk_t r = {.chunk_id = "d0:2:0",
                      .doc_id = "d0",
                      .text = "river replaced",
                      .version = 2,
                      .embedding = vec[5],
                      .dim = DIM,
                      .seq = 1000};
  cr_assert_eq(index_upsert(idx, "t", &r, 1, "d0", NULL, err, sizeof err), 0, "%s", err);
  cr_assert_eq(index_upsert(idx, "t", NULL, 0, "d1", NULL, err, sizeof err), 0, "%s",
               err);
  engine_chunk_t l = {.chunk_id = "u:1:0", .doc_id = "u", .text = "lexical river only"};
  cr_assert_eq(index_upsert(idx, "u", &l, 1, NULL, NULL, err, sizeof err), 0, "%s", err);
  return idx;
}

static index_t *build(void) {
  return build_with(&(index_params_t){.exact_max = 0});
}

static void same_answers(index_t *a, index_t *b) {
  char err[256];
  const char *tenants[] = {"t", "u"};
  for (int t = 0; t < 2; t++) {
    engine_cand_t *la, *lb;
    size_t na, nb;
    cr_assert_eq(index_lexical(a, tenants[t], "river stone delta", 17, 50, NULL, arena,
                               &la, &na, err, sizeof err),
                 0);
    cr_assert_eq(index_lexical(b, tenants[t], "river stone delta", 17, 50, NULL, arena,
                               &lb, &nb, err, sizeof err),
                 0);
    cr_assert_eq(na, nb);
    for (size_t i = 0; i < na; i++) {
      cr_assert_str_eq(la[i].chunk_id, lb[i].chunk_id);
      cr_assert_str_eq(la[i].text, lb[i].text);
      cr_assert_str_eq(la[i].title, lb[i].title);
      cr_assert_eq(la[i].page, lb[i].page);
      cr_assert_eq(la[i].at.start, lb[i].at.start);
      cr_assert_eq(la[i].at.end, lb[i].at.end);
      cr_assert_eq(la[i].at.text, lb[i].at.text);
      cr_assert_eq(la[i].score, lb[i].score); /* bit for bit */
    }
  }
  float q[DIM] = {1, -2, 3, -4, 5, -6, 7, -8};
  engine_cand_t *da, *db;
  size_t na, nb;
  bool used, exact;
  cr_assert_eq(index_dense(a, "t", q, DIM, 20, NULL, arena, &da, &na, &used, &exact, err,
                           sizeof err),
               0, "%s", err);
  cr_assert_eq(index_dense(b, "t", q, DIM, 20, NULL, arena, &db, &nb, &used, &exact, err,
                           sizeof err),
               0, "%s", err);
  cr_assert(used);
  cr_assert_eq(na, nb);
  for (size_t i = 0; i < na; i++) {
    cr_assert_str_eq(da[i].chunk_id, db[i].chunk_id);
    cr_assert_eq(da[i].score, db[i].score);
  }
  index_stats_t sa, sb;
  index_stats(a, NULL, &sa);
  index_stats(b, NULL, &sb);
  cr_assert_eq(sa.chunks, sb.chunks);
  cr_assert_eq(sa.documents, sb.documents);
  cr_assert_eq(sa.terms, sb.terms);
  cr_assert_eq(sa.vectors, sb.vectors);
}

Test(snapshot, round_trip_answers_the_same) {
  index_t *a = build();
  char err[512] = "";
  snapshot_info_t wi, ri;
  cr_assert_eq(snapshot_write(a, dir, 42, &meta, &wi, err, sizeof err), 0, "%s", err);
  cr_assert_eq(wi.pos, 42);
  cr_assert_eq(wi.tenants, 2);
  cr_assert_eq(wi.chunks, N - 3 - 3 + 1 + 1);
  cr_assert_gt(wi.bytes, 0);
  index_t *b = index_new(&(index_params_t){.exact_max = 0});
  cr_assert_eq(snapshot_read(b, dir, &meta, &ri, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ri.pos, 42);
  cr_assert_eq(ri.chunks, wi.chunks);
  same_answers(a, b);
  /* the restored index takes upserts as any other: the replaced labels too */
  float v[DIM] = {1, 1, 1, 1, 1, 1, 1, 1};
  engine_chunk_t c = {.chunk_id = "d2:1:0",
                      .doc_id = "d2",
                      .text = "moved",
                      .embedding = v,
                      .dim = DIM,
                      .seq = 7};
  cr_assert_eq(index_upsert(b, "t", &c, 1, NULL, NULL, err, sizeof err), 0, "%s", err);
  index_free(a);
  index_free(b);
}

Test(snapshot, a_new_snapshot_replaces_the_old_files) {
  index_t *a = build();
  char err[512] = "";
  cr_assert_eq(snapshot_write(a, dir, 1, &meta, NULL, err, sizeof err), 0, "%s", err);
  cr_assert_eq(snapshot_write(a, dir, 2, &meta, NULL, err, sizeof err), 0, "%s", err);
  char p[512];
  snprintf(p, sizeof p, "%s/graph-1-0.hnsw", dir);
  cr_assert_neq(access(p, F_OK), 0, "the old graph file is gone");
  snprintf(p, sizeof p, "%s/graph-2-0.hnsw", dir);
  cr_assert_eq(access(p, F_OK), 0);
  index_free(a);
}

Test(snapshot, missing_snapshot_is_not_found) {
  index_t *b = index_new(NULL);
  char err[512] = "";
  cr_assert_eq(snapshot_read(b, dir, &meta, NULL, err, sizeof err), Q_ENOTFOUND);
  index_free(b);
}

static long file_size(const char *p) {
  struct stat sb;
  cr_assert_eq(stat(p, &sb), 0, "%s", p);
  return (long)sb.st_size;
}

static void flip(const char *p, long at) {
  FILE *f = fopen(p, "r+b");
  cr_assert_not_null(f);
  cr_assert_eq(fseek(f, at, SEEK_SET), 0);
  int ch = fgetc(f);
  cr_assert_eq(fseek(f, at, SEEK_SET), 0);
  fputc(ch ^ 0x10, f);
  fclose(f);
}

static q_err_t read_back(char *err, size_t errlen) {
  index_t *b = index_new(&(index_params_t){.exact_max = 0});
  q_err_t rc = snapshot_read(b, dir, &meta, NULL, err, errlen);
  index_free(b);
  return rc;
}

/* A flipped byte anywhere in index.snap, at a sample of offsets covering
 * the header, section heads and chunk records, is refused. */
Test(snapshot, a_flipped_byte_is_refused) {
  index_t *a = build();
  char err[512] = "", p[512];
  cr_assert_eq(snapshot_write(a, dir, 9, &meta, NULL, err, sizeof err), 0, "%s", err);
  index_free(a);
  snprintf(p, sizeof p, "%s/index.snap", dir);
  long size = file_size(p);
  long offsets[] = {0, 9, 17, 33, 37, 40, 45, 52, 60, size / 2, size - 60, size - 1};
  for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
    flip(p, offsets[i]);
    err[0] = '\0';
    q_err_t rc = read_back(err, sizeof err);
    cr_assert_eq(rc, Q_EINVAL, "flipped byte %ld accepted (rc %d)", offsets[i], rc);
    cr_assert_neq(err[0], '\0');
    flip(p, offsets[i]); /* back */
  }
  cr_assert_eq(read_back(err, sizeof err), 0, "intact again: %s", err);
  /* the graph file has its own checksum */
  snprintf(p, sizeof p, "%s/graph-9-0.hnsw", dir);
  flip(p, file_size(p) / 2);
  cr_assert_eq(read_back(err, sizeof err), Q_EINVAL);
}

Test(snapshot, a_truncated_file_is_refused) {
  index_t *a = build();
  char err[512] = "", p[512];
  cr_assert_eq(snapshot_write(a, dir, 3, &meta, NULL, err, sizeof err), 0, "%s", err);
  index_free(a);
  snprintf(p, sizeof p, "%s/index.snap", dir);
  long size = file_size(p);
  long cuts[] = {size - 1, size / 2, 41, 39, 0};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    cr_assert_eq(truncate(p, cuts[i]), 0);
    cr_assert_eq(read_back(err, sizeof err), Q_EINVAL, "cut at %ld accepted", cuts[i]);
  }
  /* bytes appended after the last section are refused too */
  a = build();
  cr_assert_eq(snapshot_write(a, dir, 3, &meta, NULL, err, sizeof err), 0, "%s", err);
  index_free(a);
  FILE *f = fopen(p, "ab");
  fputs("junk", f);
  fclose(f);
  cr_assert_eq(read_back(err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "after the last section"), "%s", err);
}

Test(snapshot, missing_or_foreign_graph_is_refused) {
  index_t *a = build();
  char err[512] = "", p[512], q[512];
  cr_assert_eq(snapshot_write(a, dir, 5, &meta, NULL, err, sizeof err), 0, "%s", err);
  snprintf(p, sizeof p, "%s/graph-5-0.hnsw", dir);
  snprintf(q, sizeof q, "%s/keep.hnsw", dir);
  cr_assert_eq(rename(p, q), 0);
  cr_assert_eq(read_back(err, sizeof err), Q_EINVAL, "missing graph accepted");
  /* a graph of another position under this one's name */
  cr_assert_eq(snapshot_write(a, dir, 6, &meta, NULL, err, sizeof err), 0, "%s", err);
  snprintf(p, sizeof p, "%s/graph-6-0.hnsw", dir);
  char r[512];
  snprintf(r, sizeof r, "%s/graph-5-0.hnsw", dir);
  cr_assert_eq(rename(q, r), 0);
  /* index.snap of 6 with graph of 5: re-point by copying 5 over 6 */
  cr_assert_eq(rename(r, p), 0);
  cr_assert_eq(read_back(err, sizeof err), Q_EINVAL, "foreign graph accepted");
  cr_assert(strstr(err, "position"), "%s", err);
  index_free(a);
}

Test(snapshot, other_settings_or_version_are_refused) {
  index_t *a = build();
  char err[512] = "", p[512];
  cr_assert_eq(snapshot_write(a, dir, 5, &meta, NULL, err, sizeof err), 0, "%s", err);
  index_free(a);
  index_t *b = index_new(NULL);
  snapshot_meta_t ip = {.inner_product = true};
  cr_assert_eq(snapshot_read(b, dir, &ip, NULL, err, sizeof err), Q_EINVAL);
  index_free(b);
  b = index_new(NULL);
  snapshot_meta_t fixed = {.fixed_dim = DIM};
  cr_assert_eq(snapshot_read(b, dir, &fixed, NULL, err, sizeof err), Q_EINVAL);
  index_free(b);
  /* another format version with a valid header checksum: still refused by
   * version - a newer one, and format 2 (chunks without postings: its load
   * re-tokenised), which this build discards so the index is rebuilt */
  int versions[] = {SNAPSHOT_FORMAT + 1, 2};
  for (int v = 0; v < 2; v++) {
    snprintf(p, sizeof p, "%s/index.snap", dir);
    FILE *f = fopen(p, "r+b");
    unsigned char head[64];
    cr_assert_eq(fread(head, 1, 64, f), 64);
    head[8] = (unsigned char)versions[v];
    /* recompute the header CRC the way the writer does (zlib crc32) */
    unsigned long crc = crc32(0L, head, 60);
    for (int i = 0; i < 4; i++)
      head[60 + i] = (unsigned char)(crc >> (8 * i));
    fseek(f, 0, SEEK_SET);
    fwrite(head, 1, 64, f);
    fclose(f);
    cr_assert_eq(read_back(err, sizeof err), Q_EINVAL);
    cr_assert(strstr(err, "version"), "%s", err);
  }
}

/* A snapshot names the database it was made from (store_db_id): read for
 * another database it is refused, whatever else matches. */
Test(snapshot, a_snapshot_of_another_database_is_refused) {
  index_t *a = build();
  char err[512] = "";
  snapshot_meta_t mine = meta, other = meta;
  memset(mine.db_id, 0xa5, sizeof mine.db_id);
  memcpy(other.db_id, mine.db_id, sizeof other.db_id);
  other.db_id[15] ^= 1;
  cr_assert_eq(snapshot_write(a, dir, 4, &mine, NULL, err, sizeof err), 0, "%s", err);
  index_free(a);
  index_t *b = index_new(NULL);
  cr_assert_eq(snapshot_read(b, dir, &other, NULL, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "another database"), "%s", err);
  index_free(b);
  b = index_new(NULL);
  cr_assert_eq(snapshot_read(b, dir, &mine, NULL, err, sizeof err), 0, "%s", err);
  index_free(b);
}

/* The fields filters look at are the document's (index.c keeps them once
 * per document): a restored index must filter as the one it was taken from
 * did, in both modalities. */
Test(snapshot, filter_fields_survive) {
  index_t *a = index_new(&(index_params_t){.exact_max = 0});
  float v1[DIM] = {1, 0, 0, 0, 0, 0, 0, 0}, v2[DIM] = {0.9f, 0.1f, 0, 0, 0, 0, 0, 0};
  engine_chunk_t c[] = {
      {.chunk_id = "p:1:0",
       .doc_id = "p",
       .text = "quarterly report",
       .version = 1,
       .embedding = v1,
       .dim = DIM,
       .seq = 1,
       .content_type = "application/pdf",
       .author = "Ada Byron",
       .language = "en-GB",
       .created_at = 1700000000,
       .metadata = "{\"team\":\"legal\",\"tags\":[\"a\",\"b\"]}"},
      {.chunk_id = "q:1:0",
       .doc_id = "q",
       .text = "quarterly report",
       .version = 1,
       .embedding = v2,
       .dim = DIM,
       .seq = 2,
       .content_type = "text/plain",
       .language = "de"},
  };
  char err[256];
  cr_assert_eq(index_upsert(a, "t", c, 2, NULL, NULL, err, sizeof err), 0, "%s", err);
  cr_assert_eq(snapshot_write(a, dir, 7, &meta, NULL, err, sizeof err), 0, "%s", err);
  index_t *b = index_new(&(index_params_t){.exact_max = 0});
  cr_assert_eq(snapshot_read(b, dir, &meta, NULL, err, sizeof err), 0, "%s", err);
  const char *f = "{\"and\":[{\"field\":\"content_type\",\"eq\":\"application/pdf\"},"
                  "{\"field\":\"meta.tags\",\"eq\":\"b\"},"
                  "{\"field\":\"author\",\"eq\":\"Ada Byron\"},"
                  "{\"field\":\"language\",\"in\":[\"en-gb\"]},"
                  "{\"field\":\"created_at\",\"gte\":\"2023-11-14T00:00:00Z\"}]}";
  q_filter_t *flt = NULL;
  cr_assert_eq(q_filter_parse(f, strlen(f), &flt, err, sizeof err), 0, "%s", err);
  index_t *idx[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    engine_cand_t *out;
    size_t n;
    bool used, exact;
    cr_assert_eq(index_lexical(idx[i], "t", "quarterly", 9, 10, flt, arena, &out, &n, err,
                               sizeof err),
                 0, "%s", err);
    cr_assert_eq(n, 1, "index %d: %zu lexical candidates pass", i, n);
    cr_assert_str_eq(out[0].doc_id, "p");
    cr_assert_eq(index_dense(idx[i], "t", v2, DIM, 10, flt, arena, &out, &n, &used,
                             &exact, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(n, 1, "index %d: %zu dense candidates pass", i, n);
    cr_assert_str_eq(out[0].doc_id, "p");
  }
  q_filter_free(flt);
  index_free(a);
  index_free(b);
}

/* QUARRY_RETRIEVER_VECTOR_TYPE=int8: the graph files carry the codes and
 * scales, a restored index answers bit for bit as the original, and a
 * snapshot of the other vector type is refused (the engine then rebuilds
 * from PostgreSQL) rather than loaded under the wrong type. */
Test(snapshot, int8_vectors_round_trip_and_the_other_type_is_refused) {
  index_params_t p8 = {.exact_max = 0, .int8_vectors = true};
  const snapshot_meta_t meta8 = {.int8_vectors = true};
  index_t *a = build_with(&p8);
  char err[512] = "";
  snapshot_info_t wi, ri;
  cr_assert_eq(snapshot_write(a, dir, 9, &meta8, &wi, err, sizeof err), 0, "%s", err);
  index_t *b = index_new(&p8);
  cr_assert_eq(snapshot_read(b, dir, &meta8, &ri, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ri.chunks, wi.chunks);
  same_answers(a, b);
  index_free(b);
  /* the graph file holds int8 storage */
  char p[512];
  snprintf(p, sizeof p, "%s/graph-9-0.hnsw", dir);
  hnsw_t *g;
  cr_assert_eq(hnsw_load(p, false, &g, NULL, err, sizeof err), 0, "%s", err);
  hnsw_params_t hp;
  hnsw_params_get(g, &hp);
  cr_assert_eq(hp.storage, HNSW_INT8);
  hnsw_free(g);
  /* an int8 snapshot under float32, then a float32 one under int8 */
  b = index_new(NULL);
  cr_assert_eq(snapshot_read(b, dir, &meta, NULL, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "int8") && strstr(err, "float32"), "%s", err);
  index_free(b);
  index_free(a);
  a = build();
  cr_assert_eq(snapshot_write(a, dir, 10, &meta, NULL, err, sizeof err), 0, "%s", err);
  b = index_new(&p8);
  cr_assert_eq(snapshot_read(b, dir, &meta8, NULL, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "holds float32"), "%s", err);
  index_free(b);
  index_free(a);
}
