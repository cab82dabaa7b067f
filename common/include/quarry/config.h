/* config.h - configuration from environment variables, declared in a table.
 *
 * Each binary declares one static table of q_cfg_entry_t (redis's
 * static_configs[]): the environment variable, its type, default, bounds or
 * validator, help text and where the parsed value goes. The same table
 * prints --help, validates at start (a bad value stops the service with a
 * message naming the variable) and prints the docs table (--help-markdown).
 *
 * Parsed strings are owned by the config module and live until exit. */
#ifndef QUARRY_CONFIG_H
#define QUARRY_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

typedef enum {
  Q_CFG_STRING, /* dst: const char ** */
  Q_CFG_INT,    /* dst: int64_t *; bounded by min/max */
  Q_CFG_BOOL,   /* dst: int *; true/false/1/0/yes/no/on/off */
  Q_CFG_ADDR,   /* dst: const char **; "host:port", port 0..65535 */
} q_cfg_type_t;

/* A validator for string values: returns 0 when value is fine, else writes
 * a reason into err. */
typedef q_err_t (*q_cfg_validate_cb)(const char *value, char *err, size_t errlen);

typedef struct q_cfg_entry {
  const char *name; /* environment variable, e.g. "QUARRY_LOG_LEVEL" */
  q_cfg_type_t type;
  const char *def;            /* default as text; NULL means required */
  int64_t min, max;           /* inclusive bounds for Q_CFG_INT (ignored if equal) */
  q_cfg_validate_cb validate; /* optional extra check */
  const char *help;
  int secret; /* never print the value */
  void *dst;
} q_cfg_entry_t;

/* Settings every service has; fill with Q_CFG_COMMON_ENTRIES. */
typedef struct q_common_cfg {
  const char *grpc_listen;    /* QUARRY_GRPC_LISTEN */
  const char *metrics_listen; /* QUARRY_METRICS_LISTEN; "" disables */
  const char *log_level;
  int64_t grpc_threads;
  int64_t max_msg_bytes;
  int64_t grace_ms;
} q_common_cfg_t;

/* Entries for q_common_cfg_t c (a variable name, not a pointer), with the
 * service's default listen addresses; a table row per entry, laid out by hand. */
/* clang-format off */
#define Q_CFG_COMMON_ENTRIES(c, grpc_def, metrics_def)                                   \
  {"QUARRY_GRPC_LISTEN", Q_CFG_ADDR, grpc_def, 0, 0, NULL,                               \
   "Address the gRPC server listens on (host:port).", 0, &(c).grpc_listen},              \
  {"QUARRY_METRICS_LISTEN", Q_CFG_STRING, metrics_def, 0, 0, NULL,                       \
   "Address of the HTTP side port serving /metrics, /healthz, /readyz.",                 \
   0, &(c).metrics_listen},                                                              \
  {"QUARRY_LOG_LEVEL", Q_CFG_STRING, "info", 0, 0, q_cfg_validate_log_level,             \
   "Minimum log level: debug, info, warn or error.", 0, &(c).log_level},                 \
  {"QUARRY_GRPC_THREADS", Q_CFG_INT, "8", 1, 1024, NULL,                                 \
   "Worker threads serving gRPC calls.", 0, &(c).grpc_threads},                          \
  {"QUARRY_MAX_MSG_BYTES", Q_CFG_INT, "67108864", 4096, 1073741824, NULL,                \
   "Largest gRPC message accepted or sent, in bytes.", 0,                                \
   &(c).max_msg_bytes},                                                                  \
  {"QUARRY_GRACE_MS", Q_CFG_INT, "10000", 0, 600000, NULL,                               \
   "On SIGTERM, how long in-flight calls may take to finish.", 0,                        \
   &(c).grace_ms}
/* clang-format on */

q_err_t q_cfg_validate_log_level(const char *value, char *err, size_t errlen);

/* Loads the table from the environment.
 *  - argv "--help": prints usage and the table, returns 1 (caller exits 0).
 *  - argv "--help-markdown": prints the table as Markdown, returns 1.
 *  - a missing required or invalid value: prints "quarry-<svc>: VAR: reason"
 *    to stderr and returns Q_EINVAL, negative (caller exits 2).
 *  - otherwise fills every dst and returns 0.
 * Unknown arguments are an error. Call once, before starting threads. */
int q_cfg_load(const char *binary, const char *summary, q_cfg_entry_t *table, size_t n,
               int argc, char **argv);

/* Prints the table (name, type, default, help) to stdout. */
void q_cfg_print_help(const char *binary, const char *summary, const q_cfg_entry_t *table,
                      size_t n);

#endif
