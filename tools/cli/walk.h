/* walk.h - which files `quarry ingest PATH...` uploads, and the external id
 * each gets.
 *
 * A file argument is taken as is. A folder is walked recursively in name
 * order; hidden entries (names starting with '.') are skipped, and so are
 * symbolic links to folders (no cycles) and anything that is not a regular
 * file. Files found in folders pass the filters:
 *
 *   --include GLOB  (repeatable) the file must match one of them, if any;
 *   --exclude GLOB  (repeatable) the file must match none; a folder that
 *                   matches is not entered.
 *
 * A GLOB is an fnmatch(3) pattern. Without a '/' it is matched against the
 * name alone ("*.md", "drafts"); with one, against the path below the
 * folder argument ("guides/setup-*.md", where '*' also crosses '/').
 *
 * External id: the argument's own name, then the path below it:
 * `quarry ingest ~/my-docs` gives "my-docs/guides/setup.md" wherever it is
 * run from, so uploading the folder again versions the same documents. A
 * file argument's id is its name. --id-prefix is put in front of every id.
 * Ids longer than the server allows are cut and end in a hash of the whole
 * path, so they stay unique. */
#ifndef QUARRY_CLI_WALK_H
#define QUARRY_CLI_WALK_H

#include <stdbool.h>
#include <stddef.h>

#include "quarry/error.h"

typedef struct walk_filter {
  const char *const *include; /* NULL-terminated, or NULL */
  const char *const *exclude;
} walk_filter_t;

/* One file to ingest (or a path that could not be read: error set). */
typedef struct walk_file {
  char *path;        /* to open */
  char *shown;       /* how messages name it ("my-docs/guides/setup.md") */
  char *external_id; /* see above */
  char *filename;    /* last path component */
  long long size;
  long long mtime_ns;
  char *error;   /* why it cannot be ingested, or NULL */
  bool repeated; /* the same path was already listed: ignore this one */
} walk_file_t;

typedef struct walk_list {
  walk_file_t *files;
  size_t n, cap;
} walk_list_t;

/* true when a file at rel (path below the folder argument; its name is
 * the last component) passes the filters. */
bool walk_filter_accepts(const walk_filter_t *f, const char *rel);

/* true when a folder at rel is excluded (not entered). */
bool walk_filter_prunes(const walk_filter_t *f, const char *rel);

/* Adds the files of one argument to list, in name order. Problems with
 * single entries (unreadable folder, missing path) become entries with
 * error set rather than failing the call. id_prefix may be NULL. 0, or
 * Q_ENOMEM. */
q_err_t walk_collect(const char *arg, const walk_filter_t *f, const char *id_prefix,
                     walk_list_t *list);

/* The external id for root name + path below it (rel may be NULL for a
 * file argument), with the prefix, bounded by Q_LIMIT_EXTERNAL_ID_BYTES.
 * Caller frees; NULL when out of memory. */
char *walk_external_id(const char *prefix, const char *root, const char *rel);

/* Marks files whose external id an earlier file of the list already has:
 * they would overwrite each other's documents, so they get an error; the
 * same path named twice is only marked repeated. Returns how many got an
 * error. */
size_t walk_mark_duplicates(walk_list_t *list);

void walk_list_free(walk_list_t *list);

#endif
