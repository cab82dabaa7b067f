/* vecdist.c - float32 and int8 dot products, portable and AVX2 (see vecdist.h).
 *
 * The portable kernels keep eight (float) or sixteen (int8) partial sums in
 * arrays whose fixed-length inner loops GCC vectorises at -O2 (SLP
 * vectorisation; -O2 in GCC 12 only vectorises loops whose trip count needs no
 * scalar epilogue, which a plain `for i < n` loop does not satisfy). The
 * partial sums also break the dependency chain of a single running sum, which
 * is what limits a naive loop even when it is vectorised. */
#include "engine/vecdist.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

static float dot_f32_portable(const float *restrict a, const float *restrict b,
                              size_t n) {
  float acc[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++)
      acc[k] += a[i + k] * b[i + k];
  float s = 0.0f;
  for (; i < n; i++)
    s += a[i] * b[i];
  return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
         ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static int32_t dot_i8_portable(const int8_t *restrict a, const int8_t *restrict b,
                               size_t n) {
  int32_t acc[16] = {0};
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; k++)
      acc[k] += (int32_t)a[i + k] * (int32_t)b[i + k];
  int32_t s = 0;
  for (; i < n; i++)
    s += (int32_t)a[i] * (int32_t)b[i];
  for (int k = 0; k < 16; k++)
    s += acc[k];
  return s;
}

static const vecdist_kernels_t portable = {"portable", dot_f32_portable, dot_i8_portable};

#ifdef HAVE_X86
__attribute__((target("avx2,fma"))) static float
dot_f32_avx2(const float *restrict a, const float *restrict b, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float r = _mm_cvtss_f32(h);
  for (; i < n; i++)
    r += a[i] * b[i];
  return r;
}

/* Sign-extends 16 int8s to int16 and multiplies pairwise into int32
 * (vpmaddwd): 16 products per instruction, no overflow for |x| <= 127. */
__attribute__((target("avx2"))) static int32_t
dot_i8_avx2(const int8_t *restrict a, const int8_t *restrict b, size_t n) {
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
    __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
    __m256i a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i + 16)));
    __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i + 16)));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(a1, b1));
  }
  for (; i + 16 <= n; i += 16) {
    __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
    __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
  }
  __m256i s = _mm256_add_epi32(s0, s1);
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
  int32_t r = _mm_cvtsi128_si32(h);
  for (; i < n; i++)
    r += (int32_t)a[i] * (int32_t)b[i];
  return r;
}

static const vecdist_kernels_t avx2 = {"avx2", dot_f32_avx2, dot_i8_avx2};
#endif

const vecdist_kernels_t *vecdist_select(bool portable_only) {
#ifdef HAVE_X86
  if (!portable_only) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return &avx2;
  }
#endif
  return &portable;
}
