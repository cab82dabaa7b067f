/* args.h - command-line options from tables.
 *
 * Each command declares its options once in a table (name, value name,
 * help); the same table parses the command line and prints --help. Long
 * options only, plus an optional one-letter alias: `--name value`,
 * `--name=value`, `-x value`; flags take no value. `--` ends the options;
 * everything else is an operand. Options may come before or after
 * operands. */
#ifndef QUARRY_CLI_ARGS_H
#define QUARRY_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "quarry/error.h"

typedef struct args_opt {
  const char *name;  /* "server" for --server; NULL ends a table */
  char alias;        /* 'j' for -j, or 0 */
  const char *value; /* "URL" when it takes a value; NULL for a flag */
  bool repeat;       /* may be given several times; every value is kept */
  const char *help;
} args_opt_t;

typedef struct args_item {
  const args_opt_t *opt;
  const char *value; /* NULL for a flag */
} args_item_t;

typedef struct args {
  args_item_t *items;
  size_t n;
  const char **operands;
  size_t noperands;
  const char ***lists; /* arrays handed out by args_list, freed with the args */
  size_t nlists;
} args_t;

/* Parses argv[0..argc) against the tables (NULL-terminated array of
 * NULL-name-terminated tables). 0, Q_EINVAL with err for an unknown option,
 * a missing value, a value given to a flag or a non-repeatable option given
 * twice, or Q_ENOMEM. */
q_err_t args_parse(const args_opt_t *const *tables, int argc, char **argv, args_t *out,
                   char *err, size_t errlen);

void args_free(args_t *a);

/* true when the flag or option was given. */
bool args_has(const args_t *a, const char *name);

/* The (last) value of an option, or NULL. */
const char *args_get(const args_t *a, const char *name);

/* Every value of a repeatable option, NULL-terminated (never NULL unless
 * out of memory; owned by a). */
const char *const *args_list(args_t *a, const char *name);

/* The option's value as an integer in [min, max], or def when absent.
 * Q_EINVAL with err naming the option when it is not one. */
q_err_t args_int(const args_t *a, const char *name, long def, long min, long max,
                 long *out, char *err, size_t errlen);

/* Prints a table as help lines ("  -j, --concurrency N   help"). */
void args_print_help(FILE *f, const args_opt_t *table);

#endif
