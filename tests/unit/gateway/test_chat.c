/* test_chat.c - parsing of OpenAI chat requests (which fields are checked,
 * which ignored, where the question comes from) and the follow-up
 * rewrite heuristic. */
#include "chat.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static q_err_t parse(const char *js, chat_req_t *c, const char **param) {
  json_error_t e;
  json_t *body = json_loads(js, 0, &e);
  cr_assert_not_null(body, "test JSON: %s", e.text);
  char msg[512];
  q_err_t rc = chat_parse(body, c, msg, sizeof msg, param);
  json_decref(body);
  return rc;
}

Test(chat, minimal_request_asks_the_last_user_message) {
  chat_req_t c;
  const char *param;
  cr_assert_eq(parse("{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":"
                     "\"How do I rotate an API key?\"}]}",
                     &c, &param),
               0);
  cr_assert_str_eq(c.question, "How do I rotate an API key?");
  cr_assert_str_eq(c.query, "How do I rotate an API key?");
  cr_assert_not(c.stream, "non-streaming by default");
  cr_assert_not(c.rewritten);
  cr_assert_eq(c.prompt_words, 7);
  chat_req_cleanup(&c);
}

Test(chat, unknown_fields_are_ignored_and_sampling_fields_checked) {
  chat_req_t c;
  const char *param;
  cr_assert_eq(
      parse("{\"model\":\"gpt-4o\",\"stream\":true,\"n\":1,\"max_tokens\":50,"
            "\"temperature\":0.2,\"top_p\":1,\"user\":\"u\",\"presence_penalty\":0,"
            "\"stream_options\":{\"include_usage\":true},\"seed\":3,"
            "\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What "
            "is BM25 scoring?\"}]}]}",
            &c, &param),
      0);
  cr_assert(c.stream);
  cr_assert_str_eq(c.question, "What is BM25 scoring?");
  chat_req_cleanup(&c);
}

Test(chat, invalid_requests_name_the_field) {
  struct {
    const char *body, *param;
  } cases[] = {
      {"{}", "messages"},
      {"{\"messages\":[]}", "messages"},
      {"{\"messages\":\"hi\"}", "messages"},
      {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"hi\"}]}", "messages"},
      {"{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", "messages"},
      /* fuzz_json: roles are OpenAI's enum, case-sensitive */
      {"{\"messages\":[{\"role\":\"User\",\"content\":\"x\"},"
       "{\"role\":\"user\",\"content\":\"What is a lamp?\"}]}",
       "messages"},
      {"{\"messages\":[{\"role\":\"USER\",\"content\":\"hi\"}]}", "messages"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":\"   \"}]}", "messages"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":null}]}", "messages"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
       "messages"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages"},
      {"{\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "n"},
      {"{\"stream\":\"yes\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
       "stream"},
      {"{\"temperature\":3,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
       "temperature"},
      {"{\"top_p\":-1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "top_p"},
      {"{\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
       "max_tokens"},
      {"{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    chat_req_t c;
    const char *param = NULL;
    cr_assert_eq(parse(cases[i].body, &c, &param), Q_EINVAL, "%s", cases[i].body);
    cr_assert_str_eq(param, cases[i].param, "%s", cases[i].body);
  }
}

/* A request of count messages of each bytes of text. */
static char *big(size_t count, size_t bytes) {
  size_t cap = count * (bytes + 64) + 64;
  char *s = malloc(cap);
  size_t o = (size_t)snprintf(s, cap, "{\"messages\":[");
  for (size_t i = 0; i < count; i++) {
    o += (size_t)snprintf(s + o, cap - o, "%s{\"role\":\"user\",\"content\":\"",
                          i ? "," : "");
    memset(s + o, 'a', bytes);
    o += bytes;
    o += (size_t)snprintf(s + o, cap - o, "\"}");
  }
  snprintf(s + o, cap - o, "]}");
  return s;
}

Test(chat, sizes_follow_the_limits) {
  chat_req_t c;
  const char *param;
  char *s = big(Q_LIMIT_CHAT_MESSAGES, 10);
  cr_assert_eq(parse(s, &c, &param), 0, "CHAT_MESSAGES messages are fine");
  chat_req_cleanup(&c);
  free(s);
  s = big(Q_LIMIT_CHAT_MESSAGES + 1, 10);
  cr_assert_eq(parse(s, &c, &param), Q_EINVAL, "one more is not");
  free(s);
  s = big(Q_LIMIT_CHAT_BYTES / Q_LIMIT_QUERY_BYTES + 1, Q_LIMIT_QUERY_BYTES);
  cr_assert_eq(parse(s, &c, &param), Q_EINVAL, "more than CHAT_BYTES in all");
  free(s);
  s = big(1, Q_LIMIT_QUERY_BYTES);
  cr_assert_eq(parse(s, &c, &param), 0, "a question of QUERY_BYTES");
  chat_req_cleanup(&c);
  free(s);
  s = big(1, Q_LIMIT_QUERY_BYTES + 1);
  cr_assert_eq(parse(s, &c, &param), Q_EINVAL, "a question longer than QUERY_BYTES");
  free(s);
}

Test(chat, follow_up_is_rewritten_with_the_previous_user_turn) {
  chat_req_t c;
  const char *param;
  cr_assert_eq(
      parse("{\"messages\":["
            "{\"role\":\"user\",\"content\":\"How do I rotate the API keys of "
            "the ingestion service?\"},"
            "{\"role\":\"assistant\",\"content\":\"Create a new key [1].\"},"
            "{\"role\":\"user\",\"content\":\"And how often should it happen?\"}]}",
            &c, &param),
      0);
  cr_assert_str_eq(c.previous, "How do I rotate the API keys of the ingestion service?");
  cr_assert(c.rewritten);
  cr_assert_str_eq(c.query,
                   "rotate API keys ingestion service And how often should it happen?");
  chat_req_cleanup(&c);
}

Test(chat, follow_up_detection) {
  cr_assert(chat_is_follow_up("and the page size?"));
  cr_assert(chat_is_follow_up("What about PDFs?"));
  cr_assert(chat_is_follow_up("How about the reranker then"));
  cr_assert(chat_is_follow_up("Why is it slow today for everybody"));
  cr_assert(chat_is_follow_up("page size?"), "short");
  cr_assert(chat_is_follow_up("Tell me more about retries and..."));
  cr_assert_not(chat_is_follow_up("How do I rotate an API key?"));
  cr_assert_not(chat_is_follow_up("Which formats does ingestion accept today?"));
}

Test(chat, standalone_question_is_not_rewritten) {
  char out[Q_LIMIT_QUERY_BYTES + 1];
  cr_assert_not(chat_rewrite("Tell me about BM25 scoring",
                             "Which formats does ingestion accept?", out, sizeof out));
  cr_assert_str_eq(out, "Which formats does ingestion accept?");
  cr_assert_not(chat_rewrite(NULL, "and PDFs?", out, sizeof out), "no previous turn");
  cr_assert_str_eq(out, "and PDFs?");
}

Test(chat, rewrite_takes_distinct_salient_terms_and_fits) {
  char out[64];
  cr_assert(chat_rewrite("the the Kafka kafka topics for KAFKA events of the pipeline "
                         "ingestion retries backoff jitter extra terms",
                         "and PDFs?", out, sizeof out));
  /* 8 terms at most, stop words and case-insensitive repeats dropped, and
   * only while the whole fits 63 bytes. */
  cr_assert_str_eq(out, "Kafka topics events pipeline ingestion retries jitter and PDFs?",
                   "backoff does not fit; the shorter jitter does");
  cr_assert_lt(strlen(out), sizeof out);
  char tiny[12];
  cr_assert_not(chat_rewrite("Kafka topics", "and PDFs?", tiny, sizeof tiny),
                "no room for a term");
  cr_assert_str_eq(tiny, "and PDFs?");
  cr_assert(chat_rewrite("rotate keys", "does it expire?", out, sizeof out));
  cr_assert_str_eq(out, "rotate keys does it expire?");
  cr_assert(chat_rewrite("rotate keys", "rotate it?", out, sizeof out));
  cr_assert_str_eq(out, "keys rotate it?", "terms already asked are not repeated");
}

/* The Quarry extension: quarry.filter is POST /v1/query's filter, checked
 * by the same rule and handed on as compact JSON. */
Test(chat, quarry_filter_is_kept_as_compact_json) {
  chat_req_t c;
  const char *param;
  cr_assert_eq(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"What is the "
                     "hotel limit?\"}],\"quarry\":{\"filter\":{\"and\": [{\"field\": "
                     "\"meta.team\", \"eq\": \"finance\"}, {\"field\":\"created_at\","
                     "\"gte\":\"2024-01-01T00:00:00Z\"}]}}}",
                     &c, &param),
               0);
  cr_assert_str_eq(c.filter,
                   "{\"and\":[{\"field\":\"meta.team\",\"eq\":\"finance\"},"
                   "{\"field\":\"created_at\",\"gte\":\"2024-01-01T00:00:00Z\"}]}");
  chat_req_cleanup(&c);
  cr_assert_null(c.filter);
  /* absent, null and an empty extension: no filter */
  const char *none[] = {
      "{\"messages\":[{\"role\":\"user\",\"content\":\"What is x?\"}]}",
      "{\"quarry\":null,\"messages\":[{\"role\":\"user\",\"content\":\"What is x?\"}]}",
      "{\"quarry\":{},\"messages\":[{\"role\":\"user\",\"content\":\"What is x?\"}]}",
      "{\"quarry\":{\"filter\":null},\"messages\":[{\"role\":\"user\",\"content\":"
      "\"What is x?\"}]}",
  };
  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
    cr_assert_eq(parse(none[i], &c, &param), 0, "%s", none[i]);
    cr_assert_null(c.filter, "%s", none[i]);
    chat_req_cleanup(&c);
  }
}

Test(chat, bad_quarry_filter_names_the_place) {
  struct {
    const char *ext, *param, *msg;
  } cases[] = {
      {"\"quarry\":5", "quarry", "quarry must be an object"},
      {"\"quarry\":{\"top_k\":3}", "quarry", "quarry: unknown field \"top_k\""},
      {"\"quarry\":{\"filter\":\"team=finance\"}", "quarry.filter", "quarry.filter"},
      {"\"quarry\":{\"filter\":{\"field\":\"meta.team\",\"like\":\"fin\"}}",
       "quarry.filter", "quarry.filter"},
      {"\"quarry\":{\"filter\":{\"and\":[{\"field\":\"title\",\"eq\":\"a\"},"
       "{\"not\":{\"field\":\"colour\",\"eq\":\"red\"}}]}}",
       "quarry.filter", "quarry.filter.and[1]"},
      {"\"quarry\":{\"filter\":{\"field\":\"created_at\",\"gt\":\"yesterday\"}}",
       "quarry.filter", "quarry.filter"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char js[1024];
    snprintf(js, sizeof js,
             "{%s,\"messages\":[{\"role\":\"user\",\"content\":\"What is x?\"}]}",
             cases[i].ext);
    json_error_t e;
    json_t *body = json_loads(js, 0, &e);
    cr_assert_not_null(body, "test JSON: %s", e.text);
    chat_req_t c;
    const char *param = NULL;
    char msg[512] = "";
    cr_assert_eq(chat_parse(body, &c, msg, sizeof msg, &param), Q_EINVAL, "%s", js);
    json_decref(body);
    cr_assert_str_eq(param, cases[i].param, "%s", js);
    cr_assert(strncmp(msg, cases[i].msg, strlen(cases[i].msg)) == 0, "%s: %s", js, msg);
  }
}

Test(chat, quarry_filter_is_bounded_by_the_limit) {
  /* An "in" list of 200 values of 100 bytes: each value and the count are
   * within their limits, the whole is over Q_LIMIT_FILTER_BYTES. */
  size_t cap = 200 * 104 + 256;
  char *js = malloc(cap);
  size_t o =
      (size_t)snprintf(js, cap, "{\"quarry\":{\"filter\":{\"field\":\"meta.k\",\"in\":[");
  for (int i = 0; i < 200; i++)
    o += (size_t)snprintf(js + o, cap - o, "%s\"%0100d\"", i ? "," : "", i);
  snprintf(js + o, cap - o,
           "]}},\"messages\":[{\"role\":\"user\",\"content\":\"What is x?\"}]}");
  cr_assert_gt(200 * 103, Q_LIMIT_FILTER_BYTES);
  json_error_t e;
  json_t *body = json_loads(js, 0, &e);
  free(js);
  cr_assert_not_null(body, "test JSON: %s", e.text);
  chat_req_t c;
  const char *param = NULL;
  char msg[512] = "";
  cr_assert_eq(chat_parse(body, &c, msg, sizeof msg, &param), Q_EINVAL);
  json_decref(body);
  cr_assert_str_eq(param, "quarry.filter");
  cr_assert(strstr(msg, "bytes as compact JSON") != NULL, "%s", msg);
}
