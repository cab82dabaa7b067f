/* ocr_fixtures.h - scanned pages the OCR tests make on the fly: text drawn
 * with cairo (DejaVu Sans through fontconfig) into a white image, saved as
 * PNG by cairo and as JPEG or (multi-page) TIFF by Leptonica, and a PDF
 * with a text page beside a page that is only an image of text. Nothing
 * binary is checked in. Header only (static inline). */
#ifndef QUARRY_TEST_OCR_FIXTURES_H
#define QUARRY_TEST_OCR_FIXTURES_H

#include <cairo-pdf.h>
#include <cairo.h>
#include <leptonica/allheaders.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"

/* A white page of w x h pixels with lines of black text, 40 px high. */
static inline cairo_surface_t *scan_surface(const char *const *lines, int n, int w,
                                            int h) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_t *cr = cairo_create(s);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 40);
  for (int i = 0; i < n; i++) {
    cairo_move_to(cr, 60, 100 + 64 * i);
    cairo_show_text(cr, lines[i]);
  }
  cairo_destroy(cr);
  cairo_surface_flush(s);
  return s;
}

static inline cairo_status_t buf_write_cb(void *ud, const unsigned char *data,
                                          unsigned int len) {
  return q_buf_append(ud, data, len) ? CAIRO_STATUS_WRITE_ERROR : CAIRO_STATUS_SUCCESS;
}

/* The PNG of a scanned page (malloc'd; *n its size). */
static inline char *scan_png(const char *const *lines, int nlines, size_t *n) {
  cairo_surface_t *s = scan_surface(lines, nlines, 1400, 140 + 64 * nlines);
  q_buf_t b;
  q_buf_init(&b, 64u << 20);
  cairo_surface_write_to_png_stream(s, buf_write_cb, &b);
  cairo_surface_destroy(s);
  *n = b.len;
  return q_buf_steal(&b);
}

/* The page as a Leptonica image (pixDestroy it). */
static inline PIX *scan_pix(const char *const *lines, int nlines) {
  size_t n;
  char *png = scan_png(lines, nlines, &n);
  PIX *pix = pixReadMemPng((const l_uint8 *)png, n);
  free(png);
  return pix;
}

/* As JPEG (quality 90); malloc'd. */
static inline char *scan_jpeg(const char *const *lines, int nlines, size_t *n) {
  PIX *pix = scan_pix(lines, nlines);
  l_uint8 *out = NULL;
  pixWriteMemJpeg(&out, n, pix, 90, 0);
  pixDestroy(&pix);
  return (char *)out;
}

/* A TIFF with one page per entry of pages (each one line); malloc'd. */
static inline char *scan_tiff(const char *const *pages, int npages, size_t *n) {
  PIXA *pixa = pixaCreate(npages);
  for (int i = 0; i < npages; i++)
    pixaAddPix(pixa, scan_pix(&pages[i], 1), L_INSERT);
  l_uint8 *out = NULL;
  pixaWriteMemMultipageTiff(&out, n, pixa);
  pixaDestroy(&pixa);
  return (char *)out;
}

/* A two-page US Letter PDF: page 1 has text_line as real text, page 2 is
 * only an image of scan_line (a scan: no text layer). malloc'd. */
static inline char *scan_pdf(const char *text_line, const char *scan_line, size_t *n) {
  q_buf_t b;
  q_buf_init(&b, 64u << 20);
  cairo_surface_t *pdf = cairo_pdf_surface_create_for_stream(buf_write_cb, &b, 612, 792);
  cairo_t *cr = cairo_create(pdf);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_move_to(cr, 72, 720);
  cairo_show_text(cr, text_line);
  cairo_show_page(cr);
  /* The image: 1400 px across 7 inches, 200 DPI. */
  cairo_surface_t *img = scan_surface(&scan_line, 1, 1400, 240);
  cairo_translate(cr, 72, 72);
  cairo_scale(cr, 504.0 / 1400, 504.0 / 1400);
  cairo_set_source_surface(cr, img, 0, 0);
  cairo_paint(cr);
  cairo_show_page(cr);
  cairo_destroy(cr);
  cairo_surface_finish(pdf);
  cairo_surface_destroy(pdf);
  cairo_surface_destroy(img);
  *n = b.len;
  return q_buf_steal(&b);
}

/* CRC-32 of PNG chunks (ISO 3309), for hand-made headers. */
static inline uint32_t png_crc(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return c ^ 0xffffffffu;
}

static inline void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* A 57-byte PNG whose header claims w x h pixels (8-bit grey) followed by
 * a tiny IDAT and IEND: a decompression bomb's shape. out has 64 bytes. */
static inline size_t png_claiming(unsigned char *out, uint32_t w, uint32_t h) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  size_t n = 0;
  memcpy(out, sig, 8);
  n = 8;
  put32(out + n, 13);
  memcpy(out + n + 4, "IHDR", 4);
  put32(out + n + 8, w);
  put32(out + n + 12, h);
  out[n + 16] = 8; /* bit depth */
  out[n + 17] = 0; /* grey */
  out[n + 18] = out[n + 19] = out[n + 20] = 0;
  put32(out + n + 21, png_crc(out + n + 4, 17));
  n += 25;
  put32(out + n, 0); /* an empty IDAT */
  memcpy(out + n + 4, "IDAT", 4);
  put32(out + n + 8, png_crc(out + n + 4, 4));
  n += 12;
  put32(out + n, 0);
  memcpy(out + n + 4, "IEND", 4);
  put32(out + n + 8, png_crc(out + n + 4, 4));
  n += 12;
  return n;
}

#endif
