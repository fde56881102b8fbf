/* qgemv_avx2.c — AVX2 + FMA quantized matrix-vector product (compiled with -mavx2 -mfma). */
#include "kernels/cpu.h"
#include "kernels/qgemv_common.h"
#include "kernels/x86/qgemv_x86.h"

static void qgemv_avx2(const spqr_qview *v, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *scratch, float *y) {
#define DENSE(crow, s, x) dense_avx2(v, crow, s, x)
    QK_ROWS(v, r0, r1, x_s, gsum, scratch, y, DENSE, qk_row_stats, zterm_avx2);
#undef DENSE
}

static void qdequant_avx2(const spqr_qview *v, uint32_t r0, uint32_t r1, float *scratch, float *out) {
#define DEQ(crow, s, z, o) deq_row_avx2(v, crow, s, z, o)
    QK_DEQUANT(v, r0, r1, scratch, out, DEQ, qk_row_stats);
#undef DEQ
}

static const spqr_cpu_kernels avx2 = {"avx2", qgemv_avx2, gemv16_avx2_rows, qdequant_avx2, NULL, NULL, spqr_ordered_rows_avx2};

const spqr_cpu_kernels *spqr_cpu_kernels_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c() ? &avx2 : NULL;
}
