/* Tests of request validation and the JSON events of the feedback service. */
#include "events.h"

#include "quarry/error.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static Quarry__V1__FeedbackRequest good_feedback(void) {
  static char *chunks[2] = {"doc1:1:0", "doc1:1:3"};
  Quarry__V1__FeedbackRequest r = QUARRY__V1__FEEDBACK_REQUEST__INIT;
  r.query_id = "5f0c9b1e-query";
  r.tenant_id = "acme";
  r.user_id = "key:abc";
  r.rating = -1;
  r.comment = "wrong \"answer\"\nsorry";
  r.n_chunk_ids = 2;
  r.chunk_ids = chunks;
  return r;
}

static void expect_invalid(const Quarry__V1__FeedbackRequest *r, const char *field) {
  char err[256] = "";
  cr_assert_eq(events_check_feedback(r, err, sizeof err), Q_EINVAL, "accepted; want %s",
               field);
  cr_assert(strncmp(err, field, strlen(field)) == 0, "error \"%s\" should name %s", err,
            field);
}

Test(events, good_feedback_passes) {
  Quarry__V1__FeedbackRequest r = good_feedback();
  char err[256] = "";
  cr_assert_eq(events_check_feedback(&r, err, sizeof err), 0, "%s", err);
  r.rating = 1;
  r.comment = "";
  r.n_chunk_ids = 0;
  cr_assert_eq(events_check_feedback(&r, err, sizeof err), 0, "%s", err);
}

Test(events, feedback_fields_are_checked) {
  Quarry__V1__FeedbackRequest r = good_feedback();
  r.query_id = "";
  expect_invalid(&r, "query_id");

  r = good_feedback();
  char longid[130];
  memset(longid, 'q', 129);
  longid[129] = '\0';
  r.query_id = longid;
  expect_invalid(&r, "query_id");

  r = good_feedback();
  r.tenant_id = "";
  expect_invalid(&r, "tenant_id");

  int bad_ratings[] = {0, 2, -2, 5};
  for (size_t i = 0; i < 4; i++) {
    r = good_feedback();
    r.rating = bad_ratings[i];
    expect_invalid(&r, "rating");
  }

  r = good_feedback();
  char *comment = malloc(4098);
  memset(comment, 'c', 4097);
  comment[4097] = '\0';
  r.comment = comment;
  expect_invalid(&r, "comment");
  comment[4096] = '\0'; /* exactly 4096 bytes is fine */
  char err[256];
  cr_assert_eq(events_check_feedback(&r, err, sizeof err), 0, "%s", err);
  free(comment);

  r = good_feedback();
  char *many[65];
  for (int i = 0; i < 65; i++)
    many[i] = "c";
  r.chunk_ids = many;
  r.n_chunk_ids = 65;
  expect_invalid(&r, "chunk_ids");
  r.n_chunk_ids = 64;
  cr_assert_eq(events_check_feedback(&r, err, sizeof err), 0, "%s", err);

  r = good_feedback();
  r.comment = "bad \xff utf-8";
  expect_invalid(&r, "comment");
}

Test(events, feedback_json_carries_every_field) {
  Quarry__V1__FeedbackRequest r = good_feedback();
  char *s =
      events_feedback_json(&r, "11111111-2222-4333-8444-555555555555", 1700000000123);
  cr_assert_not_null(s);
  json_error_t jerr;
  json_t *j = json_loads(s, 0, &jerr);
  cr_assert_not_null(j, "not JSON: %s", jerr.text);
  cr_assert_str_eq(json_string_value(json_object_get(j, "event")), "feedback");
  cr_assert_str_eq(json_string_value(json_object_get(j, "feedback_id")),
                   "11111111-2222-4333-8444-555555555555");
  cr_assert_str_eq(json_string_value(json_object_get(j, "event_id")),
                   "11111111-2222-4333-8444-555555555555");
  cr_assert_str_eq(json_string_value(json_object_get(j, "query_id")), "5f0c9b1e-query");
  cr_assert_str_eq(json_string_value(json_object_get(j, "tenant_id")), "acme");
  cr_assert_eq(json_integer_value(json_object_get(j, "rating")), -1);
  cr_assert_str_eq(json_string_value(json_object_get(j, "comment")),
                   "wrong \"answer\"\nsorry");
  cr_assert_eq(json_array_size(json_object_get(j, "chunk_ids")), 2);
  cr_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "chunk_ids"), 1)),
                   "doc1:1:3");
  cr_assert_eq(json_integer_value(json_object_get(j, "ts_unix_ms")), 1700000000123);
  json_decref(j);
  free(s);
}

Test(events, query_events_are_checked_and_serialised) {
  static char *chunks[1] = {"d:1:0"};
  Quarry__V1__QueryEvent q = QUARRY__V1__QUERY_EVENT__INIT;
  char err[256] = "";
  q.query_id = "qid";
  q.tenant_id = "acme";
  q.query = "what is quarry?";
  q.answer = "A RAG platform [1].";
  q.chunk_ids = chunks;
  q.n_chunk_ids = 1;
  q.latency_ms = 42;
  cr_assert_eq(events_check_query(&q, err, sizeof err), 0, "%s", err);

  char *s = events_query_json(&q, "eid", 1700000000000);
  json_t *j = json_loads(s, 0, NULL);
  cr_assert_not_null(j);
  cr_assert_str_eq(json_string_value(json_object_get(j, "event")), "query");
  cr_assert_str_eq(json_string_value(json_object_get(j, "query")), "what is quarry?");
  cr_assert_eq(json_integer_value(json_object_get(j, "latency_ms")), 42);
  /* No timestamp in the request: the time it was accepted. */
  cr_assert_eq(json_integer_value(json_object_get(j, "ts_unix_ms")), 1700000000000);
  json_decref(j);
  free(s);

  q.query = "";
  cr_assert_eq(events_check_query(&q, err, sizeof err), Q_EINVAL);
  cr_assert(strncmp(err, "query", 5) == 0, "%s", err);
  q.query = "x";
  q.latency_ms = -1;
  cr_assert_eq(events_check_query(&q, err, sizeof err), Q_EINVAL);
  cr_assert(strncmp(err, "latency_ms", 10) == 0, "%s", err);
  q.latency_ms = 0;
  q.tenant_id = NULL;
  cr_assert_eq(events_check_query(&q, err, sizeof err), Q_EINVAL);
  cr_assert(strncmp(err, "tenant_id", 9) == 0, "%s", err);
}
