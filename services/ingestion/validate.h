/* validate.h - checks on what callers send the ingestion service that are
 * its own: content types. Tenant ids, UUIDs and free text are checked with
 * quarry/validate.h, and sizes come from quarry/limits.h, like everywhere
 * else. Pure functions, so they are tested without a server. */
#ifndef QUARRY_INGESTION_VALIDATE_H
#define QUARRY_INGESTION_VALIDATE_H

#include <stddef.h>
#include "quarry/error.h"

#include "quarry/limits.h"

/* Content types the chunker understands, as stored. */
#define CT_PLAIN "text/plain"
#define CT_MARKDOWN "text/markdown"

/* Normalises a media type: "text/plain" or "text/markdown" (also
 * "text/x-markdown"), case-insensitive, with parameters such as
 * "; charset=utf-8" allowed. A charset other than UTF-8 (or its subset
 * US-ASCII) is refused. Returns 0 with *out pointing at CT_PLAIN or
 * CT_MARKDOWN; Q_EINVAL when empty or longer than Q_LIMIT_MEDIA_TYPE_BYTES;
 * Q_EUNSUPPORTED for any other type or charset. err gets a sentence for the
 * client. */
q_err_t parse_content_type(const char *s, const char **out, char *err, size_t errlen);

#endif
