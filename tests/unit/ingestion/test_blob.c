/* test_blob.c - content-addressed blob files: streaming write with
 * incremental SHA-256, size limit, commit/abort and read-back. */
#include "blob.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quarry/error.h"
#include "quarry/util.h"

static char dir[PATH_MAX];

static void make_dir(void) {
  char tmpl[] = "/tmp/quarry-blob-test-XXXXXX";
  cr_assert_not_null(mkdtemp(tmpl));
  /* A nested path that does not exist yet: prepare must create it. */
  snprintf(dir, sizeof dir, "%s/a/b", tmpl);
}

static void remove_dir(void) {
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strstr(dir, "/a/b") - dir), dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup failed\n");
}

static int entries(const char *d) {
  DIR *dp = opendir(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dp)))
    n += e->d_name[0] != '.' || strncmp(e->d_name, ".upload-", 8) == 0;
  closedir(dp);
  return n;
}

TestSuite(blob, .init = make_dir, .fini = remove_dir);

Test(blob, streams_hashes_and_reads_back) {
  char abs[PATH_MAX], err[256];
  cr_assert_eq(blob_dir_prepare(dir, abs, sizeof abs, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(abs[0], '/');
  blob_writer_t w;
  cr_assert_eq(blob_begin(&w, abs, 1000, err, sizeof err), Q_OK, "%s", err);
  const char *parts[] = {"hello ", "blob ", "world"};
  for (int i = 0; i < 3; i++)
    cr_assert_eq(blob_write(&w, parts[i], strlen(parts[i]), err, sizeof err), Q_OK);
  char sha[65], want[65];
  cr_assert_eq(blob_commit(&w, sha, err, sizeof err), Q_OK, "%s", err);
  q_sha256_hex("hello blob world", 16, want);
  cr_assert_str_eq(sha, want);
  cr_assert_eq(entries(abs), 1, "only the named blob remains");

  blob_map_t m;
  cr_assert_eq(blob_open(abs, sha, &m, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(m.size, 16);
  cr_assert_eq(memcmp(m.data, "hello blob world", 16), 0);
  blob_close(&m);
}

Test(blob, refuses_past_the_limit_and_abort_cleans_up) {
  char abs[PATH_MAX], err[256];
  blob_dir_prepare(dir, abs, sizeof abs, err, sizeof err);
  blob_writer_t w;
  cr_assert_eq(blob_begin(&w, abs, 10, err, sizeof err), Q_OK);
  cr_assert_eq(blob_write(&w, "0123456789", 10, err, sizeof err), Q_OK,
               "exactly the limit");
  cr_assert_eq(blob_write(&w, "x", 1, err, sizeof err), Q_ETOOBIG);
  cr_assert(strstr(err, "10 bytes"), "%s", err);
  cr_assert_eq(w.size, 10);
  cr_assert_eq(entries(abs), 1, "the temporary file exists while uploading");
  blob_abort(&w);
  cr_assert_eq(entries(abs), 0);
  blob_abort(&w); /* twice is harmless */
}

Test(blob, open_rejects_bad_and_missing_names) {
  char abs[PATH_MAX], err[256];
  blob_dir_prepare(dir, abs, sizeof abs, err, sizeof err);
  blob_map_t m;
  cr_assert_eq(blob_open(abs, "../../etc/passwd", &m, err, sizeof err), Q_EINVAL);
  cr_assert_eq(blob_open(abs, "", &m, err, sizeof err), Q_EINVAL);
  char missing[65];
  memset(missing, 'a', 64);
  missing[64] = '\0';
  cr_assert_eq(blob_open(abs, missing, &m, err, sizeof err), Q_ENOTFOUND);
  cr_assert(blob_name_valid(missing));
  missing[0] = 'A';
  cr_assert_not(blob_name_valid(missing));
}

Test(blob, identical_content_shares_one_file) {
  char abs[PATH_MAX], err[256], a[65], b[65];
  blob_dir_prepare(dir, abs, sizeof abs, err, sizeof err);
  for (int i = 0; i < 2; i++) {
    blob_writer_t w;
    blob_begin(&w, abs, 100, err, sizeof err);
    blob_write(&w, "same", 4, err, sizeof err);
    cr_assert_eq(blob_commit(&w, i ? b : a, err, sizeof err), Q_OK);
  }
  cr_assert_str_eq(a, b);
  cr_assert_eq(entries(abs), 1);
}

Test(blob, prepare_fails_on_a_file) {
  char abs[PATH_MAX], err[256], file[PATH_MAX + 8];
  blob_dir_prepare(dir, abs, sizeof abs, err, sizeof err);
  snprintf(file, sizeof file, "%s/f", abs);
  FILE *f = fopen(file, "w");
  fclose(f);
  cr_assert_eq(blob_dir_prepare(file, abs, sizeof abs, err, sizeof err), Q_EIO);
}

Test(blob, sweep_removes_only_unlocked_temp_files) {
  char abs[PATH_MAX], err[256];
  cr_assert_eq(blob_dir_prepare(dir, abs, sizeof abs, err, sizeof err), Q_OK, "%s", err);
  /* A live upload (its writer holds the lock) and a crashed one's left-over
   * (no lock: its process is gone), and a committed blob. */
  blob_writer_t live, done;
  cr_assert_eq(blob_begin(&live, abs, 1000, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(blob_write(&live, "in flight", 9, err, sizeof err), Q_OK);
  cr_assert_eq(blob_begin(&done, abs, 1000, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(blob_write(&done, "kept", 4, err, sizeof err), Q_OK);
  char sha[65];
  cr_assert_eq(blob_commit(&done, sha, err, sizeof err), Q_OK, "%s", err);
  char stray[PATH_MAX + 32];
  snprintf(stray, sizeof stray, "%s/.upload-crashd", abs);
  FILE *f = fopen(stray, "w");
  cr_assert_not_null(f);
  fputs("half an upload", f);
  fclose(f);
  cr_assert_eq(entries(abs), 3);

  int removed = -1;
  cr_assert_eq(blob_sweep_temp(abs, &removed, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(removed, 1);
  cr_assert_eq(access(stray, F_OK), -1, "the left-over is gone");
  cr_assert_eq(access(live.tmp, F_OK), 0, "the live upload's file is kept");
  cr_assert_eq(entries(abs), 2);
  /* The live upload still commits. */
  cr_assert_eq(blob_commit(&live, sha, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(blob_sweep_temp(abs, &removed, err, sizeof err), Q_OK, "%s", err);
  cr_assert_eq(removed, 0);
  cr_assert_eq(entries(abs), 2, "two named blobs");
}

Test(blob, sweep_reports_a_missing_directory) {
  char err[256];
  int removed = -1;
  cr_assert_eq(blob_sweep_temp("/nonexistent/quarry-blobs", &removed, err, sizeof err),
               Q_EIO);
  cr_assert_eq(removed, 0);
  cr_assert(strstr(err, "cannot read blob directory"), "%s", err);
}
