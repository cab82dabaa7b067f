/* state.h - what `quarry ingest` remembers between runs.
 *
 * One JSON file, by default $XDG_STATE_HOME/quarry/ingest-state.json
 * (~/.local/state/quarry/...), with a section per target: server URL plus
 * API key id (never the key), since documents belong to a tenant on a
 * server. A section maps external ids to what was last uploaded under them:
 * content hash, size and mtime of the file, document and job ids, and the
 * job's last known status.
 *
 *   {"version": 1, "targets": {"http://127.0.0.1:8080 key 0123456789abcdef":
 *     {"documents": {"my-docs/a.md": {"sha256": "...", "size": 12,
 *       "mtime_ns": 1700000000000000000, "document_id": "...", "job_id": "...",
 *       "version": 1, "status": "done"}}}}}
 *
 * It is only an optimisation: the server itself answers an identical
 * re-upload with "unchanged" and queues nothing, so a lost or stale file
 * costs bandwidth, never correctness. Hence a damaged file is set aside
 * (renamed *.damaged) with a warning instead of stopping the run.
 *
 * Saving merges: under an exclusive lock (flock on <file>.lock) the file is
 * read again, this run's changed entries are written over it, and the result
 * replaces the file atomically (write + fsync + rename), so two runs at once
 * keep each other's entries and a crash leaves the old file whole. */
#ifndef QUARRY_CLI_STATE_H
#define QUARRY_CLI_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "quarry/error.h"

#define STATE_VERSION 1

typedef struct state_entry {
  char sha256[65];
  long long size;
  long long mtime_ns;
  char document_id[65];
  char job_id[65];
  int version;
  char status[16]; /* the job's: queued, running, done, failed ("" unknown) */
} state_entry_t;

typedef struct state state_t;

/* The default file: $XDG_STATE_HOME/quarry/ingest-state.json, else
 * $HOME/.local/state/quarry/ingest-state.json ("" when neither is set). */
void state_default_path(char *out, size_t outlen);

/* The section name for a server and key id. */
void state_target(const char *server, const char *key_id, char *out, size_t outlen);

/* Loads path's section for target; a missing file is an empty state. A
 * damaged file is renamed aside and reported in warn (empty state then).
 * 0 with *out (state_free it), or Q_ENOMEM / Q_EIO with err. */
q_err_t state_open(const char *path, const char *target, state_t **out, char *err,
                   size_t errlen, char *warn, size_t warnlen);

/* The entry for external_id: true and *out filled, or false. */
bool state_get(const state_t *st, const char *external_id, state_entry_t *out);

/* Records an entry (in memory until state_save). 0 or Q_ENOMEM. */
q_err_t state_put(state_t *st, const char *external_id, const state_entry_t *e);

/* true when entries changed since the last save. */
bool state_dirty(const state_t *st);

/* Merges the changed entries into the file (see above). 0, or Q_EIO with
 * err (the entries stay pending, a later save retries them). */
q_err_t state_save(state_t *st, char *err, size_t errlen);

void state_free(state_t *st);

#endif
