/* test_trace.c - thread context, trace ids and traceparent parsing. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quarry/error.h"
#include "quarry/trace.h"

static const char *VALID_TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

Test(trace, parses_valid_traceparent) {
  char id[Q_TRACE_ID_LEN + 1];
  cr_assert_eq(q_trace_parse_traceparent(VALID_TP, id), 0);
  cr_assert_str_eq(id, "4bf92f3577b34da6a3ce929d0e0e4736");
}

Test(trace, future_version_may_have_more_fields) {
  char id[Q_TRACE_ID_LEN + 1];
  cr_assert_eq(q_trace_parse_traceparent(
                   "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz", id),
               0);
  cr_assert_str_eq(id, "4bf92f3577b34da6a3ce929d0e0e4736");
}

Test(trace, rejects_malformed_traceparent) {
  static const char *const bad[] = {
      "",
      "00",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",     /* no flags */
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper */
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero id */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero span */
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",   /* short id */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* v00 extra */
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
  };
  char id[Q_TRACE_ID_LEN + 1];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(q_trace_parse_traceparent(bad[i], id), Q_EINVAL, "case %zu: %s", i,
                 bad[i]);
  cr_assert_eq(q_trace_parse_traceparent(NULL, id), Q_EINVAL);
}

Test(trace, new_ids_are_hex_and_distinct) {
  char a[Q_TRACE_ID_LEN + 1], b[Q_TRACE_ID_LEN + 1];
  q_trace_new_id(a);
  q_trace_new_id(b);
  cr_assert_eq(strlen(a), Q_TRACE_ID_LEN);
  cr_assert_str_neq(a, b);
  cr_assert_eq(strspn(a, "0123456789abcdef"), Q_TRACE_ID_LEN);
  /* usable in a traceparent we build ourselves */
  char tp[64], back[Q_TRACE_ID_LEN + 1];
  snprintf(tp, sizeof tp, "00-%s-00f067aa0ba902b7-01", a);
  cr_assert_eq(q_trace_parse_traceparent(tp, back), 0);
  cr_assert_str_eq(back, a);
}

Test(trace, id_validity) {
  cr_assert(q_trace_id_valid("abc-DEF_1.2"));
  cr_assert(q_trace_id_valid("4bf92f3577b34da6a3ce929d0e0e4736"));
  cr_assert_not(q_trace_id_valid(""));
  cr_assert_not(q_trace_id_valid(NULL));
  cr_assert_not(q_trace_id_valid("has space"));
  cr_assert_not(q_trace_id_valid("semi;colon"));
  cr_assert_not(q_trace_id_valid("new\nline"));
  char s[80];
  memset(s, 'a', 64);
  s[64] = '\0';
  cr_assert(q_trace_id_valid(s));
  s[64] = 'a';
  s[65] = '\0';
  cr_assert_not(q_trace_id_valid(s));
}

Test(trace, set_and_clear) {
  cr_assert_str_eq(q_trace_id(), "");
  cr_assert_eq(q_trace_deadline(), 0);
  q_trace_set("abc", 12345);
  cr_assert_str_eq(q_trace_id(), "abc");
  cr_assert_eq(q_trace_deadline(), 12345);
  q_trace_set(NULL, 0);
  cr_assert_str_eq(q_trace_id(), "");
  q_trace_set("xyz", 7);
  q_trace_clear();
  cr_assert_str_eq(q_trace_id(), "");
  cr_assert_eq(q_trace_deadline(), 0);
}

static void *other_thread(void *arg) {
  /* A fresh thread has no context even though the main thread has one. */
  int ok = q_trace_id()[0] == '\0' && q_trace_deadline() == 0;
  q_trace_set("thread-two", 99);
  ok = ok && strcmp(q_trace_id(), "thread-two") == 0;
  *(int *)arg = ok;
  return NULL;
}

Test(trace, context_is_per_thread) {
  q_trace_set("thread-one", 42);
  int ok = 0;
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, other_thread, &ok), 0);
  pthread_join(t, NULL);
  cr_assert(ok);
  cr_assert_str_eq(q_trace_id(), "thread-one");
  cr_assert_eq(q_trace_deadline(), 42);
}

Test(trace, clocks) {
  int64_t a = q_now_ms();
  struct timespec d = {0, 20 * 1000000};
  nanosleep(&d, NULL);
  int64_t b = q_now_ms();
  cr_assert_geq(b - a, 19);
  cr_assert_lt(b - a, 5000);
  int64_t wall = q_wall_ms();
  cr_assert_lt(llabs(wall - (int64_t)time(NULL) * 1000), 2000);
}

Test(trace, now_s_is_monotonic_and_agrees_with_now_ms) {
  double a = q_now_s();
  int64_t ms = q_now_ms();
  double b = q_now_s();
  cr_assert(b >= a);
  cr_assert(ms >= (int64_t)(a * 1000.0) - 1 && ms <= (int64_t)(b * 1000.0) + 1);
}
