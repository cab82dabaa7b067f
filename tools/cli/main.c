/* quarry: the command-line client of Quarry's REST API.
 *
 *   quarry ingest ./my-docs
 *   quarry ask "What is the hotel limit per night in London?"
 *
 * Process set-up only (libcurl, Ctrl-C, line-buffered output); the commands
 * live in commands.c and the files named after them. docs/cli.md describes
 * every command, option, setting and exit code. */
#include <curl/curl.h>
#include <stdio.h>

#include "cli.h"
#include "commands.h"

int main(int argc, char **argv) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "quarry: cannot initialise libcurl\n");
    return CLI_EXIT_FAILED;
  }
  cli_signals_install();
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they happen, even in a pipe */
  int rc = commands_main(argc, argv, stdout, stderr);
  fflush(stdout);
  curl_global_cleanup();
  return rc;
}
