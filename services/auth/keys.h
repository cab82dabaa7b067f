/* keys.h - the API key format, free of any storage so it can be tested alone.
 *
 * A key is "qk_<key_id>_<secret>": key_id is 16 lowercase hex characters
 * (64 random bits, the public lookup handle, stored in the clear), secret is
 * 43 base64url characters without padding (256 random bits; what we issue)
 * or 64 lowercase hex characters (256 bits; accepted for keys minted by
 * other tooling). Only SHA-256(secret) is ever stored.
 *
 * Why SHA-256 and not argon2id: password hashes are slow on purpose because
 * passwords have little entropy and can be guessed. A secret of 256 random
 * bits cannot be guessed whatever the hash speed, so a slow hash would only
 * add tens of milliseconds and a DoS lever to every request, with no gain. */
#ifndef QUARRY_AUTH_KEYS_H
#define QUARRY_AUTH_KEYS_H

#include <stddef.h>
#include "quarry/error.h"
#include <stdbool.h>

#include "quarry/limits.h"

#define KEY_PREFIX "qk_"
#define KEY_ID_LEN 16         /* hex characters */
#define KEY_SECRET_B64_LEN 43 /* base64url characters, no padding */
#define KEY_SECRET_HEX_LEN 64
#define KEY_HASH_LEN 64 /* hex SHA-256 */
#define KEY_MAX_LEN (3 + KEY_ID_LEN + 1 + KEY_SECRET_HEX_LEN)

/* Credentials longer than Q_LIMIT_CREDENTIAL_BYTES are not looked at at
 * all. Tenant ids follow q_valid_tenant_id (quarry/validate.h). Key names:
 * 1..Q_LIMIT_API_KEY_NAME_BYTES bytes of printable text (q_valid_text). */
_Static_assert(KEY_MAX_LEN <= Q_LIMIT_CREDENTIAL_BYTES, "keys fit the credential limit");
_Static_assert(KEY_ID_LEN <= Q_LIMIT_KEY_ID_BYTES, "key ids fit a principal's key id");
_Static_assert(4 + KEY_ID_LEN <= Q_LIMIT_USER_ID_BYTES, "user ids \"key:<id>\" fit");

/* Roles as bits, so a set of them is one int. */
enum { ROLE_ADMIN = 1, ROLE_WRITER = 2, ROLE_READER = 4, ROLE_ALL = 7 };

/* A key taken apart: both parts NUL-terminated copies. */
typedef struct key_parts {
  char id[KEY_ID_LEN + 1];
  char secret[KEY_SECRET_HEX_LEN + 1];
  size_t secret_len;
} key_parts_t;

/* Generates a fresh key: writes the key ("qk_..."; NUL-terminated) into key
 * (keylen >= KEY_MAX_LEN + 1), its id into id and SHA-256(secret) in hex into
 * hash. Randomness from libsodium. 0, or Q_EINVAL when keylen is too small. */
q_err_t keys_generate(char *key, size_t keylen, char id[KEY_ID_LEN + 1],
                      char hash[KEY_HASH_LEN + 1]);

/* Parses a credential: the bare key or "Bearer <key>" (scheme
 * case-insensitive), surrounding white space ignored. Strict: exact
 * lengths, exact alphabets, nothing trailing. 0 with *out filled, or
 * Q_EUNAUTH for anything malformed (deliberately not saying what). */
q_err_t keys_parse(const char *credential, size_t len, key_parts_t *out);

/* SHA-256 of a parsed key's secret as 64 hex characters plus NUL. */
void keys_hash_secret(const key_parts_t *k, char hash[KEY_HASH_LEN + 1]);

/* Role names <-> bits. keys_role_bit returns 0 for an unknown name. */
int keys_role_bit(const char *name);
const char *keys_role_name(int bit);

/* Parses a comma-separated role list ("admin,writer"); duplicates are
 * folded. 0 with *mask set, Q_EINVAL (reason in err) when empty or a name
 * is unknown. */
q_err_t keys_roles_parse(const char *list, int *mask, char *err, size_t errlen);

/* 1 when s is an acceptable key name (rule above). */
bool keys_name_valid(const char *s);

#endif
