/* validate.h - checks on identifiers and text that callers send, shared so
 * that every service applies the same rule to the same kind of value (a
 * tenant id valid at the auth service is valid at ingestion).
 *
 * UTF-8 here means well-formed UTF-8 as RFC 3629 defines it (no overlong
 * forms, surrogates or code points past U+10FFFF) and, in addition, no NUL
 * bytes: PostgreSQL text and C strings cannot hold them. All functions are
 * pure and thread-safe. */
#ifndef QUARRY_VALIDATE_H
#define QUARRY_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include "quarry/error.h"

#include "quarry/limits.h"

/* 1 when s is a tenant id: 1..Q_LIMIT_TENANT_ID_BYTES characters of [A-Za-z0-9._-],
 * the first a letter or digit (so an id never looks like an option, a
 * hidden file or a relative path). NULL is not. */
bool q_valid_tenant_id(const char *s);

/* 1 when s is an idempotency key (the Idempotency-Key header of an upload):
 * 1..Q_LIMIT_IDEMPOTENCY_KEY_BYTES bytes of printable ASCII (0x20..0x7E).
 * Keys are compared byte for byte, case included. NULL is not. */
bool q_valid_idempotency_key(const char *s);

/* 1 when s is a UUID in canonical 8-4-4-4-12 hex form, either case. */
bool q_valid_uuid(const char *s);

/* 1 when s[0..n) is UTF-8 (see above). n == 0 is valid. */
bool q_valid_utf8(const char *s, size_t n);

/* The length of the longest prefix of s[0..n) that is UTF-8: n when all of
 * it is, else the offset of the first byte that is not. */
size_t q_valid_utf8_prefix(const char *s, size_t n);

/* The length (1..4) of the UTF-8 sequence that starts s[0..n), or 0 when
 * s does not start with one (a stray or NUL byte, a sequence that is
 * malformed or cut off by n). For callers that repair text byte by byte. */
size_t q_valid_utf8_seq(const char *s, size_t n);

/* 1 when s is printable free text: at most max bytes of UTF-8 without
 * control characters (U+0000..U+001F, U+007F..U+009F; so no tabs or line
 * breaks either). NULL and "" are valid: callers that require a value check
 * for it first. */
bool q_valid_text(const char *s, size_t max);

/* Checks a string field of a request: present when required (NULL and ""
 * are absent), at most max bytes, UTF-8. Returns 0, or Q_EINVAL with a
 * sentence for the client in err that starts with the field's name
 * ("query_id: required", "text: 70000 bytes, at most 65536 allowed",
 * "title: not valid UTF-8"). */
q_err_t q_valid_field(const char *field, const char *s, int required, size_t max,
                      char *err, size_t errlen);

/* true when s[0..n) holds nothing but ASCII white space (space, \t, \n,
 * \r, \f, \v); NULL and n == 0 are blank. Request fields that must say
 * something ("query") are checked with it. */
bool q_is_blank(const char *s, size_t n);

#endif
