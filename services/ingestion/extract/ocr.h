/* extract/ocr.h - optical character recognition of scanned pages and
 * images with Tesseract (tesseract/capi.h), images decoded by Leptonica.
 *
 * Three parts:
 *
 *   - Settings (ocr_options_t): on/off, languages, tessdata folder, DPI of
 *     rendered PDF pages, most pixels of one page, least word confidence.
 *     The service reads them from its config table and calls
 *     ocr_configure at start; the sandboxed child, which gets an empty
 *     environment plus what sandbox_cfg_t.env lists, finds them in the
 *     variables ocr_env_build writes (the same QUARRY_OCR_* names), read
 *     on the first ocr_settings() of a process that never called
 *     ocr_configure.
 *   - Image decoding (ocr_image_*): the page count and each page's size
 *     read from the header before anything is decoded, so a small file
 *     claiming 100000 x 100000 pixels (a decompression bomb) is refused
 *     before it can allocate; then the page decoded to 8-bit grey.
 *   - The engine (ocr_t): Tesseract loaded once per extraction, before
 *     the sandbox locks the process down (it reads its traineddata files),
 *     single-threaded (OMP_THREAD_LIMIT=1 in the child's environment: the
 *     seccomp filter allows no new threads), recognising one page at a
 *     time and emitting its paragraphs, with that page's number, through
 *     extract_emit. Words below the confidence threshold are dropped: on a
 *     scan they are mostly specks, stamps and bleed-through read as
 *     letters, which would only add noise to the index.
 *
 * The image extractor (extract_image: PNG, JPEG, TIFF, multi-page TIFF as
 * pages 1, 2, ...) and the PDF extractor (pages without a text layer) use
 * it. Not thread-safe: one ocr_t per extraction. */
#ifndef QUARRY_INGESTION_OCR_H
#define QUARRY_INGESTION_OCR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "extract/extract.h"
#include "quarry/error.h"

#define OCR_LANGS_BYTES 128 /* "eng+deu+fra": QUARRY_OCR_LANGS */
#define OCR_PATH_BYTES 512  /* QUARRY_OCR_TESSDATA */
#define OCR_MAX_LANGS 8
#define OCR_MAX_PAGES 1000 /* images of one multi-page TIFF */
#define OCR_DEFAULT_TESSDATA "/usr/share/tesseract-ocr/5/tessdata"

typedef struct ocr_options {
  bool enabled;                  /* QUARRY_OCR */
  char langs[OCR_LANGS_BYTES];   /* QUARRY_OCR_LANGS, Tesseract's "eng+deu" */
  char tessdata[OCR_PATH_BYTES]; /* QUARRY_OCR_TESSDATA: the *.traineddata folder */
  int dpi;                       /* QUARRY_OCR_DPI: PDF pages are rendered at this */
  int64_t max_pixels;            /* QUARRY_OCR_MAX_PIXELS: one page, width x height */
  int min_confidence;            /* QUARRY_OCR_MIN_CONFIDENCE: 0..100 */
} ocr_options_t;

/* The defaults: off, "eng", OCR_DEFAULT_TESSDATA, 300 DPI, 40 million
 * pixels, confidence 40. */
void ocr_options_default(ocr_options_t *o);

/* Checks o->langs: 1..OCR_MAX_LANGS names of letters, digits and '_'
 * joined by '+', each with its <name>.traineddata in o->tessdata. 0, or
 * Q_EINVAL with err naming the language and the Debian package that
 * brings it ("tesseract-ocr-deu"). */
q_err_t ocr_check_langs(const ocr_options_t *o, char *err, size_t errlen);

/* Sets this process's settings (copied). Call once at start, before any
 * extraction; the settings are read-only afterwards. */
void ocr_configure(const ocr_options_t *o);

/* This process's settings: what ocr_configure set, else (the first time)
 * what the QUARRY_OCR_* environment variables say, else the defaults.
 * Values out of range in the environment keep their default. */
const ocr_options_t *ocr_settings(void);

/* The environment variables that carry o into the sandboxed child
 * (sandbox_cfg_t.env): QUARRY_OCR_* and OMP_THREAD_LIMIT=1. list is
 * NULL-ended and points into vars. */
#define OCR_ENV_VARS 7
typedef struct ocr_env {
  char vars[OCR_ENV_VARS][OCR_PATH_BYTES + 32];
  const char *list[OCR_ENV_VARS + 1];
} ocr_env_t;
void ocr_env_build(ocr_env_t *e, const ocr_options_t *o);

/* ---- images ----------------------------------------------------------------- */

struct Pix;

/* The number of pages of an image: 1 for PNG and JPEG, the directories
 * of a TIFF (at most OCR_MAX_PAGES). Returns the count (>= 1), or a
 * negative q_err_t (Q_EINVAL: not a PNG, JPEG or TIFF Leptonica can
 * read; Q_ETOOBIG: more pages than OCR_MAX_PAGES) with err set. */
int ocr_image_pages(const char *data, size_t size, char *err, size_t errlen);

/* Decodes page index (0-based) of an image to 8-bit grey into *out (the
 * caller pixDestroy()s it). Its size is read from the header first: over
 * max_pixels (or a side over 100000) is Q_ETOOBIG without decoding. 0;
 * Q_EINVAL for a damaged image; Q_ENOMEM; err says which. */
q_err_t ocr_image_decode(const char *data, size_t size, int index, int64_t max_pixels,
                         struct Pix **out, char *err, size_t errlen);

/* ---- the engine --------------------------------------------------------------- */

typedef struct ocr ocr_t;

/* Loads Tesseract with o's languages from o->tessdata (opens files: call
 * before the sandbox's lockdown, from an extractor's prepare). 0 with *out
 * set (ocr_free it); Q_EUNSUPPORTED when OCR is disabled (err says how to
 * enable it); Q_EUNAVAIL when Tesseract cannot load (err says why); Q_ENOMEM. */
q_err_t ocr_new(const ocr_options_t *o, ocr_t **out, char *err, size_t errlen);
void ocr_free(ocr_t *ocr);

/* Recognises an 8-bit grey image of width x height pixels, stride bytes
 * a row, scanned at dpi, and emits its paragraphs on page through ctx
 * (extract_emit: EXTRACT_PARAGRAPH, lines kept). 0, or extract_emit's
 * error, or Q_EINVAL when Tesseract fails on the page; ctx->err set. */
q_err_t ocr_page_gray(ocr_t *ocr, extract_ctx_t *ctx, const unsigned char *gray,
                      int width, int height, int stride, int dpi, int page);

/* The same for cairo's CAIRO_FORMAT_RGB24/ARGB32 layout (one native-endian
 * uint32_t 0xAARRGGBB a pixel; alpha ignored): what the PDF extractor
 * renders a page without text into. Converts to grey (Q_ENOMEM if it
 * cannot) and calls ocr_page_gray. */
q_err_t ocr_page_xrgb(ocr_t *ocr, extract_ctx_t *ctx, const unsigned char *xrgb,
                      int width, int height, int stride, int dpi, int page);

/* The PDF extractor's question: a page of width_pt x height_pt points,
 * rendered at the configured DPI, lowered when the page would exceed
 * max_pixels. Returns the DPI to render at (>= 1), or 0 when even 36 DPI
 * would exceed max_pixels or the size is not a real one. */
int ocr_render_dpi(const ocr_options_t *o, double width_pt, double height_pt);

/* The image extractor: PNG, JPEG and TIFF through Tesseract; every page
 * of a TIFF becomes a page. Fails with a sentence saying how to enable
 * OCR when it is off. */
extern const extractor_t extract_image;

#endif
