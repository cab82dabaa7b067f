/* cli.c - exit codes, failure reports and the Ctrl-C flag (see cli.h). */
#include "cli.h"

#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "quarry/buf.h"
#include "quarry/validate.h"

static volatile sig_atomic_t interrupts;

/* Severity order: higher wins. */
static int rank(int code) {
  switch (code) {
  case CLI_EXIT_OK: return 0;
  case CLI_EXIT_FAILED: return 1;
  case CLI_EXIT_UNSUPPORTED: return 2;
  case CLI_EXIT_SERVER: return 3;
  case CLI_EXIT_AUTH: return 4;
  case CLI_EXIT_USAGE: return 5;
  case CLI_EXIT_INTERRUPTED: return 6;
  default: return 1;
  }
}

int cli_exit_worst(int a, int b) {
  return rank(b) > rank(a) ? b : a;
}

json_t *cli_json_text(const char *s) {
  size_t n = strlen(s);
  if (q_valid_utf8(s, n))
    return json_stringn(s, n);
  q_buf_t b;
  q_buf_init(&b, n * 3 + 1);
  for (size_t i = 0; i < n;) {
    size_t k = q_valid_utf8_seq(s + i, n - i);
    if (k ? q_buf_append(&b, s + i, k) : q_buf_puts(&b, "\xef\xbf\xbd")) {
      q_buf_cleanup(&b);
      return NULL;
    }
    i += k ? k : 1;
  }
  json_t *j = json_stringn(b.data ? b.data : "", b.len);
  q_buf_cleanup(&b);
  return j;
}

int cli_fail(const cli_out_t *o, int exit_code, const char *code, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (o->json) {
    json_t *doc = json_pack("{s:{s:s,s:o,s:i}}", "error", "code", code, "message",
                            cli_json_text(msg), "exit_code", exit_code);
    if (doc) {
      cli_print_json(o, doc);
      json_decref(doc);
    }
  } else {
    fprintf(o->err, "quarry: %s\n", msg);
  }
  return exit_code;
}

void cli_print_json(const cli_out_t *o, const json_t *doc) {
  /* Nine significant digits: every float32 score round-trips, and
   * 0.74000001000000004 prints as 0.74000001. */
  json_dumpf(doc, o->out, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
  fputc('\n', o->out);
  fflush(o->out);
}

static void on_sigint(int sig) {
  (void)sig;
  if (interrupts < 2)
    interrupts++;
}

void cli_signals_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

bool cli_interrupted(void) {
  return interrupts >= 1;
}

bool cli_interrupted_hard(void) {
  return interrupts >= 2;
}

void cli_interrupt_reset(void) {
  interrupts = 0;
}

long long cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
