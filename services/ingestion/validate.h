/* validate.h - checks on what callers send the ingestion service. Pure
 * functions, so they are tested without a server. */
#ifndef QUARRY_INGESTION_VALIDATE_H
#define QUARRY_INGESTION_VALIDATE_H

#include <stddef.h>

#define TENANT_ID_MAX 64
#define FILENAME_MAX_BYTES 255
#define TITLE_MAX_BYTES 512
#define EXTERNAL_ID_MAX_BYTES 256
#define CONTENT_TYPE_MAX_BYTES 256

/* Content types the chunker understands, as stored. */
#define CT_PLAIN "text/plain"
#define CT_MARKDOWN "text/markdown"

/* Tenant ids: 1..64 of [A-Za-z0-9._-], the first a letter or digit (the
 * rule quarry-auth applies when it creates tenants). */
int valid_tenant(const char *s);

/* A UUID in canonical 8-4-4-4-12 hex form (either case). */
int valid_uuid(const char *s);

/* Optional free text: at most max bytes of UTF-8 without control
 * characters. "" is valid. */
int valid_text(const char *s, size_t max);

/* Normalises a media type: "text/plain" or "text/markdown" (also
 * "text/x-markdown"), case-insensitive, with parameters such as
 * "; charset=utf-8" allowed. A charset other than UTF-8 (or its subset
 * US-ASCII) is refused. Returns 0 with *out pointing at CT_PLAIN or
 * CT_MARKDOWN; Q_EINVAL when empty or too long; Q_EUNSUPPORTED for any
 * other type or charset. err gets a sentence for the client. */
int parse_content_type(const char *s, const char **out, char *err, size_t errlen);

#endif
