/* ordered_avx512.c — fixed-order products (kernels/ordered.h) compiled with -mavx512f
 * -ffp-contract=off: one zmm per 16-column strip, 8 rows per register tile; vfmadd for the
 * definition's fma, the update as vmulps then vaddps. The same bits as the generic code. */
#include "kernels/ordered.h"

#include <immintrin.h>

typedef __m512 ord_acc;
typedef __m512 ord_b;
#define ORD_ZERO(acc) ((acc) = _mm512_setzero_ps())
#define ORD_LOADB(bv, p) ((bv) = _mm512_loadu_ps(p))
#define ORD_FMA(acc, a, bv) ((acc) = _mm512_fmadd_ps(_mm512_set1_ps(a), (bv), (acc)))
#define ORD_UPDATE(c, alpha, acc) _mm512_storeu_ps((c), _mm512_add_ps(_mm512_loadu_ps(c), _mm512_mul_ps(_mm512_set1_ps(alpha), (acc))))
#define ORD_NAME spqr_ordered_rows_avx512
#define ORD_MR 8
#include "kernels/ordered_body.h"
