/* fuzz_mhd.h - one HTTP exchange with an in-process libmicrohttpd daemon,
 * for the targets that drive the gateway's real request handling
 * (fuzz_json, fuzz_upload): the daemon listens on nothing
 * (MHD_USE_NO_LISTEN_SOCKET) and is stepped by MHD_run; the "client" is the
 * other end of a socketpair. */
#ifndef QUARRY_FUZZ_MHD_H
#define QUARRY_FUZZ_MHD_H

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "quarry/buf.h"

/* Rounds (MHD_run calls) an exchange may take before it counts as stuck. */
#define FUZZ_MHD_ROUNDS 100000

/* Hands one end of a socketpair to d as a connection from 127.0.0.1, writes
 * http[0..len) as the daemon reads it and reads what it answers until it
 * closes the connection (the request says Connection: close) and, when the
 * access handler ran (*accessed), until the completion callback ran too
 * (*completed); then lets the daemon free the connection. The reply's bytes
 * are appended to out (NULL: dropped; a reply beyond out's bound fails).
 *
 * Returns the rounds taken; FUZZ_MHD_ROUNDS or more means the daemon never
 * finished on its own. With give_up false that is where it stops (the caller
 * fails it). With give_up true the connection is then shut down from this
 * side, which libmicrohttpd reports as a client abort, and the exchange goes
 * on until the completion (at most 2 * FUZZ_MHD_ROUNDS rounds). */
static inline int fuzz_mhd_exchange(struct MHD_Daemon *d, const char *http, size_t len,
                                    q_buf_t *out, const int *accessed,
                                    const int *completed, bool give_up) {
  int sv[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s",
             strerror(errno));
  fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
  struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
  peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  FUZZ_CHECK(MHD_add_connection(d, sv[0], (struct sockaddr *)&peer, sizeof peer) ==
                 MHD_YES,
             "MHD_add_connection");
  size_t off = 0;
  int eof = 0, spins = 0;
  char buf[8192];
  while (!eof || (*accessed && !*completed)) {
    if (off < len) {
      ssize_t w = write(sv[1], http + off, len - off);
      if (w > 0)
        off += (size_t)w;
    }
    MHD_run(d);
    ssize_t got = -1;
    while (!eof && (got = read(sv[1], buf, sizeof buf)) != 0) {
      if (got < 0) {
        if (errno != EAGAIN && errno != EINTR)
          eof = 1;
        break;
      }
      if (out)
        FUZZ_CHECK(q_buf_append(out, buf, (size_t)got) == 0,
                   "a reply larger than the buffer's bound");
    }
    if (got == 0)
      eof = 1;
    if (++spins == FUZZ_MHD_ROUNDS && give_up && !eof) {
      shutdown(sv[1], SHUT_RDWR); /* the daemon waits for more: give up */
      eof = 1;
    }
    if (spins >= (give_up ? 2 : 1) * FUZZ_MHD_ROUNDS)
      break;
  }
  close(sv[1]);
  MHD_run(d); /* closes and frees the connection */
  return spins;
}

#endif
