/* fuzz_extract_text.c - ingestion's plain-text extractor (extract/text.c:
 * encoding detection with uchardet, conversion with iconv) in this process.
 *
 * Input: the first byte picks the declared charset (none, UTF-8, UTF-16,
 * ISO-8859-1, Windows-1252, Shift_JIS, GB18030), the rest is the
 * document. The checks are extract_fuzz.h's. */
#include "extract_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const charsets[] = {
      "", "utf-8", "utf-16", "iso-8859-1", "windows-1252", "shift_jis", "gb18030"};
  if (size == 0)
    return 0;
  const char *cs = charsets[data[0] % (sizeof charsets / sizeof charsets[0])];
  fuzz_extractor(&extract_text, data + 1, size - 1, cs);
  return 0;
}
