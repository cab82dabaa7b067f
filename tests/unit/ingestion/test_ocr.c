/* test_ocr.c - OCR of scanned pages (extract/ocr.h): PNG, JPEG and
 * multi-page TIFF read with their page numbers, a PDF whose image-only
 * page is OCR'd beside an untouched text page, OCR switched off (refused
 * with how to switch it on), the hostile images (truncated, a header
 * claiming 100000 x 100000 pixels, a JPEG declared as PDF), language
 * checks, and a scan read inside the real sandbox (seccomp, 1 GiB).
 *
 * The pages are drawn by ocr_fixtures.h at run time. This binary is its
 * own sandbox child, as test_sandbox.c is. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "extract/formats.h"
#include "extract/ocr.h"
#include "extract/sandbox.h"
#include "extract_fixtures.h"
#include "ocr_fixtures.h"

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], SANDBOX_SUBCOMMAND) == 0)
    return sandbox_child_main(argc, argv, NULL);
  struct criterion_test_set *tests = criterion_initialize();
  int result = 0;
  if (criterion_handle_args(argc, argv, true))
    result = !criterion_run_all_tests(tests);
  criterion_finalize(tests);
  return result;
}

static recs_t r;
static char err[512];

static void ocr_on(bool on) {
  ocr_options_t o;
  ocr_options_default(&o);
  o.enabled = on;
  ocr_configure(&o);
}

static void init(void) {
  ocr_on(true);
}

static void fini(void) {
  recs_free(&r);
}

TestSuite(ocr, .init = init, .fini = fini);

static q_err_t run(const extractor_t *x, const char *data, size_t n) {
  recs_free(&r);
  err[0] = '\0';
  return run_extractor(x, data, n, "", NULL, &r, err, sizeof err);
}

/* The page of the first record containing s, or -1. */
static int page_of(const char *s) {
  for (int i = 0; i < r.n; i++)
    if (strstr(r.text[i], s))
      return r.page[i];
  return -1;
}

static const char *const kiln[] = {"The kiln reaches 1240 degrees",
                                   "for stoneware glaze firing."};

/* ---- images --------------------------------------------------------------------- */

Test(ocr, png_page_is_read_as_page_1) {
  size_t n;
  char *png = scan_png(kiln, 2, &n);
  cr_assert_eq(run(&extract_image, png, n), Q_OK, "%s", err);
  cr_assert_eq(page_of("kiln reaches 1240"), 1, "records: %d, first: %s", r.n,
               r.n ? r.text[0] : "-");
  cr_assert_eq(page_of("stoneware"), 1);
  cr_assert_eq(r.kind[0], EXTRACT_PARAGRAPH);
  free(png);
}

Test(ocr, jpeg_is_read) {
  size_t n;
  char *jpg = scan_jpeg(kiln, 2, &n);
  cr_assert_eq(formats_sniff(jpg, n), CONTENT_JPEG);
  cr_assert_eq(run(&extract_image, jpg, n), Q_OK, "%s", err);
  cr_assert_eq(page_of("stoneware"), 1, "%s", r.n ? r.text[0] : "-");
  free(jpg);
}

Test(ocr, text_on_a_transparent_background_is_read) {
  /* Black text on transparent pixels (an RGBA PNG, as screenshots and
   * exported diagrams often are) reads as text on white. */
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1400, 200);
  cairo_t *cr = cairo_create(s);
  cairo_set_source_rgba(cr, 0, 0, 0, 1);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 40);
  cairo_move_to(cr, 60, 100);
  cairo_show_text(cr, "Transparent annealing schedule");
  cairo_destroy(cr);
  q_buf_t b;
  q_buf_init(&b, 16u << 20);
  cairo_surface_write_to_png_stream(s, buf_write_cb, &b);
  cairo_surface_destroy(s);
  cr_assert_eq(run(&extract_image, b.data, b.len), Q_OK, "%s", err);
  cr_assert_eq(page_of("annealing schedule"), 1, "%s", r.n ? r.text[0] : "-");
  q_buf_cleanup(&b);
}

Test(ocr, multipage_tiff_keeps_page_numbers) {
  static const char *const pages[] = {"Boiler room checklist", "Bleed the radiators",
                                      "Inspect the chimney flue"};
  size_t n;
  char *tif = scan_tiff(pages, 3, &n);
  cr_assert_eq(formats_sniff(tif, n), CONTENT_TIFF);
  cr_assert_eq(ocr_image_pages(tif, n, err, sizeof err), 3, "%s", err);
  cr_assert_eq(run(&extract_image, tif, n), Q_OK, "%s", err);
  cr_assert_eq(page_of("Boiler"), 1);
  cr_assert_eq(page_of("radiators"), 2);
  cr_assert_eq(page_of("chimney"), 3);
  free(tif);
}

Test(ocr, low_confidence_words_are_dropped) {
  /* At 100 every word falls below the bar: the page gives no text. */
  ocr_options_t o;
  ocr_options_default(&o);
  o.enabled = true;
  o.min_confidence = 100;
  ocr_configure(&o);
  size_t n;
  char *png = scan_png(kiln, 2, &n);
  cr_assert_eq(run(&extract_image, png, n), Q_OK, "%s", err);
  cr_assert_eq(r.n, 0, "%s", r.n ? r.text[0] : "-");
  free(png);
}

/* ---- PDF ------------------------------------------------------------------------- */

Test(ocr, pdf_image_page_is_ocrd_and_text_page_kept) {
  size_t n;
  char *pdf = scan_pdf("Glazes mature at cone six.", "Scanned kiln maintenance log", &n);
  cr_assert_eq(run(&extract_pdf, pdf, n), Q_OK, "%s", err);
  cr_assert_eq(page_of("Glazes mature at cone six."), 1);
  cr_assert_eq(page_of("maintenance log"), 2, "records %d: %s | %s", r.n,
               r.n ? r.text[0] : "-", r.n > 1 ? r.text[1] : "-");
  free(pdf);
}

Test(ocr, pdf_without_ocr_reads_only_the_text_page) {
  ocr_on(false);
  size_t n;
  char *pdf = scan_pdf("Glazes mature at cone six.", "Scanned kiln maintenance log", &n);
  cr_assert_eq(run(&extract_pdf, pdf, n), Q_OK, "%s", err);
  cr_assert_eq(page_of("Glazes"), 1);
  cr_assert_eq(page_of("maintenance"), -1);
  free(pdf);
}

Test(ocr, render_dpi_is_lowered_for_huge_pages) {
  ocr_options_t o;
  ocr_options_default(&o);
  cr_assert_eq(ocr_render_dpi(&o, 612, 792), 300);
  /* 50 x 50 inches at 300 DPI is 225 million pixels: lowered. */
  int dpi = ocr_render_dpi(&o, 3600, 3600);
  cr_assert(dpi >= 36 && dpi < 300, "%d", dpi);
  double px = (3600 / 72.0 * dpi + 1) * (3600 / 72.0 * dpi + 1);
  cr_assert(px <= (double)o.max_pixels, "%f", px);
  /* 200 x 200 inches would need less than 36 DPI: refused. */
  cr_assert_eq(ocr_render_dpi(&o, 14400, 14400), 0);
  cr_assert_eq(ocr_render_dpi(&o, 1e6, 1e6), 0);
  cr_assert_eq(ocr_render_dpi(&o, 0, 792), 0);
  cr_assert_eq(ocr_render_dpi(&o, 0.0 / 0.0, 792), 0);
}

/* ---- OCR off ------------------------------------------------------------------------
 */

Test(ocr, images_refused_when_ocr_is_off) {
  ocr_on(false);
  size_t n;
  char *png = scan_png(kiln, 1, &n);
  cr_assert_eq(run(&extract_image, png, n), Q_EUNSUPPORTED);
  cr_assert(strstr(err, "OCR is disabled") && strstr(err, "QUARRY_OCR=true"), "%s", err);
  /* At upload: declared, by file name, and by content alone. */
  format_choice_t c;
  cr_assert_eq(formats_choose("image/png", "scan.png", &c, err, sizeof err),
               Q_EUNSUPPORTED);
  cr_assert(strstr(err, "QUARRY_OCR=true"), "%s", err);
  cr_assert_eq(formats_choose(NULL, "scan.tiff", &c, err, sizeof err), Q_EUNSUPPORTED);
  cr_assert_eq(formats_choose(NULL, NULL, &c, err, sizeof err), Q_OK);
  cr_assert_eq(formats_confirm(&c, png, n, err, sizeof err), Q_EUNSUPPORTED);
  cr_assert(strstr(err, "a PNG image") && strstr(err, "QUARRY_OCR=true"), "%s", err);
  free(png);
}

Test(ocr, images_accepted_at_upload_when_ocr_is_on) {
  size_t n;
  char *png = scan_png(kiln, 1, &n);
  format_choice_t c;
  cr_assert_eq(formats_choose(NULL, NULL, &c, err, sizeof err), Q_OK);
  cr_assert_eq(formats_confirm(&c, png, n, err, sizeof err), Q_OK, "%s", err);
  cr_assert_str_eq(c.fmt->id, "png");
  cr_assert_eq(c.fmt->chunking, CHUNK_BY_PAGE);
  cr_assert_eq(formats_choose("image/jpg", NULL, &c, err, sizeof err), Q_OK);
  cr_assert_str_eq(c.fmt->id, "jpeg");
  cr_assert_eq(formats_choose(NULL, "SCAN.TIF", &c, err, sizeof err), Q_OK);
  cr_assert_str_eq(c.fmt->id, "tiff");
  free(png);
}

/* ---- hostile images ------------------------------------------------------------------
 */

Test(ocr, truncated_png_fails_with_a_reason) {
  size_t n;
  char *png = scan_png(kiln, 2, &n);
  cr_assert_eq(run(&extract_image, png, n / 2), Q_EINVAL);
  cr_assert(strstr(err, "damaged"), "%s", err);
  cr_assert_eq(run(&extract_image, png, 20), Q_EINVAL); /* the header cut */
  free(png);
}

Test(ocr, png_claiming_100000_squared_is_refused_before_decoding) {
  unsigned char bomb[64];
  size_t n = png_claiming(bomb, 100000, 100000);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  cr_assert_eq(run(&extract_image, (const char *)bomb, n), Q_ETOOBIG);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  cr_assert(strstr(err, "100000 x 100000 pixels") && strstr(err, "QUARRY_OCR_MAX_PIXELS"),
            "%s", err);
  PIX *pix = (PIX *)1;
  cr_assert_eq(
      ocr_image_decode((const char *)bomb, n, 0, 40000000, &pix, err, sizeof err),
      Q_ETOOBIG);
  cr_assert_null(pix);
  /* Within the limit the same header is decoded, and the empty data fails. */
  n = png_claiming(bomb, 100, 100);
  cr_assert_eq(
      ocr_image_decode((const char *)bomb, n, 0, 40000000, &pix, err, sizeof err),
      Q_EINVAL);
}

Test(ocr, jpeg_declared_as_pdf_names_both_types) {
  size_t n;
  char *jpg = scan_jpeg(kiln, 1, &n);
  format_choice_t c;
  cr_assert_eq(formats_choose("application/pdf", "scan.pdf", &c, err, sizeof err), Q_OK);
  cr_assert_eq(formats_confirm(&c, jpg, n, err, sizeof err), Q_EUNSUPPORTED);
  cr_assert(strstr(err, "declared application/pdf but the content is a JPEG image"), "%s",
            err);
  cr_assert(strstr(err, "image/jpeg"), "%s", err);
  free(jpg);
}

Test(ocr, not_an_image_fails) {
  cr_assert_eq(run(&extract_image, "plain words, not pixels", 23), Q_EINVAL);
  cr_assert(strstr(err, "not a PNG, JPEG or TIFF"), "%s", err);
}

/* ---- languages --------------------------------------------------------------------- */

Test(ocr, languages_are_checked_against_tessdata) {
  ocr_options_t o;
  ocr_options_default(&o);
  cr_assert_eq(ocr_check_langs(&o, err, sizeof err), Q_OK, "%s", err);
  snprintf(o.langs, sizeof o.langs, "eng+zz_qq");
  cr_assert_eq(ocr_check_langs(&o, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "\"zz_qq\" is not installed") &&
                strstr(err, "tesseract-ocr-zz-qq"),
            "%s", err);
  snprintf(o.langs, sizeof o.langs, "eng;rm");
  cr_assert_eq(ocr_check_langs(&o, err, sizeof err), Q_EINVAL);
  snprintf(o.langs, sizeof o.langs, "eng++deu");
  cr_assert_eq(ocr_check_langs(&o, err, sizeof err), Q_EINVAL);
  snprintf(o.langs, sizeof o.langs, "../eng");
  cr_assert_eq(ocr_check_langs(&o, err, sizeof err), Q_EINVAL);
}

Test(ocr, env_carries_the_settings) {
  ocr_options_t o;
  ocr_options_default(&o);
  o.enabled = true;
  o.dpi = 200;
  snprintf(o.langs, sizeof o.langs, "eng+osd");
  ocr_env_t e;
  ocr_env_build(&e, &o);
  int found = 0;
  for (int i = 0; e.list[i]; i++)
    found += strcmp(e.list[i], "QUARRY_OCR=true") == 0 ||
             strcmp(e.list[i], "QUARRY_OCR_DPI=200") == 0 ||
             strcmp(e.list[i], "QUARRY_OCR_LANGS=eng+osd") == 0 ||
             strcmp(e.list[i], "OMP_THREAD_LIMIT=1") == 0;
  cr_assert_eq(found, 4);
}

/* ---- in the sandbox --------------------------------------------------------------- */

static int temp_doc(const char *data, size_t n) {
  char path[] = "/tmp/quarry-ocr-XXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  cr_assert_eq(write(fd, data, n), (ssize_t)n);
  return fd;
}

static q_err_t sandboxed(const char *id, const char *data, size_t n, bool on, doc_t *d,
                         sandbox_info_t *info) {
  ocr_options_t o;
  ocr_options_default(&o);
  o.enabled = on;
  ocr_env_t e;
  ocr_env_build(&e, &o);
  sandbox_cfg_t c = {
      .exe = "/proc/self/exe",
      .memory_bytes = 1ll << 30, /* the service's default */
      .cpu_seconds = 60,
      .timeout_ms = 60000,
      .limits = {1 << 20, 1 << 20, 100, 64},
      .seccomp = true,
      .env = e.list,
  };
  const format_t *f = formats_by_id(id);
  int fd = temp_doc(data, n);
  doc_init(d, f->chunking, 1 << 20);
  err[0] = '\0';
  q_err_t rc = sandbox_extract(&c, f, "", fd, d, info, err, sizeof err);
  close(fd);
  return rc;
}

Test(ocr, scans_are_read_in_the_sandbox_within_1_gib) {
  size_t n;
  char *png = scan_png(kiln, 2, &n);
  doc_t d;
  sandbox_info_t info;
  cr_assert_eq(sandboxed("png", png, n, true, &d, &info), Q_OK, "%s", err);
  cr_assert_str_eq(info.lockdown, "seccomp");
  cr_assert(strstr(d.text.data, "stoneware"), "%s", d.text.data);
  cr_assert_eq(d.max_page, 1);
  fprintf(stderr, "ocr in sandbox: png %zu bytes, %lld ms, peak RSS %ld KiB\n", n,
          (long long)info.ms, info.max_rss_kb);
  doc_cleanup(&d);

  char *pdf = scan_pdf("Glazes mature at cone six.", "Scanned kiln maintenance log", &n);
  cr_assert_eq(sandboxed("pdf", pdf, n, true, &d, &info), Q_OK, "%s", err);
  cr_assert(strstr(d.text.data, "Glazes") && strstr(d.text.data, "maintenance"), "%s",
            d.text.data);
  cr_assert_eq(d.max_page, 2);
  fprintf(stderr, "ocr in sandbox: pdf %zu bytes, %lld ms, peak RSS %ld KiB\n", n,
          (long long)info.ms, info.max_rss_kb);
  doc_cleanup(&d);
  free(pdf);

  /* Off: the child refuses the image with the way to switch OCR on. */
  cr_assert_eq(sandboxed("png", png, n, false, &d, &info), Q_EUNSUPPORTED, "%s", err);
  cr_assert(strstr(err, "PNG: OCR is disabled"), "%s", err);
  doc_cleanup(&d);
  free(png);
}
