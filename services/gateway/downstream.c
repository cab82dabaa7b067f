/* downstream.c - wording of failed downstream calls (see downstream.h). */
#include "downstream.h"

#include <stdio.h>

#include "quarry/error.h"

void downstream_msg(char *out, size_t outlen, const char *service, int err,
                    const char *detail) {
  const char *what;
  switch (err) {
  case Q_EUNAVAIL:
  case Q_EIO: what = "unavailable"; break;
  case Q_ETIMEDOUT: what = "deadline exceeded"; break;
  case Q_ECANCELLED: what = "call cancelled"; break;
  default:
    /* The service answered and refused: its own words say why. */
    snprintf(out, outlen, "%s: %s", service,
             detail && *detail ? detail : q_strerror(err));
    return;
  }
  if (detail && *detail)
    snprintf(out, outlen, "%s %s: %s", service, what, detail);
  else
    snprintf(out, outlen, "%s %s", service, what);
}
