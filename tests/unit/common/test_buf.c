/* test_buf.c - the bounded growable buffer. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"
#include "quarry/error.h"

Test(buf, starts_empty_and_appends) {
  q_buf_t b;
  q_buf_init(&b, 1024);
  cr_assert_null(b.data);
  cr_assert_eq(q_buf_puts(&b, "hello"), 0);
  cr_assert_eq(q_buf_append(&b, ", world", 7), 0);
  cr_assert_eq(b.len, 12);
  cr_assert_str_eq(b.data, "hello, world");
  q_buf_cleanup(&b);
  cr_assert_null(b.data);
}

Test(buf, grows_across_many_appends) {
  q_buf_t b;
  q_buf_init(&b, 1 << 20);
  for (int i = 0; i < 10000; i++)
    cr_assert_eq(q_buf_append(&b, "0123456789", 10), 0);
  cr_assert_eq(b.len, 100000);
  cr_assert_eq(strlen(b.data), 100000);
  cr_assert_eq(memcmp(b.data + 99990, "0123456789", 10), 0);
  q_buf_cleanup(&b);
}

Test(buf, maximum_is_enforced_and_buffer_left_unchanged) {
  q_buf_t b;
  q_buf_init(&b, 8);
  cr_assert_eq(q_buf_puts(&b, "12345"), 0);
  cr_assert_eq(q_buf_puts(&b, "6789"), Q_ETOOBIG);
  cr_assert_eq(b.len, 5);
  cr_assert_str_eq(b.data, "12345");
  cr_assert_eq(q_buf_puts(&b, "678"), 0);
  cr_assert_eq(b.len, 8);
  cr_assert_eq(q_buf_append(&b, "x", 1), Q_ETOOBIG);
  cr_assert_eq(q_buf_printf(&b, "%d", 1), Q_ETOOBIG);
  cr_assert_leq(b.cap, 9);
  cr_assert_str_eq(b.data, "12345678");
  q_buf_cleanup(&b);
}

Test(buf, printf_short_and_long) {
  q_buf_t b;
  q_buf_init(&b, 10000);
  cr_assert_eq(q_buf_printf(&b, "%s=%d;", "a", 42), 0);
  char big[1000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cr_assert_eq(q_buf_printf(&b, "[%s]", big), 0);
  cr_assert_eq(b.len, 5 + 2 + 999);
  cr_assert_eq(strncmp(b.data, "a=42;[zzz", 9), 0);
  cr_assert_eq(b.data[b.len - 1], ']');
  cr_assert_eq(b.data[b.len], '\0');
  q_buf_cleanup(&b);
}

Test(buf, printf_past_max_fails) {
  q_buf_t b;
  q_buf_init(&b, 300);
  char big[400];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cr_assert_eq(q_buf_printf(&b, "%s", big), Q_ETOOBIG);
  cr_assert_eq(b.len, 0);
  q_buf_cleanup(&b);
}

Test(buf, reset_keeps_memory) {
  q_buf_t b;
  q_buf_init(&b, 100);
  q_buf_puts(&b, "abc");
  char *before = b.data;
  q_buf_reset(&b);
  cr_assert_eq(b.len, 0);
  cr_assert_str_eq(b.data, "");
  cr_assert_eq(b.data, before);
  q_buf_puts(&b, "de");
  cr_assert_str_eq(b.data, "de");
  q_buf_cleanup(&b);
}

Test(buf, steal_hands_over_content) {
  q_buf_t b;
  q_buf_init(&b, 100);
  char *empty = q_buf_steal(&b);
  cr_assert_not_null(empty);
  cr_assert_str_eq(empty, "");
  free(empty);
  q_buf_puts(&b, "mine");
  char *s = q_buf_steal(&b);
  cr_assert_str_eq(s, "mine");
  cr_assert_null(b.data);
  cr_assert_eq(b.len, 0);
  free(s);
  cr_assert_eq(q_buf_puts(&b, "again"), 0);
  cr_assert_str_eq(b.data, "again");
  q_buf_cleanup(&b);
}

Test(buf, binary_content_with_nul) {
  q_buf_t b;
  q_buf_init(&b, 16);
  cr_assert_eq(q_buf_append(&b, "a\0b", 3), 0);
  cr_assert_eq(b.len, 3);
  cr_assert_eq(memcmp(b.data, "a\0b", 4), 0);
  q_buf_cleanup(&b);
}
