/* fuzz_formats.c - how ingestion decides a document's format from what the
 * client says and what the bytes are (extract/formats.c): formats_choose on
 * the declared Content-Type and file name, formats_confirm on the first
 * bytes, formats_stored_type and formats_parse_stored on the result, with
 * OCR (and so the image formats) off and on.
 *
 * Input: a Content-Type value, a newline, a file name, a newline, the
 * document's first bytes. Checked: every error is Q_EINVAL or
 * Q_EUNSUPPORTED with a reason; a confirmed format agrees with the bytes
 * (its content kind, or text for a text format) and is readable now (no
 * image while OCR is off); the stored type parses back to the same format. */
#include "extract/formats.h"
#include "extract/ocr.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decide(const char *ctype, const char *filename, const char *head, size_t n) {
  format_choice_t c;
  char err[1024] = "";
  q_err_t rc = formats_choose(ctype, filename, &c, err, sizeof err);
  FUZZ_CHECK(rc == Q_OK || rc == Q_EINVAL || rc == Q_EUNSUPPORTED, "choose: %d", rc);
  FUZZ_CHECK(rc == Q_OK || err[0], "choose failed without a reason");
  if (rc)
    return;
  err[0] = '\0';
  rc = formats_confirm(&c, head, n, err, sizeof err);
  FUZZ_CHECK(rc == Q_OK || rc == Q_EINVAL || rc == Q_EUNSUPPORTED, "confirm: %d", rc);
  FUZZ_CHECK(rc == Q_OK || err[0], "confirm failed without a reason");
  if (rc)
    return;
  FUZZ_CHECK(c.fmt, "confirmed without a format");
  content_kind_t k = formats_sniff(head, n);
  if (c.fmt->content == CONTENT_TEXT)
    FUZZ_CHECK(k == CONTENT_TEXT || k == CONTENT_HTML, "%s for content %d", c.fmt->id, k);
  else if (c.fmt->content == CONTENT_ZIP)
    FUZZ_CHECK(k == CONTENT_ZIP || k == CONTENT_DOCX, "%s for content %d", c.fmt->id, k);
  else
    FUZZ_CHECK(k == c.fmt->content, "%s for content %d", c.fmt->id, k);
  char why[256];
  FUZZ_CHECK(!c.fmt->available || c.fmt->available(why, sizeof why),
             "%s confirmed while switched off", c.fmt->id);
  char stored[Q_LIMIT_MEDIA_TYPE_BYTES + FORMATS_CHARSET_BYTES + 16], charset[128];
  size_t len = formats_stored_type(&c, stored, sizeof stored);
  FUZZ_CHECK(len > 0, "no stored type for %s", c.fmt->id);
  FUZZ_CHECK(formats_parse_stored(stored, charset, sizeof charset) == c.fmt,
             "\"%s\" does not parse back to %s", stored, c.fmt->id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *f[3];
  size_t n;
  char *block = fuzz_split(data, size, f, 3, &n);
  for (int on = 0; on <= 1; on++) {
    ocr_options_t o;
    ocr_options_default(&o);
    o.enabled = on;
    ocr_configure(&o);
    decide(f[0], f[1], f[2], n);
  }
  free(block);
  return 0;
}
