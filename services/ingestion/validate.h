/* validate.h - checks on what callers send the ingestion service that are
 * its own: the syntax of a declared Content-Type. Which types ingestion
 * reads is the format table's business (extract/formats.h). Tenant ids,
 * UUIDs and free text are checked with quarry/validate.h, and sizes come
 * from quarry/limits.h, like everywhere else. Pure functions, so they are
 * tested without a server. */
#ifndef QUARRY_INGESTION_VALIDATE_H
#define QUARRY_INGESTION_VALIDATE_H

#include <stddef.h>
#include "quarry/error.h"

#include "quarry/limits.h"

/* Splits a Content-Type value ("Text/Plain; charset=\"ISO-8859-1\"") into
 * its media type and charset parameter, both lowercased ("text/plain",
 * "iso-8859-1"; charset "" when absent). Other parameters are ignored. An
 * empty or NULL value is no type: 0 with media "". Q_EINVAL, with a
 * sentence for the client in err, when s is longer than
 * Q_LIMIT_MEDIA_TYPE_BYTES, holds control characters or is not of the form
 * type/subtype, or when media or charset do not fit their buffers. */
q_err_t parse_content_type(const char *s, char *media, size_t medialen, char *charset,
                           size_t charsetlen, char *err, size_t errlen);

#endif
