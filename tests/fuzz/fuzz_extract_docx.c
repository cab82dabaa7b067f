/* fuzz_extract_docx.c - ingestion's docx extractor (extract/docx.c) in this
 * process on any bytes; the checks are extract_fuzz.h's. */
#include "extract_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_extractor(&extract_docx, data, size, "");
  return 0;
}
