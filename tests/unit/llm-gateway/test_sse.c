/* Tests of the incremental SSE parser (sse.c): the same events whatever the
 * split of the bytes, CRLF/CR/LF line ends, comments, multi-line data,
 * bounded memory. */
#include "sse.h"

#include "quarry/error.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

typedef struct got {
  char events[16][128];
  int n;
  int stop_after; /* return Q_ECANCELLED after this many events (0: never) */
} got_t;

static q_err_t collect_cb(const char *data, size_t len, void *ud) {
  got_t *g = ud;
  cr_assert_lt(g->n, 16);
  cr_assert_eq(strlen(data), len, "data is NUL-terminated at len");
  snprintf(g->events[g->n++], sizeof g->events[0], "%s", data);
  return g->stop_after && g->n >= g->stop_after ? Q_ECANCELLED : 0;
}

static const char STREAM[] =
    ": keep-alive\r\n\r\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n"
    "event: message\nid: 7\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
    "data: line one\ndata: line two\n\n"
    "data:no-space\r\r"
    "data: [DONE]\n\n";

static const char *const WANT[] = {
    "{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}",
    "line one\nline two",
    "no-space",
    "[DONE]",
};

static void check(const got_t *g) {
  cr_assert_eq(g->n, 5, "got %d events", g->n);
  for (int i = 0; i < 5; i++)
    cr_assert_str_eq(g->events[i], WANT[i]);
}

Test(sse, whole_stream_at_once) {
  sse_parser_t p;
  got_t g = {0};
  sse_init(&p, 4096, collect_cb, &g);
  cr_assert_eq(sse_feed(&p, STREAM, sizeof STREAM - 1), 0);
  check(&g);
  cr_assert(!sse_pending(&p));
  sse_cleanup(&p);
}

/* Every split point, then every pair of split points: curl hands over
 * whatever the network delivered. */
Test(sse, split_at_every_byte_boundary) {
  size_t n = sizeof STREAM - 1;
  for (size_t i = 0; i <= n; i++) {
    sse_parser_t p;
    got_t g = {0};
    sse_init(&p, 4096, collect_cb, &g);
    cr_assert_eq(sse_feed(&p, STREAM, i), 0);
    cr_assert_eq(sse_feed(&p, STREAM + i, n - i), 0);
    check(&g);
    sse_cleanup(&p);
  }
  for (size_t i = 0; i <= n; i += 3)
    for (size_t j = i; j <= n; j += 5) {
      sse_parser_t p;
      got_t g = {0};
      sse_init(&p, 4096, collect_cb, &g);
      sse_feed(&p, STREAM, i);
      sse_feed(&p, STREAM + i, j - i);
      sse_feed(&p, STREAM + j, n - j);
      check(&g);
      sse_cleanup(&p);
    }
}

Test(sse, one_byte_at_a_time) {
  sse_parser_t p;
  got_t g = {0};
  sse_init(&p, 4096, collect_cb, &g);
  for (size_t i = 0; i < sizeof STREAM - 1; i++)
    cr_assert_eq(sse_feed(&p, STREAM + i, 1), 0);
  check(&g);
  sse_cleanup(&p);
}

Test(sse, unfinished_event_is_pending_not_dispatched) {
  sse_parser_t p;
  got_t g = {0};
  sse_init(&p, 4096, collect_cb, &g);
  const char s[] = "data: {\"a\":1}\n\ndata: {\"b\":";
  cr_assert_eq(sse_feed(&p, s, sizeof s - 1), 0);
  cr_assert_eq(g.n, 1);
  cr_assert(sse_pending(&p), "a stream cut here was cut mid-event");
  sse_cleanup(&p);
}

Test(sse, callback_error_stops_the_parser) {
  sse_parser_t p;
  got_t g = {.stop_after = 2};
  sse_init(&p, 4096, collect_cb, &g);
  cr_assert_eq(sse_feed(&p, STREAM, sizeof STREAM - 1), Q_ECANCELLED);
  cr_assert_eq(g.n, 2);
  cr_assert_eq(sse_feed(&p, "data: x\n\n", 9), Q_ECANCELLED, "sticky");
  cr_assert_eq(g.n, 2);
  sse_cleanup(&p);
}

Test(sse, oversized_line_or_event_is_refused) {
  sse_parser_t p;
  got_t g = {0};
  char big[200];
  memset(big, 'x', sizeof big);
  sse_init(&p, 64, collect_cb, &g);
  cr_assert_eq(sse_feed(&p, "data: ", 6), 0);
  cr_assert_eq(sse_feed(&p, big, sizeof big), Q_ETOOBIG);
  cr_assert_eq(g.n, 0);
  sse_cleanup(&p);

  /* Many short data lines adding up past the bound. */
  sse_init(&p, 64, collect_cb, &g);
  q_err_t rc = 0;
  for (int i = 0; i < 20 && !rc; i++)
    rc = sse_feed(&p, "data: 0123456789\n", 17);
  cr_assert_eq(rc, Q_ETOOBIG);
  sse_cleanup(&p);
}
