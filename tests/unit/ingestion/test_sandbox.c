/* test_sandbox.c - extraction in the sandboxed child: a normal document
 * comes through whole, and each limit turns a misbehaving extractor into a
 * sentence (memory, CPU, wall clock, output size, crash), while the
 * seccomp filter keeps files, sockets and new processes out of reach.
 *
 * This binary is its own sandbox child: main() runs the child when called
 * as "<binary> extract-child ...", as quarry-ingestion does, with the
 * misbehaving extractors below added to the format table. */
#include "extract/sandbox.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "extract_fixtures.h"

/* ---- extractors that misbehave on purpose ----------------------------------- */

static q_err_t hog_run(extract_ctx_t *ctx) {
  /* Takes memory until there is none; each block is touched. */
  for (;;) {
    char *p = malloc(1 << 20);
    if (!p)
      return extract_fail(ctx, Q_ENOMEM, "out of memory");
    memset(p, 1, 1 << 20);
  }
}

static q_err_t abort_hog_run(extract_ctx_t *ctx) {
  /* As a library that aborts when malloc fails (GLib does). */
  for (;;) {
    char *p = malloc(1 << 20);
    if (!p) {
      static const char msg[] = "fatal: failed to allocate 1048576 bytes\n";
      if (write(2, msg, sizeof msg - 1) < 0)
        abort();
      abort();
    }
    memset(p, 1, 1 << 20);
  }
}

static q_err_t spin_run(extract_ctx_t *ctx) {
  volatile unsigned long n = 0;
  for (;;)
    n++;
  return Q_OK;
}

static q_err_t sleep_run(extract_ctx_t *ctx) {
  struct timespec ts = {60, 0};
  nanosleep(&ts, NULL);
  return Q_OK;
}

static q_err_t flood_run(extract_ctx_t *ctx) {
  static char line[4096];
  memset(line, 'x', sizeof line);
  for (int i = 0;; i++) {
    q_err_t rc = extract_emit(ctx, EXTRACT_PARAGRAPH, 0, 0, line, sizeof line);
    if (rc)
      return rc;
  }
}

static q_err_t crash_run(extract_ctx_t *ctx) {
  raise(SIGSEGV);
  return Q_OK;
}

/* Reports what the locked-down process may do, one paragraph each. */
static q_err_t probe_run(extract_ctx_t *ctx) {
  char buf[128];
  int fd = open("/etc/hostname", O_RDONLY);
  snprintf(buf, sizeof buf, "open: %s", fd >= 0 ? "allowed" : strerror(errno));
  q_err_t rc = extract_emit(ctx, EXTRACT_PARAGRAPH, 0, 0, buf, strlen(buf));
  int s = socket(AF_INET, SOCK_STREAM, 0);
  snprintf(buf, sizeof buf, "socket: %s", s >= 0 ? "allowed" : strerror(errno));
  if (!rc)
    rc = extract_emit(ctx, EXTRACT_PARAGRAPH, 0, 0, buf, strlen(buf));
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  snprintf(buf, sizeof buf, "fork: %s", pid >= 0 ? "allowed" : strerror(errno));
  if (!rc)
    rc = extract_emit(ctx, EXTRACT_PARAGRAPH, 0, 0, buf, strlen(buf));
  return rc;
}

static const extractor_t test_extractors[] = {
    {"hog", NULL, hog_run},     {"abort-hog", NULL, abort_hog_run},
    {"spin", NULL, spin_run},   {"sleep", NULL, sleep_run},
    {"flood", NULL, flood_run}, {"crash", NULL, crash_run},
    {"probe", NULL, probe_run},
};

static const extractor_t *find(const char *id) {
  for (size_t i = 0; i < sizeof test_extractors / sizeof test_extractors[0]; i++)
    if (strcmp(id, test_extractors[i].name) == 0)
      return &test_extractors[i];
  const format_t *f = formats_by_id(id);
  return f ? f->extractor : NULL;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], SANDBOX_SUBCOMMAND) == 0)
    return sandbox_child_main(argc, argv, find);
  struct criterion_test_set *tests = criterion_initialize();
  int result = 0;
  if (criterion_handle_args(argc, argv, true))
    result = !criterion_run_all_tests(tests);
  criterion_finalize(tests);
  return result;
}

/* ---- the parent -------------------------------------------------------------- */

static sandbox_cfg_t cfg(void) {
  return (sandbox_cfg_t){
      .exe = "/proc/self/exe",
      .memory_bytes = 512ll << 20,
      .cpu_seconds = 1,
      .timeout_ms = 5000,
      .limits = {1 << 20, 1 << 20, 100, 64},
      .seccomp = true,
  };
}

/* A temporary file holding data, open for reading. */
static int temp_doc(const char *data, size_t n) {
  char path[] = "/tmp/quarry-sandbox-XXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  cr_assert_eq(write(fd, data, n), (ssize_t)n);
  return fd;
}

static format_t fake(const char *id) {
  format_t f = {.id = id, .label = "TEST", .chunking = CHUNK_BY_SECTION};
  return f;
}

static q_err_t extract(const sandbox_cfg_t *c, const format_t *f, const char *data,
                       doc_t *d, sandbox_info_t *info, char *err, size_t errlen) {
  int fd = temp_doc(data, strlen(data));
  doc_init(d, f->chunking, (size_t)c->limits.max_text_bytes);
  q_err_t rc = sandbox_extract(c, f, "", fd, d, info, err, errlen);
  close(fd);
  return rc;
}

Test(sandbox, a_document_comes_through_with_its_structure) {
  sandbox_cfg_t c = cfg();
  doc_t d;
  sandbox_info_t info;
  char err[512] = "";
  const format_t *md = formats_by_id("markdown");
  cr_assert_eq(extract(&c, md, "# Title\n\nBody text.\n\n## Sub\n\n- item\n", &d, &info,
                       err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_str_eq(d.title, "Title");
  cr_assert_str_eq(d.text.data, "Body text.\n\n- item");
  cr_assert_eq(d.nsections, 2);
  cr_assert_str_eq(info.lockdown, "seccomp");
  doc_cleanup(&d);
}

Test(sandbox, pdf_pages_come_through) {
  sandbox_cfg_t c = cfg();
  c.memory_bytes = 1ll << 30;
  c.cpu_seconds = 10;
  const char *p1[] = {"Alpha on page one.", NULL};
  const char *p2[] = {"Beta on page two.", NULL};
  const char *const *pages[] = {p1, p2};
  size_t n;
  char *pdf = make_pdf(pages, 2, "Doc", NULL, &n);
  int fd = temp_doc(pdf, n);
  doc_t d;
  char err[512] = "";
  const format_t *f = formats_by_id("pdf");
  doc_init(&d, f->chunking, 1 << 20);
  cr_assert_eq(sandbox_extract(&c, f, "", fd, &d, NULL, err, sizeof err), Q_OK, "%s",
               err);
  cr_assert_eq(d.npages, 2);
  cr_assert_eq(d.pages[1].page, 2);
  cr_assert_str_eq(d.text.data + d.pages[1].start, "Beta on page two.");
  close(fd);
  free(pdf);
  doc_cleanup(&d);
}

Test(sandbox, out_of_memory_is_named) {
  sandbox_cfg_t c = cfg();
  char err[512] = "";
  doc_t d;
  format_t f = fake("hog");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "TEST: the extractor ran out of memory (limit 512 MiB)");
  doc_cleanup(&d);
  f = fake("abort-hog");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "TEST: the extractor ran out of memory (limit 512 MiB)");
  doc_cleanup(&d);
}

Test(sandbox, cpu_and_wall_clock_limits) {
  sandbox_cfg_t c = cfg();
  char err[512] = "";
  doc_t d;
  format_t f = fake("spin");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "TEST: the extractor used more than 1 s of CPU time (the limit)");
  doc_cleanup(&d);
  c.timeout_ms = 1000;
  f = fake("sleep");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "TEST: the extractor took longer than 1 s (the limit)");
  doc_cleanup(&d);
}

Test(sandbox, output_flood_and_crash) {
  sandbox_cfg_t c = cfg();
  char err[512] = "";
  doc_t d;
  format_t f = fake("flood");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_ETOOBIG);
  cr_assert_str_eq(err, "TEST: the extracted text is larger than 1 MiB");
  doc_cleanup(&d);
  f = fake("crash");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "TEST: the extractor crashed (signal 11"), "%s", err);
  doc_cleanup(&d);
}

Test(sandbox, seccomp_denies_files_sockets_and_processes) {
  sandbox_cfg_t c = cfg();
  char err[512] = "";
  doc_t d;
  format_t f = fake("probe");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_OK, "%s", err);
  cr_assert_str_eq(d.text.data, "open: Operation not permitted\n\n"
                                "socket: Operation not permitted\n\n"
                                "fork: Operation not permitted");
  doc_cleanup(&d);
}

Test(sandbox, a_missing_binary_is_retried_not_blamed_on_the_document) {
  sandbox_cfg_t c = cfg();
  c.exe = "/nonexistent/quarry-ingestion";
  char err[512] = "";
  doc_t d;
  cr_assert_eq(extract(&c, formats_by_id("text"), "x", &d, NULL, err, sizeof err),
               Q_EUNAVAIL);
  cr_assert(strstr(err, "cannot start the extractor"), "%s", err);
  doc_cleanup(&d);
}

/* ---- the zygote ------------------------------------------------------------- */

static q_err_t md_through(const sandbox_cfg_t *c, char *err, size_t errlen) {
  doc_t d;
  q_err_t rc =
      extract(c, formats_by_id("markdown"), "# T\n\nBody.\n", &d, NULL, err, errlen);
  if (!rc && strcmp(d.text.data, "Body.") != 0)
    rc = Q_EINTERNAL;
  doc_cleanup(&d);
  return rc;
}

Test(sandbox_zygote, every_limit_holds_and_the_zygote_carries_on) {
  sandbox_cfg_t c = cfg();
  c.zygote = sandbox_zygote_new("/proc/self/exe");
  cr_assert_not_null(c.zygote);
  char err[512] = "";
  doc_t d;
  sandbox_info_t info;
  cr_assert_eq(extract(&c, formats_by_id("markdown"), "# Title\n\nBody text.\n", &d,
                       &info, err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_str_eq(d.title, "Title");
  cr_assert_str_eq(info.lockdown, "seccomp");
  doc_cleanup(&d);
  int zpid = sandbox_zygote_pid(c.zygote);
  cr_assert_gt(zpid, 0);

  static const struct {
    const char *id;
    q_err_t rc;
    const char *msg;
  } bad[] = {
      {"hog", Q_EINVAL, "TEST: the extractor ran out of memory (limit 512 MiB)"},
      {"abort-hog", Q_EINVAL, "TEST: the extractor ran out of memory (limit 512 MiB)"},
      {"spin", Q_EINVAL,
       "TEST: the extractor used more than 1 s of CPU time (the limit)"},
      {"flood", Q_ETOOBIG, "TEST: the extracted text is larger than 1 MiB"},
      {"crash", Q_EINVAL, "TEST: the extractor crashed (signal 11"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    format_t f = fake(bad[i].id);
    cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), bad[i].rc, "%s: %s",
                 bad[i].id, err);
    cr_assert(strncmp(err, bad[i].msg, strlen(bad[i].msg)) == 0, "%s: %s", bad[i].id,
              err);
    doc_cleanup(&d);
    /* The same zygote serves the next document. */
    cr_assert_eq(md_through(&c, err, sizeof err), Q_OK, "after %s: %s", bad[i].id, err);
  }
  c.timeout_ms = 1000;
  format_t f = fake("sleep");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "TEST: the extractor took longer than 1 s (the limit)");
  doc_cleanup(&d);
  f = fake("probe");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_OK, "%s", err);
  cr_assert_str_eq(d.text.data, "open: Operation not permitted\n\n"
                                "socket: Operation not permitted\n\n"
                                "fork: Operation not permitted");
  doc_cleanup(&d);
  cr_assert_eq(sandbox_zygote_pid(c.zygote), zpid);
  cr_assert_eq(sandbox_zygote_starts(c.zygote), 1);
  sandbox_zygote_free(c.zygote);
  cr_assert_eq(kill(zpid, 0), -1, "the zygote is gone after free");
}

Test(sandbox_zygote, a_dead_zygote_is_restarted) {
  sandbox_cfg_t c = cfg();
  c.zygote = sandbox_zygote_new("/proc/self/exe");
  char err[512] = "";
  cr_assert_eq(md_through(&c, err, sizeof err), Q_OK, "%s", err);
  int zpid = sandbox_zygote_pid(c.zygote);
  /* Killed between documents: the next one starts a new zygote. */
  cr_assert_eq(kill(zpid, SIGKILL), 0);
  cr_assert_eq(md_through(&c, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(sandbox_zygote_starts(c.zygote), 2);
  cr_assert_neq(sandbox_zygote_pid(c.zygote), zpid);

  /* Killed while its child extracts: the document is not blamed (retry),
   * and the next one works. */
  pid_t killer = fork();
  if (killer == 0) {
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    kill(sandbox_zygote_pid(c.zygote), SIGKILL);
    _exit(0);
  }
  doc_t d;
  format_t f = fake("sleep");
  cr_assert_eq(extract(&c, &f, "x", &d, NULL, err, sizeof err), Q_EUNAVAIL, "%s", err);
  cr_assert_str_eq(err, "TEST: the extraction zygote died; it will be restarted");
  doc_cleanup(&d);
  waitpid(killer, NULL, 0);
  cr_assert_eq(md_through(&c, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(sandbox_zygote_starts(c.zygote), 3);
  sandbox_zygote_free(c.zygote);
}

Test(sandbox_zygote, a_missing_binary_is_retried_not_blamed_on_the_document) {
  sandbox_cfg_t c = cfg();
  c.zygote = sandbox_zygote_new("/nonexistent/quarry-ingestion");
  char err[512] = "";
  doc_t d;
  cr_assert_eq(extract(&c, formats_by_id("text"), "x", &d, NULL, err, sizeof err),
               Q_EUNAVAIL);
  cr_assert_str_eq(err, "text: cannot start the extractor (/nonexistent/quarry-ingestion "
                        "exec failed)");
  doc_cleanup(&d);
  sandbox_zygote_free(c.zygote);
}

/* ---- several documents in one child (sandbox_extract_many) ---------------- */

typedef struct batch {
  sandbox_item_t items[SANDBOX_BATCH_MAX];
  doc_t docs[SANDBOX_BATCH_MAX];
  format_t fmts[SANDBOX_BATCH_MAX];
  int n;
} batch_t;

/* Adds a document: a test extractor by id, or Markdown ("markdown") with
 * body "Body <i>." under a heading. */
static void batch_add(batch_t *b, const sandbox_cfg_t *c, const char *id) {
  int i = b->n++;
  char md[64];
  const char *data = "x";
  if (strcmp(id, "markdown") == 0) {
    b->fmts[i] = *formats_by_id("markdown");
    snprintf(md, sizeof md, "# T%d\n\nBody %d.\n", i, i);
    data = md;
  } else {
    b->fmts[i] = fake(id);
  }
  doc_init(&b->docs[i], b->fmts[i].chunking, (size_t)c->limits.max_text_bytes);
  b->items[i] = (sandbox_item_t){.fmt = &b->fmts[i],
                                 .charset = "",
                                 .fd = temp_doc(data, strlen(data)),
                                 .out = &b->docs[i]};
}

static void batch_cleanup(batch_t *b) {
  for (int i = 0; i < b->n; i++) {
    close(b->items[i].fd);
    doc_cleanup(&b->docs[i]);
  }
}

/* Document i of b is Markdown and came through whole. */
static void assert_md(const batch_t *b, int i) {
  char want[32];
  snprintf(want, sizeof want, "Body %d.", i);
  cr_assert_eq(b->items[i].rc, Q_OK, "document %d: %s", i, b->items[i].err);
  cr_assert_str_eq(b->docs[i].text.data, want, "document %d", i);
  snprintf(want, sizeof want, "T%d", i);
  cr_assert_str_eq(b->docs[i].title, want, "document %d", i);
}

Test(sandbox_batch, every_document_comes_through_from_one_child) {
  sandbox_cfg_t c = cfg();
  c.zygote = sandbox_zygote_new("/proc/self/exe");
  batch_t b = {.n = 0};
  for (int i = 0; i < 12; i++)
    batch_add(&b, &c, "markdown");
  sandbox_extract_many(&c, b.items, b.n);
  for (int i = 0; i < b.n; i++) {
    assert_md(&b, i);
    cr_assert(!b.items[i].alone, "document %d was extracted again", i);
    cr_assert_str_eq(b.items[i].info.lockdown, "seccomp");
    cr_assert_gt(b.items[i].info.max_rss_kb, 0);
  }
  cr_assert_eq(sandbox_zygote_starts(c.zygote), 1);
  batch_cleanup(&b);
  sandbox_zygote_free(c.zygote);
}

/* A hostile document in the middle of a batch fails alone with the
 * reason it gets alone; the documents before it keep what the shared
 * child gave them, the ones after it come through from children of their
 * own, and the zygote carries on. */
Test(sandbox_batch, a_hostile_document_fails_alone_and_its_neighbours_succeed) {
  static const struct {
    const char *id;
    q_err_t rc;
    const char *msg;
  } bad[] = {
      {"crash", Q_EINVAL, "TEST: the extractor crashed (signal 11"},
      {"hog", Q_EINVAL, "TEST: the extractor ran out of memory (limit 512 MiB)"},
      {"spin", Q_EINVAL,
       "TEST: the extractor used more than 1 s of CPU time (the limit)"},
      {"flood", Q_ETOOBIG, "TEST: the extracted text is larger than 1 MiB"},
      {"sleep", Q_EINVAL, "TEST: the extractor took longer than 1 s (the limit)"},
  };
  sandbox_cfg_t c = cfg();
  c.zygote = sandbox_zygote_new("/proc/self/exe");
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    /* Generous but for the sleeper: a spinner at a fifth of a shared core
     * must reach its CPU limit before the wall clock. */
    c.timeout_ms = strcmp(bad[k].id, "sleep") == 0 ? 1000 : 30000;
    batch_t b = {.n = 0};
    batch_add(&b, &c, "markdown");
    batch_add(&b, &c, "markdown");
    batch_add(&b, &c, bad[k].id);
    batch_add(&b, &c, "markdown");
    batch_add(&b, &c, "markdown");
    sandbox_extract_many(&c, b.items, b.n);
    for (int i = 0; i < b.n; i++) {
      if (i == 2)
        continue;
      assert_md(&b, i);
    }
    cr_assert_eq(b.items[2].rc, bad[k].rc, "%s: %s", bad[k].id, b.items[2].err);
    cr_assert(strncmp(b.items[2].err, bad[k].msg, strlen(bad[k].msg)) == 0, "%s: %s",
              bad[k].id, b.items[2].err);
    cr_assert(!b.items[0].alone && !b.items[1].alone, "%s", bad[k].id);
    /* A sleeper had its whole wall clock in the batch: not run again. */
    cr_assert_eq(b.items[2].alone, strcmp(bad[k].id, "sleep") != 0, "%s", bad[k].id);
    cr_assert(b.items[3].alone && b.items[4].alone, "%s", bad[k].id);
    batch_cleanup(&b);
  }
  cr_assert_eq(sandbox_zygote_starts(c.zygote), 1);
  sandbox_zygote_free(c.zygote);
}

Test(sandbox_batch, a_failure_the_extractor_reports_stays_in_the_batch) {
  /* An ordinary refusal (a damaged file) is not the child dying: the
   * shared child goes on with the next document. */
  sandbox_cfg_t c = cfg();
  c.zygote = sandbox_zygote_new("/proc/self/exe");
  batch_t b = {.n = 0};
  batch_add(&b, &c, "markdown");
  batch_add(&b, &c, "markdown");
  b.fmts[1] = *formats_by_id("docx"); /* "# T1..." is no zip */
  batch_add(&b, &c, "markdown");
  sandbox_extract_many(&c, b.items, b.n);
  assert_md(&b, 0);
  assert_md(&b, 2);
  cr_assert_eq(b.items[1].rc, Q_EINVAL, "%s", b.items[1].err);
  cr_assert(strncmp(b.items[1].err, "DOCX: ", 6) == 0, "%s", b.items[1].err);
  for (int i = 0; i < b.n; i++)
    cr_assert(!b.items[i].alone, "document %d", i);
  batch_cleanup(&b);
  sandbox_zygote_free(c.zygote);
}

Test(sandbox_batch, without_a_zygote_each_document_has_its_own_child) {
  sandbox_cfg_t c = cfg();
  batch_t b = {.n = 0};
  batch_add(&b, &c, "markdown");
  batch_add(&b, &c, "crash");
  batch_add(&b, &c, "markdown");
  sandbox_extract_many(&c, b.items, b.n);
  assert_md(&b, 0);
  assert_md(&b, 2);
  cr_assert_eq(b.items[1].rc, Q_EINVAL);
  for (int i = 0; i < b.n; i++)
    cr_assert(!b.items[i].alone);
  batch_cleanup(&b);
}

/* Not a check of speed (the machine is shared): prints what one
 * extraction costs each way, in wall-clock and in CPU time of the processes
 * involved (children, zygote included once it is reaped), for
 * docs/benchmarks.md. */
static double children_cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

Test(sandbox_zygote, cost_of_one_extraction) {
  sandbox_cfg_t c = cfg();
  char err[512] = "";
  double ms[2], cpu[2];
  for (int way = 0; way < 2; way++) {
    c.zygote = way ? sandbox_zygote_new("/proc/self/exe") : NULL;
    struct timespec a, b;
    double c0 = children_cpu_ms();
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 50; i++)
      cr_assert_eq(md_through(&c, err, sizeof err), Q_OK, "%s", err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    sandbox_zygote_free(c.zygote); /* reaped: its CPU time is counted */
    ms[way] = ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6) / 50;
    cpu[way] = (children_cpu_ms() - c0) / 50;
  }
  /* 48 documents in batches of 16 from one zygote. */
  c.zygote = sandbox_zygote_new("/proc/self/exe");
  struct timespec a, b2;
  double c0 = children_cpu_ms();
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int round = 0; round < 3; round++) {
    batch_t b = {.n = 0};
    for (int i = 0; i < 16; i++)
      batch_add(&b, &c, "markdown");
    sandbox_extract_many(&c, b.items, b.n);
    for (int i = 0; i < b.n; i++)
      assert_md(&b, i);
    batch_cleanup(&b);
  }
  clock_gettime(CLOCK_MONOTONIC, &b2);
  sandbox_zygote_free(c.zygote);
  double bms = ((b2.tv_sec - a.tv_sec) * 1e3 + (b2.tv_nsec - a.tv_nsec) / 1e6) / 48;
  double bcpu = (children_cpu_ms() - c0) / 48;
  cr_log_info("one markdown extraction: %.2f ms (%.2f ms CPU) by exec, %.2f ms (%.2f ms "
              "CPU) by the zygote, %.2f ms (%.2f ms CPU) in batches of 16",
              ms[0], cpu[0], ms[1], cpu[1], bms, bcpu);
}
