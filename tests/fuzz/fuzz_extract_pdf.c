/* fuzz_extract_pdf.c - ingestion's PDF extractor (extract/pdf.c, poppler)
 * in this process on any bytes, with OCR off (Tesseract on every page
 * would make a run a few inputs a second; the image target covers OCR's
 * decoding, and ocr_render_dpi, the one piece of the OCR path that reads
 * the document's numbers, is checked here on the page size). The checks
 * are extract_fuzz.h's. */
#include <string.h>

#include "extract/ocr.h"
#include "extract_fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  ocr_options_t o;
  ocr_options_default(&o);
  o.enabled = false;
  ocr_configure(&o);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_extractor(&extract_pdf, data, size, "");
  if (size >= 2 * sizeof(double)) {
    double w, h;
    memcpy(&w, data, sizeof w);
    memcpy(&h, data + sizeof w, sizeof h);
    int dpi = ocr_render_dpi(ocr_settings(), w, h);
    if (dpi) {
      double px = (w / 72.0 * dpi + 1) * (h / 72.0 * dpi + 1);
      FUZZ_CHECK(dpi >= 36 && dpi <= ocr_settings()->dpi, "dpi %d", dpi);
      FUZZ_CHECK(px <= (double)ocr_settings()->max_pixels, "%g x %g pt at %d dpi", w, h,
                 dpi);
    }
  }
  return 0;
}
