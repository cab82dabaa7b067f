/* test_chunking.c - an upload's chunking choice: parsing, the rules, the
 * spec written back. */
#include "quarry/chunking.h"

#include <criterion/criterion.h>
#include <string.h>

static q_chunking_t parse_ok(const char *spec) {
  q_chunking_t c;
  char err[256];
  cr_assert_eq(q_chunking_parse(spec, &c, err, sizeof err), Q_OK, "%s: %s", spec, err);
  return c;
}

static void parse_bad(const char *spec, const char *names) {
  q_chunking_t c;
  char err[256] = "";
  cr_assert_eq(q_chunking_parse(spec, &c, err, sizeof err), Q_EINVAL, "%s", spec);
  cr_assert(strstr(err, names), "%s: \"%s\" should name %s", spec, err, names);
}

Test(chunking, specs_parse_with_empty_parts_as_defaults) {
  q_chunking_t c = parse_ok("");
  cr_assert_str_eq(c.strategy, "");
  cr_assert_eq(c.tokens, 0);
  cr_assert_eq(c.overlap, -1);
  c = parse_ok(NULL);
  cr_assert_eq(c.overlap, -1);
  c = parse_ok("fixed::");
  cr_assert_str_eq(c.strategy, "fixed");
  cr_assert_eq(c.tokens, 0);
  c = parse_ok(":300:");
  cr_assert_str_eq(c.strategy, "");
  cr_assert_eq(c.tokens, 300);
  cr_assert_eq(c.overlap, -1);
  c = parse_ok("structure:200:0");
  cr_assert_eq(c.overlap, 0);
  c = parse_ok("fixed:4096:2048");
  cr_assert_eq(c.tokens, 4096);
  cr_assert_eq(c.overlap, 2048);
}

Test(chunking, bad_specs_name_the_part) {
  parse_bad("fixed", "chunking");
  parse_bad("fixed:1:0:0", "chunking");
  parse_bad("Fixed::", "chunking");
  parse_bad("sentences::", "structure, fixed");
  parse_bad(":0:", "chunk_tokens");
  parse_bad(":4097:", "chunk_tokens");
  parse_bad(":12x:", "chunk_tokens");
  parse_bad(":-5:", "chunk_tokens");
  parse_bad("::10", "chunk_overlap: needs chunk_tokens");
  parse_bad(":100:51", "chunk_overlap");
  parse_bad(":100:-1", "chunk_overlap");
  parse_bad("fixed:1000000000:1", "chunk_tokens");
  char longer[64];
  memset(longer, 'x', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  longer[5] = ':';
  longer[7] = ':';
  parse_bad(longer, "at most 32 bytes");
}

Test(chunking, format_writes_what_parse_reads) {
  const char *specs[] = {"::", "fixed::", ":300:", "structure:200:40", "fixed:8:0"};
  for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
    q_chunking_t c = parse_ok(specs[i]);
    char out[Q_LIMIT_CHUNKING_BYTES + 1];
    q_chunking_format(&c, out, sizeof out);
    cr_assert_str_eq(out, specs[i]);
  }
  q_chunking_t worst = {"structure", Q_LIMIT_CHUNK_TOKENS_MAX,
                        Q_LIMIT_CHUNK_TOKENS_MAX / 2};
  char out[Q_LIMIT_CHUNKING_BYTES + 1];
  cr_assert_lt(q_chunking_format(&worst, out, sizeof out), sizeof out);
}

Test(chunking, known_strategies) {
  cr_assert(q_chunking_known("structure"));
  cr_assert(q_chunking_known("fixed"));
  cr_assert_not(q_chunking_known(""));
  cr_assert_not(q_chunking_known("FIXED"));
  cr_assert_not(q_chunking_known(NULL));
}
