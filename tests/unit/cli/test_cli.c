/* test_cli.c - what the client's modules share: the order of exit codes,
 * failure reports in both modes, JSON text from bytes that are not UTF-8. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

Test(cli, the_more_specific_exit_code_wins) {
  cr_assert_eq(cli_exit_worst(CLI_EXIT_OK, CLI_EXIT_FAILED), CLI_EXIT_FAILED);
  cr_assert_eq(cli_exit_worst(CLI_EXIT_SERVER, CLI_EXIT_FAILED), CLI_EXIT_SERVER);
  cr_assert_eq(cli_exit_worst(CLI_EXIT_SERVER, CLI_EXIT_AUTH), CLI_EXIT_AUTH);
  cr_assert_eq(cli_exit_worst(CLI_EXIT_AUTH, CLI_EXIT_INTERRUPTED), CLI_EXIT_INTERRUPTED);
  cr_assert_eq(cli_exit_worst(CLI_EXIT_UNSUPPORTED, CLI_EXIT_FAILED),
               CLI_EXIT_UNSUPPORTED);
  cr_assert_eq(cli_exit_worst(CLI_EXIT_FAILED, CLI_EXIT_OK), CLI_EXIT_FAILED);
}

Test(cli, json_text_repairs_bytes_that_are_not_utf8) {
  json_t *j = cli_json_text("caf\xe9/\xc3\xa9t\xc3.md");
  cr_assert_not_null(j);
  cr_assert_str_eq(json_string_value(j), "caf\xef\xbf\xbd/\xc3\xa9t\xef\xbf\xbd.md");
  json_decref(j);
  j = cli_json_text("plain");
  cr_assert_str_eq(json_string_value(j), "plain");
  json_decref(j);
}

static char *report(bool json, char **err_out) {
  char *out = NULL, *err = NULL;
  size_t ol, el;
  FILE *o = open_memstream(&out, &ol), *e = open_memstream(&err, &el);
  cli_out_t co = {.json = json, .out = o, .err = e};
  cr_assert_eq(cli_fail(&co, CLI_EXIT_AUTH, "unauthenticated", "refused %s", "\xff"),
               CLI_EXIT_AUTH);
  fclose(o);
  fclose(e);
  *err_out = err;
  return out;
}

Test(cli, failures_for_people_and_for_machines) {
  char *err, *out = report(false, &err);
  cr_assert_str_eq(out, "");
  cr_assert_str_eq(err, "quarry: refused \xff\n");
  free(out);
  free(err);
  out = report(true, &err);
  cr_assert_str_eq(err, "", "--json: stdout only");
  json_t *doc = json_loads(out, 0, NULL);
  cr_assert_not_null(doc, "one JSON document even for bytes that are not UTF-8: %s", out);
  json_t *e = json_object_get(doc, "error");
  cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "unauthenticated");
  cr_assert_eq(json_integer_value(json_object_get(e, "exit_code")), CLI_EXIT_AUTH);
  json_decref(doc);
  free(out);
  free(err);
}
