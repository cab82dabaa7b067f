/* hangup.c - an epoll set of waiting requests' sockets and the thread that
 * waits on it (see hangup.h). A handle is a slot index and the slot's
 * generation, so an event that arrives for a slot unwatched (and perhaps
 * reused) in the meantime is recognised and dropped; callbacks run under
 * the lock that hangup_unwatch takes, so after unwatch none is running. */
#include "hangup.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "quarry/log.h"

#define STOP_TAG UINT64_MAX
#define MAX_EVENTS 64

typedef struct slot {
  int fd;
  uint32_t gen;
  bool used;
  hangup_cb cb;
  void *ud;
} slot_t;

struct hangup {
  pthread_mutex_t mu;
  int ep, stopfd;
  pthread_t thread;
  slot_t *slots;
  size_t nslots, cap;
  size_t *free_list; /* indexes of unused slots below nslots */
  size_t nfree;
};

static uint64_t handle_of(size_t idx, uint32_t gen) {
  return ((uint64_t)gen << 32) | (uint64_t)(idx + 1);
}

/* The slot a handle names, or NULL when it is stale. Under mu. */
static slot_t *slot_of(hangup_t *h, uint64_t handle) {
  size_t idx = (size_t)(handle & 0xffffffffu);
  if (idx == 0 || idx > h->nslots)
    return NULL;
  slot_t *s = &h->slots[idx - 1];
  return s->used && s->gen == (uint32_t)(handle >> 32) ? s : NULL;
}

static void *watch_main(void *arg) {
  hangup_t *h = arg;
  struct epoll_event ev[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(h->ep, ev, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      q_log_error("hang-up watcher: epoll_wait failed", "{s:s}", "error",
                  strerror(errno));
      return NULL;
    }
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < n; i++) {
      if (ev[i].data.u64 == STOP_TAG) {
        pthread_mutex_unlock(&h->mu);
        return NULL;
      }
      slot_t *s = slot_of(h, ev[i].data.u64);
      if (s && s->cb) {
        hangup_cb cb = s->cb;
        s->cb = NULL; /* once */
        cb(s->ud);
      }
    }
    pthread_mutex_unlock(&h->mu);
  }
}

uint64_t hangup_watch(hangup_t *h, int fd, hangup_cb cb, void *ud) {
  if (!h || fd < 0)
    return 0;
  uint64_t handle = 0;
  pthread_mutex_lock(&h->mu);
  size_t idx;
  if (h->nfree) {
    idx = h->free_list[--h->nfree];
  } else {
    if (h->nslots == h->cap) {
      size_t cap = h->cap ? 2 * h->cap : 64;
      slot_t *s = realloc(h->slots, cap * sizeof *s);
      size_t *f = s ? realloc(h->free_list, cap * sizeof *f) : NULL;
      if (s)
        h->slots = s;
      if (!f)
        goto out;
      h->free_list = f;
      h->cap = cap;
    }
    idx = h->nslots++;
    h->slots[idx].gen = 0;
  }
  slot_t *s = &h->slots[idx];
  s->gen++;
  s->fd = fd;
  s->cb = cb;
  s->ud = ud;
  s->used = true;
  struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLONESHOT,
                           .data.u64 = handle_of(idx, s->gen)};
  if (epoll_ctl(h->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    s->used = false;
    h->free_list[h->nfree++] = idx;
    goto out;
  }
  handle = ev.data.u64;
out:
  pthread_mutex_unlock(&h->mu);
  return handle;
}

void hangup_unwatch(hangup_t *h, uint64_t handle) {
  if (!h || !handle)
    return;
  pthread_mutex_lock(&h->mu);
  slot_t *s = slot_of(h, handle);
  if (s) {
    epoll_ctl(h->ep, EPOLL_CTL_DEL, s->fd, NULL);
    s->used = false;
    s->cb = NULL;
    h->free_list[h->nfree++] = (size_t)(s - h->slots);
  }
  pthread_mutex_unlock(&h->mu);
}

hangup_t *hangup_new(void) {
  hangup_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  pthread_mutex_init(&h->mu, NULL);
  h->ep = epoll_create1(EPOLL_CLOEXEC);
  h->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STOP_TAG};
  if (h->ep < 0 || h->stopfd < 0 ||
      epoll_ctl(h->ep, EPOLL_CTL_ADD, h->stopfd, &ev) != 0 ||
      pthread_create(&h->thread, NULL, watch_main, h) != 0) {
    q_log_error("cannot start the hang-up watcher", "{s:s}", "error", strerror(errno));
    if (h->ep >= 0)
      close(h->ep);
    if (h->stopfd >= 0)
      close(h->stopfd);
    pthread_mutex_destroy(&h->mu);
    free(h);
    return NULL;
  }
  return h;
}

void hangup_free(hangup_t *h) {
  if (!h)
    return;
  uint64_t one = 1;
  if (write(h->stopfd, &one, sizeof one) < 0)
    q_log_warn("hang-up watcher: cannot signal stop", "{s:s}", "error", strerror(errno));
  pthread_join(h->thread, NULL);
  close(h->ep);
  close(h->stopfd);
  pthread_mutex_destroy(&h->mu);
  free(h->slots);
  free(h->free_list);
  free(h);
}
