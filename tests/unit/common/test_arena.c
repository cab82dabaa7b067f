/* test_arena.c - the per-request bump allocator. */
#include <criterion/criterion.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quarry/arena.h"

Test(arena, alloc_is_zeroed_and_aligned) {
  q_arena_t *a = q_arena_new(0);
  cr_assert_not_null(a);
  for (size_t n = 0; n < 300; n += 7) {
    unsigned char *p = q_arena_alloc(a, n);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % alignof(max_align_t), 0);
    for (size_t i = 0; i < n; i++)
      cr_assert_eq(p[i], 0);
    memset(p, 0xab, n);
  }
  q_arena_free(a);
}

Test(arena, allocations_do_not_overlap) {
  q_arena_t *a = q_arena_new(0);
  enum { N = 2000 };
  static unsigned char *ptrs[N];
  for (int i = 0; i < N; i++) {
    size_t n = (size_t)(i % 97) + 1 + (i % 100 == 0 ? 50000 : 0);
    ptrs[i] = q_arena_alloc(a, n);
    cr_assert_not_null(ptrs[i]);
    memset(ptrs[i], i & 0xff, n);
  }
  for (int i = 0; i < N; i++) {
    size_t n = (size_t)(i % 97) + 1 + (i % 100 == 0 ? 50000 : 0);
    cr_assert_eq(ptrs[i][0], (unsigned char)(i & 0xff), "alloc %d", i);
    cr_assert_eq(ptrs[i][n - 1], (unsigned char)(i & 0xff), "alloc %d", i);
  }
  q_arena_free(a);
}

Test(arena, maximum_is_enforced) {
  q_arena_t *a = q_arena_new(1000);
  cr_assert_not_null(q_arena_alloc(a, 600));
  cr_assert_eq(q_arena_used(a), 600);
  cr_assert_null(q_arena_alloc(a, 401));
  cr_assert_not_null(q_arena_alloc(a, 400));
  cr_assert_eq(q_arena_used(a), 1000);
  cr_assert_null(q_arena_alloc(a, 1));
  cr_assert_null(q_arena_alloc(a, SIZE_MAX));
  q_arena_free(a);
}

Test(arena, huge_request_fails_cleanly) {
  q_arena_t *a = q_arena_new(0);
  cr_assert_null(q_arena_alloc(a, ((size_t)1 << 30) + 1));
  cr_assert_null(q_arena_alloc(a, SIZE_MAX));
  cr_assert_eq(q_arena_used(a), 0);
  q_arena_free(a);
}

Test(arena, strings) {
  q_arena_t *a = q_arena_new(0);
  cr_assert_str_eq(q_arena_strdup(a, "abc"), "abc");
  cr_assert_str_eq(q_arena_strdup(a, NULL), "");
  cr_assert_str_eq(q_arena_strndup(a, "abcdef", 3), "abc");
  cr_assert_str_eq(q_arena_strndup(a, "ab", 10), "ab");
  cr_assert_str_eq(q_arena_strndup(a, NULL, 5), "");
  cr_assert_str_eq(q_arena_printf(a, "%s-%d", "x", 7), "x-7");
  char big[5000];
  memset(big, 'y', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  char *p = q_arena_printf(a, "<%s>", big);
  cr_assert_eq(strlen(p), 5000 + 1);
  q_arena_free(a);
}

Test(arena, strdup_respects_max) {
  q_arena_t *a = q_arena_new(8);
  cr_assert_null(q_arena_strdup(a, "123456789"));
  cr_assert_str_eq(q_arena_strdup(a, "1234567"), "1234567");
  q_arena_free(a);
}

Test(arena, destroy_null_is_fine) {
  q_arena_free(NULL);
}

Test(arena, protobuf_allocator_draws_from_arena) {
  q_arena_t *a = q_arena_new(0);
  ProtobufCAllocator *pb = q_arena_pb(a);
  cr_assert_not_null(pb);
  size_t before = q_arena_used(a);
  void *p = pb->alloc(pb->allocator_data, 128);
  cr_assert_not_null(p);
  cr_assert_eq(q_arena_used(a), before + 128);
  pb->free(pb->allocator_data, p); /* no-op; freed with the arena */
  cr_assert_eq(q_arena_used(a), before + 128);
  q_arena_free(a);
}
