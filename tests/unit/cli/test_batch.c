/* test_batch.c - NDJSON batch lines, batch keys and per-file answers
 * (batch.h). The whole command against a server is test_commands.c's. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "quarry/util.h"

Test(batch, only_small_txt_files_go_in_batches) {
  cr_assert(batch_file_eligible("a.txt", 10));
  cr_assert(batch_file_eligible("NOTES.TXT", BATCH_FILE_MAX_BYTES));
  cr_assert_not(batch_file_eligible("a.txt", BATCH_FILE_MAX_BYTES + 1));
  cr_assert_not(batch_file_eligible("a.txt", 0), "empty: the server says why, alone");
  cr_assert_not(batch_file_eligible("a.md", 10));
  cr_assert_not(batch_file_eligible(".txt", 10));
  cr_assert_not(batch_file_eligible("a.pdf", 10));
}

Test(batch, a_line_is_one_json_object_with_the_text) {
  char *line, err[128];
  size_t len;
  const char text[] = "tab\there \"q\" \xc3\xa9\nnext";
  cr_assert_eq(batch_line("docs/a.txt", "a.txt", text, sizeof text - 1, &line, &len, err,
                          sizeof err),
               0, "%s", err);
  cr_assert_eq(len, strlen(line));
  cr_assert_eq(line[len - 1], '\n');
  cr_assert_null(memchr(line, '\n', len - 1), "one line");
  json_t *o = json_loadb(line, len - 1, 0, NULL);
  cr_assert_not_null(o);
  cr_assert_str_eq(json_string_value(json_object_get(o, "text")), text);
  cr_assert_str_eq(json_string_value(json_object_get(o, "external_id")), "docs/a.txt");
  cr_assert_str_eq(json_string_value(json_object_get(o, "title")), "a.txt");
  cr_assert_eq(json_object_size(o), 3);
  json_decref(o);
  free(line);
}

Test(batch, content_that_is_not_utf8_text_goes_alone) {
  char *line, err[128];
  size_t len;
  cr_assert_eq(batch_line("a", NULL, "caf\xe9", 4, &line, &len, err, sizeof err),
               Q_EINVAL);
  cr_assert_null(line);
  cr_assert_eq(batch_line("a", NULL, "a\0b", 3, &line, &len, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "holds NUL bytes");
}

Test(batch, a_line_over_the_server_limit_goes_alone) {
  size_t n = Q_LIMIT_BATCH_LINE_BYTES / 6 + 10; /* control characters: \u0001 each */
  char *text = malloc(n);
  memset(text, 1, n);
  char *line, err[128];
  size_t len;
  cr_assert_eq(batch_line("a", NULL, text, n, &line, &len, err, sizeof err), Q_EINVAL);
  free(text);
}

Test(batch, the_key_depends_on_every_hash_and_id_in_order) {
  const char *shas[] = {"aa", "bb"}, *ids[] = {"x", "y"};
  char k1[BATCH_KEY_LEN + 1], k2[BATCH_KEY_LEN + 1], want[65];
  batch_key(shas, ids, 2, k1);
  cr_assert_eq(strlen(k1), BATCH_KEY_LEN);
  q_sha256_hex("aa:x\nbb:y\n", 10, want);
  cr_assert_eq(strncmp(k1, "qb1-", 4), 0);
  cr_assert_str_eq(k1 + 4, want);
  batch_key(shas, ids, 2, k2);
  cr_assert_str_eq(k1, k2, "deterministic");
  const char *swapped_shas[] = {"bb", "aa"}, *swapped_ids[] = {"y", "x"};
  batch_key(swapped_shas, swapped_ids, 2, k2);
  cr_assert_str_neq(k1, k2, "order matters: item i is stored under <key>#<i>");
  const char *other[] = {"aa", "bc"};
  batch_key(other, ids, 2, k2);
  cr_assert_str_neq(k1, k2);
  batch_key(shas, ids, 1, k2);
  cr_assert_str_neq(k1, k2);
}

Test(batch, results_map_to_files_by_position) {
  json_t *reply = json_loads(
      "{\"accepted\":2,\"failed\":2,\"documents\":["
      "{\"index\":0,\"line\":1,\"document_id\":\"d0\",\"job_id\":\"j0\",\"version\":2,"
      "\"status\":\"queued\",\"replayed\":false},"
      "{\"index\":1,\"line\":2,\"error\":{\"code\":\"invalid_argument\",\"message\":"
      "\"line 2: document is empty\"}},"
      "{\"index\":2,\"line\":3,\"document_id\":\"d2\",\"job_id\":\"\",\"version\":1,"
      "\"status\":\"unchanged\",\"replayed\":true},"
      "{\"index\":3,\"line\":4,\"error\":{\"code\":\"too_large\",\"message\":\"x\"}}]}",
      0, NULL);
  cr_assert_not_null(reply);
  batch_result_t res[4];
  char err[256];
  cr_assert_eq(batch_results(reply, 4, res, err, sizeof err), 0, "%s", err);
  cr_assert(res[0].ok);
  cr_assert_str_eq(res[0].document_id, "d0");
  cr_assert_str_eq(res[0].job_id, "j0");
  cr_assert_eq(res[0].version, 2);
  cr_assert_not(res[0].unchanged);
  cr_assert_not(res[1].ok);
  cr_assert_str_eq(res[1].code, "invalid_argument");
  cr_assert_str_eq(res[1].message, "line 2: document is empty");
  cr_assert_not(batch_result_too_large(&res[1]));
  cr_assert(res[2].ok && res[2].unchanged && res[2].replayed);
  cr_assert(batch_result_too_large(&res[3]));
  cr_assert_eq(batch_results(reply, 5, res, err, sizeof err), Q_EINVAL,
               "a reply for another number of files is refused");
  cr_assert(strstr(err, "5 documents"), "%s", err);
  json_decref(reply);
  json_t *shuffled =
      json_loads("{\"documents\":[{\"index\":1,\"document_id\":\"a\"},{\"index\":0,"
                 "\"document_id\":\"b\"}]}",
                 0, NULL);
  cr_assert_eq(batch_results(shuffled, 2, res, err, sizeof err), Q_EINVAL);
  json_decref(shuffled);
}
