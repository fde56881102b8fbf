/*
 * ordered_body.h — the body of spqr_ordered_rows_<isa> (ordered.h), included once per ISA with
 * ORD_NAME (the function), ORD_MR (rows per register tile) and the 16-column strip operations:
 *   ord_acc                 16 fp32 accumulators (one strip of one row)
 *   ORD_ZERO(acc)           acc = +0
 *   ORD_LOADB(bv, p)        bv = the 16 floats at p (type ord_b)
 *   ORD_FMA(acc, a, bv)     acc[l] = fma(a, bv[l], acc[l]), one rounding
 *   ORD_UPDATE(c, alpha, acc)  c[l] = c[l] + fl(alpha · acc[l]), mul then add
 * Lane l does exactly the scalar definition's operations for its column, so every ISA (and the scalar
 * edge path) gives the same bits. Contraction is off by flag (no a*b+c fused behind our back).
 *
 * Loops: column blocks of JB, then chunks of K (in order: each element's chunks stay in sequence),
 * then this thread's row groups (SPQR_ORDERED_ROWS rows, every nth from the ith), then row tiles.
 * Per (block, chunk) B is packed strip by strip (bp[s][k][16], contiguous along k) once for all of the
 * thread's rows; per row tile A is packed as ap[k][m]: the k loop then walks memory linearly instead
 * of touching one page per k.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One element over chunk [k0, k1): the definition itself (edges, and the fallback without scratch). */
static inline void ord_one(const spqr_ordered_args *g, int i, int j, int k0, int k1) {
    float acc = 0.0f;
    for (int k = k0; k < k1; k++) acc = fmaf(g->A[i * g->a_si + k * g->a_sk], g->B[k * g->ldb + j], acc);
    float *c = &g->C[i * g->ldc + j];
    const float t = g->alpha * acc;
    *c = *c + t;
}

void ORD_NAME(const spqr_ordered_args *g, int ith, int nth) {
    enum { JB = 256, KC = SPQR_ORDERED_CHUNK };
    const int M = g->M, N = g->N, K = g->K;
    const size_t kcap = K < KC ? (size_t)K : KC;
    float *bp = malloc(sizeof(float) * kcap * JB), *ap = malloc(sizeof(float) * kcap * ORD_MR);
    for (int jb0 = 0; jb0 < N; jb0 += JB) {
        const int jb1 = jb0 + JB < N ? jb0 + JB : N, nfull = bp && ap ? (jb1 - jb0) / 16 : 0;
        if (g->upper && jb1 <= ith * SPQR_ORDERED_ROWS) continue; /* below every row of this thread */
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = k0 + KC < K ? KC : K - k0;
            for (int s = 0; s < nfull; s++)
                for (int k = 0; k < kc; k++) memcpy(bp + ((size_t)s * kc + k) * 16, g->B + (k0 + k) * g->ldb + jb0 + 16 * s, 16 * sizeof(float));
            for (int q0 = ith * SPQR_ORDERED_ROWS; q0 < M; q0 += nth * SPQR_ORDERED_ROWS) {
                const int q1 = q0 + SPQR_ORDERED_ROWS < M ? q0 + SPQR_ORDERED_ROWS : M;
                for (int ib = q0; ib < q1; ib += ORD_MR) {
                    const int mr = ib + ORD_MR <= q1 ? ORD_MR : q1 - ib;
                    const int js = g->upper ? (ib & ~15) : 0; /* strips holding some j >= i */
                    if (js >= jb1) break;
                    if (mr == ORD_MR && nfull)
                        for (int k = 0; k < kc; k++)
                            for (int m = 0; m < ORD_MR; m++) ap[k * ORD_MR + m] = g->A[(ib + m) * g->a_si + (k0 + k) * g->a_sk];
                    for (int s = 0, j = jb0; j < jb1; s++, j += 16) {
                        if (j < js) continue;
                        if (mr < ORD_MR || s >= nfull) { /* edge: element by element */
                            for (int m = 0; m < mr; m++)
                                for (int jj = j; jj < j + 16 && jj < jb1; jj++) ord_one(g, ib + m, jj, k0, k0 + kc);
                            continue;
                        }
                        ord_acc acc[ORD_MR];
#pragma GCC unroll 8
                        for (int m = 0; m < ORD_MR; m++) ORD_ZERO(acc[m]);
                        const float *b = bp + (size_t)s * kc * 16, *a = ap;
                        for (int k = 0; k < kc; k++, b += 16, a += ORD_MR) {
                            ord_b bv;
                            ORD_LOADB(bv, b);
#pragma GCC unroll 8
                            for (int m = 0; m < ORD_MR; m++) ORD_FMA(acc[m], a[m], bv);
                        }
#pragma GCC unroll 8
                        for (int m = 0; m < ORD_MR; m++) ORD_UPDATE(g->C + (ib + m) * g->ldc + j, g->alpha, acc[m]);
                    }
                }
            }
        }
    }
    free(bp);
    free(ap);
}
