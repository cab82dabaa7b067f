/* arena.h - per-request memory pool (h2o's mem pool).
 *
 * Everything a request allocates comes from its arena and is released at
 * once by q_arena_free when the request ends. The arena has a maximum total
 * size fixed at creation so hostile input cannot exhaust memory; allocation
 * past it returns NULL. Not thread-safe: one arena per request. */
#ifndef QUARRY_ARENA_H
#define QUARRY_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct q_arena q_arena_t;

/* Creates an arena that may hand out at most max bytes in total (0: 1 GiB).
 * Returns NULL when out of memory. The caller owns it. */
q_arena_t *q_arena_new(size_t max);

/* Releases the arena and everything allocated from it. NULL is fine. */
void q_arena_free(q_arena_t *a);

/* Returns zeroed memory aligned for any type, owned by the arena; NULL when
 * the arena's maximum would be exceeded or memory is exhausted. */
void *q_arena_alloc(q_arena_t *a, size_t n);

/* Copies a string (or its first n bytes, always NUL-terminated) into the
 * arena. NULL input gives "". */
char *q_arena_strdup(q_arena_t *a, const char *s);
char *q_arena_strndup(q_arena_t *a, const char *s, size_t n);

/* printf into arena memory. */
char *q_arena_printf(q_arena_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Bytes handed out so far. */
size_t q_arena_used(const q_arena_t *a);

/* A protobuf-c allocator drawing from the arena: messages unpacked with it
 * are freed with the arena (freeing them individually is a no-op). The
 * allocator lives inside the arena. */
ProtobufCAllocator *q_arena_pb(q_arena_t *a);

#endif
