/* fuzz_extract_image.c - OCR's image decoding (extract/ocr.c with
 * Leptonica, libpng, libjpeg and libtiff) on any bytes: the page count,
 * then each page's header check and decoding, as extract_image does
 * before it hands a page to Tesseract (which is left out: seconds a page).
 *
 * Checked: a count is 1..OCR_MAX_PAGES or an error with a reason; a
 * decoded page is 8-bit grey, at most the pixel limit (so a header that
 * lies cannot make decoding allocate more), and an error comes with a
 * reason. */
#include <leptonica/allheaders.h>

#include "extract/ocr.h"
#include "fuzz.h"

#define MAX_PIXELS (4 << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  setMsgSeverity(L_SEVERITY_NONE); /* Leptonica's complaints about each input */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512] = "";
  int pages = ocr_image_pages((const char *)data, size, err, sizeof err);
  if (pages < 0) {
    FUZZ_CHECK(pages == Q_EINVAL || pages == Q_ETOOBIG, "pages: %d", pages);
    FUZZ_CHECK(err[0], "no reason for %d", pages);
    return 0;
  }
  FUZZ_CHECK(pages >= 1 && pages <= OCR_MAX_PAGES, "%d pages", pages);
  for (int i = 0; i < pages && i < 4; i++) {
    struct Pix *pix = NULL;
    err[0] = '\0';
    q_err_t rc =
        ocr_image_decode((const char *)data, size, i, MAX_PIXELS, &pix, err, sizeof err);
    if (rc) {
      FUZZ_CHECK(rc == Q_EINVAL || rc == Q_ETOOBIG || rc == Q_ENOMEM, "decode: %d", rc);
      FUZZ_CHECK(!pix && err[0], "error %d with an image or without a reason", rc);
      continue;
    }
    FUZZ_CHECK(pix && pixGetDepth(pix) == 8, "not 8-bit grey");
    FUZZ_CHECK((int64_t)pixGetWidth(pix) * pixGetHeight(pix) <= MAX_PIXELS, "%d x %d",
               pixGetWidth(pix), pixGetHeight(pix));
    pixDestroy(&pix);
  }
  return 0;
}
