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
