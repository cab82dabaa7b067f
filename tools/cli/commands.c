/* commands.c - the command table, dispatch, --help and settings (see
 * commands.h). */
#include "commands.h"

#include "ask_filter.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_S 60

const args_opt_t global_opts[] = {
    {"server", 0, "URL", false,
     "Quarry's REST URL (else QUARRY_URL, the config file, " CONFIG_DEFAULT_SERVER ")"},
    {"key", 0, "KEY", false, "API key (else QUARRY_API_KEY, the config file)"},
    {"key-file", 0, "FILE", false,
     "read the API key from FILE (else QUARRY_API_KEY_FILE)"},
    {"config", 0, "FILE", false,
     "config file (else QUARRY_CONFIG, else ~/.config/quarry/config)"},
    {"timeout", 0, "SECONDS", false, "limit for one request (default 60; 0: none)"},
    {"json", 0, NULL, false, "print one JSON document on stdout (errors too)"},
    {"help", 'h', NULL, false, "show help"},
    {"version", 0, NULL, false, "show the client's version"},
    {NULL, 0, NULL, false, NULL},
};

static const args_opt_t ingest_opts[] = {
    {"include", 0, "GLOB", true, "only files matching GLOB (repeatable)"},
    {"exclude", 0, "GLOB", true, "skip files and folders matching GLOB (repeatable)"},
    {"title", 0, "TITLE", false, "title of the document (one file only)"},
    {"external-id", 0, "ID", false, "external id of the document (one file only)"},
    {"id-prefix", 0, "PREFIX", false, "put PREFIX before every derived external id"},
    {"concurrency", 'j', "N", false, "uploads in flight at once (default 4, 1..32)"},
    {"wait-timeout", 0, "SECONDS", false,
     "how long to wait for ingestion jobs (default 600; 0: do not wait)"},
    {"no-wait", 0, NULL, false, "do not wait for ingestion jobs (= --wait-timeout 0)"},
    {"force", 0, NULL, false, "upload even files the state file says are loaded"},
    {"state", 0, "FILE", false,
     "state file (else QUARRY_STATE, else $XDG_STATE_HOME/quarry/ingest-state.json)"},
    {"no-progress", 0, NULL, false, "plain lines even on a terminal"},
    {"no-batch", 0, NULL, false, "one upload per file (no POST /v1/documents/batch)"},
    {NULL, 0, NULL, false, NULL},
};

static const args_opt_t ask_opts[] = {
    {"top-k", 'k', "N", false,
     "passages the answer is generated from (1..50, default 8)"},
    {"no-stream", 0, NULL, false,
     "ask for the whole answer at once instead of streaming"},
    ASK_FILTER_OPTS,
    {NULL, 0, NULL, false, NULL},
};

static const args_opt_t no_opts[] = {{NULL, 0, NULL, false, NULL}};

#define PAGE_OPTS                                                                        \
  {"limit", 0, "N", false, "items per page, 1..500 (default: the server's, 50)"},        \
      {"cursor", 0, "CURSOR", false, "start at this next_cursor of an earlier page"}, {  \
    "all", 0, NULL, false, "follow next_cursor through every page"                       \
  }

static const args_opt_t docs_list_opts[] = {
    PAGE_OPTS,
    {"query", 'q', "TEXT", false, "title or file name contains TEXT (any case)"},
    {"type", 0, "TYPE", false, "content type, exactly (text/markdown)"},
    {"state", 0, "STATE", false, "latest job state: queued, running, done, failed"},
    {"created-after", 0, "TIME", false, "created after TIME (RFC 3339)"},
    {"created-before", 0, "TIME", false, "created before TIME (RFC 3339)"},
    {NULL, 0, NULL, false, NULL},
};

static const args_opt_t jobs_list_opts[] = {
    PAGE_OPTS,
    {"state", 0, "STATE", false, "queued, running, done or failed"},
    {"document", 0, "ID", false, "only the jobs of this document"},
    {NULL, 0, NULL, false, NULL},
};

static const args_opt_t keys_list_opts[] = {PAGE_OPTS, {NULL, 0, NULL, false, NULL}};

static const args_opt_t keys_create_opts[] = {
    {"role", 0, "ROLE", true, "admin, writer or reader (repeatable; default reader)"},
    {NULL, 0, NULL, false, NULL},
};

static const char INGEST_HELP[] =
    "Uploads files, and folders recursively (hidden entries skipped), then waits\n"
    "for their ingestion jobs and reports each failure with its reason. Each file's\n"
    "external id is the folder argument's name plus the path below it, so\n"
    "ingesting the same folder again versions the same documents. Files whose\n"
    "content was loaded before (per the state file) are skipped; jobs still\n"
    "running are waited for. Small .txt files go many to a request to\n"
    "POST /v1/documents/batch (--no-batch: one per request). Ctrl-C finishes\n"
    "the uploads in flight, saves the state and exits 130; run the same\n"
    "command again to continue.\n"
    "GLOBs (fnmatch) without '/' match file names, with '/' the path below the\n"
    "folder argument.";

static const char ASK_HELP[] =
    "Prints the answer, then its numbered sources (title, page, snippet). The\n"
    "answer streams in as it is generated when the server can stream\n"
    "(Server-Sent Events); otherwise it is printed when complete. --filter,\n"
    "--where, --type, --after and --before keep retrieval to the documents\n"
    "they allow (all of them at once).";

const command_t commands[] = {
    {"ingest", "PATH...", "upload files and folders and wait for their ingestion",
     INGEST_HELP, ingest_opts, 1, -1, cmd_ingest, NULL},
    {"ask", "QUESTION", "answer a question from your documents, with sources", ASK_HELP,
     ask_opts, 1, -1, cmd_ask, NULL},
    {"docs show", "ID", "a document's metadata and ingestion status", NULL, no_opts, 1, 1,
     cmd_docs_show, NULL},
    {"jobs show", "ID", "an ingestion job's status, and why it failed", NULL, no_opts, 1,
     1, cmd_jobs_show, NULL},
    {"docs list", "", "list documents, newest first", NULL, docs_list_opts, 0, 0,
     cmd_docs_list, NULL},
    {"docs rm", "ID", "delete a document (writer or admin)", NULL, no_opts, 1, 1,
     cmd_docs_rm, NULL},
    {"jobs", "", "list ingestion jobs, newest first", NULL, jobs_list_opts, 0, 0,
     cmd_jobs_list, NULL},
    {"jobs list", "", "list ingestion jobs, newest first", NULL, jobs_list_opts, 0, 0,
     cmd_jobs_list, NULL},
    {"keys create", "NAME", "create an API key in your tenant (admin)", NULL,
     keys_create_opts, 1, 1, cmd_keys_create, NULL},
    {"keys list", "", "list your tenant's API keys (admin)", NULL, keys_list_opts, 0, 0,
     cmd_keys_list, NULL},
    {"keys revoke", "ID", "revoke an API key (admin)", NULL, no_opts, 1, 1,
     cmd_keys_revoke, NULL},
    {NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};

/* ---- help ------------------------------------------------------------------ */

static void print_usage_line(FILE *f, const command_t *c) {
  fprintf(f, "usage: quarry %s [options]%s%s\n", c->name, c->usage[0] ? " " : "",
          c->usage);
}

static void print_main_help(FILE *f) {
  fprintf(f, "usage: quarry [options] COMMAND [options] [ARGS]\n\n"
             "A command-line client for Quarry's REST API.\n\nCommands:\n");
  for (const command_t *c = commands; c->name; c++) {
    if (strcmp(c->name, "jobs list") == 0)
      continue; /* the same as "jobs" */
    char left[64];
    snprintf(left, sizeof left, "%s%s%s", c->name, c->usage[0] ? " " : "", c->usage);
    if (c->pending)
      fprintf(f, "  %-22s (not yet: the server has no %s)\n", left, c->pending);
    else
      fprintf(f, "  %-22s %s\n", left, c->summary);
  }
  fprintf(f, "\nOptions (valid with every command):\n");
  args_print_help(f, global_opts);
  fprintf(f,
          "\nExit codes: 0 ok, 1 some items failed, 2 usage, 3 authentication, 4 server\n"
          "unreachable or failing, 130 interrupted.\n"
          "`quarry COMMAND --help` shows a command's options; docs/cli.md has more.\n");
}

static void print_command_help(FILE *f, const command_t *c) {
  print_usage_line(f, c);
  fprintf(f, "\n%c%s.\n", toupper((unsigned char)c->summary[0]), c->summary + 1);
  if (c->pending)
    fprintf(f, "\nNot supported by the server yet: it needs %s.\n", c->pending);
  if (c->help)
    fprintf(f, "\n%s\n", c->help);
  if (c->opts[0].name) {
    fprintf(f, "\nOptions:\n");
    args_print_help(f, c->opts);
  }
  fprintf(f, "\nGlobal options:\n");
  args_print_help(f, global_opts);
}

/* ---- finding the command ------------------------------------------------------ */

static const command_t *find_command(const char *name) {
  for (const command_t *c = commands; c->name; c++)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

/* true when word starts some command ("docs" for "docs show"). */
static bool is_group(const char *word) {
  size_t n = strlen(word);
  for (const command_t *c = commands; c->name; c++)
    if (strncmp(c->name, word, n) == 0 && c->name[n] == ' ')
      return true;
  return false;
}

static void list_group(FILE *f, const char *word) {
  size_t n = strlen(word);
  const char *sep = "";
  for (const command_t *c = commands; c->name; c++)
    if (strncmp(c->name, word, n) == 0 && c->name[n] == ' ') {
      fprintf(f, "%s%s", sep, c->name + n + 1);
      sep = ", ";
    }
}

/* Index of the first operand in argv[1..argc), skipping global options
 * and their values; argc when there is none. */
static int first_word(int argc, char **argv) {
  static const args_opt_t *const tables[] = {global_opts, NULL};
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (strcmp(s, "--") == 0)
      return i + 1 < argc ? i + 1 : argc;
    if (s[0] != '-' || s[1] == '\0')
      return i;
    if (s[1] == '-' && !strchr(s, '=')) {
      for (const args_opt_t *o = tables[0]; o->name; o++)
        if (strcmp(o->name, s + 2) == 0 && o->value)
          i++; /* skip its value */
    }
  }
  return argc;
}

/* ---- settings ------------------------------------------------------------------ */

static int load_config(args_t *args, const cli_out_t *o, config_t *cfg) {
  const char *explicit_path = args_get(args, "config");
  if (!explicit_path) {
    const char *env = getenv("QUARRY_CONFIG");
    explicit_path = env && *env ? env : NULL;
  }
  char path[4096];
  config_default_path(explicit_path, path, sizeof path);
  config_file_t file;
  char err[8192], warn[512];
  if (config_file_read(path, explicit_path != NULL, &file, err, sizeof err, warn,
                       sizeof warn))
    return cli_fail(o, CLI_EXIT_USAGE, "usage", "%s", err);
  if (warn[0])
    fprintf(o->err, "quarry: warning: %s\n", warn);
  if (file.world_readable)
    fprintf(
        o->err,
        "quarry: warning: %s holds an API key and others may read it (chmod 600 %s)\n",
        file.path, file.path);
  config_layer_t layers[3] = {
      {.name = "the command line",
       .server = args_get(args, "server"),
       .key = args_get(args, "key"),
       .key_file = args_get(args, "key-file"),
       .key_label = "--key",
       .key_file_label = "--key-file"},
      {.name = "the environment",
       .server = getenv("QUARRY_URL"),
       .key = getenv("QUARRY_API_KEY"),
       .key_file = getenv("QUARRY_API_KEY_FILE"),
       .key_label = "QUARRY_API_KEY",
       .key_file_label = "QUARRY_API_KEY_FILE"},
      file.layer,
  };
  int rc = CLI_EXIT_OK;
  if (config_resolve(layers, 3, cfg, err, sizeof err))
    rc = cli_fail(o, CLI_EXIT_USAGE, "usage", "%s", err);
  config_file_cleanup(&file);
  return rc;
}

/* ---- main ------------------------------------------------------------------------ */

int commands_main(int argc, char **argv, FILE *out, FILE *err) {
  cli_out_t o = {.json = false, .out = out, .err = err};
  int w = first_word(argc, argv);
  const command_t *c = NULL;
  int words = 0;
  bool help_cmd = w < argc && strcmp(argv[w], "help") == 0;
  if (help_cmd)
    w++;
  if (w < argc) {
    if (w + 1 < argc && argv[w + 1][0] != '-') {
      char two[128];
      snprintf(two, sizeof two, "%s %s", argv[w], argv[w + 1]);
      if ((c = find_command(two)))
        words = 2;
    }
    if (!c && (c = find_command(argv[w])))
      words = 1;
  }

  /* The options: everything but the program, "help" and the command words. */
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  if (!rest)
    return cli_fail(&o, CLI_EXIT_FAILED, "internal", "out of memory");
  int nrest = 0;
  for (int i = 1; i < argc; i++)
    if (!(help_cmd && i == w - 1) && !(c && i >= w && i < w + words))
      rest[nrest++] = argv[i];
  const args_opt_t *const tables[] = {global_opts, c ? c->opts : no_opts, NULL};
  args_t args;
  char msg[1024];
  int rc;
  q_err_t prc = args_parse(tables, nrest, rest, &args, msg, sizeof msg);
  o.json = prc == 0 && args_has(&args, "json");

  if (prc == 0 && args_has(&args, "version")) {
    curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    fprintf(out, "quarry %s (libcurl %s)\n", QUARRY_CLI_VERSION, v ? v->version : "?");
    rc = CLI_EXIT_OK;
    goto done;
  }
  if (help_cmd || (prc == 0 && args_has(&args, "help"))) {
    if (c)
      print_command_help(out, c);
    else
      print_main_help(out);
    rc = CLI_EXIT_OK;
    goto done;
  }
  if (!c) {
    if (w >= argc) {
      print_main_help(err);
      rc = CLI_EXIT_USAGE;
    } else if (is_group(argv[w])) {
      fprintf(err, "quarry %s: expected one of: ", argv[w]);
      list_group(err, argv[w]);
      fprintf(err, " (see quarry --help)\n");
      rc = CLI_EXIT_USAGE;
    } else {
      rc = cli_fail(&o, CLI_EXIT_USAGE, "usage",
                    "unknown command \"%.64s\" (see quarry --help)", argv[w]);
    }
    goto done;
  }
  if (prc) {
    rc = cli_fail(&o, CLI_EXIT_USAGE, "usage", "%s %s (see quarry %s --help)", c->name,
                  msg, c->name);
    goto done;
  }
  if (c->pending) {
    rc = cli_fail(&o, CLI_EXIT_UNSUPPORTED, "unsupported",
                  "%s is not supported by this server yet (needs %s)", c->name,
                  c->pending);
    goto done;
  }
  if ((int)args.noperands < c->min_operands ||
      (c->max_operands >= 0 && (int)args.noperands > c->max_operands)) {
    if (!o.json)
      print_usage_line(err, c);
    if (c->usage[0])
      rc = cli_fail(&o, CLI_EXIT_USAGE, "usage", "%s wants %s", c->name, c->usage);
    else
      rc = cli_fail(&o, CLI_EXIT_USAGE, "usage", "%s takes no arguments", c->name);
    goto done;
  }
  long timeout_s;
  if (args_int(&args, "timeout", DEFAULT_TIMEOUT_S, 0, 86400, &timeout_s, msg,
               sizeof msg)) {
    rc = cli_fail(&o, CLI_EXIT_USAGE, "usage", "%s", msg);
    goto done;
  }
  config_t cfg;
  rc = load_config(&args, &o, &cfg);
  if (rc)
    goto done;
  if (!cfg.key[0]) {
    rc = cli_fail(&o, CLI_EXIT_AUTH, "no_key",
                  "no API key: pass --key or --key-file, set QUARRY_API_KEY, or put "
                  "`key = ...` in ~/.config/quarry/config");
    goto done;
  }
  cmd_ctx_t ctx = {.args = &args, .cfg = &cfg, .out = &o, .timeout_ms = timeout_s * 1000};
  rc = c->run(&ctx);
  memset(cfg.key, 0, sizeof cfg.key);
done:
  args_free(&args);
  free(rest);
  return rc;
}
