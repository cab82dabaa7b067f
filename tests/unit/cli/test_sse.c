/* test_sse.c - the Server-Sent Events parser on canned streams: fields,
 * line breaks of every kind, input split at every byte, comments, the byte
 * order mark, events without data, the size bound and early stops. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

#define MAX_EVENTS 16

typedef struct seen {
  int n;
  char type[MAX_EVENTS][32];
  char data[MAX_EVENTS][256];
  char id[MAX_EVENTS][32];
  int stop_after; /* stop the parse after this many events; 0: never */
} seen_t;

static int record_cb(void *ud, const sse_event_t *ev) {
  seen_t *s = ud;
  cr_assert_eq(strlen(ev->data), ev->data_len, "data is NUL-terminated at data_len");
  if (s->n < MAX_EVENTS) {
    snprintf(s->type[s->n], sizeof s->type[0], "%s", ev->type);
    snprintf(s->data[s->n], sizeof s->data[0], "%s", ev->data);
    snprintf(s->id[s->n], sizeof s->id[0], "%s", ev->id);
  }
  s->n++;
  return s->stop_after && s->n >= s->stop_after;
}

/* Feeds text in pieces of `step` bytes (0: all at once). */
static q_err_t parse(const char *text, size_t step, seen_t *s, bool *partial) {
  sse_parser_t p;
  sse_parser_init(&p, 1024, record_cb, s);
  size_t len = strlen(text), off = 0;
  q_err_t rc = 0;
  if (!step)
    step = len ? len : 1;
  while (off < len && !rc) {
    size_t n = len - off < step ? len - off : step;
    rc = sse_feed(&p, text + off, n);
    off += n;
  }
  bool cut = sse_finish(&p);
  if (partial)
    *partial = cut;
  sse_parser_cleanup(&p);
  return rc;
}

static const char QUERY_STREAM[] = "event: retrieval\n"
                                   "data: {\"passages\":3}\n"
                                   "\n"
                                   "event: token\n"
                                   "data: {\"text\":\"The bulb \"}\n"
                                   "\n"
                                   ": keep-alive comment\n"
                                   "event: token\r\n"
                                   "data: {\"text\":\"is QX-4471 [1]\"}\r\n"
                                   "\r\n"
                                   "event: citation\r"
                                   "data: {\"n\":1,\"title\":\"Lighthouse\"}\r"
                                   "\r"
                                   "event: done\n"
                                   "id: 7\n"
                                   "data: {\"query_id\":\"q1\"}\n"
                                   "\n";

Test(sse, parses_the_events_of_a_query_stream) {
  seen_t s = {0};
  bool partial = true;
  cr_assert_eq(parse(QUERY_STREAM, 0, &s, &partial), 0);
  cr_assert_not(partial);
  cr_assert_eq(s.n, 5);
  cr_assert_str_eq(s.type[0], "retrieval");
  cr_assert_str_eq(s.type[1], "token");
  cr_assert_str_eq(s.data[1], "{\"text\":\"The bulb \"}");
  cr_assert_str_eq(s.type[2], "token", "CRLF line breaks");
  cr_assert_str_eq(s.data[2], "{\"text\":\"is QX-4471 [1]\"}");
  cr_assert_str_eq(s.type[3], "citation", "CR-only line breaks");
  cr_assert_str_eq(s.data[3], "{\"n\":1,\"title\":\"Lighthouse\"}");
  cr_assert_str_eq(s.type[4], "done");
  cr_assert_str_eq(s.id[4], "7");
}

Test(sse, gives_the_same_events_whatever_the_split) {
  seen_t whole = {0};
  parse(QUERY_STREAM, 0, &whole, NULL);
  for (size_t step = 1; step <= 7; step++) {
    seen_t s = {0};
    cr_assert_eq(parse(QUERY_STREAM, step, &s, NULL), 0);
    cr_assert_eq(s.n, whole.n, "step %zu", step);
    for (int i = 0; i < s.n; i++) {
      cr_assert_str_eq(s.type[i], whole.type[i], "step %zu event %d", step, i);
      cr_assert_str_eq(s.data[i], whole.data[i], "step %zu event %d", step, i);
    }
  }
}

Test(sse, crlf_split_between_cr_and_lf_is_one_break) {
  /* "\r" ends one feed, "\n" starts the next: not an empty line. */
  sse_parser_t p;
  seen_t s = {0};
  sse_parser_init(&p, 1024, record_cb, &s);
  cr_assert_eq(sse_feed(&p, "data: a\r", 8), 0);
  cr_assert_eq(sse_feed(&p, "\ndata: b\r", 9), 0);
  cr_assert_eq(s.n, 0, "no blank line yet");
  cr_assert_eq(sse_feed(&p, "\n\r\n", 3), 0);
  cr_assert_eq(s.n, 1);
  cr_assert_str_eq(s.data[0], "a\nb");
  sse_parser_cleanup(&p);
}

Test(sse, joins_data_lines_and_defaults_the_type) {
  seen_t s = {0};
  parse("data: first\ndata:second\ndata:  third\n\n", 0, &s, NULL);
  cr_assert_eq(s.n, 1);
  cr_assert_str_eq(s.type[0], "message");
  /* One space after the colon is dropped, not more. */
  cr_assert_str_eq(s.data[0], "first\nsecond\n third");
}

Test(sse, field_rules_of_the_standard) {
  seen_t s = {0};
  parse(
      "event: a\nevent: b\nretry: 100\nunknown: x\ndata\n\n" /* data with no colon: "" */
      "event: nodata\n\n"                                    /* no data: not dispatched */
      "data: y\n\n",
      0, &s, NULL);
  cr_assert_eq(s.n, 2);
  cr_assert_str_eq(s.type[0], "b", "the last event: field wins");
  cr_assert_str_eq(s.data[0], "");
  cr_assert_str_eq(s.type[1], "message", "the type does not leak into the next event");
  cr_assert_str_eq(s.data[1], "y");
}

Test(sse, skips_a_leading_byte_order_mark_only) {
  seen_t s = {0};
  parse("\xef\xbb\xbf"
        "data: x\n\n",
        1, &s, NULL);
  cr_assert_eq(s.n, 1);
  cr_assert_str_eq(s.data[0], "x");

  seen_t t = {0};
  parse("\xef\xbb"
        "data: y\n\n",
        0, &t, NULL);
  cr_assert_eq(t.n, 0, "a broken BOM makes the first line an unknown field");
}

Test(sse, drops_an_event_cut_off_by_the_end) {
  seen_t s = {0};
  bool partial = false;
  parse("event: token\ndata: {\"text\":\"a\"}\n\nevent: done\ndata: {}\n", 0, &s,
        &partial);
  cr_assert_eq(s.n, 1);
  cr_assert(partial, "the done event never completed");
}

Test(sse, bounds_the_size_of_an_event) {
  sse_parser_t p;
  seen_t s = {0};
  sse_parser_init(&p, 16, record_cb, &s);
  cr_assert_eq(sse_feed(&p, "data: 0123456789abcdef0123\n", 27), Q_ETOOBIG,
               "a long line");
  sse_parser_cleanup(&p);

  sse_parser_init(&p, 16, record_cb, &s);
  q_err_t rc = 0;
  for (int i = 0; i < 10 && !rc; i++)
    rc = sse_feed(&p, "data: 0123\n", 11);
  cr_assert_eq(rc, Q_ETOOBIG, "many short data lines");
  sse_parser_cleanup(&p);
}

Test(sse, a_callback_can_stop_the_parse) {
  seen_t s = {.stop_after = 1};
  cr_assert_eq(parse("data: 1\n\ndata: 2\n\n", 0, &s, NULL), Q_ECANCELLED);
  cr_assert_eq(s.n, 1);
}
