/* Tests of the built-in feature-hashing embedder. */
#include "provider.h"

#include "quarry/error.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#define DIM 384

static embedder_t *e;

static void setup(void) {
  e = embed_hash_new(DIM);
  cr_assert_not_null(e);
}

static void teardown(void) {
  e->free(e);
}

static void embed1(const char *text, float *out) {
  const char *texts[1] = {text};
  size_t lens[1] = {strlen(text)};
  char err[256] = "";
  int rc = e->embed(e, texts, lens, 1, out, err, sizeof err);
  cr_assert_eq(rc, 0, "embed(\"%s\") failed: %s", text, err);
}

static double dot(const float *a, const float *b) {
  double s = 0;
  for (int i = 0; i < DIM; i++)
    s += (double)a[i] * b[i];
  return s;
}

TestSuite(embed_hash, .init = setup, .fini = teardown);

Test(embed_hash, describes_itself) {
  cr_assert_eq(e->dim, DIM);
  cr_assert_str_eq(e->name, "builtin");
  cr_assert_str_eq(e->model, "quarry-hash-384");
  cr_assert_null(embed_hash_new(8), "too few dimensions must be refused");
}

Test(embed_hash, deterministic) {
  float a[DIM], b[DIM];
  embed1("Quarry splits documents into chunks and indexes them.", a);
  embed1("Quarry splits documents into chunks and indexes them.", b);
  cr_assert(memcmp(a, b, sizeof a) == 0, "same text, different vectors");

  /* A fresh instance gives the same vectors too (no per-process seed). */
  embedder_t *e2 = embed_hash_new(DIM);
  const char *t[1] = {"Quarry splits documents into chunks and indexes them."};
  size_t l[1] = {strlen(t[0])};
  char err[64];
  cr_assert_eq(e2->embed(e2, t, l, 1, b, err, sizeof err), 0);
  cr_assert(memcmp(a, b, sizeof a) == 0);
  e2->free(e2);
}

Test(embed_hash, normalised) {
  const char *texts[] = {"password", "The cat sat on the mat and looked at the dog.",
                         "Ünïcödé wörds ärë fïnë tøø", "12345 67890"};
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    float v[DIM];
    embed1(texts[i], v);
    cr_assert_float_eq(dot(v, v), 1.0, 1e-5, "|v|^2 of \"%s\" is %f", texts[i],
                       dot(v, v));
  }
}

Test(embed_hash, similar_texts_closer_than_unrelated) {
  float q[DIM], near[DIM], far[DIM], variant[DIM];
  embed1("How do I reset my password?", q);
  embed1("To reset a forgotten password, open the account settings page.", near);
  embed1("Quarterly revenue grew by twelve percent in the northern region.", far);
  embed1("password resetting", variant);
  double s_near = dot(q, near), s_far = dot(q, far), s_var = dot(q, variant);
  cr_assert_gt(s_near, s_far + 0.2, "near %f vs far %f", s_near, s_far);
  cr_assert_gt(s_var, s_far + 0.2, "variant %f vs far %f", s_var, s_far);
  cr_assert_lt(fabs(s_far), 0.3, "unrelated texts should be nearly orthogonal: %f",
               s_far);
}

Test(embed_hash, trigrams_relate_inflections) {
  /* Words the stemmer does not unify still share trigrams. */
  float a[DIM], b[DIM], c[DIM];
  embed1("tokenizer", a);
  embed1("tokenization", b);
  embed1("volcano", c);
  cr_assert_gt(dot(a, b), dot(a, c) + 0.2, "%f vs %f", dot(a, b), dot(a, c));
}

Test(embed_hash, batch_matches_single) {
  const char *texts[3] = {"alpha beta", "gamma delta", "epsilon"};
  size_t lens[3] = {10, 11, 7};
  float batch[3 * DIM], one[DIM];
  char err[64];
  cr_assert_eq(e->embed(e, texts, lens, 3, batch, err, sizeof err), 0);
  for (int i = 0; i < 3; i++) {
    embed1(texts[i], one);
    cr_assert(memcmp(batch + i * DIM, one, sizeof one) == 0, "text %d differs", i);
  }
}

Test(embed_hash, stopwords_only_still_embeds) {
  float v[DIM];
  embed1("the and of", v);
  cr_assert_float_eq(dot(v, v), 1.0, 1e-5);
}

Test(embed_hash, blank_text_is_invalid) {
  const char *texts[2] = {"fine", "  \n\t "};
  size_t lens[2] = {4, 5};
  float out[2 * DIM];
  char err[256] = "";
  cr_assert_eq(e->embed(e, texts, lens, 2, out, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "texts[1]") != NULL, "error should name the text: %s", err);
}
