/* test_docs.c - docs/cli.md describes every command and option of the
 * tables that drive the client (commands.c), and every endpoint a pending
 * command waits for. Run from the top of the tree, as `make unit` does. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

#define CLI_DOC "docs/cli.md"

static char *doc;

static void load(void) {
  FILE *f = fopen(CLI_DOC, "rb");
  cr_assert_not_null(f, "%s (run from the top of the tree)", CLI_DOC);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  doc = malloc((size_t)n + 1);
  cr_assert_eq(fread(doc, 1, (size_t)n, f), (size_t)n);
  doc[n] = '\0';
  fclose(f);
}

static void unload(void) {
  free(doc);
}

TestSuite(docs, .init = load, .fini = unload);

static void assert_option_documented(const args_opt_t *o, const char *where) {
  char want[96];
  snprintf(want, sizeof want, "`--%s%s%s", o->name, o->value ? " " : "`",
           o->value ? o->value : "");
  cr_assert(strstr(doc, want), "%s: option %s is not in " CLI_DOC, where, want);
  if (o->alias) {
    snprintf(want, sizeof want, "`-%c`", o->alias);
    cr_assert(strstr(doc, want), "%s: alias %s is not in " CLI_DOC, where, want);
  }
}

Test(docs, every_command_and_option) {
  for (const command_t *c = commands; c->name; c++) {
    char want[96];
    snprintf(want, sizeof want, "`quarry %s", c->name);
    cr_assert(strstr(doc, want), "command %s is not in " CLI_DOC, c->name);
    for (const args_opt_t *o = c->opts; o->name; o++)
      assert_option_documented(o, c->name);
    if (c->pending) {
      /* The endpoint, without the "; meanwhile ..." note. */
      char endpoint[96];
      snprintf(endpoint, sizeof endpoint, "`%.*s`", (int)strcspn(c->pending, ";"),
               c->pending);
      cr_assert(strstr(doc, endpoint), "%s needs %s: not in " CLI_DOC, c->name, endpoint);
    }
  }
  for (const args_opt_t *o = global_opts; o->name; o++)
    assert_option_documented(o, "global");
}

Test(docs, every_exit_code) {
  const int codes[] = {CLI_EXIT_OK,         CLI_EXIT_FAILED, CLI_EXIT_USAGE,
                       CLI_EXIT_AUTH,       CLI_EXIT_SERVER, CLI_EXIT_UNSUPPORTED,
                       CLI_EXIT_INTERRUPTED};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    char row[16];
    snprintf(row, sizeof row, "\n| %d | ", codes[i]);
    cr_assert(strstr(doc, row), "exit code %d has no row in " CLI_DOC, codes[i]);
  }
}
