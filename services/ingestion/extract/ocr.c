/* extract/ocr.c - Tesseract OCR and Leptonica image decoding (see ocr.h),
 * and the image extractor built on them. */
#include "extract/ocr.h"

#include <ctype.h>
#include <leptonica/allheaders.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <tesseract/capi.h>
#include <unistd.h>

#include "quarry/buf.h"

#define MAX_SIDE 100000 /* pixels: no real scan is wider or taller */
#define MIN_RENDER_DPI 36
#define HOW_TO_ENABLE                                                                    \
  "set QUARRY_OCR=true for quarry-ingestion (docs/configuration.md) to read scanned "    \
  "pages and images"

/* ---- settings ----------------------------------------------------------------- */

static ocr_options_t settings;
static bool settings_set;

void ocr_options_default(ocr_options_t *o) {
  memset(o, 0, sizeof *o);
  o->enabled = false;
  snprintf(o->langs, sizeof o->langs, "eng");
  snprintf(o->tessdata, sizeof o->tessdata, "%s", OCR_DEFAULT_TESSDATA);
  o->dpi = 300;
  o->max_pixels = 40000000;
  o->min_confidence = 40;
}

void ocr_configure(const ocr_options_t *o) {
  settings = *o;
  settings_set = true;
}

static void env_int(const char *name, int64_t lo, int64_t hi, int64_t *v) {
  const char *s = getenv(name);
  if (!s || !*s)
    return;
  char *end;
  long long x = strtoll(s, &end, 10);
  if (*end == '\0' && x >= lo && x <= hi)
    *v = x;
}

const ocr_options_t *ocr_settings(void) {
  if (settings_set)
    return &settings;
  ocr_options_t o;
  ocr_options_default(&o);
  const char *s = getenv("QUARRY_OCR");
  if (s)
    o.enabled = strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0 ||
                strcasecmp(s, "yes") == 0 || strcasecmp(s, "on") == 0;
  if ((s = getenv("QUARRY_OCR_LANGS")) && *s && strlen(s) < sizeof o.langs)
    snprintf(o.langs, sizeof o.langs, "%s", s);
  if ((s = getenv("QUARRY_OCR_TESSDATA")) && *s && strlen(s) < sizeof o.tessdata)
    snprintf(o.tessdata, sizeof o.tessdata, "%s", s);
  int64_t dpi = o.dpi, conf = o.min_confidence;
  env_int("QUARRY_OCR_DPI", 72, 1200, &dpi);
  env_int("QUARRY_OCR_MAX_PIXELS", 1000000, 1000000000, &o.max_pixels);
  env_int("QUARRY_OCR_MIN_CONFIDENCE", 0, 100, &conf);
  o.dpi = (int)dpi;
  o.min_confidence = (int)conf;
  ocr_configure(&o);
  return &settings;
}

void ocr_env_build(ocr_env_t *e, const ocr_options_t *o) {
  int n = 0;
  snprintf(e->vars[n++], sizeof e->vars[0], "QUARRY_OCR=%s",
           o->enabled ? "true" : "false");
  snprintf(e->vars[n++], sizeof e->vars[0], "QUARRY_OCR_LANGS=%s", o->langs);
  snprintf(e->vars[n++], sizeof e->vars[0], "QUARRY_OCR_TESSDATA=%s", o->tessdata);
  snprintf(e->vars[n++], sizeof e->vars[0], "QUARRY_OCR_DPI=%d", o->dpi);
  snprintf(e->vars[n++], sizeof e->vars[0], "QUARRY_OCR_MAX_PIXELS=%lld",
           (long long)o->max_pixels);
  snprintf(e->vars[n++], sizeof e->vars[0], "QUARRY_OCR_MIN_CONFIDENCE=%d",
           o->min_confidence);
  /* libgomp reads it when it loads: Tesseract then never starts threads,
   * which the sandbox's seccomp filter would refuse. */
  snprintf(e->vars[n++], sizeof e->vars[0], "OMP_THREAD_LIMIT=1");
  for (int i = 0; i < n; i++)
    e->list[i] = e->vars[i];
  e->list[n] = NULL;
}

q_err_t ocr_check_langs(const ocr_options_t *o, char *err, size_t errlen) {
  const char *p = o->langs;
  int count = 0;
  if (!*p) {
    snprintf(err, errlen, "QUARRY_OCR_LANGS: no language given (e.g. eng, eng+deu)");
    return Q_EINVAL;
  }
  while (*p) {
    const char *e = strchr(p, '+');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 0 || n > 32) {
      snprintf(err, errlen,
               "QUARRY_OCR_LANGS: \"%s\" is not a list of Tesseract languages joined "
               "by '+' (e.g. eng+deu)",
               o->langs);
      return Q_EINVAL;
    }
    char name[40], pkg[40];
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)p[i];
      if (!isalnum(c) && c != '_') {
        snprintf(err, errlen,
                 "QUARRY_OCR_LANGS: \"%.*s\" is not a Tesseract language name (letters, "
                 "digits and '_', e.g. eng, chi_sim)",
                 (int)n, p);
        return Q_EINVAL;
      }
      name[i] = (char)c;
      pkg[i] = c == '_' ? '-' : (char)tolower(c);
    }
    name[n] = pkg[n] = '\0';
    if (++count > OCR_MAX_LANGS) {
      snprintf(err, errlen, "QUARRY_OCR_LANGS: more than %d languages", OCR_MAX_LANGS);
      return Q_EINVAL;
    }
    char path[OCR_PATH_BYTES + 64];
    snprintf(path, sizeof path, "%s/%s.traineddata", o->tessdata, name);
    if (access(path, R_OK) != 0) {
      snprintf(err, errlen,
               "QUARRY_OCR_LANGS: language \"%s\" is not installed (no %s.traineddata "
               "in %s, QUARRY_OCR_TESSDATA): install the Debian package "
               "tesseract-ocr-%s",
               name, name, o->tessdata, pkg);
      return Q_EINVAL;
    }
    p += n;
    if (*p == '+')
      p++;
  }
  return Q_OK;
}

/* ---- images ------------------------------------------------------------------- */

/* Leptonica's format of an image we read, or IFF_UNKNOWN. */
static int image_format(const char *data, size_t size) {
  l_int32 f = IFF_UNKNOWN;
  if (size < 12 || findFileFormatBuffer((const l_uint8 *)data, &f))
    return IFF_UNKNOWN;
  if (f == IFF_PNG || f == IFF_JFIF_JPEG || L_FORMAT_IS_TIFF(f))
    return f;
  return IFF_UNKNOWN;
}

int ocr_image_pages(const char *data, size_t size, char *err, size_t errlen) {
  int f = image_format(data, size);
  if (f == IFF_UNKNOWN) {
    snprintf(err, errlen, "the file is damaged or is not a PNG, JPEG or TIFF image");
    return Q_EINVAL;
  }
  if (!L_FORMAT_IS_TIFF(f))
    return 1;
  /* Count the directories one header at a time: libtiff reads only the
   * directory chain, and stops at a loop in it. */
  int n = 0;
  for (; n <= OCR_MAX_PAGES; n++) {
    l_int32 w, h, bps, spp, res, cmap, fmt;
    if (readHeaderMemTiff((const l_uint8 *)data, size, n, &w, &h, &bps, &spp, &res, &cmap,
                          &fmt))
      break;
  }
  if (n == 0) {
    snprintf(err, errlen, "the TIFF image is damaged (no readable page)");
    return Q_EINVAL;
  }
  if (n > OCR_MAX_PAGES) {
    snprintf(err, errlen, "the TIFF image has more than %d pages", OCR_MAX_PAGES);
    return Q_ETOOBIG;
  }
  return n;
}

q_err_t ocr_image_decode(const char *data, size_t size, int index, int64_t max_pixels,
                         struct Pix **out, char *err, size_t errlen) {
  const l_uint8 *d = (const l_uint8 *)data;
  l_int32 w = 0, h = 0, bps = 0, spp = 0, cmap = 0, res = 0, fmt = 0;
  *out = NULL;
  int f = image_format(data, size);
  l_ok bad = 1;
  if (f == IFF_PNG)
    bad = readHeaderMemPng(d, size, &w, &h, &bps, &spp, &cmap);
  else if (f == IFF_JFIF_JPEG)
    bad = readHeaderMemJpeg(d, size, &w, &h, &spp, NULL, NULL);
  else if (f != IFF_UNKNOWN)
    bad = readHeaderMemTiff(d, size, index, &w, &h, &bps, &spp, &res, &cmap, &fmt);
  if (bad || w <= 0 || h <= 0) {
    snprintf(err, errlen, "the image is damaged (its header cannot be read)");
    return Q_EINVAL;
  }
  /* Before decoding: the header's size decides what decoding allocates. */
  if (w > MAX_SIDE || h > MAX_SIDE || (int64_t)w * h > max_pixels) {
    snprintf(err, errlen,
             "the image is %d x %d pixels, more than the limit of %lld pixels "
             "(QUARRY_OCR_MAX_PIXELS)",
             (int)w, (int)h, (long long)max_pixels);
    return Q_ETOOBIG;
  }
  PIX *pix = NULL;
  if (f == IFF_PNG)
    pix = pixReadMemPng(d, size);
  else if (f == IFF_JFIF_JPEG)
    pix = pixReadMemJpeg(d, size, 0, 1, NULL, 0);
  else
    pix = pixReadMemTiff(d, size, index);
  if (!pix || pixGetWidth(pix) != w || pixGetHeight(pix) != h) {
    pixDestroy(&pix);
    snprintf(err, errlen, "the image is damaged (page %d cannot be decoded)", index + 1);
    return Q_EINVAL;
  }
  if (pixGetDepth(pix) == 32 && pixGetSpp(pix) == 4) {
    /* Transparent pixels over white, as a viewer shows them: text drawn
     * on a transparent background would otherwise be black on black. */
    PIX *flat = pixAlphaBlendUniform(pix, 0xffffff00);
    pixDestroy(&pix);
    pix = flat;
    if (!pix) {
      snprintf(err, errlen, "out of memory flattening the image's transparency");
      return Q_ENOMEM;
    }
  }
  PIX *gray = pixConvertTo8(pix, 0);
  pixDestroy(&pix);
  if (!gray) {
    snprintf(err, errlen, "out of memory converting the image to grey");
    return Q_ENOMEM;
  }
  *out = gray;
  return Q_OK;
}

/* ---- the engine ---------------------------------------------------------------- */

struct ocr {
  TessBaseAPI *api;
  int min_confidence;
  q_buf_t para; /* the paragraph being built */
};

q_err_t ocr_new(const ocr_options_t *o, ocr_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (!o->enabled) {
    snprintf(err, errlen, "OCR is disabled on this server: " HOW_TO_ENABLE);
    return Q_EUNSUPPORTED;
  }
  ocr_t *ocr = calloc(1, sizeof *ocr);
  if (!ocr || !(ocr->api = TessBaseAPICreate())) {
    free(ocr);
    snprintf(err, errlen, "out of memory loading Tesseract");
    return Q_ENOMEM;
  }
  /* The LSTM recogniser only: Tesseract's best, and the legacy engine's
   * tables need not be loaded. */
  if (TessBaseAPIInit2(ocr->api, o->tessdata, o->langs, OEM_LSTM_ONLY) != 0) {
    TessBaseAPIDelete(ocr->api);
    free(ocr);
    snprintf(err, errlen, "Tesseract cannot load languages \"%s\" from %s", o->langs,
             o->tessdata);
    return Q_EUNAVAIL;
  }
  TessBaseAPISetPageSegMode(ocr->api, PSM_AUTO);
  ocr->min_confidence = o->min_confidence;
  q_buf_init(&ocr->para, 1 << 20);
  *out = ocr;
  return Q_OK;
}

void ocr_free(ocr_t *ocr) {
  if (!ocr)
    return;
  TessBaseAPIEnd(ocr->api);
  TessBaseAPIDelete(ocr->api);
  q_buf_cleanup(&ocr->para);
  free(ocr);
}

static q_err_t flush(ocr_t *ocr, extract_ctx_t *ctx, int page) {
  q_err_t rc = Q_OK;
  if (ocr->para.len)
    rc = extract_emit(ctx, EXTRACT_PARAGRAPH, 0, page, ocr->para.data, ocr->para.len);
  ocr->para.len = 0;
  return rc;
}

static bool ends_line(const q_buf_t *b) {
  return b->len == 0 || b->data[b->len - 1] == '\n';
}

/* Recognises the image set on the API and emits its paragraphs. */
static q_err_t recognize(ocr_t *ocr, extract_ctx_t *ctx, int page) {
  if (TessBaseAPIRecognize(ocr->api, NULL) != 0) {
    TessBaseAPIClear(ocr->api);
    return extract_fail(ctx, Q_EINVAL, "OCR failed on page %d", page);
  }
  TessResultIterator *it = TessBaseAPIGetIterator(ocr->api);
  q_err_t rc = Q_OK;
  ocr->para.len = 0;
  if (it) {
    const TessPageIterator *pit = TessResultIteratorGetPageIteratorConst(it);
    do {
      if (TessPageIteratorIsAtBeginningOf(pit, RIL_PARA))
        rc = flush(ocr, ctx, page);
      else if (TessPageIteratorIsAtBeginningOf(pit, RIL_TEXTLINE) &&
               !ends_line(&ocr->para))
        rc = q_buf_append(&ocr->para, "\n", 1);
      if (rc)
        break;
      char *word = TessResultIteratorGetUTF8Text(it, RIL_WORD);
      float conf = TessResultIteratorConfidence(it, RIL_WORD);
      if (word && *word && conf >= (float)ocr->min_confidence) {
        if (!ends_line(&ocr->para))
          rc = q_buf_append(&ocr->para, " ", 1);
        if (!rc)
          rc = q_buf_append(&ocr->para, word, strlen(word));
        if (rc == Q_ETOOBIG) { /* one paragraph past 1 MiB: emit what it has */
          rc = flush(ocr, ctx, page);
          if (!rc)
            rc = q_buf_append(&ocr->para, word, strlen(word));
        }
      }
      TessDeleteText(word);
    } while (!rc && TessResultIteratorNext(it, RIL_WORD));
    if (!rc)
      rc = flush(ocr, ctx, page);
    TessResultIteratorDelete(it);
  }
  TessBaseAPIClear(ocr->api);
  if (rc && !ctx->err[0])
    extract_fail(ctx, rc, "%s while reading the OCR text of page %d", q_strerror(rc),
                 page);
  return rc;
}

q_err_t ocr_page_gray(ocr_t *ocr, extract_ctx_t *ctx, const unsigned char *gray,
                      int width, int height, int stride, int dpi, int page) {
  TessBaseAPISetImage(ocr->api, gray, width, height, 1, stride);
  if (dpi > 0)
    TessBaseAPISetSourceResolution(ocr->api, dpi);
  return recognize(ocr, ctx, page);
}

q_err_t ocr_page_xrgb(ocr_t *ocr, extract_ctx_t *ctx, const unsigned char *xrgb,
                      int width, int height, int stride, int dpi, int page) {
  unsigned char *gray = malloc((size_t)width * (size_t)height);
  if (!gray)
    return extract_fail(ctx, Q_ENOMEM, "out of memory converting page %d to grey", page);
  for (int y = 0; y < height; y++) {
    const uint32_t *row = (const uint32_t *)(const void *)(xrgb + (size_t)y * stride);
    unsigned char *g = gray + (size_t)y * width;
    for (int x = 0; x < width; x++) {
      uint32_t p = row[x];
      unsigned r = (p >> 16) & 0xff, gr = (p >> 8) & 0xff, b = p & 0xff;
      g[x] = (unsigned char)((r * 77 + gr * 150 + b * 29) >> 8);
    }
  }
  q_err_t rc = ocr_page_gray(ocr, ctx, gray, width, height, width, dpi, page);
  free(gray);
  return rc;
}

int ocr_render_dpi(const ocr_options_t *o, double width_pt, double height_pt) {
  /* NaN fails every comparison, so these reject it too. */
  if (!(width_pt >= 1 && height_pt >= 1 && width_pt <= 1e6 && height_pt <= 1e6))
    return 0;
  for (int dpi = o->dpi; dpi >= MIN_RENDER_DPI; dpi = dpi * 9 / 10) {
    double w = width_pt / 72.0 * dpi + 1, h = height_pt / 72.0 * dpi + 1;
    if (w <= MAX_SIDE && h <= MAX_SIDE && w * h <= (double)o->max_pixels)
      return dpi;
  }
  return 0;
}

/* ---- the image extractor ---------------------------------------------------------- */

static q_err_t image_prepare(extract_ctx_t *ctx) {
  ocr_t *ocr;
  q_err_t rc = ocr_new(ocr_settings(), &ocr, ctx->err, ctx->errlen);
  if (rc)
    return rc;
  ctx->state = ocr;
  return Q_OK;
}

static q_err_t image_run(extract_ctx_t *ctx) {
  ocr_t *ocr = ctx->state;
  ctx->state = NULL;
  q_err_t rc = Q_OK;
  int pages = ocr_image_pages(ctx->data, ctx->size, ctx->err, ctx->errlen);
  if (pages < 0)
    rc = pages;
  for (int i = 0; i < pages && !rc; i++) {
    PIX *pix;
    rc = ocr_image_decode(ctx->data, ctx->size, i, ocr_settings()->max_pixels, &pix,
                          ctx->err, ctx->errlen);
    if (rc)
      break;
    TessBaseAPISetImage2(ocr->api, pix);
    l_int32 res = pixGetXRes(pix);
    if (res >= 70 && res <= 2400)
      TessBaseAPISetSourceResolution(ocr->api, res);
    rc = recognize(ocr, ctx, i + 1);
    pixDestroy(&pix);
  }
  ocr_free(ocr);
  return rc;
}

const extractor_t extract_image = {"image", image_prepare, image_run};
