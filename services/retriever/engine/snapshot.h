/* snapshot.h - the embedded engine's snapshot files: its whole in-memory
 * index (each tenant's chunks and HNSW graph) written under a directory, so
 * a start loads it and replays only the change log after it instead of
 * rebuilding from PostgreSQL.
 *
 * Files in dir (docs/retrieval.md, "Snapshots", has the byte layout):
 *  - index.snap: a header (magic "QRYIDX01", format version, the change log
 *    position the snapshot reflects, the settings that shape the index
 *    including a fingerprint of the stopword list, the identity of the
 *    database it came from, a CRC-32 of the header), then one section per
 *    tenant (length, CRC-32 of the section, tenant, vector dimension,
 *    whether it has a graph file, its live chunks: ids, title, text,
 *    version, ordinal, page, offsets in the document, vector label, filter
 *    fields, field lengths; then its terms, each with its block-compressed
 *    postings as the index holds them, postings.h), and nothing after the
 *    last section;
 *  - graph-<pos>-<k>.hnsw: the HNSW graph of the k-th tenant, written by
 *    hnsw_save (its own header, version and BLAKE2b checksum), tagged with
 *    the same position.
 * Every file is written to a temporary name, fsynced and renamed, then the
 * directory fsynced; index.snap last, so until it is renamed the previous
 * snapshot (whose graph files carry another position) stays whole. Graph
 * files of other positions are removed after the rename.
 *
 * CRC-32 is zlib's (Debian zlib1g, already linked for gRPC); the graph
 * files carry libsodium's BLAKE2b. */
#ifndef QUARRY_RETRIEVER_ENGINE_SNAPSHOT_H
#define QUARRY_RETRIEVER_ENGINE_SNAPSHOT_H

#include "index.h"

#include "quarry/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever the layout changes: a snapshot of another version is
 * discarded (and the index rebuilt). 2: chunks carry their document's
 * filter fields; 3: the header names the database; 4: chunks carry their
 * document's author and language; 5: and their offsets in the document;
 * 6: each tenant's terms and compressed postings, and the stopword list's
 * fingerprint in the header. */
#define SNAPSHOT_FORMAT 6

/* The settings a snapshot must have been made with to be used. */
typedef struct snapshot_meta {
  size_t fixed_dim;
  bool inner_product;
  /* The database the index was loaded from (store_db_id): a snapshot of
   * another database is refused. All zero: none (memory only). */
  uint8_t db_id[16];
  /* The graphs hold int8 codes (QUARRY_RETRIEVER_VECTOR_TYPE=int8), not
   * floats: checked against each graph file's own header. */
  bool int8_vectors;
} snapshot_meta_t;

/* What was written or read. */
typedef struct snapshot_info {
  int64_t pos;    /* change log position */
  size_t tenants; /* sections */
  size_t chunks;  /* live chunks */
  uint64_t bytes; /* index.snap plus the graph files */
} snapshot_info_t;

/* Writes idx to dir (created if missing) as reflecting log position pos.
 * Upserts wait while it runs (index_visit); searches do not. 0 with info
 * (may be NULL); Q_EIO with err naming the failing step (the previous
 * snapshot is then still whole). */
q_err_t snapshot_write(index_t *idx, const char *dir, int64_t pos,
                       const snapshot_meta_t *meta, snapshot_info_t *info, char *err,
                       size_t errlen);

/* Loads the snapshot in dir into idx, which must be empty. 0 with info;
 * Q_ENOTFOUND when there is none; Q_EINVAL with err saying what is wrong
 * (magic, version, settings, checksum, truncation, a graph file missing,
 * corrupt or of another position) - idx may then hold part of it and must
 * be discarded; Q_EIO when a file cannot be read; Q_ENOMEM. */
q_err_t snapshot_read(index_t *idx, const char *dir, const snapshot_meta_t *want,
                      snapshot_info_t *info, char *err, size_t errlen);

#endif
