/* test_config.c - the config file format and the precedence of flags over
 * the environment over the file, key files, key ids and server URLs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static char dir[] = "/tmp/quarry-cli-config-XXXXXX";

static void setup(void) {
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text, mode_t mode) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
  return path;
}

#define KEY_A "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define KEY_B "qk_fedcba9876543210_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"

TestSuite(config, .init = setup, .fini = teardown);

Test(config, reads_the_file_format) {
  const char *p = write_file("config",
                             "# Quarry client\n"
                             "\n"
                             "  server = https://quarry.example.com/  \n"
                             "; another comment\n"
                             "key=\"" KEY_A "\"\n"
                             "colour = blue\n",
                             0600);
  config_file_t f;
  char err[512], warn[512];
  cr_assert_eq(config_file_read(p, true, &f, err, sizeof err, warn, sizeof warn), 0, "%s",
               err);
  cr_assert(f.found);
  cr_assert_str_eq(f.server, "https://quarry.example.com/");
  cr_assert_str_eq(f.key, KEY_A, "quotes are taken off");
  cr_assert_null(f.key_file);
  cr_assert(strstr(warn, ":6: unknown setting \"colour\""), "%s", warn);
  cr_assert_not(f.world_readable);
  config_file_cleanup(&f);
}

Test(config, warns_about_a_key_others_can_read) {
  const char *p = write_file("config", "key = " KEY_A "\n", 0644);
  config_file_t f;
  char err[512], warn[512];
  cr_assert_eq(config_file_read(p, false, &f, err, sizeof err, warn, sizeof warn), 0);
  cr_assert(f.world_readable);
  config_file_cleanup(&f);
}

Test(config, malformed_lines_and_missing_files) {
  const char *p = write_file("config", "server http://x\n", 0600);
  config_file_t f;
  char err[512], warn[512];
  cr_assert_eq(config_file_read(p, false, &f, err, sizeof err, warn, sizeof warn),
               Q_EINVAL);
  cr_assert(strstr(err, "config:1: expected `name = value`"), "%s", err);

  char missing[512];
  snprintf(missing, sizeof missing, "%s/nope", dir);
  cr_assert_eq(config_file_read(missing, false, &f, err, sizeof err, warn, sizeof warn),
               0, "the default file may be absent");
  cr_assert_not(f.found);
  cr_assert_eq(config_file_read(missing, true, &f, err, sizeof err, warn, sizeof warn),
               Q_EINVAL, "an explicit --config must exist");
  cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(config, flags_beat_environment_beat_file) {
  config_layer_t flags = {.name = "flags"};
  config_layer_t env = {.name = "env",
                        .server = "http://env:1",
                        .key = KEY_B,
                        .key_label = "QUARRY_API_KEY"};
  config_layer_t file = {.name = "file", .server = "http://file:2", .key = KEY_A};
  config_layer_t layers[3] = {flags, env, file};
  config_t c;
  char err[512];
  cr_assert_eq(config_resolve(layers, 3, &c, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(c.server, "http://env:1");
  cr_assert_str_eq(c.key, KEY_B);
  cr_assert_str_eq(c.key_from, "QUARRY_API_KEY", "named by its label, never by value");

  layers[0].server = "http://flag:3/";
  layers[0].key = "  " KEY_A "\n";
  cr_assert_eq(config_resolve(layers, 3, &c, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(c.server, "http://flag:3", "trailing slash dropped");
  cr_assert_str_eq(c.key, KEY_A, "white space trimmed");
  cr_assert_str_eq(c.key_from, "flags");

  layers[0] = flags;
  layers[1] = (config_layer_t){.name = "env"};
  cr_assert_eq(config_resolve(layers, 3, &c, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(c.server, "http://file:2");
  cr_assert_str_eq(c.key, KEY_A);
}

Test(config, defaults_and_no_key) {
  config_layer_t none = {.name = "nothing"};
  config_t c;
  char err[512];
  cr_assert_eq(config_resolve(&none, 1, &c, err, sizeof err), 0);
  cr_assert_str_eq(c.server, CONFIG_DEFAULT_SERVER);
  cr_assert_str_eq(c.key, "", "a missing key is the command's to report");
  cr_assert_str_eq(c.key_from, "");
}

Test(config, key_files) {
  const char *kf = write_file("key", KEY_B "\n", 0600);
  char kfpath[512];
  snprintf(kfpath, sizeof kfpath, "%s", kf);
  config_layer_t layers[2] = {
      {.name = "flags", .key_file = kfpath, .key_file_label = "--key-file"},
      {.name = "env", .key = KEY_A},
  };
  config_t c;
  char err[512];
  cr_assert_eq(config_resolve(layers, 2, &c, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(c.key, KEY_B, "a higher layer's key file beats a lower layer's key");
  cr_assert(strstr(c.key_from, "--key-file (key file "), "%s", c.key_from);

  layers[0].key = KEY_A;
  cr_assert_eq(config_resolve(layers, 2, &c, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "both a key and a key file"), "%s", err);

  layers[0].key = NULL;
  const char *empty = write_file("empty", "\n", 0600);
  layers[0].key_file = empty;
  cr_assert_eq(config_resolve(layers, 2, &c, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "is empty"), "%s", err);
  layers[0].key_file = "/nonexistent/key";
  cr_assert_eq(config_resolve(layers, 2, &c, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "/nonexistent/key"), "%s", err);
}

Test(config, refuses_bad_server_urls) {
  config_t c;
  char err[512];
  const char *bad[] = {"127.0.0.1:8080", "ftp://x", "http://a b", ""};
  for (size_t i = 0; i < 3; i++) {
    config_layer_t l = {.name = "QUARRY_URL", .server = bad[i]};
    cr_assert_eq(config_resolve(&l, 1, &c, err, sizeof err), Q_EINVAL, "%s", bad[i]);
    cr_assert(strstr(err, "QUARRY_URL"), "names where it came from: %s", err);
  }
  config_layer_t l = {.name = "x", .server = "HTTPS://Quarry.Example.COM:8443/base//"};
  cr_assert_eq(config_resolve(&l, 1, &c, err, sizeof err), 0);
  cr_assert_str_eq(c.server, "HTTPS://Quarry.Example.COM:8443/base");
}

Test(config, key_ids_never_reveal_the_secret) {
  char id[32];
  config_key_id(KEY_A, id);
  cr_assert_str_eq(id, "0123456789abcdef");
  config_key_id("some-other-token", id);
  cr_assert(strncmp(id, "sha256:", 7) == 0, "%s", id);
  cr_assert_eq(strlen(id), 7 + 16);
  cr_assert_null(strstr(id, "token"));
}

Test(config, default_path_follows_xdg) {
  char p[512];
  setenv("XDG_CONFIG_HOME", "/xdg", 1);
  config_default_path(NULL, p, sizeof p);
  cr_assert_str_eq(p, "/xdg/quarry/config");
  unsetenv("XDG_CONFIG_HOME");
  setenv("HOME", "/home/u", 1);
  config_default_path(NULL, p, sizeof p);
  cr_assert_str_eq(p, "/home/u/.config/quarry/config");
  config_default_path("/etc/q.conf", p, sizeof p);
  cr_assert_str_eq(p, "/etc/q.conf", "--config wins");
}
