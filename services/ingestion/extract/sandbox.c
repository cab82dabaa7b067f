/* extract/sandbox.c - extraction in a locked-down child process (see
 * sandbox.h). The parent half runs on a worker thread; the child half is
 * the entry of "quarry-ingestion extract-child". */
#include "extract/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "quarry/log.h"
#include "quarry/util.h"

#define HDR 12
#define STDERR_KEEP 2048
#define READ_PIECE (64u << 10)
#define NOFILE_MAX 64

typedef struct rec_hdr {
  uint8_t kind, level;
  uint16_t pad;
  int32_t page;
  uint32_t len;
} rec_hdr_t;
_Static_assert(sizeof(rec_hdr_t) == HDR, "the record header is 12 bytes");

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sandbox_format_size(int64_t b, char *out, size_t outlen) {
  if (b >= (1ll << 30) && b % (1ll << 30) == 0)
    snprintf(out, outlen, "%lld GiB", (long long)(b >> 30));
  else if (b >= (1ll << 20))
    snprintf(out, outlen, "%lld MiB", (long long)(b >> 20));
  else if (b >= (1ll << 10))
    snprintf(out, outlen, "%lld KiB", (long long)(b >> 10));
  else
    snprintf(out, outlen, "%lld bytes", (long long)b);
}

/* ==== the child ================================================================ */

typedef struct out {
  char buf[READ_PIECE];
  size_t len;
  bool broken;
} out_t;

static void out_flush(out_t *o) {
  size_t off = 0;
  while (off < o->len && !o->broken) {
    ssize_t k = write(1, o->buf + off, o->len - off);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      o->broken = true;
    else
      off += (size_t)k;
  }
  o->len = 0;
}

static void out_put(out_t *o, const void *p, size_t n) {
  const char *s = p;
  while (n > 0 && !o->broken) {
    if (o->len == sizeof o->buf)
      out_flush(o);
    size_t k = sizeof o->buf - o->len < n ? sizeof o->buf - o->len : n;
    memcpy(o->buf + o->len, s, k);
    o->len += k;
    s += k;
    n -= k;
  }
}

static void out_record(out_t *o, int kind, int level, int32_t page, const char *text,
                       size_t len) {
  rec_hdr_t h = {(uint8_t)kind, (uint8_t)level, 0, page, (uint32_t)len};
  out_put(o, &h, sizeof h);
  out_put(o, text, len);
}

static q_err_t child_sink_cb(void *ud, extract_kind_t kind, int level, int page,
                             const char *text, size_t len) {
  out_t *o = ud;
  out_record(o, kind, level, page, text, len);
  return o->broken ? Q_ECANCELLED : Q_OK;
}

/* The seccomp allowlist: what extraction needs once the input is mapped
 * and every library is loaded. Everything else fails with EPERM, which
 * libraries report as an ordinary error rather than a crash. */
static bool install_seccomp(char *why, size_t whylen) {
  scmp_filter_ctx f = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (!f) {
    snprintf(why, whylen, "seccomp_init failed");
    return false;
  }
  static const int plain[] = {
      SCMP_SYS(read),           SCMP_SYS(readv),
      SCMP_SYS(pread64),        SCMP_SYS(lseek),
      SCMP_SYS(fstat),          SCMP_SYS(newfstatat),
      SCMP_SYS(close),          SCMP_SYS(munmap),
      SCMP_SYS(mremap),         SCMP_SYS(brk),
      SCMP_SYS(madvise),        SCMP_SYS(futex),
      SCMP_SYS(clock_gettime),  SCMP_SYS(clock_nanosleep),
      SCMP_SYS(nanosleep),      SCMP_SYS(gettimeofday),
      SCMP_SYS(getrandom),      SCMP_SYS(rt_sigaction),
      SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
      SCMP_SYS(sigaltstack),    SCMP_SYS(getpid),
      SCMP_SYS(gettid),         SCMP_SYS(tgkill),
      SCMP_SYS(exit),           SCMP_SYS(exit_group),
      SCMP_SYS(sched_yield),    SCMP_SYS(restart_syscall),
      SCMP_SYS(prlimit64),      SCMP_SYS(getrusage),
      SCMP_SYS(sysinfo),        SCMP_SYS(sched_getaffinity),
      SCMP_SYS(fcntl),
  };
  int rc = 0;
  for (size_t i = 0; i < sizeof plain / sizeof plain[0] && !rc; i++)
    rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, plain[i], 0);
  /* Writes only to stdout (the records) and stderr. */
  for (int fd = 1; fd <= 2 && !rc; fd++) {
    rc =
        seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1, SCMP_A0(SCMP_CMP_EQ, fd));
    if (!rc)
      rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(writev), 1,
                            SCMP_A0(SCMP_CMP_EQ, fd));
  }
  /* Memory, but never executable: no new code once locked down. */
  if (!rc)
    rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  if (!rc)
    rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  if (!rc)
    rc = seccomp_load(f);
  seccomp_release(f);
  if (rc) {
    snprintf(why, whylen, "seccomp: %s", strerror(-rc));
    return false;
  }
  return true;
}

static void lockdown(bool want_seccomp, char *level, size_t levellen) {
  char why[96] = "seccomp disabled by QUARRY_EXTRACT_SECCOMP";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    snprintf(why, sizeof why, "no_new_privs: %s", strerror(errno));
  else if (want_seccomp && install_seccomp(why, sizeof why)) {
    snprintf(level, levellen, "seccomp");
    return;
  }
  /* Without seccomp, at least no network: an empty network namespace,
   * where an unprivileged user namespace (or root) allows one. */
  if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 || unshare(CLONE_NEWNET) == 0)
    snprintf(level, levellen, "netns (%s)", why);
  else
    snprintf(level, levellen, "none (%s)", why);
}

/* The child's work once its descriptors and limits are in place: fds[i]
 * is document i (fds[0] is stdin), stdout the records, stderr the
 * diagnostics. Every document is mapped and prepared before the lockdown
 * (preparing loads converters, which opens files); then each is extracted
 * in turn, its records ending with its own END record. Never returns. */
static void child_run(int n, const int *fds, const char *const *ids,
                      const char *const *charsets, const extract_limits_t *lim,
                      bool want_seccomp, sandbox_find_fn find) {
  static out_t o;
  static extract_ctx_t ctx[SANDBOX_BATCH_MAX];
  static char err[SANDBOX_BATCH_MAX][512];
  static q_err_t rc[SANDBOX_BATCH_MAX];
  static const extractor_t *x[SANDBOX_BATCH_MAX];
  signal(SIGPIPE, SIG_DFL);
  for (int i = 0; i < n; i++) {
    err[i][0] = '\0';
    rc[i] = Q_OK;
    x[i] = find ? find(ids[i]) : NULL;
    if (!x[i] && !find) {
      const format_t *f = formats_by_id(ids[i]);
      x[i] = f ? f->extractor : NULL;
    }
    struct stat st;
    const char *data = NULL;
    size_t size = 0;
    if (!x[i]) {
      rc[i] = Q_EINTERNAL;
      snprintf(err[i], sizeof err[i], "no extractor named %s", ids[i]);
    } else if (fstat(fds[i], &st) != 0 || !S_ISREG(st.st_mode)) {
      rc[i] = Q_EINTERNAL;
      snprintf(err[i], sizeof err[i], "the document is not a regular file");
    } else if (st.st_size > 0) {
      size = (size_t)st.st_size;
      data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fds[i], 0);
      if (data == MAP_FAILED) {
        data = NULL;
        rc[i] = errno == ENOMEM ? Q_ENOMEM : Q_EINTERNAL;
        snprintf(err[i], sizeof err[i], "cannot map the document: %s", strerror(errno));
      }
    }
    extract_ctx_init(&ctx[i], data, size, charsets[i], lim, child_sink_cb, &o, err[i],
                     sizeof err[i]);
    if (!rc[i] && x[i]->prepare)
      rc[i] = x[i]->prepare(&ctx[i]);
  }
  char level[160];
  lockdown(want_seccomp, level, sizeof level);
  out_record(&o, SANDBOX_REC_INFO, 0, 0, level, strlen(level));
  for (int i = 0; i < n && !o.broken; i++) {
    if (!rc[i])
      rc[i] = x[i]->run(&ctx[i]);
    if (rc[i] && !err[i][0])
      snprintf(err[i], sizeof err[i], "%s", q_strerror(rc[i]));
    out_record(&o, SANDBOX_REC_END, 0, (int32_t)rc[i], err[i], strlen(err[i]));
    /* The next document starts from what this one left: give back its
     * scratch and its mapping (the extractor's own state went with run). */
    if (n > 1) {
      out_flush(&o);
      extract_ctx_cleanup(&ctx[i]);
      if (ctx[i].size)
        munmap((void *)ctx[i].data, ctx[i].size);
    }
  }
  out_flush(&o);
  /* No cleanup: the process ends here and the kernel frees everything. */
  _exit(o.broken ? 3 : 0);
}

/* Only system calls: the limits every extracting process runs under. */
static bool apply_limits(int64_t memory_bytes, int cpu_seconds) {
  struct rlimit as = {(rlim_t)memory_bytes, (rlim_t)memory_bytes};
  struct rlimit cpu = {(rlim_t)cpu_seconds, (rlim_t)cpu_seconds + 1};
  struct rlimit zero = {0, 0}, nofile = {NOFILE_MAX, NOFILE_MAX};
  return setrlimit(RLIMIT_AS, &as) == 0 && setrlimit(RLIMIT_CPU, &cpu) == 0 &&
         setrlimit(RLIMIT_FSIZE, &zero) == 0 && setrlimit(RLIMIT_CORE, &zero) == 0 &&
         setrlimit(RLIMIT_NOFILE, &nofile) == 0;
}

static int zygote_main(sandbox_find_fn find);

int sandbox_child_main(int argc, char **argv, sandbox_find_fn find) {
  if (argc == 3 && strcmp(argv[2], SANDBOX_ZYGOTE_ARG) == 0)
    return zygote_main(find);
  if (argc < 9) {
    const char *msg = "extract-child: internal subcommand of quarry-ingestion\n";
    ssize_t k = write(2, msg, strlen(msg));
    (void)k;
    return 2;
  }
  const char *id = argv[2], *charset = strcmp(argv[3], "-") == 0 ? "" : argv[3];
  extract_limits_t lim = {
      .max_text_bytes = strtoll(argv[4], NULL, 10),
      .max_unzipped_bytes = strtoll(argv[5], NULL, 10),
      .max_zip_entries = atoi(argv[6]),
      .max_depth = atoi(argv[7]),
  };
  int fd0 = 0;
  child_run(1, &fd0, &id, &charset, &lim, strcmp(argv[8], "1") == 0, find);
  return 0; /* not reached */
}

/* ==== the parent =============================================================== */

typedef struct reader {
  const sandbox_cfg_t *cfg;
  const format_t *fmt;
  doc_t *doc;
  q_buf_t pending; /* bytes of records not yet complete */
  int64_t raw;     /* bytes read from stdout */
  char stderr_buf[STDERR_KEEP + 1];
  size_t stderr_len;
  bool ended; /* the END record arrived */
  int32_t end_rc;
  char end_msg[512];
  char lockdown[64];
  char problem[256]; /* why the parent stopped the child */
  q_err_t problem_rc;
  /* sandbox_extract_many: the documents of the stream, the one being read
   * (doc and fmt are its) and when its records began. */
  sandbox_item_t *items;
  int nitems, cur;
  int64_t item_t0;
} reader_t;

/* What an END record with rc and msg means for the document: 0, or an
 * error with err starting with the format's label. */
static q_err_t end_result(const sandbox_cfg_t *cfg, const format_t *fmt, int32_t rc,
                          const char *msg, char *err, size_t errlen) {
  if (rc == Q_OK)
    return Q_OK;
  if (rc == Q_ENOMEM) {
    char limit[32];
    sandbox_format_size(cfg->memory_bytes, limit, sizeof limit);
    snprintf(err, errlen, "%s: the extractor ran out of memory (limit %s)", fmt->label,
             limit);
    return Q_EINVAL;
  }
  snprintf(err, errlen, "%s: %s", fmt->label, msg);
  return rc == Q_ETOOBIG || rc == Q_EUNSUPPORTED ? rc : Q_EINVAL;
}

static void stop_reading(reader_t *r, q_err_t rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stop_reading(reader_t *r, q_err_t rc, const char *fmt, ...) {
  if (r->problem[0])
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->problem, sizeof r->problem, fmt, ap);
  va_end(ap);
  r->problem_rc = rc;
}

/* Consumes the complete records at the front of r->pending. */
static void parse(reader_t *r) {
  size_t off = 0;
  char size[32];
  while (!r->problem[0] && r->pending.len - off >= HDR) {
    rec_hdr_t h;
    memcpy(&h, r->pending.data + off, HDR);
    if ((int64_t)h.len > r->cfg->limits.max_text_bytes) {
      sandbox_format_size(r->cfg->limits.max_text_bytes, size, sizeof size);
      stop_reading(r, Q_ETOOBIG, "the extracted text is larger than %s", size);
      break;
    }
    if (r->pending.len - off - HDR < h.len)
      break;
    const char *text = r->pending.data + off + HDR;
    off += HDR + h.len;
    if (r->ended) {
      stop_reading(r, Q_EINTERNAL, "the extractor wrote past its end");
    } else if (h.kind == SANDBOX_REC_INFO) {
      snprintf(r->lockdown, sizeof r->lockdown, "%.*s", (int)h.len, text);
    } else if (h.kind == SANDBOX_REC_END && r->items && h.page == Q_ENOMEM) {
      /* Memory is the batch's, not the document's: the documents before
       * it may have taken it, and the ones after it would find none. This
       * one and the rest are extracted again alone. */
      stop_reading(r, Q_ENOMEM, "the shared child ran out of memory");
    } else if (h.kind == SANDBOX_REC_END && r->items) {
      /* One document of a batch is complete; the next one's records
       * follow. */
      sandbox_item_t *it = &r->items[r->cur];
      snprintf(r->end_msg, sizeof r->end_msg, "%.*s", (int)h.len, text);
      it->rc = end_result(r->cfg, it->fmt, h.page, r->end_msg, it->err, sizeof it->err);
      int64_t now = mono_ms();
      it->info.ms = now - r->item_t0;
      r->item_t0 = now;
      r->raw = 0;
      if (++r->cur < r->nitems) {
        r->doc = r->items[r->cur].out;
        r->fmt = r->items[r->cur].fmt;
      } else {
        r->ended = true;
      }
    } else if (h.kind == SANDBOX_REC_END) {
      r->ended = true;
      r->end_rc = h.page;
      snprintf(r->end_msg, sizeof r->end_msg, "%.*s", (int)h.len, text);
    } else if (h.kind >= EXTRACT_TITLE && h.kind <= EXTRACT_KIND_MAX && h.len > 0) {
      q_err_t rc =
          doc_add_cb(r->doc, (extract_kind_t)h.kind, h.level, h.page, text, h.len);
      if (rc == Q_ETOOBIG) {
        sandbox_format_size(r->cfg->limits.max_text_bytes, size, sizeof size);
        stop_reading(r, rc, "the extracted text is larger than %s", size);
      } else if (rc) {
        stop_reading(r, Q_EUNAVAIL, "out of memory while reading the extracted text");
      }
    } else {
      stop_reading(r, Q_EINTERNAL, "the extractor sent a malformed record");
    }
  }
  if (off > 0) {
    memmove(r->pending.data, r->pending.data + off, r->pending.len - off);
    r->pending.len -= off;
    r->pending.data[r->pending.len] = '\0';
  }
}

static void read_out(reader_t *r, int fd, bool *open) {
  char buf[READ_PIECE];
  ssize_t k = read(fd, buf, sizeof buf);
  if (k < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (k <= 0) {
    *open = false;
    return;
  }
  r->raw += k;
  /* Records cost a header each: twice the text limit is generous. */
  if (r->raw > 2 * r->cfg->limits.max_text_bytes + (1 << 20)) {
    char size[32];
    sandbox_format_size(r->cfg->limits.max_text_bytes, size, sizeof size);
    stop_reading(r, Q_ETOOBIG, "the extracted text is larger than %s", size);
    return;
  }
  if (q_buf_append(&r->pending, buf, (size_t)k)) {
    stop_reading(r, Q_EUNAVAIL, "out of memory while reading the extracted text");
    return;
  }
  parse(r);
}

static void read_err(reader_t *r, int fd, bool *open) {
  char buf[4096];
  ssize_t k = read(fd, buf, sizeof buf);
  if (k < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (k <= 0) {
    *open = false;
    return;
  }
  size_t room = STDERR_KEEP - r->stderr_len, n = (size_t)k < room ? (size_t)k : room;
  memcpy(r->stderr_buf + r->stderr_len, buf, n);
  r->stderr_len += n;
  r->stderr_buf[r->stderr_len] = '\0';
}

/* What a dead child's signal means, as the end of "the extractor ...". */
static q_err_t explain_signal(const reader_t *r, int sig, const struct rusage *ru,
                              bool killed, char *out, size_t outlen) {
  char limit[32];
  const sandbox_cfg_t *cfg = r->cfg;
  double cpu = (double)ru->ru_utime.tv_sec + (double)ru->ru_stime.tv_sec +
               (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e6;
  if (sig == SIGXCPU || (sig == SIGKILL && !killed && cpu >= cfg->cpu_seconds)) {
    snprintf(out, outlen, "used more than %d s of CPU time (the limit)",
             cfg->cpu_seconds);
    return Q_EINVAL;
  }
  sandbox_format_size(cfg->memory_bytes, limit, sizeof limit);
  bool mem_words = strstr(r->stderr_buf, "alloc") || strstr(r->stderr_buf, "memory") ||
                   strstr(r->stderr_buf, "Memory");
  bool near_limit = (int64_t)ru->ru_maxrss * 1024 >= cfg->memory_bytes / 4 * 3;
  if ((sig == SIGABRT || sig == SIGSEGV || sig == SIGBUS || sig == SIGTRAP) &&
      (mem_words || near_limit)) {
    snprintf(out, outlen, "ran out of memory (limit %s)", limit);
    return Q_EINVAL;
  }
  if (sig == SIGKILL && !killed) {
    snprintf(out, outlen, "was killed (by the system, perhaps out of memory)");
    return Q_EINVAL;
  }
  snprintf(out, outlen, "crashed (signal %d, %s)", sig, strsignal(sig));
  return Q_EINVAL;
}

/* Builds the child's argv into strs/argv before forking (the child may
 * only call async-signal-safe functions). */
typedef struct child_args {
  char lim[4][24];
  char *argv[10];
  char *envp[SANDBOX_ENV_MAX + 3];
} child_args_t;

static void build_args(child_args_t *a, const sandbox_cfg_t *cfg, const format_t *fmt,
                       const char *charset) {
  snprintf(a->lim[0], sizeof a->lim[0], "%lld", (long long)cfg->limits.max_text_bytes);
  snprintf(a->lim[1], sizeof a->lim[1], "%lld",
           (long long)cfg->limits.max_unzipped_bytes);
  snprintf(a->lim[2], sizeof a->lim[2], "%d", cfg->limits.max_zip_entries);
  snprintf(a->lim[3], sizeof a->lim[3], "%d", cfg->limits.max_depth);
  a->argv[0] = (char *)"quarry-extract";
  a->argv[1] = (char *)SANDBOX_SUBCOMMAND;
  a->argv[2] = (char *)fmt->id;
  a->argv[3] = (char *)(charset && *charset ? charset : "-");
  a->argv[4] = a->lim[0];
  a->argv[5] = a->lim[1];
  a->argv[6] = a->lim[2];
  a->argv[7] = a->lim[3];
  a->argv[8] = (char *)(cfg->seccomp ? "1" : "0");
  a->argv[9] = NULL;
  size_t n = 0;
  a->envp[n++] = (char *)"PATH=/usr/bin:/bin";
  a->envp[n++] = (char *)"LC_ALL=C";
  for (size_t i = 0; cfg->env && cfg->env[i] && i < SANDBOX_ENV_MAX; i++)
    a->envp[n++] = (char *)cfg->env[i];
  a->envp[n] = NULL;
}

/* In the child between fork and exec: only system calls. */
static void exec_child(const sandbox_cfg_t *cfg, child_args_t *a, int in, int out,
                       int err) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
    _exit(126);
  if (close_range(3, ~0u, 0) != 0)
    for (int fd = 3; fd < 1024; fd++)
      close(fd);
  if (!apply_limits(cfg->memory_bytes, cfg->cpu_seconds))
    _exit(126);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  execve(cfg->exe, a->argv, a->envp);
  _exit(127);
}

/* ==== the zygote ============================================================== */

/* A request to the zygote (SOCK_SEQPACKET: one message each). SPAWN comes
 * with 2 + count descriptors (SCM_RIGHTS): the records pipe, the stderr
 * pipe, then the count documents, extracted in that order by one child. */
enum { ZOP_SPAWN = 1, ZOP_KILL = 2 };
enum { ZREP_SPAWNED = 1, ZREP_EXITED = 2 };
#define ZYGOTE_REPLY_MS 5000 /* a live zygote answers at once */
#define ZYGOTE_KILL_WAIT_MS 5000

typedef struct zreq {
  uint32_t op;
  int32_t cpu_seconds;
  int64_t memory_bytes;
  int64_t max_text_bytes, max_unzipped_bytes;
  int32_t max_zip_entries, max_depth;
  int32_t seccomp;
  int32_t count; /* documents, 1..SANDBOX_BATCH_MAX */
  char id[SANDBOX_BATCH_MAX][32];
  char charset[SANDBOX_BATCH_MAX][FORMATS_CHARSET_BYTES];
} zreq_t;

#define ZFDS_MAX (2 + SANDBOX_BATCH_MAX)

typedef struct zrep {
  uint32_t kind;
  int32_t pid;    /* the child's; <= 0 when fork failed */
  int32_t error;  /* fork's errno */
  int32_t status; /* wait status (EXITED) */
  struct rusage ru;
} zrep_t;

struct sandbox_zygote {
  const char *exe;
  int sock; /* -1 while not running */
  pid_t pid;
  int starts;
  int last_status; /* wait status of the last zygote that ended, -1: none */
};

/* Receives one request and up to ZFDS_MAX descriptors. The byte count, 0
 * at end of stream, < 0 on error (errno). */
static ssize_t recv_req(int sock, zreq_t *q, int fds[ZFDS_MAX], int *nfds) {
  union {
    char buf[CMSG_SPACE(ZFDS_MAX * sizeof(int))];
    struct cmsghdr align;
  } c;
  struct iovec iov = {q, sizeof *q};
  struct msghdr mh = {.msg_iov = &iov,
                      .msg_iovlen = 1,
                      .msg_control = c.buf,
                      .msg_controllen = sizeof c.buf};
  *nfds = 0;
  ssize_t k = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  if (k <= 0)
    return k;
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
      continue;
    int n = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
      if (*nfds < ZFDS_MAX)
        fds[(*nfds)++] = fd;
      else
        close(fd);
    }
  }
  if ((size_t)k != sizeof *q || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
    for (int i = 0; i < *nfds; i++)
      close(fds[i]);
    *nfds = 0;
    q->op = 0; /* ignored */
  }
  return k;
}

/* In the zygote's fresh child: descriptors, limits, then the extraction.
 * The zygote is single-threaded, so everything is allowed here. */
static void zygote_child(const zreq_t *q, int fds[ZFDS_MAX], pid_t zygote,
                         sandbox_find_fn find) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGCHLD, SIG_DFL);
  int n = q->count;
  /* Out of the way of 0..n+1 first, so no dup2 below overwrites another. */
  int high[ZFDS_MAX];
  for (int i = 0; i < n + 2; i++)
    if ((high[i] = fcntl(fds[i], F_DUPFD, ZFDS_MAX + 3)) < 0)
      _exit(126);
  /* Document 0 on stdin, the pipes on 1 and 2, documents 1.. on 3.. */
  int docs[SANDBOX_BATCH_MAX];
  if (dup2(high[2], 0) < 0 || dup2(high[0], 1) < 0 || dup2(high[1], 2) < 0)
    _exit(126);
  docs[0] = 0;
  for (int i = 1; i < n; i++)
    if ((docs[i] = dup2(high[2 + i], 2 + i)) < 0)
      _exit(126);
  if (close_range((unsigned)n + 2, ~0u, 0) != 0)
    for (int fd = n + 2; fd < 1024; fd++)
      close(fd);
  /* CPU time for the whole batch; each document still has its own wall
   * clock (the parent's), and a document that passes either limit is
   * extracted again alone under the normal ones (sandbox_extract_many). */
  int64_t cpu = (int64_t)q->cpu_seconds * n;
  if (!apply_limits(q->memory_bytes, cpu > 86400 ? 86400 : (int)cpu))
    _exit(126);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != zygote) /* the zygote died before the line above */
    _exit(126);
  extract_limits_t lim = {q->max_text_bytes, q->max_unzipped_bytes, q->max_zip_entries,
                          q->max_depth};
  const char *ids[SANDBOX_BATCH_MAX], *charsets[SANDBOX_BATCH_MAX];
  for (int i = 0; i < n; i++) {
    ids[i] = q->id[i];
    charsets[i] = q->charset[i];
  }
  child_run(n, docs, ids, charsets, &lim, q->seccomp != 0, find);
}

/* Waits for the child pid to end while answering KILL requests; a closed
 * socket kills it. Returns false when the service went away. */
static bool zygote_watch(int sock, int sfd, pid_t pid, zrep_t *rep) {
  for (;;) {
    pid_t w = wait4(pid, &rep->status, WNOHANG, &rep->ru);
    if (w == pid || (w < 0 && errno != EINTR))
      return true;
    struct pollfd p[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR)
      return false;
    if (p[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0)
        ;
    }
    if (p[0].revents) {
      zreq_t q;
      int fds[ZFDS_MAX], nfds;
      ssize_t k = recv_req(sock, &q, fds, &nfds);
      for (int i = 0; i < nfds; i++)
        close(fds[i]);
      if (k == 0 || (k < 0 && errno != EINTR)) {
        kill(pid, SIGKILL);
        while (wait4(pid, &rep->status, 0, &rep->ru) < 0 && errno == EINTR)
          ;
        return false;
      }
      if (k > 0 && q.op == ZOP_KILL)
        kill(pid, SIGKILL); /* not reaped yet: pid is still this child */
    }
  }
}

/* The zygote: "<exe> extract-child --zygote", socket on stdin. Serves one
 * child at a time: fork on SPAWN, report the pid, then the wait status and
 * resource use when it ends. Ends when the socket closes. */
static int zygote_main(sandbox_find_fn find) {
  int sock = 0;
  pid_t self = getpid();
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0)
    return 1;
  for (;;) {
    zreq_t q;
    int fds[ZFDS_MAX], nfds;
    ssize_t k = recv_req(sock, &q, fds, &nfds);
    if (k == 0)
      return 0;
    if (k < 0) {
      if (errno == EINTR)
        continue;
      return 1;
    }
    if (q.op != ZOP_SPAWN || q.count < 1 || q.count > SANDBOX_BATCH_MAX ||
        nfds != 2 + q.count) { /* a KILL that came late, or junk */
      for (int i = 0; i < nfds; i++)
        close(fds[i]);
      continue;
    }
    for (int i = 0; i < q.count; i++) {
      q.id[i][sizeof q.id[i] - 1] = '\0';
      q.charset[i][sizeof q.charset[i] - 1] = '\0';
    }
    pid_t pid = fork();
    if (pid == 0)
      zygote_child(&q, fds, self, find);
    int fork_errno = errno;
    for (int i = 0; i < nfds; i++)
      close(fds[i]);
    zrep_t rep;
    memset(&rep, 0, sizeof rep);
    rep.kind = ZREP_SPAWNED;
    rep.pid = pid;
    rep.error = pid < 0 ? fork_errno : 0;
    if (send(sock, &rep, sizeof rep, MSG_NOSIGNAL) != (ssize_t)sizeof rep && pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      return 1;
    }
    if (pid < 0)
      continue;
    memset(&rep, 0, sizeof rep);
    if (!zygote_watch(sock, sfd, pid, &rep))
      return 0;
    rep.kind = ZREP_EXITED;
    rep.pid = pid;
    if (send(sock, &rep, sizeof rep, MSG_NOSIGNAL) != (ssize_t)sizeof rep)
      return 1;
  }
}

sandbox_zygote_t *sandbox_zygote_new(const char *exe) {
  sandbox_zygote_t *z = calloc(1, sizeof *z);
  if (!z)
    return NULL;
  z->exe = exe;
  z->sock = -1;
  z->last_status = -1;
  return z;
}

/* Ends the running zygote (its child with it) and reaps it. */
static void zygote_stop(sandbox_zygote_t *z) {
  if (z->sock < 0)
    return;
  close(z->sock);
  z->sock = -1;
  int status = 0;
  pid_t w;
  /* It exits on its own when the socket closes; one that does not within
   * a moment is killed. */
  for (int i = 0; i < 50 && (w = waitpid(z->pid, &status, WNOHANG)) == 0; i++) {
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (w == 0) {
    kill(z->pid, SIGKILL);
    w = waitpid(z->pid, &status, 0);
  }
  z->last_status = w == z->pid ? status : -1;
}

void sandbox_zygote_free(sandbox_zygote_t *z) {
  if (!z)
    return;
  zygote_stop(z);
  free(z);
}

int sandbox_zygote_pid(const sandbox_zygote_t *z) {
  return z && z->sock >= 0 ? (int)z->pid : 0;
}

int sandbox_zygote_starts(const sandbox_zygote_t *z) {
  return z ? z->starts : 0;
}

/* Starts the zygote by fork and exec: a fresh single-threaded process
 * whatever the caller's threads hold, so it may fork freely later. */
static q_err_t zygote_start(sandbox_zygote_t *z, const sandbox_cfg_t *cfg) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return Q_EUNAVAIL;
  /* The environment every child of this zygote inherits: the exec path's
   * (build_args), extractors' settings included (cfg->env). */
  char *envp[SANDBOX_ENV_MAX + 3];
  size_t ne = 0;
  envp[ne++] = (char *)"PATH=/usr/bin:/bin";
  envp[ne++] = (char *)"LC_ALL=C";
  for (size_t i = 0; cfg->env && cfg->env[i] && i < SANDBOX_ENV_MAX; i++)
    envp[ne++] = (char *)cfg->env[i];
  envp[ne] = NULL;
  char *argv[] = {(char *)"quarry-extract", (char *)SANDBOX_SUBCOMMAND,
                  (char *)SANDBOX_ZYGOTE_ARG, NULL};
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(sv[1], 0) < 0)
      _exit(126);
    if (close_range(3, ~0u, 0) != 0)
      for (int fd = 3; fd < 1024; fd++)
        close(fd);
    /* Dies with the thread that started it; its children die with it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execve(z->exe, argv, envp);
    _exit(127);
  }
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    return Q_EUNAVAIL;
  }
  z->sock = sv[0];
  z->pid = pid;
  if (z->starts++ > 0)
    q_log_warn("extraction zygote restarted", "{s:i,s:i}", "pid", (int)pid, "starts",
               z->starts);
  return Q_OK;
}

/* Waits up to ms for one reply. Q_OK, Q_ETIMEDOUT, or Q_EUNAVAIL when the
 * zygote is gone. */
static q_err_t zygote_recv(sandbox_zygote_t *z, zrep_t *rep, int ms) {
  int64_t until = mono_ms() + ms;
  for (;;) {
    int64_t left = until - mono_ms();
    if (left <= 0)
      return Q_ETIMEDOUT;
    struct pollfd p = {z->sock, POLLIN, 0};
    int n = poll(&p, 1, (int)left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return Q_EUNAVAIL;
    if (n == 0)
      return Q_ETIMEDOUT;
    ssize_t k = recv(z->sock, rep, sizeof *rep, 0);
    if (k < 0 && errno == EINTR)
      continue;
    return k == (ssize_t)sizeof *rep ? Q_OK : Q_EUNAVAIL;
  }
}

static q_err_t zygote_send(sandbox_zygote_t *z, const zreq_t *q, const int *fds,
                           int nfds) {
  union {
    char buf[CMSG_SPACE(ZFDS_MAX * sizeof(int))];
    struct cmsghdr align;
  } c;
  memset(&c, 0, sizeof c);
  struct iovec iov = {(void *)q, sizeof *q};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    mh.msg_control = c.buf;
    mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(h), fds, (size_t)nfds * sizeof(int));
  }
  ssize_t k;
  do
    k = sendmsg(z->sock, &mh, MSG_NOSIGNAL);
  while (k < 0 && errno == EINTR);
  return k == (ssize_t)sizeof *q ? Q_OK : Q_EUNAVAIL;
}

/* Has the zygote fork a child for this extraction; a zygote that is dead
 * or confused is replaced once. */
static q_err_t zygote_spawn(sandbox_zygote_t *z, const sandbox_cfg_t *cfg, int n,
                            const format_t *const *fmts, const char *const *charsets,
                            const int *fds, pid_t *pid, char *why, size_t whylen) {
  zreq_t q;
  memset(&q, 0, sizeof q);
  q.op = ZOP_SPAWN;
  q.cpu_seconds = cfg->cpu_seconds;
  q.memory_bytes = cfg->memory_bytes;
  q.max_text_bytes = cfg->limits.max_text_bytes;
  q.max_unzipped_bytes = cfg->limits.max_unzipped_bytes;
  q.max_zip_entries = cfg->limits.max_zip_entries;
  q.max_depth = cfg->limits.max_depth;
  q.seccomp = cfg->seccomp;
  q.count = n;
  for (int i = 0; i < n; i++) {
    if (strlen(fmts[i]->id) >= sizeof q.id[i]) {
      snprintf(why, whylen, "format id %s is too long", fmts[i]->id);
      return Q_EINTERNAL;
    }
    snprintf(q.id[i], sizeof q.id[i], "%s", fmts[i]->id);
    snprintf(q.charset[i], sizeof q.charset[i], "%s", charsets[i] ? charsets[i] : "");
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    if (z->sock < 0 && zygote_start(z, cfg) != Q_OK) {
      snprintf(why, whylen, "fork: %s", strerror(errno));
      return Q_EUNAVAIL;
    }
    zrep_t rep;
    if (zygote_send(z, &q, fds, 2 + n) == Q_OK &&
        zygote_recv(z, &rep, ZYGOTE_REPLY_MS) == Q_OK && rep.kind == ZREP_SPAWNED) {
      if (rep.pid > 0) {
        *pid = rep.pid;
        return Q_OK;
      }
      snprintf(why, whylen, "fork: %s", strerror(rep.error));
      return Q_EUNAVAIL;
    }
    zygote_stop(z);
  }
  int st = z->last_status;
  if (st != -1 && WIFEXITED(st) && (WEXITSTATUS(st) == 126 || WEXITSTATUS(st) == 127))
    snprintf(why, whylen, "%s %s failed", z->exe,
             WEXITSTATUS(st) == 127 ? "exec" : "setup");
  else
    snprintf(why, whylen, "the extraction zygote %s does not answer", z->exe);
  return Q_EUNAVAIL;
}

/* The end of the zygote's child: its wait status and resource use. When
 * the deadline passes first the child is killed (*timed_out set, unless it
 * was killed already) and waited for a little longer. false when the
 * zygote broke down (then it is replaced on the next spawn). */
static bool zygote_reap(sandbox_zygote_t *z, pid_t pid, bool killed, int64_t deadline,
                        bool *timed_out, int *status, struct rusage *ru) {
  for (;;) {
    int64_t now = mono_ms();
    int wait = killed ? ZYGOTE_KILL_WAIT_MS : (int)(deadline > now ? deadline - now : 0);
    zrep_t rep;
    q_err_t rc = wait > 0 ? zygote_recv(z, &rep, wait) : Q_ETIMEDOUT;
    if (rc == Q_OK && rep.kind == ZREP_EXITED && rep.pid == pid) {
      *status = rep.status;
      *ru = rep.ru;
      return true;
    }
    if (rc == Q_OK)
      continue; /* not ours (cannot happen with one child at a time) */
    if (rc == Q_ETIMEDOUT && !killed) {
      killed = *timed_out = true;
      zreq_t q;
      memset(&q, 0, sizeof q);
      q.op = ZOP_KILL;
      if (zygote_send(z, &q, NULL, 0) == Q_OK)
        continue;
    }
    zygote_stop(z);
    return false;
  }
}

static void zygote_kill(sandbox_zygote_t *z) {
  zreq_t q;
  memset(&q, 0, sizeof q);
  q.op = ZOP_KILL;
  zygote_send(z, &q, NULL, 0);
}

/* ==== extraction ================================================================ */

q_err_t sandbox_extract(const sandbox_cfg_t *cfg, const format_t *fmt,
                        const char *charset, int fd, doc_t *out, sandbox_info_t *info,
                        char *err, size_t errlen) {
  int64_t t0 = mono_ms();
  sandbox_info_t local;
  if (!info)
    info = &local;
  memset(info, 0, sizeof *info);
  int po[2] = {-1, -1}, pe[2] = {-1, -1};
  if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
    snprintf(err, errlen, "%s: cannot start the extractor (pipe: %s)", fmt->label,
             strerror(errno));
    if (po[0] >= 0) {
      close(po[0]);
      close(po[1]);
    }
    return Q_EUNAVAIL;
  }
  if (lseek(fd, 0, SEEK_SET) < 0) {
    snprintf(err, errlen, "%s: cannot read the document (%s)", fmt->label,
             strerror(errno));
    close(po[0]);
    close(po[1]);
    close(pe[0]);
    close(pe[1]);
    return Q_EUNAVAIL;
  }
  sandbox_zygote_t *z = cfg->zygote;
  pid_t pid;
  char why_start[256] = "";
  if (z) {
    int fds[3] = {po[1], pe[1], fd};
    q_err_t src =
        zygote_spawn(z, cfg, 1, &fmt, &charset, fds, &pid, why_start, sizeof why_start);
    if (src)
      pid = -1;
  } else {
    child_args_t args;
    build_args(&args, cfg, fmt, charset);
    pid = fork();
    if (pid == 0)
      exec_child(cfg, &args, fd, po[1], pe[1]);
    if (pid < 0)
      snprintf(why_start, sizeof why_start, "fork: %s", strerror(errno));
  }
  close(po[1]);
  close(pe[1]);
  if (pid < 0) {
    snprintf(err, errlen, "%s: cannot start the extractor (%s)", fmt->label, why_start);
    close(po[0]);
    close(pe[0]);
    return Q_EUNAVAIL;
  }

  reader_t r = {.cfg = cfg, .fmt = fmt, .doc = out};
  q_buf_init(&r.pending, (size_t)cfg->limits.max_text_bytes + HDR + READ_PIECE);
  bool out_open = true, err_open = true, timed_out = false, cancelled = false;
  int64_t deadline = t0 + cfg->timeout_ms;
  while ((out_open || err_open) && !r.problem[0]) {
    int64_t now = mono_ms();
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    if (cfg->cancel && atomic_load(cfg->cancel)) {
      cancelled = true;
      break;
    }
    struct pollfd p[2] = {{out_open ? po[0] : -1, POLLIN, 0},
                          {err_open ? pe[0] : -1, POLLIN, 0}};
    int wait = (int)(deadline - now < 200 ? deadline - now : 200);
    int n = poll(p, 2, wait);
    if (n < 0 && errno != EINTR)
      break;
    if (n <= 0)
      continue;
    if (p[0].revents)
      read_out(&r, po[0], &out_open);
    if (p[1].revents)
      read_err(&r, pe[0], &err_open);
  }
  bool killed = timed_out || cancelled || r.problem[0];
  if (killed) {
    if (z)
      zygote_kill(z);
    else
      kill(pid, SIGKILL);
  }
  close(po[0]);
  close(pe[0]);

  /* Reap; a child that closed its pipes but lingers is killed at the
   * deadline. */
  int status = 0;
  bool lost = false;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  if (z) {
    lost = !zygote_reap(z, pid, killed, deadline, &timed_out, &status, &ru);
    killed = killed || timed_out;
  } else {
    for (;;) {
      pid_t w = wait4(pid, &status, killed ? 0 : WNOHANG, &ru);
      if (w == pid)
        break;
      if (w < 0 && errno != EINTR) {
        status = 0;
        break;
      }
      if (w == 0) {
        if (mono_ms() >= deadline) {
          timed_out = killed = true;
          kill(pid, SIGKILL);
        } else {
          struct timespec ts = {0, 10 * 1000 * 1000};
          nanosleep(&ts, NULL);
        }
      }
    }
  }
  q_buf_cleanup(&r.pending);
  info->ms = mono_ms() - t0;
  info->max_rss_kb = ru.ru_maxrss;
  snprintf(info->lockdown, sizeof info->lockdown, "%s",
           r.lockdown[0] ? r.lockdown : "unknown");

  char why[400];
  q_err_t rc = Q_EINVAL;
  if (cancelled) {
    snprintf(err, errlen, "%s: extraction cancelled", fmt->label);
    return Q_ECANCELLED;
  }
  if (timed_out) {
    snprintf(why, sizeof why, "took longer than %d s (the limit)",
             (cfg->timeout_ms + 999) / 1000);
  } else if (r.problem[0]) {
    snprintf(err, errlen, "%s: %s", fmt->label, r.problem);
    return r.problem_rc;
  } else if (lost) {
    /* The zygote died under the child (which died with it): not the
     * document's fault, and the next extraction starts a new zygote. */
    snprintf(err, errlen, "%s: the extraction zygote died; it will be restarted",
             fmt->label);
    return Q_EUNAVAIL;
  } else if (WIFSIGNALED(status)) {
    rc = explain_signal(&r, WTERMSIG(status), &ru, killed, why, sizeof why);
  } else if (WIFEXITED(status) &&
             (WEXITSTATUS(status) == 126 || WEXITSTATUS(status) == 127) &&
             !r.lockdown[0]) {
    snprintf(err, errlen, "%s: cannot start the extractor (%s %s failed)", fmt->label,
             cfg->exe, WEXITSTATUS(status) == 127 ? "exec" : "setup");
    return Q_EUNAVAIL;
  } else if (!r.ended) {
    snprintf(why, sizeof why, "stopped without finishing (exit status %d)%s%.200s",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1, r.stderr_buf[0] ? ": " : "",
             r.stderr_buf);
  } else {
    return end_result(cfg, fmt, r.end_rc, r.end_msg, err, errlen);
  }
  snprintf(err, errlen, "%s: the extractor %s", fmt->label, why);
  return rc;
}

/* Extracts items[0..n) in one child of cfg->zygote. Returns how many came
 * through whole (in order; their rc, err and info are set); the rest are
 * untouched but for records already added to the next one's doc. Stops
 * at the first thing that goes wrong - a dead child, a limit, a
 * malformed record - and leaves the rest to the caller. *cancelled is set
 * when cfg->cancel stopped it. */
static int extract_batch(const sandbox_cfg_t *cfg, sandbox_item_t *items, int n,
                         bool *cancelled) {
  int64_t t0 = mono_ms();
  sandbox_zygote_t *z = cfg->zygote;
  int po[2] = {-1, -1}, pe[2] = {-1, -1};
  if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
    if (po[0] >= 0) {
      close(po[0]);
      close(po[1]);
    }
    return 0;
  }
  int fds[ZFDS_MAX] = {po[1], pe[1]};
  const format_t *fmts[SANDBOX_BATCH_MAX];
  const char *charsets[SANDBOX_BATCH_MAX];
  bool ok = true;
  for (int i = 0; i < n; i++) {
    fds[2 + i] = items[i].fd;
    fmts[i] = items[i].fmt;
    charsets[i] = items[i].charset;
    ok = ok && lseek(items[i].fd, 0, SEEK_SET) == 0;
  }
  pid_t pid = -1;
  char why[256];
  if (ok && zygote_spawn(z, cfg, n, fmts, charsets, fds, &pid, why, sizeof why) != Q_OK)
    pid = -1;
  close(po[1]);
  close(pe[1]);
  if (pid < 0) {
    close(po[0]);
    close(pe[0]);
    return 0;
  }
  reader_t r = {.cfg = cfg,
                .fmt = items[0].fmt,
                .doc = items[0].out,
                .items = items,
                .nitems = n,
                .item_t0 = t0};
  q_buf_init(&r.pending, (size_t)cfg->limits.max_text_bytes + HDR + READ_PIECE);
  bool out_open = true, err_open = true, timed_out = false;
  int64_t deadline = t0 + cfg->timeout_ms;
  while ((out_open || err_open) && !r.problem[0]) {
    /* Each document has the whole wall-clock limit from the end of the
     * one before it. */
    deadline = r.item_t0 + cfg->timeout_ms;
    int64_t now = mono_ms();
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    if (cfg->cancel && atomic_load(cfg->cancel)) {
      *cancelled = true;
      break;
    }
    struct pollfd p[2] = {{out_open ? po[0] : -1, POLLIN, 0},
                          {err_open ? pe[0] : -1, POLLIN, 0}};
    int wait = (int)(deadline - now < 200 ? deadline - now : 200);
    int k = poll(p, 2, wait);
    if (k < 0 && errno != EINTR)
      break;
    if (k <= 0)
      continue;
    if (p[0].revents)
      read_out(&r, po[0], &out_open);
    if (p[1].revents)
      read_err(&r, pe[0], &err_open);
  }
  bool killed = timed_out || *cancelled || r.problem[0] || r.cur < n;
  if (killed)
    zygote_kill(z);
  /* The document being read had the whole wall clock to itself (its clock
   * started when the one before it ended): alone it would take as long,
   * so it fails here rather than spend the limit a second time. */
  if (timed_out && !*cancelled && r.cur < n) {
    sandbox_item_t *it = &items[r.cur++];
    it->rc = Q_EINVAL;
    snprintf(it->err, sizeof it->err,
             "%s: the extractor took longer than %d s (the limit)", it->fmt->label,
             (cfg->timeout_ms + 999) / 1000);
    it->info.ms = mono_ms() - r.item_t0;
  }
  close(po[0]);
  close(pe[0]);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  zygote_reap(z, pid, killed, deadline, &timed_out, &status, &ru);
  q_buf_cleanup(&r.pending);
  for (int i = 0; i < r.cur; i++) {
    items[i].info.max_rss_kb = ru.ru_maxrss;
    snprintf(items[i].info.lockdown, sizeof items[i].info.lockdown, "%s",
             r.lockdown[0] ? r.lockdown : "unknown");
  }
  return r.cur;
}

void sandbox_extract_many(const sandbox_cfg_t *cfg, sandbox_item_t *items, int n) {
  for (int i = 0; i < n; i++) {
    items[i].rc = Q_EUNAVAIL;
    items[i].err[0] = '\0';
    memset(&items[i].info, 0, sizeof items[i].info);
    items[i].alone = false;
  }
  int done = 0;
  bool cancelled = false;
  if (cfg->zygote && n > 1 && n <= SANDBOX_BATCH_MAX)
    done = extract_batch(cfg, items, n, &cancelled);
  /* What the shared child did not finish, each in a child of its own: a
   * document that killed the batch (or would have) now fails alone, with
   * the reason sandbox_extract gives, and its neighbours come through. */
  for (int i = done; i < n; i++) {
    sandbox_item_t *it = &items[i];
    it->alone = cfg->zygote && n > 1 && n <= SANDBOX_BATCH_MAX;
    if (cancelled) {
      it->rc = Q_ECANCELLED;
      snprintf(it->err, sizeof it->err, "%s: extraction cancelled", it->fmt->label);
      continue;
    }
    if (i == done && it->alone) {
      /* Records of the interrupted document may have arrived already. */
      doc_cleanup(it->out);
      doc_init(it->out, it->fmt->chunking, (size_t)cfg->limits.max_text_bytes);
    }
    it->rc = sandbox_extract(cfg, it->fmt, it->charset, it->fd, it->out, &it->info,
                             it->err, sizeof it->err);
  }
}
