/* postings.c - block-compressed postings of one term (see postings.h). */
#include "postings.h"

#include "quarry/log.h"

#include <stdlib.h>
#include <string.h>

static void oom(void) {
  q_log_error("retriever index: out of memory; aborting (the index is rebuilt "
              "from PostgreSQL at restart)",
              NULL);
  abort();
}

/* Makes room for need elements in *arr (capacity *cap, elements of sz). */
static void grow(void *arr, size_t *cap, size_t need, size_t sz) {
  if (need <= *cap)
    return;
  size_t c = *cap ? *cap : 4;
  while (c < need)
    c *= 2;
  void *p = realloc(*(void **)arr, c * sz);
  if (!p)
    oom();
  *(void **)arr = p;
  *cap = c;
}

static void grow32(void *arr, uint32_t *cap, size_t need, size_t sz) {
  size_t c = *cap;
  grow(arr, &c, need, sz);
  *cap = (uint32_t)c;
}

void postings_cleanup(postings_t *p) {
  free(p->data);
  free(p->blocks);
  free(p->tail);
  memset(p, 0, sizeof *p);
}

size_t postings_memory(const postings_t *p) {
  return p->capbytes + (size_t)p->capblocks * sizeof *p->blocks +
         (size_t)p->captail * sizeof *p->tail;
}

void postings_copy(postings_t *dst, const postings_t *src) {
  *dst = *src;
  dst->data = malloc(src->nbytes ? src->nbytes : 1);
  dst->blocks = malloc((src->nblocks ? src->nblocks : 1) * sizeof *dst->blocks);
  dst->tail = malloc((src->ntail ? src->ntail : 1) * sizeof *dst->tail);
  if (!dst->data || !dst->blocks || !dst->tail)
    oom();
  memcpy(dst->data, src->data, src->nbytes);
  memcpy(dst->blocks, src->blocks, src->nblocks * sizeof *dst->blocks);
  memcpy(dst->tail, src->tail, src->ntail * sizeof *dst->tail);
  dst->capbytes = src->nbytes ? src->nbytes : 1;
  dst->capblocks = src->nblocks ? src->nblocks : 1;
  dst->captail = src->ntail ? src->ntail : 1;
}

/* ---- varints ---------------------------------------------------------------- */

static size_t put_varint(uint8_t *o, uint32_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    o[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  o[n++] = (uint8_t)v;
  return n;
}

static size_t varint_len(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Reads a varint of at most 5 bytes from *q (< end); false when truncated
 * or longer than 32 bits. */
static bool get_varint(const uint8_t **q, const uint8_t *end, uint32_t *v) {
  uint32_t x = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (*q >= end)
      return false;
    uint8_t b = *(*q)++;
    if (shift == 28 && b > 0x0f)
      return false;
    x |= (uint32_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return true;
    }
  }
  return false;
}

/* ---- encoding ------------------------------------------------------------- */

/* Appends e[0..n) (sorted, slots above the last block's) as one block. */
static void encode_block(postings_t *p, const posting_t *e, uint32_t n,
                         postings_len_fn len, const void *ctx) {
  grow32(&p->blocks, &p->capblocks, (size_t)p->nblocks + 1, sizeof *p->blocks);
  /* Data grows by a quarter, not double: most lists stop growing at some
   * point, and doubling would leave a third of their bytes unused. */
  size_t need = p->nbytes;
  uint32_t pv = p->nblocks ? p->blocks[p->nblocks - 1].last : 0;
  for (uint32_t i = 0; i < n; i++) { /* the exact size: no 15-byte worst case */
    need += varint_len(e[i].slot - pv) + varint_len(e[i].tf_text << 1 | 1u) +
            (e[i].tf_title ? varint_len(e[i].tf_title) : 0);
    pv = e[i].slot;
  }
  if (need > p->capbytes) {
    size_t c = p->capbytes + p->capbytes / 4;
    if (c < need)
      c = need;
    uint8_t *d = realloc(p->data, c);
    if (!d)
      oom();
    p->data = d;
    p->capbytes = c;
  }
  uint32_t prev = p->nblocks ? p->blocks[p->nblocks - 1].last : 0;
  pblock_t *b = &p->blocks[p->nblocks];
  *b = (pblock_t){.off = (uint32_t)p->nbytes,
                  .n = n,
                  .min_len_text = UINT32_MAX,
                  .min_len_title = UINT32_MAX};
  uint8_t *o = p->data + p->nbytes;
  size_t w = 0;
  for (uint32_t i = 0; i < n; i++) {
    w += put_varint(o + w, e[i].slot - prev);
    prev = e[i].slot;
    w += put_varint(o + w, e[i].tf_text << 1 | (e[i].tf_title ? 1u : 0u));
    if (e[i].tf_title)
      w += put_varint(o + w, e[i].tf_title);
    if (e[i].tf_text > b->max_tf_text)
      b->max_tf_text = e[i].tf_text;
    if (e[i].tf_title > b->max_tf_title)
      b->max_tf_title = e[i].tf_title;
    uint32_t lx = 0, lt = 0;
    len(ctx, e[i].slot, &lx, &lt);
    if (lx < b->min_len_text)
      b->min_len_text = lx;
    if (lt < b->min_len_title)
      b->min_len_title = lt;
  }
  b->last = prev;
  p->nbytes += w;
  p->nblocks++;
  p->nblocked += n;
}

uint32_t postings_decode(const postings_t *p, uint32_t b, posting_t *out) {
  const pblock_t *bl = &p->blocks[b];
  const uint8_t *q = p->data + bl->off;
  const uint8_t *end =
      b + 1 < p->nblocks ? p->data + p->blocks[b + 1].off : p->data + p->nbytes;
  uint32_t prev = b ? p->blocks[b - 1].last : 0;
  for (uint32_t i = 0; i < bl->n; i++) {
    uint32_t d = 0, tf = 0, tt = 0;
    /* The data was written by encode_block or checked by postings_adopt. */
    get_varint(&q, end, &d);
    get_varint(&q, end, &tf);
    if (tf & 1)
      get_varint(&q, end, &tt);
    prev += d;
    out[i] = (posting_t){prev, tf >> 1, tt};
  }
  return bl->n;
}

void postings_rebuild(postings_t *p, postings_keep_fn keep, const void *keep_ctx,
                      const uint32_t *map, postings_len_fn len, const void *len_ctx) {
  size_t total = postings_count(p), n = 0;
  posting_t *all = malloc((total ? total : 1) * sizeof *all);
  if (!all)
    oom();
  posting_t dec[POSTINGS_BLOCK];
  uint32_t ti = 0;
  /* Blocks and tail merged in slot order. */
  for (uint32_t b = 0; b <= p->nblocks; b++) {
    uint32_t m = b < p->nblocks ? postings_decode(p, b, dec) : 0;
    uint32_t upto = b < p->nblocks ? p->blocks[b].last : UINT32_MAX;
    for (uint32_t i = 0;;) {
      bool from_tail = ti < p->ntail && p->tail[ti].slot <= upto &&
                       (i == m || p->tail[ti].slot < dec[i].slot);
      if (!from_tail && i == m)
        break;
      posting_t e = from_tail ? p->tail[ti++] : dec[i++];
      if (keep && !keep(keep_ctx, e.slot))
        continue;
      if (map)
        e.slot = map[e.slot];
      all[n++] = e;
    }
  }
  free(p->data);
  free(p->blocks);
  free(p->tail);
  memset(p, 0, sizeof *p);
  for (size_t at = 0; at < n; at += POSTINGS_BLOCK) {
    uint32_t m = n - at < POSTINGS_BLOCK ? (uint32_t)(n - at) : POSTINGS_BLOCK;
    encode_block(p, all + at, m, len, len_ctx);
  }
  /* Trim what the growth left over: these lists mostly sit still now. */
  if (p->capbytes > p->nbytes + 64) {
    uint8_t *d = realloc(p->data, p->nbytes ? p->nbytes : 1);
    if (d) {
      p->data = d;
      p->capbytes = p->nbytes ? p->nbytes : 1;
    }
  }
  free(all);
}

/* Postings the tail gathers before they are encoded. */
#define TAIL_FLUSH 16

/* Encodes the tail (every slot above the last block's) into blocks: the
 * last block, when not full, is decoded and re-encoded with the first of
 * them, so blocks stay full but the last. */
static void flush_tail(postings_t *p, postings_len_fn len, const void *ctx) {
  posting_t buf[POSTINGS_BLOCK];
  uint32_t at = 0;
  if (p->nblocks && p->blocks[p->nblocks - 1].n < POSTINGS_BLOCK) {
    at = postings_decode(p, p->nblocks - 1, buf);
    p->nbytes = p->blocks[p->nblocks - 1].off;
    p->nblocks--;
    p->nblocked -= at;
  }
  for (uint32_t i = 0; i < p->ntail;) {
    while (at < POSTINGS_BLOCK && i < p->ntail)
      buf[at++] = p->tail[i++];
    encode_block(p, buf, at, len, ctx);
    at = 0;
  }
  p->ntail = 0;
}

void postings_add(postings_t *p, posting_t e, postings_len_fn len, const void *ctx) {
  grow32(&p->tail, &p->captail, (size_t)p->ntail + 1, sizeof *p->tail);
  uint32_t at = p->ntail;
  if (at && p->tail[at - 1].slot > e.slot) {
    uint32_t lo = 0, hi = at;
    while (lo < hi) {
      uint32_t mid = (lo + hi) / 2;
      if (p->tail[mid].slot < e.slot)
        lo = mid + 1;
      else
        hi = mid;
    }
    memmove(p->tail + lo + 1, p->tail + lo, (at - lo) * sizeof *p->tail);
    at = lo;
  }
  p->tail[at] = e;
  p->ntail++;
  /* Appended slots leave the tail in small steps (uncompressed, a posting
   * takes 12 bytes: most terms of a vocabulary never reach a full block),
   * topping up the last block; reused ones wait for a merge. */
  if (p->ntail >= TAIL_FLUSH &&
      (!p->nblocks || p->tail[0].slot > p->blocks[p->nblocks - 1].last))
    flush_tail(p, len, ctx);
  if (!p->ntail && p->captail > 4) { /* most lists rest with an empty tail */
    free(p->tail);
    p->tail = NULL;
    p->captail = 0;
  }
  if (p->ntail >= 2 * POSTINGS_BLOCK && (p->ntail * 8 >= p->nblocked || p->ntail >= 4096))
    postings_rebuild(p, NULL, NULL, NULL, len, ctx);
}

bool postings_adopt(postings_t *p, const uint8_t *counts, uint32_t nblocks,
                    const uint8_t *data, size_t nbytes, uint32_t nslots,
                    postings_len_fn len, const void *len_ctx,
                    void (*each)(void *ud, const posting_t *e), void *ud) {
  memset(p, 0, sizeof *p);
  if (nbytes > UINT32_MAX)
    return false;
  p->data = malloc(nbytes ? nbytes : 1);
  p->blocks = malloc((nblocks ? nblocks : 1) * sizeof *p->blocks);
  if (!p->data || !p->blocks)
    oom();
  memcpy(p->data, data, nbytes);
  p->nbytes = p->capbytes = nbytes ? nbytes : 1;
  p->nbytes = nbytes;
  p->capblocks = nblocks ? nblocks : 1;
  const uint8_t *q = p->data, *end = p->data + nbytes;
  uint32_t prev = 0;
  bool first = true;
  for (uint32_t b = 0; b < nblocks; b++) {
    uint32_t n = counts[b];
    if (n == 0 || n > POSTINGS_BLOCK)
      goto bad;
    pblock_t *bl = &p->blocks[b];
    *bl = (pblock_t){.off = (uint32_t)(q - p->data),
                     .n = n,
                     .min_len_text = UINT32_MAX,
                     .min_len_title = UINT32_MAX};
    for (uint32_t i = 0; i < n; i++) {
      uint32_t d, tf, tt = 0;
      if (!get_varint(&q, end, &d) || !get_varint(&q, end, &tf) ||
          ((tf & 1) && !get_varint(&q, end, &tt)))
        goto bad;
      if ((!first && d == 0) || d >= nslots - prev || (first && d >= nslots))
        goto bad;
      first = false;
      prev += d;
      posting_t e = {prev, tf >> 1, tt};
      if (e.tf_text > bl->max_tf_text)
        bl->max_tf_text = e.tf_text;
      if (e.tf_title > bl->max_tf_title)
        bl->max_tf_title = e.tf_title;
      uint32_t lx = 0, lt = 0;
      len(len_ctx, e.slot, &lx, &lt);
      if (lx < bl->min_len_text)
        bl->min_len_text = lx;
      if (lt < bl->min_len_title)
        bl->min_len_title = lt;
      if (each)
        each(ud, &e);
    }
    bl->last = prev;
    p->nblocked += n;
  }
  if (q != end)
    goto bad;
  p->nblocks = nblocks;
  return true;
bad:
  postings_cleanup(p);
  return false;
}

/* ---- cursors ----------------------------------------------------------------- */

/* Sets c->cur to the smaller of the block's and the tail's current posting. */
static void settle(pcursor_t *c) {
  uint32_t bs = c->pos < c->n ? c->dec[c->pos].slot : POSTINGS_END;
  uint32_t ts = c->ti < c->p->ntail ? c->p->tail[c->ti].slot : POSTINGS_END;
  if (bs == POSTINGS_END && ts == POSTINGS_END)
    c->cur = (posting_t){POSTINGS_END, 0, 0};
  else
    c->cur = bs < ts ? c->dec[c->pos] : c->p->tail[c->ti];
}

static void load_block(pcursor_t *c) {
  c->pos = 0;
  c->n = c->blk < c->p->nblocks ? postings_decode(c->p, c->blk, c->dec) : 0;
}

void pcursor_init(pcursor_t *c, const postings_t *p) {
  c->p = p;
  c->blk = 0;
  c->shallow = 0;
  c->ti = 0;
  load_block(c);
  settle(c);
}

void pcursor_next(pcursor_t *c) {
  if (c->cur.slot == POSTINGS_END)
    return;
  if (c->pos < c->n && c->dec[c->pos].slot == c->cur.slot) {
    if (++c->pos == c->n) {
      c->blk++;
      load_block(c);
    }
  } else {
    c->ti++;
  }
  settle(c);
}

void pcursor_seek(pcursor_t *c, uint32_t target) {
  if (c->cur.slot >= target)
    return;
  const postings_t *p = c->p;
  if (c->blk < p->nblocks && p->blocks[c->blk].last < target) {
    while (c->blk < p->nblocks && p->blocks[c->blk].last < target)
      c->blk++;
    load_block(c);
  }
  while (c->pos < c->n && c->dec[c->pos].slot < target)
    c->pos++;
  /* pos == n only when the block is the last one. */
  while (c->ti < p->ntail && p->tail[c->ti].slot < target)
    c->ti++;
  settle(c);
}

uint32_t pcursor_block_at(pcursor_t *c, uint32_t target) {
  const postings_t *p = c->p;
  if (c->shallow < c->blk)
    c->shallow = c->blk;
  while (c->shallow < p->nblocks && p->blocks[c->shallow].last < target)
    c->shallow++;
  return c->shallow;
}
