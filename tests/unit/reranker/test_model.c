/* test_model.c - the feature model's weights file: what is accepted, what
 * is refused and how the refusal reads; the shipped file loads. */
#include "model.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[512];

/* A valid file's text with the weights w0 (retrieval) and rest for the
 * others, plus extra keys; into buf. */
static const char *doc(char *buf, size_t n, const char *weights_tail) {
  snprintf(buf, n,
           "{\"format\":\"quarry-rerank-linear\",\"version\":1,\"name\":\"t\","
           "\"weights\":{\"retrieval\":0.5,\"rank\":0,\"lexical\":1,\"dense\":-2,"
           "\"bm25_body\":0.25,\"bm25_title\":0,\"coverage\":0,\"proximity\":0,"
           "\"phrase\":0%s},\"fit\":{\"anything\":[1,2]}}",
           weights_tail);
  return buf;
}

static q_err_t parse(const char *s, rerank_model_t *m) {
  err[0] = '\0';
  return model_parse(s, strlen(s), m, err, sizeof err);
}

Test(model, a_valid_file_sets_every_weight_by_name) {
  char b[1024];
  rerank_model_t m;
  cr_assert_eq(parse(doc(b, sizeof b, ",\"length\":3e-1"), &m), 0, "%s", err);
  cr_assert_str_eq(m.name, "t");
  cr_assert_float_eq(m.w[FEAT_RETRIEVAL], 0.5, 1e-12);
  cr_assert_float_eq(m.w[FEAT_DENSE], -2.0, 1e-12);
  cr_assert_float_eq(m.w[FEAT_LENGTH], 0.3, 1e-12);
  double x[FEATURES_N] = {0};
  x[FEAT_RETRIEVAL] = 1;
  x[FEAT_LEXICAL] = 2;
  x[FEAT_BM25_BODY] = 4;
  cr_assert_float_eq(model_score(&m, x), 0.5 + 2 + 1, 1e-12);
}

Test(model, malformed_files_are_refused_with_the_reason) {
  char b[1024];
  rerank_model_t m;
  struct {
    const char *text, *why;
  } bad[] = {
      {"", "not valid JSON"},
      {"{\"format\":", "not valid JSON"},
      {"[1,2]", "not a JSON object"},
      {"{\"format\":\"other\",\"version\":1}", "\"format\" must be"},
      {"{\"format\":\"quarry-rerank-linear\",\"version\":2}", "\"version\" must be 1"},
      {"{\"format\":\"quarry-rerank-linear\",\"version\":\"1\"}",
       "\"version\" must be 1"},
      {"{\"format\":\"quarry-rerank-linear\",\"version\":1,\"name\":\"\"}", "\"name\""},
      {"{\"format\":\"quarry-rerank-linear\",\"version\":1,\"name\":\"x\"}",
       "\"weights\""},
      {"{\"format\":\"quarry-rerank-linear\",\"version\":1,\"name\":\"x\",\"weights\":[]"
       "}",
       "\"weights\""},
      {doc(b, sizeof b, ""), "feature \"length\" is missing"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(parse(bad[i].text, &m), Q_EINVAL, "case %zu", i);
    cr_assert(strstr(err, bad[i].why), "case %zu: %s", i, err);
  }
  char b2[1024];
  cr_assert_eq(parse(doc(b2, sizeof b2, ",\"length\":1,\"bm25_tilte\":1"), &m), Q_EINVAL);
  cr_assert(strstr(err, "unknown feature \"bm25_tilte\""), "%s", err);
  cr_assert_eq(parse(doc(b2, sizeof b2, ",\"length\":\"1\""), &m), Q_EINVAL);
  cr_assert(strstr(err, "weights.length must be a finite number"), "%s", err);
  cr_assert_eq(parse(doc(b2, sizeof b2, ",\"length\":1,\"length\":2"), &m), Q_EINVAL);
  cr_assert(strstr(err, "not valid JSON") && strstr(err, "duplicate"), "%s", err);
  /* 1e999 is not a finite double (jansson refuses the overflow itself) */
  cr_assert_eq(parse(doc(b2, sizeof b2, ",\"length\":1e999"), &m), Q_EINVAL);
  /* a name too long for the log line */
  char longname[256];
  snprintf(longname, sizeof longname,
           "{\"format\":\"quarry-rerank-linear\",\"version\":1,\"name\":\"%080d\"}", 0);
  cr_assert_eq(parse(longname, &m), Q_EINVAL);
  cr_assert(strstr(err, "\"name\" must be a string of 1 to 63 bytes"), "%s", err);
}

Test(model, files_too_large_missing_or_unreadable) {
  rerank_model_t m;
  char path[] = "/tmp/quarry-model-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  FILE *f = fdopen(fd, "w");
  for (int i = 0; i < MODEL_MAX_FILE_BYTES / 8 + 1; i++)
    fputs("        ", f);
  fclose(f);
  cr_assert_eq(model_load(path, &m, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, path) && strstr(err, "at most"), "%s", err);
  unlink(path);
  cr_assert_eq(model_load(path, &m, err, sizeof err), Q_ENOTFOUND);
  cr_assert(strstr(err, path) && strstr(err, "No such file"), "%s", err);
  cr_assert_neq(model_load("/", &m, err, sizeof err), 0,
                "a directory is no weights file");
}

Test(model, the_shipped_file_loads) {
  rerank_model_t m;
  cr_assert_eq(
      model_load("services/reranker/models/features.v1.json", &m, err, sizeof err), 0,
      "%s", err);
  cr_assert_gt(strlen(m.name), 0);
}
