/* fuzz_authn.c - credential extraction (authn_extract in authn.c) from the
 * Authorization and X-API-Key header values a client sends.
 *
 * Input: a first byte whose bits say which headers are present (bit 0:
 * Authorization, bit 1: X-API-Key), then the two values separated by a
 * newline. Checked: an accepted key lies inside the header it came from
 * (Authorization wins), is 1..Q_LIMIT_CREDENTIAL_BYTES bytes without white
 * space or control characters; a refusal is Q_EUNAUTH with a reason. */
#include "authn.h"
#include "fuzz.h"

#include "quarry/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  unsigned which = data[0];
  char *f[2];
  char *block = fuzz_split(data + 1, size - 1, f, 2, NULL);
  const char *authorization = which & 1 ? f[0] : NULL;
  const char *api_key = which & 2 ? f[1] : NULL;
  const char *key = NULL;
  size_t len = 0;
  char err[256];
  memset(err, 'x', sizeof err);
  q_err_t rc = authn_extract(authorization, api_key, &key, &len, err, sizeof err);
  if (rc == 0) {
    const char *from = authorization ? authorization : api_key;
    FUZZ_CHECK(from != NULL, "a key without a header");
    FUZZ_CHECK(key >= from && key + len <= from + strlen(from),
               "the key is not inside the header it came from");
    FUZZ_CHECK(len >= 1 && len <= Q_LIMIT_CREDENTIAL_BYTES, "key of %zu bytes", len);
    for (size_t i = 0; i < len; i++)
      FUZZ_CHECK((unsigned char)key[i] > 0x20 && (unsigned char)key[i] != 0x7f,
                 "byte 0x%02x in an accepted key", (unsigned char)key[i]);
  } else {
    FUZZ_CHECK(rc == Q_EUNAUTH, "rc %d", rc);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) && err[0], "no reason given");
  }
  free(block);
  return 0;
}
