/* cli.h - what every module of the `quarry` client shares: its exit codes,
 * where output goes, and the Ctrl-C flag.
 *
 * The client is single-threaded: transfers run on libcurl's multi interface
 * from the one thread, so nothing here is locked. */
#ifndef QUARRY_CLI_H
#define QUARRY_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* The client's version, shown by --version and in the User-Agent. */
#define QUARRY_CLI_VERSION "1.0.0"

/* Exit codes, documented in docs/cli.md. When several apply, the most
 * specific wins: interrupted, then auth, then server, then failed items. */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAILED = 1,       /* some items failed (upload refused, job failed, 4xx) */
  CLI_EXIT_USAGE = 2,        /* bad command line or config */
  CLI_EXIT_AUTH = 3,         /* no key, or the server refused it (401/403) */
  CLI_EXIT_SERVER = 4,       /* server unreachable, 5xx, or a malformed reply */
  CLI_EXIT_UNSUPPORTED = 69, /* EX_UNAVAILABLE: the server has no endpoint for it */
  CLI_EXIT_INTERRUPTED = 130 /* Ctrl-C (128 + SIGINT) */
};

/* The more severe of two exit codes (the order above). */
int cli_exit_worst(int a, int b);

/* Output of a command: machine-readable (--json: exactly one JSON document
 * on stdout, errors included) or for people (results on stdout, problems
 * on stderr). */
typedef struct cli_out {
  bool json;
  FILE *out; /* stdout */
  FILE *err; /* stderr */
} cli_out_t;

/* Reports a failure the way the mode wants: "quarry: <message>" on stderr,
 * or {"error":{"code":..,"message":..}} on stdout with --json. code is a
 * short slug ("unauthenticated", "unreachable", "usage", ...). Returns
 * exit_code so callers can `return cli_fail(...)`. */
int cli_fail(const cli_out_t *o, int exit_code, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A JSON string of s, whose bytes need not be UTF-8 (file names): each
 * byte that does not start a valid sequence becomes U+FFFD. New
 * reference; NULL only when out of memory. */
json_t *cli_json_text(const char *s);

/* Prints doc as the one JSON document of --json output (indented, with a
 * final newline). */
void cli_print_json(const cli_out_t *o, const json_t *doc);

/* Installs the SIGINT handler (no SA_RESTART, so blocking calls return).
 * The first Ctrl-C sets the flag commands poll; the second sets "hard" as
 * well: stop now, without finishing transfers in flight. */
void cli_signals_install(void);

/* Ctrl-C was pressed at least once / at least twice. */
bool cli_interrupted(void);
bool cli_interrupted_hard(void);

/* For tests: forget earlier Ctrl-C presses. */
void cli_interrupt_reset(void);

/* Milliseconds on CLOCK_MONOTONIC. */
long long cli_now_ms(void);

#endif
