/* downstream.h - how the gateway words the failure of a call to another
 * service, the same in a reply, a stream event and a log line:
 * "retriever unavailable: <detail>", "llm-gateway deadline exceeded",
 * or, when the service answered and refused, "<service>: <its words>". */
#ifndef QUARRY_GW_DOWNSTREAM_H
#define QUARRY_GW_DOWNSTREAM_H

#include <stddef.h>

/* Writes the message for err (a q_err_t) from service, with the status
 * message detail (may be NULL or ""), into out. Pure. */
void downstream_msg(char *out, size_t outlen, const char *service, int err,
                    const char *detail);

#endif
