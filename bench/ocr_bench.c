/* ocr_bench.c - the cost of OCR in ingestion (extract/ocr.c), measured as
 * the service pays it: each document goes through sandbox_extract, the
 * real sandboxed child with the service's default limits (1 GiB address
 * space, seccomp, 60 s CPU), with the settings carried by its environment.
 *
 * Pages are drawn at run time with cairo: US Letter at 300 DPI (2550 x
 * 3300 pixels), 44 lines of 11-point DejaVu Sans taken from a text file
 * (default: the BEIR SciFact abstracts, ../shared/data/scifact/corpus.jsonl,
 * read in place; any text file works). Reported per case (medians of
 * --rounds): wall time per page and pages per second, CPU time per page
 * and pages per CPU-second (the child's, from RUSAGE_CHILDREN: the figure
 * that does not depend on what else the machine runs), the child's peak
 * resident memory, and the share of the page's words found in the OCR
 * text (word recall, so a fast but blind run would show). Cases:
 *
 *   png-page       one scanned page as PNG
 *   pdf-scan-N     a PDF of N image-only pages (rendered at QUARRY_OCR_DPI)
 *   pdf-text-N     the same N pages as a text PDF, OCR off and OCR on
 *                  (what loading Tesseract adds to a PDF that needs no OCR)
 *   png-max        one image of QUARRY_OCR_MAX_PIXELS (40 million pixels),
 *                  mostly blank: the memory ceiling
 *
 * Not part of make test:  make bench-ocr [OCR_BENCH_ARGS="--pages 5 --rounds 3"]
 * Figures are recorded in docs/benchmarks.md. */
#include <cairo-pdf.h>
#include <cairo.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "extract/doc.h"
#include "extract/formats.h"
#include "extract/ocr.h"
#include "extract/sandbox.h"
#include "quarry/buf.h"

#define W 2550
#define H 3300
#define LINES 44
#define LINE_CHARS 92

static char text_lines[LINES * 64][LINE_CHARS + 1];
static int ntext;

/* Fills text_lines from path: letters, digits and punctuation of the file
 * (JSON quotes and braces dropped), wrapped at LINE_CHARS. */
static void load_text(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "ocr_bench: cannot read %s (--text FILE)\n", path);
    exit(2);
  }
  char line[LINE_CHARS + 1];
  size_t n = 0;
  int c, space = 0;
  while (ntext < (int)(sizeof text_lines / sizeof text_lines[0]) &&
         (c = fgetc(f)) != EOF) {
    if (c == '{' || c == '}' || c == '"' || c == '\\' || c >= 0x80)
      continue;
    if (isspace(c) || c == ':' || c == ',') {
      space = n > 0;
      continue;
    }
    if (space && n > 0) {
      if (n >= LINE_CHARS - 12) {
        line[n] = '\0';
        memcpy(text_lines[ntext++], line, n + 1);
        n = 0;
      } else {
        line[n++] = ' ';
      }
    }
    space = 0;
    if (n < LINE_CHARS)
      line[n++] = (char)c;
  }
  fclose(f);
}

/* Page p's lines: draws them into a 300 DPI page surface. */
static cairo_surface_t *page_surface(int p, int w, int h, bool text) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_t *cr = cairo_create(s);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  if (text) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                           CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11 * 300 / 72.0);
    for (int i = 0; i < LINES; i++) {
      cairo_move_to(cr, 300, 300 + i * 62);
      cairo_show_text(cr, text_lines[(p * LINES + i) % ntext]);
    }
  }
  cairo_destroy(cr);
  cairo_surface_flush(s);
  return s;
}

static cairo_status_t write_cb(void *ud, const unsigned char *d, unsigned int n) {
  return q_buf_append(ud, d, n) ? CAIRO_STATUS_WRITE_ERROR : CAIRO_STATUS_SUCCESS;
}

static void png_of(cairo_surface_t *s, q_buf_t *b) {
  q_buf_init(b, 256u << 20);
  cairo_surface_write_to_png_stream(s, write_cb, b);
}

/* A PDF of pages [0, n): scans (an image each) or real text. */
static void pdf_of(int n, bool scan, q_buf_t *b) {
  q_buf_init(b, 256u << 20);
  cairo_surface_t *pdf = cairo_pdf_surface_create_for_stream(write_cb, b, 612, 792);
  cairo_t *cr = cairo_create(pdf);
  for (int p = 0; p < n; p++) {
    if (scan) {
      cairo_surface_t *img = page_surface(p, W, H, true);
      cairo_save(cr);
      cairo_scale(cr, 72.0 / 300, 72.0 / 300);
      cairo_set_source_surface(cr, img, 0, 0);
      cairo_paint(cr);
      cairo_restore(cr);
      cairo_surface_destroy(img);
    } else {
      cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                             CAIRO_FONT_WEIGHT_NORMAL);
      cairo_set_font_size(cr, 11);
      for (int i = 0; i < LINES; i++) {
        cairo_move_to(cr, 72, 72 + i * 62 * 72 / 300.0);
        cairo_show_text(cr, text_lines[(p * LINES + i) % ntext]);
      }
    }
    cairo_show_page(cr);
  }
  cairo_destroy(cr);
  cairo_surface_finish(pdf);
  cairo_surface_destroy(pdf);
}

/* Share of the words of pages [0, n) found in got. */
static double recall(int n, const char *got) {
  long want = 0, found = 0;
  for (int p = 0; p < n; p++)
    for (int i = 0; i < LINES; i++) {
      char line[LINE_CHARS + 1];
      snprintf(line, sizeof line, "%s", text_lines[(p * LINES + i) % ntext]);
      for (char *save = NULL, *w = strtok_r(line, " ", &save); w;
           w = strtok_r(NULL, " ", &save)) {
        want++;
        found += strstr(got, w) != NULL;
      }
    }
  return want ? (double)found / (double)want : 0;
}

/* CPU seconds of the reaped children so far (the sandboxed extractors). */
static double children_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

typedef struct result {
  double ms, cpu_ms;
  long rss_kb;
  double recall;
  q_err_t rc;
  char err[512];
} result_t;

static result_t extract(const char *id, const q_buf_t *b, bool ocr, int pages) {
  ocr_options_t o;
  ocr_options_default(&o);
  o.enabled = ocr;
  ocr_env_t env;
  ocr_env_build(&env, &o);
  sandbox_cfg_t cfg = {
      .exe = "/proc/self/exe",
      .memory_bytes = 1ll << 30,
      .cpu_seconds = 600,
      .timeout_ms = 1200000,
      .limits = {256 << 20, 256 << 20, 10000, 256},
      .seccomp = true,
      .env = env.list,
  };
  char path[] = "/tmp/quarry-ocr-bench-XXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  if (fd < 0 || write(fd, b->data, b->len) != (ssize_t)b->len) {
    perror("ocr_bench: temp file");
    exit(1);
  }
  const format_t *f = formats_by_id(id);
  doc_t d;
  doc_init(&d, f->chunking, 256u << 20);
  sandbox_info_t info;
  result_t r = {0};
  double cpu0 = children_cpu();
  r.rc = sandbox_extract(&cfg, f, "", fd, &d, &info, r.err, sizeof r.err);
  r.cpu_ms = (children_cpu() - cpu0) * 1000.0;
  close(fd);
  r.ms = (double)info.ms;
  r.rss_kb = info.max_rss_kb;
  r.recall = pages && d.text.data ? recall(pages, d.text.data) : 0;
  doc_cleanup(&d);
  return r;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void run_case(const char *name, const char *id, const q_buf_t *b, bool ocr,
                     int pages, int rounds) {
  double ms[32], cpu[32];
  long rss = 0;
  double rec = 0;
  for (int i = 0; i < rounds; i++) {
    result_t r = extract(id, b, ocr, pages);
    if (r.rc) {
      printf("%-14s %-3s  failed: %s\n", name, ocr ? "on" : "off", r.err);
      return;
    }
    ms[i] = r.ms;
    cpu[i] = r.cpu_ms;
    rss = r.rss_kb > rss ? r.rss_kb : rss;
    rec = r.recall;
  }
  qsort(ms, (size_t)rounds, sizeof ms[0], cmp_double);
  qsort(cpu, (size_t)rounds, sizeof cpu[0], cmp_double);
  int n = pages ? pages : 1;
  double per = ms[rounds / 2] / n, cpu_per = cpu[rounds / 2] / n;
  printf("%-14s %-3s %8.2f MB %5d %9.0f %9.0f %8.2f %9.0f %8.2f %8.0f %7.3f\n", name,
         ocr ? "on" : "off", (double)b->len / 1e6, pages, ms[rounds / 2], per,
         1000.0 / per, cpu_per, 1000.0 / cpu_per, (double)rss / 1024.0, rec);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], SANDBOX_SUBCOMMAND) == 0)
    return sandbox_child_main(argc, argv, NULL);
  const char *text = "../shared/data/scifact/corpus.jsonl";
  int pages = 5, rounds = 3;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--text") == 0 && i + 1 < argc)
      text = argv[++i];
    else if (strcmp(argv[i], "--pages") == 0 && i + 1 < argc)
      pages = atoi(argv[++i]);
    else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: ocr_bench [--text FILE] [--pages N] [--rounds R]\n");
      return 2;
    }
  }
  if (pages < 1 || pages > 64 || rounds < 1 || rounds > 31) {
    fprintf(stderr, "ocr_bench: --pages 1..64, --rounds 1..31\n");
    return 2;
  }
  load_text(text);
  if (ntext < LINES) {
    fprintf(stderr, "ocr_bench: %s has too little text\n", text);
    return 2;
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  printf("OCR cost through the sandbox (1 GiB, seccomp), Tesseract LSTM, eng, 300 DPI, "
         "%d rounds (median), %ld CPUs online\n",
         rounds, ncpu);
  printf("%-14s %-3s %11s %5s %9s %9s %8s %9s %8s %8s %7s\n", "case", "ocr", "input",
         "pages", "wall ms", "ms/page", "pages/s", "CPU ms/p", "p/CPU-s", "RSS MiB",
         "recall");

  q_buf_t b;
  cairo_surface_t *s = page_surface(0, W, H, true);
  png_of(s, &b);
  cairo_surface_destroy(s);
  run_case("png-page", "png", &b, true, 1, rounds);
  q_buf_cleanup(&b);

  char name[32];
  pdf_of(pages, true, &b);
  snprintf(name, sizeof name, "pdf-scan-%d", pages);
  run_case(name, "pdf", &b, true, pages, rounds);
  q_buf_cleanup(&b);

  pdf_of(pages, false, &b);
  snprintf(name, sizeof name, "pdf-text-%d", pages);
  run_case(name, "pdf", &b, false, pages, rounds);
  run_case(name, "pdf", &b, true, pages, rounds);
  q_buf_cleanup(&b);

  /* The memory ceiling: an image of the default pixel limit, blank but for
   * one page of text in its corner. */
  s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 6324, 6324);
  cairo_t *cr = cairo_create(s);
  cairo_surface_t *pg = page_surface(0, W, H, true);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_surface(cr, pg, 0, 0);
  cairo_paint(cr);
  cairo_destroy(cr);
  cairo_surface_destroy(pg);
  cairo_surface_flush(s);
  png_of(s, &b);
  cairo_surface_destroy(s);
  run_case("png-max-40MP", "png", &b, true, 1, 1);
  q_buf_cleanup(&b);
  return 0;
}
