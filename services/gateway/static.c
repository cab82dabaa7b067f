/* static.c - the web app's files (web/ in the repository), served at "/"
 * (index.html) and "/app/<name>" by GET and HEAD, without a credential: the
 * app signs in with an API key the browser sends on its API calls.
 *
 * What can be asked for is a closed set by construction, so no path ever
 * leaves the folder: a name is one path segment (the router's "{id}") of
 * [A-Za-z0-9_-] characters, one dot and a known extension; it is opened
 * relative to the folder's descriptor with O_NOFOLLOW and must be a regular
 * file. Anything else is a 404.
 *
 * Every reply carries a strict Content-Security-Policy (scripts, styles and
 * connections from this origin only; nothing inline, no frames), nosniff
 * and no referrer. The files are not fingerprinted (there is no build step),
 * so all are "no-cache": the browser keeps them but asks each time, and an
 * If-None-Match that matches the ETag (size and modification time) gets an
 * empty 304. Files are read per request; they are small and the page cache
 * holds them. */
#include "handlers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http_util.h"
#include "quarry/log.h"

#define STATIC_MAX_BYTES (4u << 20) /* largest file served */
#define NAME_MAX_BYTES 64

static const char CSP[] = "default-src 'self'; script-src 'self'; style-src 'self'; "
                          "img-src 'self'; connect-src 'self'; font-src 'self'; "
                          "object-src 'none'; base-uri 'none'; form-action 'self'; "
                          "frame-ancestors 'none'";

static int web_fd = -1; /* the web folder, opened once by static_init */

static const struct {
  const char *ext;
  const char *ctype;
} MIME[] = {
    {"html", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
};

/* The content type of a well-formed name, or NULL for anything else. */
static const char *name_ctype(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > NAME_MAX_BYTES)
    return NULL;
  const char *dot = NULL;
  for (const char *p = name; *p; p++) {
    char c = *p;
    if (c == '.') {
      if (dot || p == name)
        return NULL; /* one dot, not leading: no "..", no hidden files */
      dot = p;
    } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '-' || c == '_')) {
      return NULL;
    }
  }
  if (!dot)
    return NULL;
  for (size_t i = 0; i < sizeof MIME / sizeof MIME[0]; i++)
    if (strcmp(dot + 1, MIME[i].ext) == 0)
      return MIME[i].ctype;
  return NULL;
}

/* Whether an If-None-Match list names etag (or is "*"). */
static bool etag_matches(const char *inm, const char *etag) {
  if (!inm)
    return false;
  if (strstr(inm, "*"))
    return true;
  size_t el = strlen(etag);
  for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag)) {
    char after = p[el];
    if (after == '\0' || after == ',' || after == ' ' || after == '\t')
      return true;
  }
  return false;
}

static void add_common(struct MHD_Response *resp) {
  MHD_add_response_header(resp, "Content-Security-Policy", CSP);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
  MHD_add_response_header(resp, "X-Frame-Options", "DENY");
}

static void serve(gw_req_t *r, const char *name) {
  const char *ctype = name_ctype(name);
  if (!ctype || web_fd < 0) {
    http_reply_status(r, 404, "not_found", "no such file: %.80s", name);
    return;
  }
  int fd = openat(web_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size > (off_t)STATIC_MAX_BYTES) {
    if (fd >= 0)
      close(fd);
    http_reply_status(r, 404, "not_found", "no such file: %.80s", name);
    return;
  }

  char etag[64], lastmod[64];
  snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
           (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
               (unsigned long long)st.st_mtim.tv_nsec);
  struct tm tm;
  gmtime_r(&st.st_mtim.tv_sec, &tm);
  strftime(lastmod, sizeof lastmod, "%a, %d %b %Y %H:%M:%S GMT", &tm);

  unsigned status = 200;
  size_t len = 0;
  char *data = NULL;
  if (etag_matches(http_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH), etag)) {
    status = 304;
  } else {
    len = (size_t)st.st_size;
    data = malloc(len ? len : 1);
    size_t got = 0;
    while (data && got < len) {
      ssize_t n = read(fd, data + got, len - got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      got += (size_t)n;
    }
    if (!data || got != len) {
      free(data);
      close(fd);
      http_reply_error(r, Q_EINTERNAL, "cannot read %.80s", name);
      return;
    }
  }
  close(fd);

  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(data);
    http_reply_error(r, Q_ENOMEM, "cannot create a response");
    return;
  }
  add_common(resp);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, lastmod);
  http_reply_response(r, status, status == 304 ? NULL : ctype, "no-cache", resp);
}

void static_index(gw_req_t *r) {
  serve(r, "index.html");
}

void static_file(gw_req_t *r) {
  serve(r, r->param);
}

/* Whether path is a folder holding index.html. */
static bool has_index(const char *path) {
  char p[PATH_MAX];
  struct stat st;
  return snprintf(p, sizeof p, "%s/index.html", path) < (int)sizeof p &&
         stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

q_err_t static_init(const char *dir) {
  char found[PATH_MAX] = "";
  if (dir && *dir) {
    snprintf(found, sizeof found, "%s", dir);
  } else {
    /* Next to the binary: installed (<prefix>/bin and
     * <prefix>/share/quarry/web), then the build tree (build/bin and web/). */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
      exe[n] = '\0';
      char *slash = strrchr(exe, '/');
      if (slash)
        *slash = '\0';
      static const char *const rel[] = {"../share/quarry/web", "../../web"};
      for (size_t i = 0; i < sizeof rel / sizeof rel[0] && !found[0]; i++) {
        char cand[PATH_MAX];
        if (snprintf(cand, sizeof cand, "%s/%s", exe, rel[i]) < (int)sizeof cand &&
            has_index(cand))
          snprintf(found, sizeof found, "%s", cand);
      }
    }
  }
  if (!found[0]) {
    q_log_warn("web app not found; / answers 404", "{s:s}", "hint",
               "set QUARRY_WEB_DIR to the folder holding index.html");
    return 0;
  }
  int fd = open(found, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    q_log_error("cannot open QUARRY_WEB_DIR", "{s:s,s:s}", "dir", found, "error",
                strerror(errno));
    return Q_EINVAL;
  }
  if (web_fd >= 0)
    close(web_fd);
  web_fd = fd;
  q_log_info("serving the web app", "{s:s}", "dir", found);
  return 0;
}
