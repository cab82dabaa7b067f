/* httpfake.h - a loopback HTTP server for unit tests that fake a remote API
 * (model providers, rerank APIs, the Quarry REST API for the CLI).
 *
 * It binds 127.0.0.1 on a port the kernel chooses, buffers each request's
 * body whole, then calls the test's handler once with the complete request.
 * The handler answers with httpfake_reply / httpfake_reply_json (or any
 * MHD_queue_response of its own). */
#ifndef QUARRY_TEST_HTTPFAKE_H
#define QUARRY_TEST_HTTPFAKE_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

/* Request bodies above this are cut here (the fakes never need more). */
#define HTTPFAKE_BODY_MAX (16u << 20)

typedef struct httpfake_req {
  struct MHD_Connection *conn;
  const char *method, *url;
  const char *body; /* NUL-terminated; "" when there is none */
  size_t len;
} httpfake_req_t;

typedef enum MHD_Result (*httpfake_fn)(void *ud, const httpfake_req_t *req);

typedef struct httpfake httpfake_t;

typedef enum {
  HTTPFAKE_ONE_THREAD = 0,       /* requests answered one at a time */
  HTTPFAKE_THREAD_PER_CONNECTION /* a slow route does not hold up others */
} httpfake_threads_t;

/* Starts the server, or returns NULL. */
httpfake_t *httpfake_start(httpfake_fn fn, void *ud, httpfake_threads_t threads);
/* Stops it (waits for the handlers running now); NULL is ignored. */
void httpfake_stop(httpfake_t *f);
int httpfake_port(const httpfake_t *f);
/* "http://127.0.0.1:<port><path>" into out. */
void httpfake_url(const httpfake_t *f, char *out, size_t n, const char *path);

/* Queues a reply of len bytes (copied); type and retry_after may be NULL. */
enum MHD_Result httpfake_reply(struct MHD_Connection *c, unsigned status,
                               const char *type, const char *body, size_t len,
                               const char *retry_after);
/* Queues body (a reference the call takes) as application/json. */
enum MHD_Result httpfake_reply_json(struct MHD_Connection *c, unsigned status,
                                    json_t *body, const char *retry_after);

#endif
