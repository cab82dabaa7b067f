/* commands.h - the commands of `quarry`, declared once: the table drives
 * dispatch, --help, and the check that docs/cli.md lists every option.
 *
 * A command is one or two words ("ask", "docs show"). A command may be
 * added before its REST endpoint exists, with `pending` naming the
 * endpoint it needs: it then prints that and exits 69 (EX_UNAVAILABLE)
 * instead of guessing at an API nobody serves. No command is pending
 * today. */
#ifndef QUARRY_CLI_COMMANDS_H
#define QUARRY_CLI_COMMANDS_H

#include <stdbool.h>
#include <stdio.h>

#include "args.h"
#include "cli.h"
#include "config.h"

typedef struct cmd_ctx {
  args_t *args;
  const config_t *cfg;
  const cli_out_t *out;
  long timeout_ms; /* --timeout, for single requests; 0: none */
} cmd_ctx_t;

/* Runs a command; returns the process exit code. */
typedef int (*cmd_fn)(cmd_ctx_t *ctx);

typedef struct command {
  const char *name;    /* "docs show"; NULL ends the table */
  const char *usage;   /* operands, "ID" */
  const char *summary; /* one line */
  const char *help;    /* a paragraph for --help, or NULL */
  const args_opt_t *opts;
  int min_operands, max_operands; /* max < 0: no limit */
  cmd_fn run;
  const char *pending; /* the endpoint this waits for, or NULL */
} command_t;

extern const command_t commands[];
extern const args_opt_t global_opts[];

/* The whole client: parses argv (argv[0] is the program), reads the
 * config, runs the command. out/err are stdout/stderr (tests pass files).
 * Returns the exit code. */
int commands_main(int argc, char **argv, FILE *out, FILE *err);

/* The commands (ingest.c, ask.c, show.c, manage.c). */
int cmd_ingest(cmd_ctx_t *ctx);
int cmd_ask(cmd_ctx_t *ctx);
int cmd_docs_show(cmd_ctx_t *ctx);
int cmd_jobs_show(cmd_ctx_t *ctx);
int cmd_docs_list(cmd_ctx_t *ctx);
int cmd_docs_rm(cmd_ctx_t *ctx);
int cmd_jobs_list(cmd_ctx_t *ctx);
int cmd_keys_create(cmd_ctx_t *ctx);
int cmd_keys_list(cmd_ctx_t *ctx);
int cmd_keys_revoke(cmd_ctx_t *ctx);

#endif
