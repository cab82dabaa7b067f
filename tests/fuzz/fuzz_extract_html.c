/* fuzz_extract_html.c - ingestion's html extractor (extract/html.c) in this
 * process on any bytes; the checks are extract_fuzz.h's. */
#include "extract_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_extractor(&extract_html, data, size, "");
  return 0;
}
