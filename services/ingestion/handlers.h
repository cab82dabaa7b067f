/* handlers.h - the gRPC face of quarry-ingestion (quarry.v1.Ingestion). */
#ifndef QUARRY_INGESTION_HANDLERS_H
#define QUARRY_INGESTION_HANDLERS_H

#include <stddef.h>

#include "quarry/grpc.h"

/* Upload, GetDocument and GetJob; pass the ingest_t as the user data. */
extern const q_grpc_method_t ingestion_methods[];
extern const size_t ingestion_nmethods;

#endif
