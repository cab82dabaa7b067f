/* vecdist.h - dot products for the retriever's vector search, float32 and int8.
 *
 * Two implementations of each kernel: portable C written so that GCC's -O2
 * vectoriser turns it into SSE2 on x86-64 (eight independent accumulators, no
 * aliasing), and AVX2+FMA intrinsics compiled with a per-function target
 * attribute, so the binary still runs on a CPU without AVX2. The choice is
 * made at run time with __builtin_cpu_supports. docs/benchmarks.md has the
 * measured difference on the development machine.
 *
 * Thread-safety: everything here is pure; vecdist_select may be called from
 * any thread. */
#ifndef QUARRY_RETRIEVER_ENGINE_VECDIST_H
#define QUARRY_RETRIEVER_ENGINE_VECDIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One set of kernels. */
typedef struct vecdist_kernels {
  const char *name; /* "avx2" or "portable" */
  /* sum of a[i] * b[i] over n floats */
  float (*dot_f32)(const float *a, const float *b, size_t n);
  /* sum of a[i] * b[i] over n int8s, exact in int32 for n up to 131,072 */
  int32_t (*dot_i8)(const int8_t *a, const int8_t *b, size_t n);
} vecdist_kernels_t;

/* The fastest kernels this CPU runs, or the portable ones when portable_only
 * is true (for measurements and tests). Never NULL; the table is static. */
const vecdist_kernels_t *vecdist_select(bool portable_only);

#endif
