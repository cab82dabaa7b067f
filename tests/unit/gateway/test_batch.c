/* test_batch.c - one NDJSON line of POST /v1/documents/batch
 * (batch_parse_line): what a good line gives, and each hostile line refused
 * with a sentence naming its problem. */
#include "batch.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/limits.h"

#define MAX_DOC (1 << 20)

static q_arena_t *a;

static void setup(void) {
  a = q_arena_new(64u << 20);
}

static void teardown(void) {
  q_arena_free(a);
}

TestSuite(batch, .init = setup, .fini = teardown);

static q_err_t parse(const char *line, batch_doc_t *d, char *err) {
  return batch_parse_line(line, strlen(line), MAX_DOC, a, d, err, 256);
}

Test(batch, a_full_line) {
  batch_doc_t d;
  char err[256] = "";
  cr_assert_eq(parse("{\"external_id\":\"e-1\",\"title\":\"T\xc3\xa9\",\"text\":\"Body "
                     "\\u00e9 text.\\nSecond line.\",\"metadata\":{\"b\":[\"x\",\"y\"],"
                     "\"a\":1.5,\"c\":true}}\r",
                     &d, err),
               Q_OK, "%s", err);
  cr_assert_str_eq(d.external_id, "e-1");
  cr_assert_str_eq(d.title, "T\xc3\xa9");
  cr_assert_str_eq(d.text, "Body \xc3\xa9 text.\nSecond line.");
  cr_assert_eq(d.text_len, strlen(d.text));
  cr_assert_str_eq(d.metadata, "{\"b\":[\"x\",\"y\"],\"a\":1.5,\"c\":true}");
}

Test(batch, only_text_is_required) {
  batch_doc_t d;
  char err[256] = "";
  cr_assert_eq(parse("{\"text\":\"x\",\"title\":null}", &d, err), Q_OK, "%s", err);
  cr_assert_str_eq(d.external_id, "");
  cr_assert_str_eq(d.title, "");
  cr_assert_str_eq(d.metadata, "");
}

static void refused(const char *line, size_t len, q_err_t want, const char *words) {
  batch_doc_t d;
  char err[256] = "";
  q_err_t rc = batch_parse_line(line, len, MAX_DOC, a, &d, err, sizeof err);
  cr_assert_eq(rc, want, "%.60s: rc %d, %s", line, rc, err);
  cr_assert(strstr(err, words), "%.60s: \"%s\" lacks \"%s\"", line, err, words);
}

#define REFUSED(line, want, words) refused(line, sizeof line - 1, want, words)

Test(batch, bad_json_and_bad_utf8) {
  REFUSED("{\"text\": \"x\"", Q_EINVAL, "not valid JSON");
  REFUSED("", Q_EINVAL, "not valid JSON");
  REFUSED("[\"text\"]", Q_EINVAL, "not a JSON object");
  REFUSED("\"text\"", Q_EINVAL, "not");
  REFUSED("{\"text\": \"caf\xc3\"}", Q_EINVAL, "not valid UTF-8");
  REFUSED("{\"text\": \"\xed\xa0\x80\"}", Q_EINVAL, "not valid UTF-8"); /* a surrogate */
  REFUSED("{\"text\": \"\xc0\xaf\"}", Q_EINVAL, "not valid UTF-8");     /* overlong */
  REFUSED("{\"text\": \"a\\u0000b\"}", Q_EINVAL, "not valid JSON");     /* NUL */
  REFUSED("{\"text\": \"a\"} {\"text\": \"b\"}", Q_EINVAL, "not valid JSON");
  REFUSED("{\"text\": \"a\", \"text\": \"b\"}", Q_EINVAL, "duplicate");
}

Test(batch, wrong_keys_and_types) {
  REFUSED("{\"title\": \"t\"}", Q_EINVAL, "\"text\" is required");
  REFUSED("{\"text\": \"\"}", Q_EINVAL, "\"text\" is required");
  REFUSED("{\"text\": 7}", Q_EINVAL, "\"text\" is required");
  REFUSED("{\"text\": \"x\", \"colour\": 1}", Q_EINVAL, "unknown key \"colour\"");
  REFUSED("{\"text\": \"x\", \"title\": 5}", Q_EINVAL, "\"title\" must be a string");
  REFUSED("{\"text\": \"x\", \"external_id\": []}", Q_EINVAL,
          "\"external_id\" must be a string");
  REFUSED("{\"text\": \"x\", \"title\": \"a\\tb\"}", Q_EINVAL, "control characters");
  REFUSED("{\"text\": \"x\", \"metadata\": \"m\"}", Q_EINVAL, "must be a JSON object");
  REFUSED("{\"text\": \"x\", \"metadata\": [1]}", Q_EINVAL, "must be a JSON object");
  /* What q_meta_check refuses for a single upload is refused here too. */
  REFUSED("{\"text\": \"x\", \"metadata\": {\"a\": {\"x\": 1}}}", Q_EINVAL,
          "metadata \"a\"");
  REFUSED("{\"text\": \"x\", \"metadata\": {\"b\": [1, 2]}}", Q_EINVAL,
          "item 0 of the list is not a string");
  REFUSED("{\"text\": \"x\", \"metadata\": {\"bad key\": 1}}", Q_EINVAL,
          "metadata key \"bad key\"");
}

Test(batch, sizes) {
  /* A title one byte over its limit. */
  size_t n = Q_LIMIT_TITLE_BYTES + 1;
  char *line = malloc(n + 64);
  int k = snprintf(line, n + 64, "{\"text\":\"x\",\"title\":\"");
  memset(line + k, 't', n);
  strcpy(line + k + n, "\"}");
  refused(line, strlen(line), Q_EINVAL, "\"title\" is longer than 512 bytes");
  free(line);

  /* Metadata over Q_LIMIT_METADATA_BYTES as compact JSON. */
  n = Q_LIMIT_METADATA_BYTES;
  line = malloc(n + 64);
  k = snprintf(line, n + 64, "{\"text\":\"x\",\"metadata\":{\"k\":\"");
  memset(line + k, 'm', n);
  strcpy(line + k + n, "\"}}");
  refused(line, strlen(line), Q_ETOOBIG, "\"metadata\" is larger than");
  free(line);

  /* A line over Q_LIMIT_BATCH_LINE_BYTES, whatever it holds. */
  n = Q_LIMIT_BATCH_LINE_BYTES + 1;
  line = malloc(n);
  memset(line, ' ', n);
  refused(line, n, Q_ETOOBIG, "longer than 1048576 bytes");
  free(line);

  /* A text over the document limit. */
  batch_doc_t d;
  char err[256] = "";
  cr_assert_eq(
      batch_parse_line("{\"text\":\"0123456789\"}", 21, 9, a, &d, err, sizeof err),
      Q_ETOOBIG);
  cr_assert_str_eq(err, "\"text\" is larger than 9 bytes");
  cr_assert_eq(
      batch_parse_line("{\"text\":\"0123456789\"}", 21, 10, a, &d, err, sizeof err),
      Q_OK);
}

Test(batch, chunking_of_a_line) {
  batch_doc_t d;
  char err[256] = "";
  cr_assert_eq(parse("{\"text\":\"x\"}", &d, err), Q_OK, "%s", err);
  cr_assert_str_eq(d.chunking, "", "no choice: ingestion's settings");
  cr_assert_eq(parse("{\"text\":\"x\",\"chunking\":\"fixed\",\"chunk_tokens\":128,"
                     "\"chunk_overlap\":16}",
                     &d, err),
               Q_OK, "%s", err);
  cr_assert_str_eq(d.chunking, "fixed:128:16");
  cr_assert_eq(parse("{\"text\":\"x\",\"chunk_tokens\":64}", &d, err), Q_OK, "%s", err);
  cr_assert_str_eq(d.chunking, ":64:");
  REFUSED("{\"text\":\"x\",\"chunking\":\"pages\"}", Q_EINVAL,
          "chunking: unknown strategy \"pages\"");
  REFUSED("{\"text\":\"x\",\"chunking\":7}", Q_EINVAL, "\"chunking\" must be a string");
  REFUSED("{\"text\":\"x\",\"chunk_tokens\":\"64\"}", Q_EINVAL,
          "\"chunk_tokens\" must be a whole number");
  REFUSED("{\"text\":\"x\",\"chunk_tokens\":5000}", Q_EINVAL, "chunk_tokens");
  REFUSED("{\"text\":\"x\",\"chunk_tokens\":0}", Q_EINVAL,
          "chunk_tokens: must be 1..4096");
  REFUSED("{\"text\":\"x\",\"chunk_overlap\":8}", Q_EINVAL,
          "chunk_overlap: needs chunk_tokens");
  REFUSED("{\"text\":\"x\",\"chunk_tokens\":10,\"chunk_overlap\":6}", Q_EINVAL,
          "chunk_overlap: must be 0..5");
}
