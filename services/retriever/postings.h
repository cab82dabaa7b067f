/* postings.h - one term's postings in the lexical index, compressed in
 * blocks, with what dynamic pruning needs to skip them.
 *
 * A posting is (slot, tf in the text, tf in the title). Postings are kept
 * sorted by slot in blocks of up to POSTINGS_BLOCK: each posting is the
 * varint (LEB128) of its slot's distance from the previous one (the first
 * of a block from the previous block's last slot, or from 0), then the
 * varint of tf_text << 1 | (tf_title > 0), then the varint of tf_title when
 * that bit is set. Each block records its last slot (to skip it whole), the
 * byte offset of its data and, for score upper bounds, the largest tf of
 * each field and the smallest length of each field over its chunks
 * (index.c turns those into a block's largest possible BM25F score).
 *
 * New postings go to a small sorted tail, uncompressed: appended slots (the
 * usual case: new chunks get new slots) leave it every 16, topping up the
 * last block (re-encoded) until it holds POSTINGS_BLOCK; reused slots
 * (smaller than the last block's)
 * stay there until the tail is an eighth of the blocks (or 4096), when the
 * whole list is merged and re-encoded. A cursor walks blocks and tail
 * merged, in slot order.
 *
 * Not thread-safe by itself: index.c writes under its write lock and reads
 * (cursors) under its read lock. Out of memory aborts (index.h's policy). */
#ifndef QUARRY_RETRIEVER_POSTINGS_H
#define QUARRY_RETRIEVER_POSTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POSTINGS_BLOCK 128

/* A cursor's slot once it has passed the last posting. */
#define POSTINGS_END UINT32_MAX

typedef struct posting {
  uint32_t slot;
  uint32_t tf_text, tf_title;
} posting_t;

typedef struct pblock {
  uint32_t last; /* largest slot in the block */
  uint32_t off;  /* byte offset of its data */
  uint32_t n;    /* postings in it */
  uint32_t max_tf_text, max_tf_title;
  uint32_t min_len_text, min_len_title; /* of its chunks' fields (0 when a
                                           slot was already retired) */
} pblock_t;

typedef struct postings {
  uint8_t *data;
  size_t nbytes, capbytes;
  pblock_t *blocks;
  uint32_t nblocks, capblocks;
  uint32_t nblocked; /* postings in blocks */
  posting_t *tail;   /* sorted by slot */
  uint32_t ntail, captail;
} postings_t;

/* The lengths of a slot's chunk (text, title); 0 and 0 for a retired one. */
typedef void (*postings_len_fn)(const void *ctx, uint32_t slot, uint32_t *len_text,
                                uint32_t *len_title);

/* Whether the posting of slot stays (postings_rebuild). */
typedef bool (*postings_keep_fn)(const void *ctx, uint32_t slot);

/* Frees what p holds and zeroes it. */
void postings_cleanup(postings_t *p);

/* Postings held, live or not. */
static inline size_t postings_count(const postings_t *p) {
  return (size_t)p->nblocked + p->ntail;
}

/* Bytes of memory p holds (allocated capacity). */
size_t postings_memory(const postings_t *p);

/* Makes dst (empty) a copy of src. */
void postings_copy(postings_t *dst, const postings_t *src);

/* Adds e, whose slot p does not hold yet. */
void postings_add(postings_t *p, posting_t e, postings_len_fn len, const void *ctx);

/* Re-encodes every posting into blocks (the tail empties), dropping those
 * keep refuses (keep NULL: all stay) and renumbering slots through map
 * (map NULL: unchanged; map must preserve order, and len is then asked
 * about the new numbers). */
void postings_rebuild(postings_t *p, postings_keep_fn keep, const void *keep_ctx,
                      const uint32_t *map, postings_len_fn len, const void *len_ctx);

/* Decodes block b into out[] (room for POSTINGS_BLOCK); returns its count. */
uint32_t postings_decode(const postings_t *p, uint32_t b, posting_t *out);

/* Takes the encoded blocks of a snapshot: counts[0..nblocks) postings per
 * block (1..POSTINGS_BLOCK), data[0..nbytes) their bytes back to back. Each
 * posting is checked (slots increasing and < nslots, no truncated or
 * overlong varint, every byte used) and handed to each (may be NULL) with
 * ud; block bounds are computed with len. true when p (empty before) now
 * holds them; false when the data is malformed (p is then left empty). */
bool postings_adopt(postings_t *p, const uint8_t *counts, uint32_t nblocks,
                    const uint8_t *data, size_t nbytes, uint32_t nslots,
                    postings_len_fn len, const void *len_ctx,
                    void (*each)(void *ud, const posting_t *e), void *ud);

/* A cursor over blocks and tail merged, in slot order. */
typedef struct pcursor {
  const postings_t *p;
  uint32_t blk;     /* block being read (nblocks: past them) */
  uint32_t pos, n;  /* position in dec[], its count */
  uint32_t shallow; /* block a bound was last asked for (postings_block_at) */
  uint32_t ti;      /* tail position */
  posting_t cur;    /* the current posting; cur.slot == POSTINGS_END at the end */
  posting_t dec[POSTINGS_BLOCK];
} pcursor_t;

/* Starts c at the first posting of p. */
void pcursor_init(pcursor_t *c, const postings_t *p);

/* Moves to the next posting. */
void pcursor_next(pcursor_t *c);

/* Moves to the first posting whose slot is >= target (no move when the
 * current one is); skips whole blocks without decoding them. */
void pcursor_seek(pcursor_t *c, uint32_t target);

/* The block that would hold target, without moving or decoding (targets
 * must not decrease between calls): its number, or nblocks when target is
 * past every block. */
uint32_t pcursor_block_at(pcursor_t *c, uint32_t target);

#endif
