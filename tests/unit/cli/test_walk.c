/* test_walk.c - which files ingest picks (globs, hidden entries, links,
 * order) and the external ids they get. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quarry/limits.h"
#include "walk.h"

static char dir[] = "/tmp/quarry-cli-walk-XXXXXX";
static char cwd[4096];

static void put(const char *rel, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  for (char *p = path + strlen(dir) + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0755);
      *p = '/';
    }
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

static void setup(void) {
  cr_assert_not_null(mkdtemp(dir));
  cr_assert_not_null(getcwd(cwd, sizeof cwd));
  put("my-docs/README.md", "# Readme\n");
  put("my-docs/guides/setup.md", "setup\n");
  put("my-docs/guides/setup-linux.md", "linux\n");
  put("my-docs/guides/notes.txt", "notes\n");
  put("my-docs/drafts/wip.md", "wip\n");
  put("my-docs/image.png", "\x89PNG");
  put("my-docs/.git/config", "[core]\n");
  put("my-docs/.hidden.md", "hidden\n");
  char a[1024], b[1024];
  snprintf(a, sizeof a, "%s/my-docs/guides", dir);
  snprintf(b, sizeof b, "%s/my-docs/loop", dir);
  cr_assert_eq(symlink(a, b), 0, "a link to a folder is not followed");
  snprintf(a, sizeof a, "%s/my-docs/README.md", dir);
  snprintf(b, sizeof b, "%s/my-docs/zz-link.md", dir);
  cr_assert_eq(symlink(a, b), 0, "a link to a file is");
  cr_assert_eq(chdir(dir), 0);
}

static void teardown(void) {
  cr_assert_eq(chdir(cwd), 0);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(walk, .init = setup, .fini = teardown);

/* The external ids found, one per line, in list order. */
static char *ids(const walk_list_t *l) {
  static char out[4096];
  out[0] = '\0';
  size_t len = 0;
  for (size_t i = 0; i < l->n; i++)
    len += (size_t)snprintf(out + len, sizeof out - len, "%s%s\n",
                            l->files[i].external_id, l->files[i].error ? " (error)" : "");
  return out;
}

Test(walk, finds_files_in_name_order_skipping_hidden_and_folder_links) {
  walk_list_t l = {0};
  cr_assert_eq(walk_collect("my-docs", NULL, NULL, &l), 0);
  cr_assert_str_eq(ids(&l), "my-docs/README.md\n"
                            "my-docs/drafts/wip.md\n"
                            "my-docs/guides/notes.txt\n"
                            "my-docs/guides/setup-linux.md\n"
                            "my-docs/guides/setup.md\n"
                            "my-docs/image.png\n"
                            "my-docs/zz-link.md\n");
  cr_assert_str_eq(l.files[0].shown, "my-docs/README.md");
  cr_assert_str_eq(l.files[0].filename, "README.md");
  cr_assert_eq(l.files[0].size, 9);
  cr_assert_gt(l.files[0].mtime_ns, 0);
  walk_list_free(&l);
}

Test(walk, ids_do_not_depend_on_how_the_folder_is_named) {
  const char *spellings[] = {"my-docs/", "./my-docs", "my-docs//"};
  for (size_t i = 0; i < 3; i++) {
    walk_list_t l = {0};
    walk_collect(spellings[i], NULL, NULL, &l);
    cr_assert_str_eq(l.files[0].external_id, "my-docs/README.md", "%s", spellings[i]);
    walk_list_free(&l);
  }
  cr_assert_eq(chdir("my-docs"), 0);
  walk_list_t l = {0};
  walk_collect(".", NULL, NULL, &l);
  cr_assert_str_eq(l.files[0].external_id, "my-docs/README.md",
                   "\".\" inside the folder");
  cr_assert_str_eq(l.files[0].shown, "./README.md");
  walk_list_free(&l);

  char abs[1024];
  snprintf(abs, sizeof abs, "%s/my-docs", dir);
  walk_collect(abs, NULL, "wiki:", &l);
  cr_assert_str_eq(l.files[0].external_id, "wiki:my-docs/README.md", "with --id-prefix");
  walk_list_free(&l);
}

Test(walk, a_file_argument_is_its_name) {
  walk_list_t l = {0};
  walk_collect("my-docs/guides/setup.md", NULL, NULL, &l);
  walk_collect("my-docs/.hidden.md", NULL, NULL, &l); /* named: taken */
  cr_assert_str_eq(ids(&l), "setup.md\n.hidden.md\n");
  walk_list_free(&l);
}

Test(walk, missing_paths_become_failed_entries) {
  walk_list_t l = {0};
  cr_assert_eq(walk_collect("no-such-folder", NULL, NULL, &l), 0);
  cr_assert_eq(l.n, 1);
  cr_assert(strstr(l.files[0].error, "No such file"), "%s", l.files[0].error);
  walk_list_free(&l);
}

Test(walk, include_and_exclude_globs) {
  const char *md[] = {"*.md", NULL};
  const char *drafts[] = {"drafts", "*linux*", NULL};
  walk_filter_t f = {md, drafts};
  walk_list_t l = {0};
  walk_collect("my-docs", &f, NULL, &l);
  cr_assert_str_eq(ids(&l), "my-docs/README.md\n"
                            "my-docs/guides/setup.md\n"
                            "my-docs/zz-link.md\n");
  walk_list_free(&l);

  const char *in_guides[] = {"guides/*", NULL};
  walk_filter_t g = {in_guides, NULL};
  walk_collect("my-docs", &g, NULL, &l);
  cr_assert_str_eq(ids(&l), "my-docs/guides/notes.txt\n"
                            "my-docs/guides/setup-linux.md\n"
                            "my-docs/guides/setup.md\n");
  walk_list_free(&l);
}

Test(walk, glob_rules) {
  const char *md[] = {"*.md", NULL};
  const char *deep[] = {"guides/*.md", NULL};
  const char *dot[] = {"./guides/setup.md", NULL};
  walk_filter_t by_name = {md, NULL}, by_path = {deep, NULL}, dotted = {dot, NULL};
  cr_assert(walk_filter_accepts(&by_name, "a/b/c.md"), "no '/': the name alone");
  cr_assert_not(walk_filter_accepts(&by_name, "a/b/c.txt"));
  cr_assert(walk_filter_accepts(&by_path, "guides/setup.md"));
  cr_assert(walk_filter_accepts(&by_path, "guides/deep/er.md"), "'*' crosses '/'");
  cr_assert_not(walk_filter_accepts(&by_path, "other/guides/setup.md"),
                "anchored at the folder argument");
  cr_assert(walk_filter_accepts(&dotted, "guides/setup.md"), "a leading ./ is ignored");
  cr_assert(walk_filter_accepts(NULL, "anything"));
  walk_filter_t none = {NULL, NULL};
  cr_assert(walk_filter_accepts(&none, "anything"));
  const char *ex[] = {"node_modules", NULL};
  walk_filter_t prune = {NULL, ex};
  cr_assert(walk_filter_prunes(&prune, "web/node_modules"));
  cr_assert_not(walk_filter_prunes(&prune, "web/src"));
}

Test(walk, long_ids_are_cut_but_stay_unique) {
  char rel[600];
  memset(rel, 'a', sizeof rel - 1);
  rel[sizeof rel - 1] = '\0';
  char *a = walk_external_id(NULL, "root", rel);
  rel[0] = 'b';
  char *b = walk_external_id(NULL, "root", rel);
  cr_assert_leq(strlen(a), Q_LIMIT_EXTERNAL_ID_BYTES);
  cr_assert_leq(strlen(b), Q_LIMIT_EXTERNAL_ID_BYTES);
  cr_assert_str_neq(a, b);
  cr_assert(strstr(a, "#...:aaaa"), "%s", a);
  free(a);
  free(b);
  char *short_id = walk_external_id("p/", "root", "x.md");
  cr_assert_str_eq(short_id, "p/root/x.md");
  free(short_id);
}

Test(walk, duplicate_ids_are_refused_and_repeats_ignored) {
  put("other/my-docs/README.md", "another readme\n");
  walk_list_t l = {0};
  walk_collect("my-docs/README.md", NULL, NULL, &l);
  walk_collect("my-docs/README.md", NULL, NULL, &l); /* the same file twice */
  walk_collect("other/my-docs/README.md", NULL, NULL, &l);
  cr_assert_eq(walk_mark_duplicates(&l), 1);
  cr_assert_null(l.files[0].error);
  cr_assert(l.files[1].repeated);
  cr_assert_null(l.files[1].error);
  cr_assert_not_null(l.files[2].error);
  cr_assert(strstr(l.files[2].error, "would overwrite each other"), "%s",
            l.files[2].error);
  walk_list_free(&l);
}
