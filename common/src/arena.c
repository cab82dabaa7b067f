/* arena.c - per-request bump allocator over a list of chunks (see arena.h).
 *
 * Small allocations are carved from the current chunk; chunk sizes double
 * from 4 KiB up to 256 KiB so a small request costs one small malloc and a
 * big one few mallocs. An allocation larger than a quarter of the chunk size
 * gets a chunk of its own, linked behind the current one so the free space of
 * the current chunk is not wasted. Chunks come from calloc, and bump memory
 * is never reused, so everything handed out is already zero. */
#include "quarry/arena.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN alignof(max_align_t)
#define ARENA_FIRST_CHUNK 4096
#define ARENA_MAX_CHUNK (256 * 1024)
#define ARENA_DEFAULT_MAX ((size_t)1 << 30)

typedef struct chunk {
  struct chunk *next;
  size_t size; /* usable bytes in data */
  size_t used;
  alignas(max_align_t) unsigned char data[];
} chunk_t;

struct q_arena {
  chunk_t *head;    /* current chunk for small allocations */
  size_t next_size; /* size of the next small chunk */
  size_t used;      /* bytes handed out (as requested) */
  size_t max;
  ProtobufCAllocator pb;
};

static void *pb_alloc_cb(void *ud, size_t size) {
  return q_arena_alloc(ud, size);
}

static void pb_free_cb(void *ud, void *p) {
  /* Freed with the arena. */
}

q_arena_t *q_arena_new(size_t max) {
  q_arena_t *a = calloc(1, sizeof *a);
  if (!a)
    return NULL;
  a->max = max ? max : ARENA_DEFAULT_MAX;
  a->next_size = ARENA_FIRST_CHUNK;
  a->pb.alloc = pb_alloc_cb;
  a->pb.free = pb_free_cb;
  a->pb.allocator_data = a;
  return a;
}

void q_arena_free(q_arena_t *a) {
  if (!a)
    return;
  chunk_t *c = a->head;
  while (c) {
    chunk_t *next = c->next;
    free(c);
    c = next;
  }
  free(a);
}

static chunk_t *chunk_new(size_t size) {
  if (size > SIZE_MAX - sizeof(chunk_t))
    return NULL;
  chunk_t *c = calloc(1, sizeof(chunk_t) + size);
  if (c)
    c->size = size;
  return c;
}

void *q_arena_alloc(q_arena_t *a, size_t n) {
  if (n > a->max - a->used)
    return NULL;
  /* Round up so every allocation starts aligned; 0 bytes still gets a
   * distinct pointer. */
  size_t sz = n ? n : 1;
  if (sz > SIZE_MAX - ARENA_ALIGN)
    return NULL;
  sz = (sz + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);

  chunk_t *c = a->head;
  if (c && c->size - c->used >= sz) {
    void *p = c->data + c->used;
    c->used += sz;
    a->used += n;
    return p;
  }
  if (sz > a->next_size / 4) {
    chunk_t *big = chunk_new(sz);
    if (!big)
      return NULL;
    big->used = sz;
    if (c) {
      big->next = c->next;
      c->next = big;
    } else {
      a->head = big;
    }
    a->used += n;
    return big->data;
  }
  chunk_t *fresh = chunk_new(a->next_size);
  if (!fresh)
    return NULL;
  if (a->next_size < ARENA_MAX_CHUNK)
    a->next_size *= 2;
  fresh->next = c;
  fresh->used = sz;
  a->head = fresh;
  a->used += n;
  return fresh->data;
}

char *q_arena_strndup(q_arena_t *a, const char *s, size_t n) {
  if (!s)
    s = "";
  size_t len = strnlen(s, n);
  char *p = q_arena_alloc(a, len + 1);
  if (!p)
    return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

char *q_arena_strdup(q_arena_t *a, const char *s) {
  if (!s)
    s = "";
  return q_arena_strndup(a, s, strlen(s));
}

char *q_arena_printf(q_arena_t *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  char *p = q_arena_alloc(a, (size_t)n + 1);
  if (!p)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

size_t q_arena_used(const q_arena_t *a) {
  return a->used;
}

ProtobufCAllocator *q_arena_pb(q_arena_t *a) {
  return &a->pb;
}
