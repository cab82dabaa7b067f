/* fuzz_upload_meta.c - the upload's metadata parsers (upload.c): the media
 * type of a Content-Type value and the cleaning of a client's file name.
 * (Which format a type or a file name means is ingestion's decision,
 * extract/formats.c, since the gateway forwards both unchanged.)
 *
 * Input: a Content-Type value, a newline, a file name. Each parser also runs
 * with a small output buffer, to check it respects the size it is given.
 * Checked: a media type comes out lower case, type/subtype of token
 * characters; a cleaned file name is the last path component of the input,
 * 1..255 bytes, without control characters and never "." or "..". */
#include "fuzz.h"
#include "upload.h"

#include "quarry/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_media(const char *value, size_t outlen) {
  char out[Q_LIMIT_MEDIA_TYPE_BYTES + 1];
  memset(out, '#', sizeof out);
  if (upload_media_type(value, out, outlen) != 0)
    return;
  size_t n = strnlen(out, outlen);
  FUZZ_CHECK(n < outlen, "media type not terminated within %zu bytes", outlen);
  const char *slash = strchr(out, '/');
  FUZZ_CHECK(slash && slash != out && slash[1] && !strchr(slash + 1, '/'),
             "\"%s\" is not type/subtype", out);
  for (size_t i = 0; i < n; i++)
    FUZZ_CHECK((out[i] < 'A' || out[i] > 'Z') && (unsigned char)out[i] > 0x20 &&
                   (unsigned char)out[i] < 0x7f && out[i] != ';',
               "byte 0x%02x in media type \"%s\"", (unsigned char)out[i], out);
}

static void check_filename(const char *in, size_t outlen) {
  char out[Q_LIMIT_FILENAME_BYTES + 1];
  memset(out, '#', sizeof out);
  if (upload_clean_filename(in, out, outlen) != 0)
    return;
  size_t n = strnlen(out, outlen);
  FUZZ_CHECK(n < outlen, "file name not terminated within %zu bytes", outlen);
  FUZZ_CHECK(n >= 1 && n <= Q_LIMIT_FILENAME_BYTES, "file name of %zu bytes", n);
  FUZZ_CHECK(strcmp(out, ".") != 0 && strcmp(out, "..") != 0, "\"%s\" kept", out);
  for (size_t i = 0; i < n; i++)
    FUZZ_CHECK(out[i] != '/' && out[i] != '\\' && (unsigned char)out[i] >= 0x20 &&
                   out[i] != 0x7f,
               "byte 0x%02x in a cleaned file name", (unsigned char)out[i]);
  size_t in_len = strlen(in);
  FUZZ_CHECK(in_len >= n && memcmp(in + in_len - n, out, n) == 0,
             "\"%s\" is not the end of the input", out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *f[2];
  char *block = fuzz_split(data, size, f, 2, NULL);
  check_media(f[0], Q_LIMIT_MEDIA_TYPE_BYTES + 1);
  check_media(f[0], 12);
  check_filename(f[1], Q_LIMIT_FILENAME_BYTES + 1);
  check_filename(f[1], 8);
  free(block);
  return 0;
}
