/* keys.c - generating and parsing API keys (see keys.h). Pure functions: no
 * database, no global state beyond libsodium's one-time initialisation. */
#include "keys.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quarry/error.h"
#include "quarry/util.h"
#include "quarry/validate.h"

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_init_once(void) {
  if (sodium_init() < 0)
    abort(); /* no usable randomness: keys would be guessable */
}

q_err_t keys_generate(char *key, size_t keylen, char id[KEY_ID_LEN + 1],
                      char hash[KEY_HASH_LEN + 1]) {
  if (keylen < KEY_MAX_LEN + 1)
    return Q_EINVAL;
  pthread_once(&sodium_once, sodium_init_once);

  unsigned char raw_id[KEY_ID_LEN / 2], raw_secret[32];
  randombytes_buf(raw_id, sizeof raw_id);
  randombytes_buf(raw_secret, sizeof raw_secret);
  sodium_bin2hex(id, KEY_ID_LEN + 1, raw_id, sizeof raw_id);

  char secret[KEY_SECRET_B64_LEN + 1];
  sodium_bin2base64(secret, sizeof secret, raw_secret, sizeof raw_secret,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  snprintf(key, keylen, "%s%s_%s", KEY_PREFIX, id, secret);
  q_sha256_hex(secret, KEY_SECRET_B64_LEN, hash);

  sodium_memzero(raw_secret, sizeof raw_secret);
  sodium_memzero(secret, sizeof secret);
  return Q_OK;
}

static bool is_lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_b64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_';
}

static bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

q_err_t keys_parse(const char *cred, size_t len, key_parts_t *out) {
  memset(out, 0, sizeof *out);
  if (!cred || len == 0 || len > Q_LIMIT_CREDENTIAL_BYTES)
    return Q_EUNAUTH;
  /* Embedded NULs would make the C-string view differ from the bytes. */
  if (memchr(cred, '\0', len))
    return Q_EUNAUTH;

  const char *p = cred, *end = cred + len;
  while (p < end && is_blank(*p))
    p++;
  while (end > p && is_blank(end[-1]))
    end--;
  if ((size_t)(end - p) > 7 && strncasecmp(p, "bearer", 6) == 0 &&
      (p[6] == ' ' || p[6] == '\t')) {
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
  }

  size_t n = (size_t)(end - p);
  size_t head = strlen(KEY_PREFIX) + KEY_ID_LEN + 1;
  if (n != head + KEY_SECRET_B64_LEN && n != head + KEY_SECRET_HEX_LEN)
    return Q_EUNAUTH;
  if (memcmp(p, KEY_PREFIX, strlen(KEY_PREFIX)) != 0)
    return Q_EUNAUTH;
  const char *id = p + strlen(KEY_PREFIX);
  for (size_t i = 0; i < KEY_ID_LEN; i++)
    if (!is_lower_hex(id[i]))
      return Q_EUNAUTH;
  if (id[KEY_ID_LEN] != '_')
    return Q_EUNAUTH;

  const char *secret = p + head;
  size_t slen = n - head;
  for (size_t i = 0; i < slen; i++) {
    if (slen == KEY_SECRET_HEX_LEN ? !is_lower_hex(secret[i]) : !is_b64url(secret[i]))
      return Q_EUNAUTH;
  }

  memcpy(out->id, id, KEY_ID_LEN);
  out->id[KEY_ID_LEN] = '\0';
  memcpy(out->secret, secret, slen);
  out->secret[slen] = '\0';
  out->secret_len = slen;
  return Q_OK;
}

void keys_hash_secret(const key_parts_t *k, char hash[KEY_HASH_LEN + 1]) {
  q_sha256_hex(k->secret, k->secret_len, hash);
}

static const struct {
  const char *name;
  int bit;
} roles[] = {{"admin", ROLE_ADMIN}, {"writer", ROLE_WRITER}, {"reader", ROLE_READER}};

int keys_role_bit(const char *name) {
  for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
    if (strcmp(name, roles[i].name) == 0)
      return roles[i].bit;
  return 0;
}

const char *keys_role_name(int bit) {
  for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
    if (roles[i].bit == bit)
      return roles[i].name;
  return NULL;
}

q_err_t keys_roles_parse(const char *list, int *mask, char *err, size_t errlen) {
  *mask = 0;
  const char *p = list ? list : "";
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    char name[16];
    if (n == 0 || n >= sizeof name) {
      snprintf(err, errlen,
               "roles: expected a comma-separated list of admin, "
               "writer, reader");
      return Q_EINVAL;
    }
    memcpy(name, p, n);
    name[n] = '\0';
    int bit = keys_role_bit(name);
    if (!bit) {
      snprintf(err, errlen, "roles: unknown role \"%s\" (admin, writer or reader)", name);
      return Q_EINVAL;
    }
    *mask |= bit;
    p += n;
    if (*p == ',')
      p++;
  }
  if (!*mask) {
    snprintf(err, errlen, "roles: at least one of admin, writer, reader is required");
    return Q_EINVAL;
  }
  return Q_OK;
}

bool keys_name_valid(const char *s) {
  return s && s[0] && q_valid_text(s, Q_LIMIT_API_KEY_NAME_BYTES);
}
