/* handlers.h - the gRPC face of quarry-auth: Authenticate and CreateApiKey
 * over a keystore. */
#ifndef QUARRY_AUTH_HANDLERS_H
#define QUARRY_AUTH_HANDLERS_H

#include <stddef.h>

#include "quarry/grpc.h"

/* Handlers for quarry.v1.Auth; pass the keystore_t as the user data. */
extern const q_grpc_method_t auth_methods[];
extern const size_t auth_nmethods;

#endif
