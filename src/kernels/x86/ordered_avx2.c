/* ordered_avx2.c — fixed-order products (kernels/ordered.h) compiled with -mavx2 -mfma
 * -ffp-contract=off: a 16-column strip as two ymm registers, 6 rows per register tile; vfmadd for
 * the definition's fma, the update as vmulps then vaddps. The same bits as the generic code. */
#include "kernels/ordered.h"

#include <immintrin.h>

typedef struct { __m256 lo, hi; } ord_acc;
typedef ord_acc ord_b;
#define ORD_ZERO(acc) ((acc).lo = (acc).hi = _mm256_setzero_ps())
#define ORD_LOADB(bv, p) ((bv).lo = _mm256_loadu_ps(p), (bv).hi = _mm256_loadu_ps((p) + 8))
#define ORD_FMA(acc, a, bv)                                                 \
    do {                                                                    \
        const __m256 a_ = _mm256_set1_ps(a);                                \
        (acc).lo = _mm256_fmadd_ps(a_, (bv).lo, (acc).lo);                   \
        (acc).hi = _mm256_fmadd_ps(a_, (bv).hi, (acc).hi);                   \
    } while (0)
#define ORD_UPDATE(c, alpha, acc)                                                                   \
    do {                                                                                            \
        const __m256 al_ = _mm256_set1_ps(alpha);                                                   \
        _mm256_storeu_ps((c), _mm256_add_ps(_mm256_loadu_ps(c), _mm256_mul_ps(al_, (acc).lo)));     \
        _mm256_storeu_ps((c) + 8, _mm256_add_ps(_mm256_loadu_ps((c) + 8), _mm256_mul_ps(al_, (acc).hi))); \
    } while (0)
#define ORD_NAME spqr_ordered_rows_avx2
#define ORD_MR 6
#include "kernels/ordered_body.h"
