/* extract/sandbox.h - every document is extracted in a child process that
 * can only hurt itself.
 *
 * Two ways to start that child, the same process in the end:
 *
 *   - through a zygote (cfg->zygote, what the job workers use): a small
 *     helper process, "quarry-ingestion extract-child --zygote", started
 *     once per worker thread by fork and exec (so it is single-threaded
 *     whatever the service holds) and restarted when it dies. On request
 *     over a socketpair (SOCK_SEQPACKET; the document and the two pipes
 *     travel as SCM_RIGHTS descriptors) it forks a fresh child per
 *     document, which gets the limits below and runs the extractor; the
 *     zygote reports the child's pid, kills it when asked and reports its
 *     wait status and resource use. Forking the idle zygote costs a
 *     fraction of a millisecond where exec of the service binary cost
 *     about 20 ms (dynamic loading of every library the service links).
 *     The zygote has no limits of its own, never reads a document and dies
 *     with the thread that started it (PR_SET_PDEATHSIG); its children die
 *     with it.
 *   - by fork and exec of cfg->exe for this document alone (cfg->zygote
 *     NULL): tests and callers without a zygote.
 *
 * In the exec case the worker thread forks; before exec the child gets its limits
 * (RLIMIT_AS: memory; RLIMIT_CPU: CPU seconds, SIGXCPU then SIGKILL;
 * RLIMIT_FSIZE 0: no file writes; RLIMIT_CORE 0; a parent-death signal),
 * the blob as stdin, a pipe as stdout and another as stderr, no other file
 * descriptors and an environment of only PATH, LC_ALL and cfg->env, and execs cfg->exe
 * with the subcommand cfg->subcommand (quarry-ingestion runs itself:
 * "/proc/self/exe extract-child ..."). Exec rather than fork alone gives
 * the extractor a fresh single-threaded process: no lock another worker
 * thread held at fork time, and an address space the memory limit can
 * measure (a forked copy of the service would start with its threads'
 * stacks and arenas counted).
 *
 * The child (sandbox_child_main) maps the document, lets the extractor
 * prepare (load converters), then locks itself down: PR_SET_NO_NEW_PRIVS
 * and a seccomp filter that allows memory management, reading stdin,
 * writing stdout/stderr, futexes, clocks, signals and exit, refuses
 * executable mappings and fails everything else with EPERM (no open, no
 * socket, no exec, no fork). Where seccomp cannot be loaded it falls back
 * to a new, empty network namespace if the kernel permits one, and says so
 * (sandbox_info_t.lockdown). Then it runs the extractor and streams the
 * records through the pipe, ending with a status record.
 *
 * The parent reads both pipes under a wall-clock deadline, builds the doc
 * as records arrive (bounded by the doc's own limits, and the raw stream by
 * twice the text limit), kills the child when a limit is passed, and turns
 * whatever happened into a sentence: "PDF: the extractor ran out of memory
 * (limit 1 GiB)". The worker and the service are unaffected.
 *
 * Wire format (host byte order, same machine): a 12-byte header {uint8
 * kind, uint8 level, uint16 0, int32 page, uint32 len} and len bytes of
 * text. Kinds are extract_kind_t, SANDBOX_REC_INFO (the lockdown achieved)
 * and SANDBOX_REC_END (page holds the extractor's q_err_t, text its
 * reason). */
#ifndef QUARRY_INGESTION_SANDBOX_H
#define QUARRY_INGESTION_SANDBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "extract/doc.h"
#include "extract/extract.h"
#include "extract/formats.h"
#include "quarry/error.h"

#define SANDBOX_SUBCOMMAND "extract-child"
#define SANDBOX_ZYGOTE_ARG "--zygote" /* "extract-child --zygote": the zygote */

/* A zygote (see the top of this file): used by one thread at a time. */
typedef struct sandbox_zygote sandbox_zygote_t;

/* A zygote that execs exe (borrowed; kept by the caller) when first
 * needed. NULL when out of memory. */
sandbox_zygote_t *sandbox_zygote_new(const char *exe);

/* Ends the zygote (and a child it still has) and frees z. NULL is fine. */
void sandbox_zygote_free(sandbox_zygote_t *z);

/* The running zygote's pid, 0 when none runs (tests kill it). */
int sandbox_zygote_pid(const sandbox_zygote_t *z);

/* How many times a zygote was started: 1 + restarts after deaths. */
int sandbox_zygote_starts(const sandbox_zygote_t *z);

enum { SANDBOX_REC_INFO = 100, SANDBOX_REC_END = 101 };

typedef struct sandbox_cfg {
  const char *exe;          /* binary to exec as the child */
  int64_t memory_bytes;     /* RLIMIT_AS */
  int cpu_seconds;          /* RLIMIT_CPU */
  int timeout_ms;           /* wall clock, enforced by the parent */
  extract_limits_t limits;  /* the extractor's own caps */
  bool seccomp;             /* install the seccomp filter */
  const atomic_int *cancel; /* optional: non-zero stops the extraction */
  /* Optional, NULL-ended "NAME=value" strings added to the child's
   * environment (at most SANDBOX_ENV_MAX): extractors' settings, such as
   * OCR's (extract/ocr.h, ocr_env_build). */
  const char *const *env;
  sandbox_zygote_t *zygote; /* optional: fork the child from it, not exec */
} sandbox_cfg_t;

#define SANDBOX_ENV_MAX 16

/* Most documents one child extracts in turn (sandbox_extract_many). */
#define SANDBOX_BATCH_MAX 32

typedef struct sandbox_info {
  char lockdown[64]; /* "seccomp", "netns", "none: <why>" */
  int64_t ms;        /* wall clock */
  long max_rss_kb;   /* the child's peak resident memory */
} sandbox_info_t;

/* Extracts the document open on fd (read from its start; the caller keeps
 * it) as fmt in a sandboxed child, into out (doc_init'ed by the caller with
 * fmt's chunking). charset may be "" or NULL.
 *
 * 0 on success. When the document is at fault - damaged, hostile, over a
 * limit - Q_EINVAL (or Q_ETOOBIG, Q_EUNSUPPORTED) with err a sentence that
 * starts with the format's label ("DOCX: word/document.xml unpacks to more
 * than 256 MiB (a zip bomb?)"): failing the job is right. Q_EUNAVAIL when
 * the sandbox itself could not run (fork, pipe or exec failed, the zygote
 * died): trying again later is right. Q_ECANCELLED when cfg->cancel was
 * set. info may be NULL. Thread-safe: each call has its own child; a zygote
 * serves one call at a time (one zygote per thread). */
q_err_t sandbox_extract(const sandbox_cfg_t *cfg, const format_t *fmt,
                        const char *charset, int fd, doc_t *out, sandbox_info_t *info,
                        char *err, size_t errlen);

/* One document of sandbox_extract_many. */
typedef struct sandbox_item {
  const format_t *fmt; /* in */
  const char *charset; /* in: may be "" or NULL */
  int fd;              /* in: the document (read from its start; kept by the caller) */
  doc_t *out;          /* in: doc_init'ed with fmt's chunking */
  q_err_t rc;          /* out: what sandbox_extract would return */
  char err[512];       /* out: its reason */
  sandbox_info_t info; /* out: ms is this document's share, max_rss_kb the child's */
  bool alone;          /* out: the shared child did not finish it, so it was
                        * extracted again in a child of its own */
} sandbox_item_t;

/* Extracts items[0..n) in one sandboxed child forked by cfg->zygote: the
 * child maps and prepares every document, locks itself down once, then
 * extracts them in turn and ends each with its own END record, so the
 * fork, the exec-free start and the teardown are paid once per batch
 * instead of once per document. The limits are those of sandbox_extract,
 * per document for the wall clock (each document's clock starts when the
 * previous one ended), for the batch for memory (RLIMIT_AS) and CPU
 * (cpu_seconds times n).
 *
 * When the shared child stops before the end - it crashed, ran out of
 * memory or CPU time, wrote too much or anything malformed - the documents
 * it finished keep their results and every other one is extracted again in
 * a child of its own (sandbox_extract; item.alone set); a document that
 * passed the wall clock fails with that reason at once (it had the whole
 * limit to itself) and only the ones after it are extracted again: a hostile document
 * fails alone with the reason sandbox_extract gives it, and its neighbours
 * succeed. A compromised extractor could still forge the records of the
 * documents after it in the same child, which is why callers put only one
 * tenant's documents in a batch.
 *
 * Without a zygote, with n == 1 or n > SANDBOX_BATCH_MAX, each document
 * goes through sandbox_extract. Each item's rc is that of sandbox_extract
 * (Q_ECANCELLED for every unfinished one when cfg->cancel was set). Not
 * thread-safe for one zygote (one zygote per thread). */
void sandbox_extract_many(const sandbox_cfg_t *cfg, sandbox_item_t *items, int n);

/* A way to find an extractor by format id in the child; NULL means the
 * format table (formats_by_id). Tests pass their own to add extractors
 * that misbehave on purpose. */
typedef const extractor_t *(*sandbox_find_fn)(const char *id);

/* The child's entry: argv[1] is SANDBOX_SUBCOMMAND, the rest is what
 * sandbox_extract passed, or SANDBOX_ZYGOTE_ARG for the zygote. Returns
 * the process's exit status. */
int sandbox_child_main(int argc, char **argv, sandbox_find_fn find);

/* "1 GiB", "512 MiB", "300 KiB", "12 bytes": sizes in messages. */
void sandbox_format_size(int64_t bytes, char *out, size_t outlen);

#endif
