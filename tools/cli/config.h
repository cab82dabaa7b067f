/* config.h - where the client finds its server and API key.
 *
 * Three layers, the first that sets a value wins: command-line flags
 * (--server, --key, --key-file), the environment (QUARRY_URL,
 * QUARRY_API_KEY, QUARRY_API_KEY_FILE), then the config file
 * (~/.config/quarry/config, or $XDG_CONFIG_HOME/quarry/config, or
 * --config / QUARRY_CONFIG), whose lines are `name = value` (`#` starts a
 * comment line; names: server, key, key_file). A key and a key file in the
 * same layer are a usage error; across layers the higher one wins whichever
 * it is. The key itself is never printed: messages name the layer it came
 * from instead. */
#ifndef QUARRY_CLI_CONFIG_H
#define QUARRY_CLI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "quarry/error.h"
#include "quarry/limits.h"

#define CONFIG_DEFAULT_SERVER "http://127.0.0.1:8080"
#define CONFIG_URL_MAX 1024

/* One layer; NULL fields are unset. name is what messages call the layer
 * ("--key", "QUARRY_API_KEY", "/home/u/.config/quarry/config"). */
typedef struct config_layer {
  const char *name;
  const char *server;
  const char *key;
  const char *key_file;
  const char *key_label;      /* how messages name where key came from, or NULL: name */
  const char *key_file_label; /* the same for key_file */
} config_layer_t;

/* A config file read into a layer: strings owned by the struct. */
typedef struct config_file {
  config_layer_t layer;
  char path[4096];
  char *server, *key, *key_file;
  bool found;
  bool world_readable; /* holds a key and others may read it */
} config_file_t;

/* The settings a command runs with. */
typedef struct config {
  char server[CONFIG_URL_MAX]; /* no trailing slash */
  char key[Q_LIMIT_CREDENTIAL_BYTES + 1];
  char key_from[4200]; /* where the key came from, for messages; "" if none */
  char key_id[32];     /* the public part of a qk_ key, else a hash prefix */
} config_t;

/* The config file's path: explicit (--config or QUARRY_CONFIG) when given,
 * else $XDG_CONFIG_HOME/quarry/config, else $HOME/.config/quarry/config.
 * Writes "" when no home is known. */
void config_default_path(const char *explicit_path, char *out, size_t outlen);

/* Reads path into f. A missing file is fine unless required (an explicit
 * --config); then, and for a malformed line, Q_EINVAL with err naming the
 * file and line. Unknown names are reported in warn (first one only) and
 * otherwise ignored, so an older client reads a newer file. */
q_err_t config_file_read(const char *path, bool required, config_file_t *f, char *err,
                         size_t errlen, char *warn, size_t warnlen);

/* Frees what config_file_read allocated. */
void config_file_cleanup(config_file_t *f);

/* Resolves layers[0..n) (highest precedence first) into out: the server
 * (default CONFIG_DEFAULT_SERVER; must be http:// or https://) and the key
 * (from a key or a key file; trailing white space trimmed). Q_EINVAL with
 * err for a bad server URL, a layer giving both key and key file, or an
 * unreadable key file. A missing key is not an error here: commands that
 * need one say so. */
q_err_t config_resolve(const config_layer_t *layers, size_t n, config_t *out, char *err,
                       size_t errlen);

/* The public id of a key: the 16 hex digits of "qk_<id>_<secret>", or for
 * other shapes the first 16 hex digits of its SHA-256 (never the key). */
void config_key_id(const char *key, char out[32]);

#endif
