/* routes.h - the gateway's route table (routes.c). */
#ifndef QUARRY_GW_ROUTES_H
#define QUARRY_GW_ROUTES_H

#include <stddef.h>

#include "router.h"

/* The gateway's routes, in the order they are matched. */
extern const route_t gw_routes[];
extern const size_t gw_nroutes;

#endif
