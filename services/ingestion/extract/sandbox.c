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
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

int sandbox_child_main(int argc, char **argv, sandbox_find_fn find) {
  static out_t o;
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
  bool want_seccomp = strcmp(argv[8], "1") == 0;
  signal(SIGPIPE, SIG_DFL);

  char err[512] = "";
  q_err_t rc = Q_OK;
  const extractor_t *x = find ? find(id) : NULL;
  if (!x && !find) {
    const format_t *f = formats_by_id(id);
    x = f ? f->extractor : NULL;
  }
  struct stat st;
  const char *data = NULL;
  size_t size = 0;
  if (!x) {
    rc = Q_EINTERNAL;
    snprintf(err, sizeof err, "no extractor named %s", id);
  } else if (fstat(0, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = Q_EINTERNAL;
    snprintf(err, sizeof err, "the document is not a regular file on stdin");
  } else if (st.st_size > 0) {
    size = (size_t)st.st_size;
    data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, 0, 0);
    if (data == MAP_FAILED) {
      data = NULL;
      rc = errno == ENOMEM ? Q_ENOMEM : Q_EINTERNAL;
      snprintf(err, sizeof err, "cannot map the document: %s", strerror(errno));
    }
  }
  extract_ctx_t ctx;
  extract_ctx_init(&ctx, data, size, charset, &lim, child_sink_cb, &o, err, sizeof err);
  if (!rc && x->prepare)
    rc = x->prepare(&ctx);
  char level[160];
  lockdown(want_seccomp, level, sizeof level);
  out_record(&o, SANDBOX_REC_INFO, 0, 0, level, strlen(level));
  if (!rc)
    rc = x->run(&ctx);
  if (rc && !err[0])
    snprintf(err, sizeof err, "%s", q_strerror(rc));
  out_record(&o, SANDBOX_REC_END, 0, (int32_t)rc, err, strlen(err));
  out_flush(&o);
  /* No cleanup: the process ends here and the kernel frees everything. */
  _exit(o.broken ? 3 : 0);
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
} reader_t;

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
  struct rlimit as = {(rlim_t)cfg->memory_bytes, (rlim_t)cfg->memory_bytes};
  struct rlimit cpu = {(rlim_t)cfg->cpu_seconds, (rlim_t)cfg->cpu_seconds + 1};
  struct rlimit zero = {0, 0}, nofile = {NOFILE_MAX, NOFILE_MAX};
  if (setrlimit(RLIMIT_AS, &as) || setrlimit(RLIMIT_CPU, &cpu) ||
      setrlimit(RLIMIT_FSIZE, &zero) || setrlimit(RLIMIT_CORE, &zero) ||
      setrlimit(RLIMIT_NOFILE, &nofile))
    _exit(126);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  execve(cfg->exe, a->argv, a->envp);
  _exit(127);
}

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
  child_args_t args;
  build_args(&args, cfg, fmt, charset);
  pid_t pid = fork();
  if (pid == 0)
    exec_child(cfg, &args, fd, po[1], pe[1]);
  close(po[1]);
  close(pe[1]);
  if (pid < 0) {
    snprintf(err, errlen, "%s: cannot start the extractor (fork: %s)", fmt->label,
             strerror(errno));
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
  if (killed)
    kill(pid, SIGKILL);
  close(po[0]);
  close(pe[0]);

  /* Reap; a child that closed its pipes but lingers is killed at the
   * deadline. */
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
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
  } else if (r.end_rc == Q_OK) {
    return Q_OK;
  } else if (r.end_rc == Q_ENOMEM) {
    char limit[32];
    sandbox_format_size(cfg->memory_bytes, limit, sizeof limit);
    snprintf(why, sizeof why, "ran out of memory (limit %s)", limit);
  } else {
    snprintf(err, errlen, "%s: %s", fmt->label, r.end_msg);
    return r.end_rc == Q_ETOOBIG || r.end_rc == Q_EUNSUPPORTED ? r.end_rc : Q_EINVAL;
  }
  snprintf(err, errlen, "%s: the extractor %s", fmt->label, why);
  return rc;
}
