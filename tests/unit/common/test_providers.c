/* Tests of the provider configuration (providers.c): the file format,
 * defaults, validation messages naming entry and field, keys from the
 * environment or a file (never from the JSON, never in messages). */
#include "quarry/error.h"
#include "quarry/providers.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static q_err_t parse(q_providers_t *p, const char *json, char *err, size_t errlen) {
  json_error_t je;
  json_t *root = json_loads(json, 0, &je);
  cr_assert_not_null(root, "test JSON: %s", je.text);
  q_err_t rc = q_providers_parse(p, root, 384, err, errlen);
  json_decref(root);
  return rc;
}

Test(providers, lists_in_order_with_defaults_and_urls) {
  q_providers_t p;
  char err[512] = "";
  setenv("QTEST_KEY", "sk-secret-1", 1);
  q_providers_init(&p);
  cr_assert_eq(
      parse(&p,
            "{\"chat\":[{\"kind\":\"openai-chat\",\"name\":\"vllm\","
            "\"base_url\":\"http://gpu:8000/\",\"model\":\"llama\","
            "\"key_env\":\"QTEST_KEY\",\"cost_per_1k_prompt\":0.25},"
            "{\"kind\":\"openai-chat\",\"base_url\":\"https://api.openai.com\","
            "\"model\":\"gpt-4o-mini\"}],"
            "\"embed\":[{\"kind\":\"tei-embed\",\"base_url\":\"http://tei:80\"}],"
            "\"rerank\":[{\"kind\":\"cohere-rerank\",\"base_url\":\"https://"
            "api.jina.ai\",\"model\":\"jina-reranker-v2\"},{\"kind\":\"tei-"
            "rerank\",\"base_url\":\"http://tei-rr\"}],"
            "\"retry\":{\"max_attempts\":4},\"breaker\":{\"cooldown_ms\":1000}}",
            err, sizeof err),
      0, "%s", err);
  cr_assert_eq(p.n[Q_CAP_CHAT], 2);
  const q_provider_cfg_t *c = &p.list[Q_CAP_CHAT][0];
  cr_assert_str_eq(c->name, "vllm");
  cr_assert_str_eq(c->base_url, "http://gpu:8000");
  cr_assert_str_eq(c->url, "http://gpu:8000/v1/chat/completions");
  cr_assert_str_eq(c->api_key, "sk-secret-1");
  cr_assert_str_eq(c->key_source, "env:QTEST_KEY");
  cr_assert_float_eq(c->cost_prompt_per_1k, 0.25, 1e-12);
  cr_assert_eq(c->connect_timeout_ms, 2000);
  cr_assert_eq(c->timeout_ms, 60000);
  cr_assert_eq(c->context_tokens, 3000);
  cr_assert(c->stream_usage);
  cr_assert_str_eq(p.list[Q_CAP_CHAT][1].name, "openai-chat-1");
  cr_assert_null(p.list[Q_CAP_CHAT][1].api_key);
  cr_assert_str_eq(p.list[Q_CAP_CHAT][1].key_source, "none");
  cr_assert_str_eq(p.list[Q_CAP_EMBED][0].url, "http://tei:80/embed");
  cr_assert_eq(p.list[Q_CAP_EMBED][0].dim, 384, "default dim");
  cr_assert_str_eq(p.list[Q_CAP_RERANK][0].url, "https://api.jina.ai/v1/rerank");
  cr_assert_str_eq(p.list[Q_CAP_RERANK][1].url, "http://tei-rr/rerank");
  cr_assert_eq(p.retry.max_attempts, 4);
  cr_assert_eq(p.retry.base_ms, 200, "unset fields keep their defaults");
  cr_assert_eq(p.breaker_cooldown_ms, 1000);
  cr_assert_eq(p.breaker_failures, 5);
  q_providers_cleanup(&p);
}

static void refused(const char *json, const char *want) {
  q_providers_t p;
  char err[512] = "";
  q_providers_init(&p);
  cr_assert_eq(parse(&p, json, err, sizeof err), Q_EINVAL, "accepted: %s", json);
  cr_assert(strstr(err, want), "message \"%s\" lacks \"%s\"", err, want);
  cr_assert_eq(p.n[Q_CAP_CHAT] + p.n[Q_CAP_EMBED] + p.n[Q_CAP_RERANK], 0);
  q_providers_cleanup(&p);
}

Test(providers, invalid_entries_are_named) {
  refused("[]", "JSON object");
  refused("{\"chats\":[]}", "unknown top-level field \"chats\"");
  refused("{\"chat\":{}}", "chat: must be an array");
  refused("{\"chat\":[{\"base_url\":\"http://x\",\"model\":\"m\"}]}",
          "chat[0].kind: required");
  refused("{\"chat\":[{\"kind\":\"tei-embed\",\"base_url\":\"http://x\"}]}",
          "chat[0].kind: \"tei-embed\" is not a chat provider");
  refused("{\"embed\":[{\"kind\":\"openai-embed\",\"base_url\":\"ftp://"
          "x\",\"model\":\"m\"}]}",
          "embed[0].base_url");
  refused("{\"chat\":[{\"kind\":\"openai-chat\",\"base_url\":\"http://"
          "x?k=1\",\"model\":\"m\"}]}",
          "chat[0].base_url");
  refused("{\"chat\":[{\"kind\":\"openai-chat\",\"base_url\":\"http://x\"}]}",
          "chat[0].model: required");
  refused(
      "{\"chat\":[{\"kind\":\"openai-chat\",\"base_url\":\"http://x\",\"model\":\"m\","
      "\"timeout_ms\":5}]}",
      "chat[0].timeout_ms: must be an integer 100..600000");
  refused(
      "{\"chat\":[{\"kind\":\"openai-chat\",\"base_url\":\"http://x\",\"model\":\"m\","
      "\"api_key\":\"sk-inline\"}]}",
      "chat[0]: unknown field \"api_key\"");
  refused(
      "{\"chat\":[{\"kind\":\"openai-chat\",\"base_url\":\"http://x\",\"model\":\"m\","
      "\"cost_per_1k_prompt\":-1}]}",
      "chat[0].cost_per_1k_prompt");
  refused(
      "{\"chat\":[{\"kind\":\"openai-chat\",\"base_url\":\"http://x\",\"model\":\"m\","
      "\"key_env\":\"QTEST_UNSET_VARIABLE\"}]}",
      "chat[0].key_env: environment variable QTEST_UNSET_VARIABLE is not set");
  refused("{\"chat\":[{\"kind\":\"openai-chat\",\"name\":\"a\",\"base_url\":\"http://x\","
          "\"model\":\"m\"},{\"kind\":\"openai-chat\",\"name\":\"a\",\"base_url\":"
          "\"http://y\",\"model\":\"m\"}]}",
          "chat[1].name: \"a\" is used twice");
  refused("{\"retry\":{\"max_attempts\":0}}", "retry.max_attempts");
  refused("{\"breaker\":{\"failures\":\"3\"}}", "breaker.failures");
}

Test(providers, key_from_a_file_and_never_in_messages) {
  char path[] = "/tmp/quarry-key-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, "sk-from-file\n", 13), 13);
  close(fd);
  char json[512], err[512] = "";
  snprintf(json, sizeof json,
           "{\"rerank\":[{\"kind\":\"tei-rerank\",\"base_url\":\"http://x\","
           "\"key_file\":\"%s\"}]}",
           path);
  q_providers_t p;
  q_providers_init(&p);
  cr_assert_eq(parse(&p, json, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(p.list[Q_CAP_RERANK][0].api_key, "sk-from-file", "newline trimmed");
  q_providers_cleanup(&p);

  /* An invalid entry after a key was read: the message names the field,
   * never the key. */
  setenv("QTEST_KEY2", "sk-do-not-print", 1);
  q_providers_init(&p);
  cr_assert_eq(parse(&p,
                     "{\"chat\":[{\"kind\":\"openai-chat\",\"base_url\":\"http://x\","
                     "\"model\":\"m\",\"key_env\":\"QTEST_KEY2\"},{\"kind\":\"openai-"
                     "chat\",\"base_url\":\"http://y\",\"model\":\"m\",\"key_env\":"
                     "\"QTEST_KEY2\",\"key_file\":\"/x\"}]}",
                     err, sizeof err),
               Q_EINVAL);
  cr_assert(strstr(err, "not both"), "%s", err);
  cr_assert_null(strstr(err, "sk-do-not-print"));
  q_providers_cleanup(&p);
  unlink(path);

  q_providers_init(&p);
  cr_assert_eq(q_providers_load(&p, "/nonexistent/providers.json", 384, err, sizeof err),
               Q_EINVAL);
  cr_assert(strstr(err, "/nonexistent/providers.json"), "%s", err);
  q_providers_cleanup(&p);
}
